"""faiss_app's Falcon WSGI application: ``create_app(settings, deps)``.

The app loads the LATEST snapshot of every vector space when it is created (in each gunicorn
worker: no preload) and owns one :class:`UpdateFollower` thread per space, tailing that
space's topic. The threads are started post-fork, by gunicorn's ``post_worker_init`` hook
(gunicorn.conf.py) or, failing that, on the first request; ``app.runtime.stop()`` ends it (gunicorn's ``worker_exit`` hook).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import falcon

from services.faiss_app import broadcast, resources
from services.faiss_app.broadcast import ReloadWatcher
from services.faiss_app.catalog import Catalog
from services.faiss_app.errors import (
    BadQuery,
    IndexNotReady,
    NotAuthorized,
    PayloadTooLarge,
    UnknownItemError,
)
from services.faiss_app.follower import UpdateFollower
from services.faiss_app.openapi import build_spec
from services.faiss_app.service import IndexService
from services.faiss_app.spaces import SpaceRegistry
from shared.config import Settings
from shared.faiss_client import UNKNOWN_SPACE_TITLE
from shared.fast_json import use_orjson_answers
from shared.metrics import Metrics
from shared.request_ids import RequestIdMiddleware
from shared.snapshots import SnapshotNotFound
from shared.spaces import DEFAULT_SPACE, UnknownSpace

log = logging.getLogger(__name__)


@dataclass
class Deps:
    """Swappable collaborators (tests pass their own)."""

    metrics: Metrics | None = None
    follow_updates: bool | None = None  # None → FaissSettings.follow_updates


@dataclass
class Runtime:
    """What runs behind the app: the spaces' index services and their update threads."""

    spaces: SpaceRegistry
    followers: dict[str, UpdateFollower] = field(default_factory=dict)
    watcher: ReloadWatcher | None = None
    started: bool = field(default=False)

    @property
    def service(self) -> IndexService:
        """The default space's service (what the app served before spaces existed)."""
        return self.spaces.default

    @property
    def follower(self) -> UpdateFollower | None:
        return self.followers.get(DEFAULT_SPACE)

    def start(self) -> None:
        """Start the background threads (idempotent); call after the worker has forked."""
        if not self.started:
            self.started = True
            for follower in self.followers.values():
                follower.start()
            if self.watcher is not None:
                self.watcher.start()

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        for follower in self.followers.values():
            follower.stop()


class FaissApp(falcon.App):
    """A falcon.App that carries its :class:`Runtime` (falcon.App itself has __slots__)."""

    runtime: Runtime


class RequestContext:
    """The follower started post-fork (or on the first request), 4xx/5xx counted."""

    def __init__(self, runtime: Runtime, metrics: Metrics):
        self._runtime = runtime
        self._metrics = metrics

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self._runtime.started:
            self._runtime.start()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        code = resp.status_code
        if code >= 400:
            self._metrics.incr(f"faiss.errors.{code}")


ErrorHandler = Callable[[falcon.Request, falcon.Response, Exception, Any], None]


class StatusError(Protocol):
    """An ``HTTPError`` subclass with its status built in, such as ``falcon.HTTPNotFound``."""

    def __call__(self, *, title: str, description: str) -> falcon.HTTPError: ...


def _raise(status_error: StatusError, title: str) -> ErrorHandler:
    """An error handler turning a domain error into ``status_error`` with its message."""

    def handle(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
        raise status_error(title=title, description=str(ex))

    return handle


def _unauthorized(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    raise falcon.HTTPUnauthorized(title="Unauthorized", description=str(ex), challenges=["Bearer"])


def create_app(settings: Settings, deps: Deps | None = None) -> FaissApp:
    """Build the app: load each space's LATEST if there is one, prepare (not start) the
    update threads."""
    deps = deps or Deps()
    metrics = deps.metrics or Metrics(settings.statsd)
    spaces = SpaceRegistry(settings, metrics)
    for service in spaces:
        try:
            if not service.load_if_present():
                log.warning("space %s: no snapshot in %s yet", service.name, service.models_dir)
        except Exception:
            log.exception("space %s: could not load its snapshot; will retry", service.name)
    follow = settings.faiss.follow_updates if deps.follow_updates is None else deps.follow_updates
    followers = (
        {s.name: UpdateFollower(s, settings.kafka, metrics) for s in spaces} if follow else {}
    )
    shared = broadcast.SHARED  # set in the gunicorn master (gunicorn.conf.py), else None
    watcher = broadcast.ReloadWatcher(spaces, shared) if shared is not None else None
    runtime = Runtime(spaces, followers, watcher)

    app = FaissApp(middleware=[RequestIdMiddleware(), RequestContext(runtime, metrics)])
    app.runtime = runtime
    use_orjson_answers(app)
    limits = settings.faiss
    app.add_route("/v1/search", resources.Search(spaces, limits, metrics))
    app.add_route("/v1/similar", resources.Similar(spaces, limits, metrics))

    def load_here(version: str | None, space: str | None) -> Catalog:
        return spaces.get(space).load(version)

    load = watcher.reload if watcher is not None else load_here
    app.add_route("/v1/reload", resources.Reload(load, limits))
    app.add_route("/v1/stats", resources.Stats(spaces, followers))
    app.add_route("/healthz", resources.Health(spaces))
    app.add_route("/readyz", resources.Ready(spaces))
    app.add_route("/openapi.json", resources.OpenApi(build_spec(limits, spaces.names)))

    app.add_error_handler(BadQuery, _raise(falcon.HTTPBadRequest, "Bad request"))
    app.add_error_handler(UnknownItemError, _raise(falcon.HTTPNotFound, "Unknown item"))
    app.add_error_handler(UnknownSpace, _raise(falcon.HTTPNotFound, UNKNOWN_SPACE_TITLE))
    app.add_error_handler(SnapshotNotFound, _raise(falcon.HTTPNotFound, "Unknown snapshot"))
    app.add_error_handler(PayloadTooLarge, _raise(falcon.HTTPContentTooLarge, "Body too large"))
    app.add_error_handler(IndexNotReady, _raise(falcon.HTTPServiceUnavailable, "Not ready"))
    app.add_error_handler(NotAuthorized, _unauthorized)
    return app
