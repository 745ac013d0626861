"""The merge behind ``GET /recommend``: model results first, popular items to fill, metadata.

Paths (``source`` of the answer):

- personalized: ``users.find_one`` → query vector → faiss_app search with the user's seen list
  (Redis ``seen:{user}``) excluded.
- similar: faiss_app ``/v1/similar`` for an item id; the item itself is never in the answer.
- popular: no id, an unknown user or item, or the model path failed.

Every path fills a short list with the most popular items not seen and not already chosen,
then attaches metadata. A dependency that fails only removes what it would have contributed
and is named in ``degraded``; nothing here raises because a server is down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pymongo

from services.recommender_app.catalog import Catalog
from services.recommender_app.deps import Deps
from services.recommender_app.resilience import Budget, DependencyDown, Guard
from shared.config import RecommenderSettings
from shared.faiss_client import FaissClient, UnknownItem
from shared.storage import mongo, redis_store

log = logging.getLogger(__name__)

Hit = tuple[str, float]

# Share of the request budget kept free, while the model path runs, for the popular fallback
# and the metadata that follow it.
FALLBACK_SHARE = 0.25


@dataclass(frozen=True)
class Recommendation:
    items: list[dict[str, Any]]
    source: str  # personalized | similar | popular
    model_version: str | None
    degraded: tuple[str, ...]  # names of the dependencies that failed, sorted


class Recommender:
    """Answers recommendation requests from the stores and faiss_app within one budget."""

    def __init__(self, deps: Deps, settings: RecommenderSettings, guard: Guard):
        self._deps = deps
        self._budget_s = settings.request_budget_s
        self._reserve_s = settings.request_budget_s * FALLBACK_SHARE
        self._guard = guard
        self._catalog = Catalog(guard, deps.db, deps.redis)

    def recommend(
        self, k: int, user_id: str | None = None, item_id: str | None = None
    ) -> Recommendation:
        """Dispatch on the id given (at most one) and record the per-source metrics."""
        started = time.perf_counter()
        budget = Budget(self._budget_s, self._deps.clock)
        if user_id is not None:
            answer = self.for_user(user_id, k, budget)
        elif item_id is not None:
            answer = self.similar_to(item_id, k, budget)
        else:
            answer = self.popular(k, budget)
        metrics = self._deps.metrics
        metrics.incr(f"api.recommend.source.{answer.source}")
        metrics.timing(
            f"api.recommend.source_ms.{answer.source}", (time.perf_counter() - started) * 1000.0
        )
        for dependency in answer.degraded:
            metrics.incr(f"api.degraded.{dependency}")
        return answer

    # -- the three paths ----------------------------------------------------------------------

    def for_user(self, user_id: str, k: int, budget: Budget) -> Recommendation:
        degraded: set[str] = set()
        seen = self._seen(user_id, budget, degraded)
        vector = self._query_vector(user_id, budget, degraded)
        hits: list[Hit] = []
        version = None
        if vector is not None:
            try:
                hits, version = self._guard.call(
                    "faiss", budget, lambda t: self._search(t, vector, k, seen), self._reserve_s
                )
            except DependencyDown:
                degraded.add("faiss")
        source = "personalized" if hits else "popular"
        return self._finish(hits, k, set(seen), budget, degraded, source, version)

    def similar_to(self, item_id: str, k: int, budget: Budget) -> Recommendation:
        degraded: set[str] = set()
        hits: list[Hit] = []
        version = None
        try:
            hits, version = self._guard.call(
                "faiss", budget, lambda t: self._similar(t, item_id, k), self._reserve_s
            )
        except DependencyDown:
            degraded.add("faiss")
        if not hits:
            return self._finish([], k, {item_id}, budget, degraded, "popular", None)
        return self._finish(hits, k, {item_id}, budget, degraded, "similar", version)

    def popular(self, k: int, budget: Budget) -> Recommendation:
        return self._finish([], k, set(), budget, set(), "popular", None)

    # -- pieces ---------------------------------------------------------------------------------

    def _finish(
        self,
        primary: Sequence[Hit],
        k: int,
        exclude: set[str],
        budget: Budget,
        degraded: set[str],
        source: str,
        version: str | None,
    ) -> Recommendation:
        chosen: list[Hit] = []
        taken = set(exclude)
        for item_id, score in primary:
            if item_id not in taken and len(chosen) < k:
                chosen.append((item_id, score))
                taken.add(item_id)
        if len(chosen) < k:
            chosen.extend(self._popular(k - len(chosen), taken, budget, degraded))
        metadata = self._catalog.metadata([item_id for item_id, _ in chosen], budget, degraded)
        items = [
            {"item_id": item_id, "score": score, **metadata.get(item_id, {})}
            for item_id, score in chosen
        ]
        return Recommendation(items, source, version, tuple(sorted(degraded)))

    def _popular(self, n: int, exclude: set[str], budget: Budget, degraded: set[str]) -> list[Hit]:
        try:
            return self._guard.call(
                "redis", budget, lambda _t: redis_store.top_popular(self._deps.redis, n, exclude)
            )
        except DependencyDown:
            degraded.add("redis")
            return []

    def _seen(self, user_id: str, budget: Budget, degraded: set[str]) -> list[str]:
        try:
            return self._guard.call(
                "redis",
                budget,
                lambda _t: redis_store.get_seen(self._deps.redis, user_id),
                self._reserve_s,
            )
        except DependencyDown:
            degraded.add("redis")
            return []

    def _query_vector(self, user_id: str, budget: Budget, degraded: set[str]) -> np.ndarray | None:
        def find(timeout_s: float) -> dict[str, Any] | None:
            with pymongo.timeout(timeout_s):
                return mongo.get_user(self._deps.db, user_id)

        try:
            user = self._guard.call("mongo", budget, find, self._reserve_s)
        except DependencyDown:
            degraded.add("mongo")
            return None
        if user is None or user.get("query_vector") is None:
            return None
        try:
            vector = np.asarray(user["query_vector"], dtype=np.float32)
        except (TypeError, ValueError):
            log.error("user %s has a malformed query_vector", user_id)
            return None
        if vector.ndim != 1 or not vector.size or not np.isfinite(vector).all():
            log.error("user %s has a malformed query_vector of shape %s", user_id, vector.shape)
            return None
        return vector

    def _faiss_at(self, timeout_s: float) -> FaissClient:
        # Same pooled session, this call's share of the budget as its timeout.
        base = self._deps.faiss
        return FaissClient(base.url, timeout_s, session=base.session)

    def _search(
        self, timeout_s: float, vector: np.ndarray, k: int, seen: list[str]
    ) -> tuple[list[Hit], str | None]:
        answer = self._faiss_at(timeout_s).search_full(vector[None, :], k, [seen])
        result = answer["results"][0]
        version = answer.get("model_version")
        return list(zip(result["ids"], map(float, result["scores"]), strict=True)), version

    def _similar(self, timeout_s: float, item_id: str, k: int) -> tuple[list[Hit], str | None]:
        try:
            answer = self._faiss_at(timeout_s).similar_full(item_id, k)
        except UnknownItem:
            return [], None
        hits = list(zip(answer["ids"], map(float, answer["scores"]), strict=True))
        return hits, answer.get("model_version")
