"""HTTP resources: each validates its input, calls the IndexService once, sets resp.media."""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable

import falcon

from services.faiss_app.catalog import Catalog
from services.faiss_app.errors import IndexNotReady, NotAuthorized
from services.faiss_app.follower import UpdateFollower
from services.faiss_app.service import IndexService
from services.faiss_app.validation import parse_search, parse_version, read_json
from shared.config import FaissSettings
from shared.metrics import Metrics


class Search:
    def __init__(self, service: IndexService, limits: FaissSettings, metrics: Metrics):
        self._service = service
        self._limits = limits
        self._metrics = metrics

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        queries, k, exclude = parse_search(
            read_json(req, self._limits.max_body_bytes), self._limits
        )
        started = time.perf_counter()
        resp.media = self._service.search(queries, k, exclude)
        ms = (time.perf_counter() - started) * 1000.0
        self._metrics.timing("faiss.search_ms", ms)
        # The search alone, for callers that split a round trip into its parts (bench_api).
        resp.set_header("Server-Timing", f"search;dur={ms:.3f}")


class Similar:
    def __init__(self, service: IndexService, limits: FaissSettings, metrics: Metrics):
        self._service = service
        self._limits = limits
        self._metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        item_id = req.get_param("item_id", required=True)
        k = req.get_param_as_int("k", default=10, min_value=1, max_value=self._limits.max_k)
        with self._metrics.timer("faiss.similar_ms"):
            resp.media = self._service.similar(item_id, k)


class Reload:
    """``load(version)`` is IndexService.load, or ReloadWatcher.reload under gunicorn (which
    also makes the sibling workers load the same version)."""

    def __init__(self, load: Callable[[str | None], Catalog], limits: FaissSettings):
        self._load = load
        self._limits = limits

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        expected = f"Bearer {self._limits.admin_token}".encode()
        given = (req.get_header("Authorization") or "").encode()
        if not hmac.compare_digest(given, expected):
            raise NotAuthorized("a valid admin bearer token is required")
        version = parse_version(read_json(req, self._limits.max_body_bytes, required=False))
        catalog = self._load(version)
        resp.media = {
            "model_version": catalog.version,
            "count": catalog.count,
            "index_type": catalog.index_type,
            "build_seconds": round(catalog.build_seconds, 3),
            "pid": os.getpid(),
        }


class Stats:
    def __init__(self, service: IndexService, follower: UpdateFollower | None):
        self._service = service
        self._follower = follower

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        stats = self._service.stats()
        stats["follower"] = self._follower.describe() if self._follower else None
        stats["pid"] = os.getpid()
        resp.media = stats


class Health:
    """Liveness: the process answers (also while the first index is still being built)."""

    def __init__(self, service: IndexService):
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        catalog = self._service.catalog
        resp.media = {
            "status": "ok",
            "index_loaded": catalog is not None,
            "model_version": catalog.version if catalog else None,
            "pid": os.getpid(),
        }


class Ready:
    """Readiness: an index is loaded, so searches can be answered (503 until then)."""

    def __init__(self, service: IndexService):
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        catalog = self._service.catalog
        if catalog is None:
            raise IndexNotReady("no snapshot loaded yet")
        resp.media = {
            "status": "ready",
            "model_version": catalog.version,
            "count": catalog.count,
            "pid": os.getpid(),
        }
