"""Readiness and the dependency report.

``/readyz`` asks: can this instance answer ``/recommend`` (possibly degraded)? It can while at
least one item source answers: Redis (popular items) or faiss_app (model items). MongoDB only
adds user vectors and Kafka only carries ``POST /events``: either being down degrades answers
or writes, and must not take every API instance out of the load balancer.

``/healthz/dependencies`` reports each dependency (reachable, latency, the kind of error) and
what it is used for. Error kinds are exception class names: messages would name internal hosts.

The checks run concurrently, so either answers within about one timeout even when every
dependency is down. They bypass the circuit breakers on purpose: readiness asks the servers,
not our memory of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import pymongo

from services.recommender_app.deps import Deps

CHECK_TIMEOUT_S = 1.0
# What each dependency is for; /recommend can answer while one of ITEM_SOURCES answers.
USED_FOR = {
    "mongo": "user query vectors and item metadata (personalized answers)",
    "redis": "popular items, seen lists and item metadata",
    "faiss": "model items (personalized and similar answers)",
    "kafka": "POST /events",
}
ITEM_SOURCES = ("redis", "faiss")


class Readiness:
    def __init__(self, deps: Deps, timeout_s: float = CHECK_TIMEOUT_S):
        self._deps = deps
        self._timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")
        self._checks: dict[str, Callable[[], Any]] = {
            "mongo": self._mongo,
            "redis": self._redis,
            "faiss": self._faiss,
            "kafka": self._kafka,
        }

    def check(self) -> dict[str, dict[str, Any]]:
        """``{dependency: {"ok": bool, "ms": float | None, "error"?: exception class name}}``."""
        started = {name: time.perf_counter() for name in self._checks}
        futures = {name: self._pool.submit(self._timed, fn) for name, fn in self._checks.items()}
        report: dict[str, dict[str, Any]] = {}
        for name, future in futures.items():
            left = self._timeout_s + 0.5 - (time.perf_counter() - started[name])
            try:
                report[name] = future.result(timeout=max(0.0, left))
            except FutureTimeout:
                report[name] = {"ok": False, "ms": None, "error": "timed out"}
        return report

    @staticmethod
    def can_recommend(report: dict[str, dict[str, Any]]) -> bool:
        return any(report[name]["ok"] for name in ITEM_SOURCES)

    def _timed(self, fn: Callable[[], Any]) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            ms = round((time.perf_counter() - started) * 1000.0, 2)
            return {"ok": False, "ms": ms, "error": type(exc).__name__}
        return {"ok": True, "ms": round((time.perf_counter() - started) * 1000.0, 2)}

    def _mongo(self) -> None:
        with pymongo.timeout(self._timeout_s):
            self._deps.db.command("ping")

    def _redis(self) -> None:
        self._deps.redis.ping()

    def _faiss(self) -> None:
        self._deps.faiss.readyz(timeout_s=self._timeout_s)

    def _kafka(self) -> None:
        self._deps.producer.list_topics(timeout=self._timeout_s)
