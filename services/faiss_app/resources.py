"""HTTP resources: each validates its input, picks the vector space (``space`` in a JSON body,
``?space=`` on GETs, default ``gmf``), calls its IndexService once, sets resp.media."""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable

import falcon

from services.faiss_app.catalog import Catalog
from services.faiss_app.errors import BadQuery, IndexNotReady, NotAuthorized
from services.faiss_app.follower import UpdateFollower
from services.faiss_app.spaces import SpaceRegistry
from services.faiss_app.validation import check_scores, parse_search, parse_version, read_json
from shared.config import FaissSettings
from shared.metrics import Metrics
from shared.spaces import DEFAULT_SPACE


def _body_space(body: object) -> object:
    return body.get("space") if isinstance(body, dict) else None


class Search:
    def __init__(self, spaces: SpaceRegistry, limits: FaissSettings, metrics: Metrics):
        self._spaces = spaces
        self._limits = limits
        self._metrics = metrics

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req, self._limits.max_body_bytes)
        service = self._spaces.get(_body_space(body))
        queries, k, exclude = parse_search(body, self._limits)
        started = time.perf_counter()
        resp.media = check_scores(service.search(queries, k, exclude))
        ms = (time.perf_counter() - started) * 1000.0
        self._metrics.timing("faiss.search_ms", ms)
        # The search alone, for callers that split a round trip into its parts (bench_api).
        resp.set_header("Server-Timing", f"search;dur={ms:.3f}")


class Similar:
    def __init__(self, spaces: SpaceRegistry, limits: FaissSettings, metrics: Metrics):
        self._spaces = spaces
        self._limits = limits
        self._metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        service = self._spaces.get(req.get_param("space"))
        item_id = req.get_param("item_id", required=True)
        k = req.get_param_as_int("k", default=10, min_value=1, max_value=self._limits.max_k)
        with self._metrics.timer("faiss.similar_ms"):
            resp.media = service.similar(item_id, k)


class Reload:
    """``load(version, space)`` loads a space's snapshot here (ReloadWatcher.reload under
    gunicorn also makes the sibling workers load the same version)."""

    def __init__(self, load: Callable[[str | None, str | None], Catalog], limits: FaissSettings):
        self._load = load
        self._limits = limits

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        expected = f"Bearer {self._limits.admin_token}".encode()
        given = (req.get_header("Authorization") or "").encode()
        if not hmac.compare_digest(given, expected):
            raise NotAuthorized("a valid admin bearer token is required")
        body = read_json(req, self._limits.max_body_bytes, required=False)
        version = parse_version(body)
        space = _body_space(body)
        if space is not None and not isinstance(space, str):
            raise BadQuery("space must be a string")
        catalog = self._load(version, space)
        resp.media = {
            "space": space or DEFAULT_SPACE,
            "model_version": catalog.version,
            "count": catalog.count,
            "index_type": catalog.index_type,
            "build_seconds": round(catalog.build_seconds, 3),
            "pid": os.getpid(),
        }


class Stats:
    """The stats of one space (``?space=``, default gmf) and a summary line of every space."""

    def __init__(self, spaces: SpaceRegistry, followers: dict[str, UpdateFollower]):
        self._spaces = spaces
        self._followers = followers

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        service = self._spaces.get(req.get_param("space"))
        stats = service.stats()
        follower = self._followers.get(service.name)
        stats["follower"] = follower.describe() if follower else None
        stats["spaces"] = self._spaces.summary()
        stats["pid"] = os.getpid()
        resp.media = stats


class Health:
    """Liveness: the process answers (also while the first index is still being built)."""

    def __init__(self, spaces: SpaceRegistry):
        self._spaces = spaces

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        catalog = self._spaces.default.catalog
        resp.media = {
            "status": "ok",
            "index_loaded": catalog is not None,
            "model_version": catalog.version if catalog else None,
            "pid": os.getpid(),
        }


class Ready:
    """Readiness: the default space's index is loaded (503 until then); the other spaces may
    arrive later (their queries answer 503 meanwhile)."""

    def __init__(self, spaces: SpaceRegistry):
        self._spaces = spaces

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        catalog = self._spaces.default.catalog
        if catalog is None:
            raise IndexNotReady("no snapshot loaded yet")
        resp.media = {
            "status": "ready",
            "model_version": catalog.version,
            "count": catalog.count,
            "pid": os.getpid(),
        }


class OpenApi:
    """The OpenAPI document of this server (services/faiss_app/openapi.py)."""

    def __init__(self, document: dict[str, object]):
        self._document = document

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._document
