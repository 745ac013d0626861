"""The request path behind ``GET /recommend``, top to bottom:

1. user state — seen list and query vector in one Redis round trip (MongoDB ``users`` when Redis
   has no vector): :mod:`services.recommender_app.user_state`;
2. candidates — the model's items from faiss_app (``/v1/search`` with the seen list excluded,
   or ``/v1/similar`` for an item): :mod:`services.recommender_app.candidates`;
3. filter and fill — drop excluded, repeated and deleted items
   (:func:`shared.deleted_items.drop_deleted`), fill up to ``k`` with the most popular items
   not seen and not already chosen (Redis ``popular``), give the tail slots to new catalogue
   items (:mod:`services.recommender_app.new_items`);
4. metadata — in-process cache, Redis, MongoDB: :mod:`services.recommender_app.catalog`;
5. answer — items, ``source``, ``model_version``, ``degraded``.

Sources: personalized (``user_id``), similar (``item_id``; the item itself is never in the
answer), popular (no id, an unknown user or item, or the model path failed). A dependency that
fails only removes what it would have contributed and is named in ``degraded``; nothing here
raises because a server is down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.recommender_app.candidates import Candidates, Hit, ModelCandidates
from services.recommender_app.catalog import Catalog
from services.recommender_app.deps import Deps
from services.recommender_app.metadata_cache import MetadataCache
from services.recommender_app.new_items import NewItems, with_new_items
from services.recommender_app.resilience import Budget, DependencyDown, Guard
from services.recommender_app.two_tower import TwoTowerCandidates
from services.recommender_app.user_state import UserStateReader
from shared.config import RecommenderSettings
from shared.deleted_items import DeletedItems, drop_deleted
from shared.storage import redis_store

log = logging.getLogger(__name__)

# Share of the request budget kept free, while the model path runs, for the popular fallback
# and the metadata that follow it.
FALLBACK_SHARE = 0.25
SOURCES = ("personalized", "similar", "popular")


@dataclass(frozen=True)
class Recommendation:
    items: list[dict[str, Any]]
    source: str  # personalized | similar | popular
    model_version: str | None
    degraded: tuple[str, ...]  # names of the dependencies that failed, sorted


class Recommender:
    """Answers recommendation requests from the stores and faiss_app within one budget."""

    def __init__(self, deps: Deps, settings: RecommenderSettings, guard: Guard,
                 deleted: DeletedItems | None = None, new_items: NewItems | None = None,
                 two_tower: TwoTowerCandidates | None = None):
        self._deps = deps
        self._deleted = deleted
        self._new_items = new_items
        self._two_tower = two_tower
        self._budget_s = settings.request_budget_s
        reserve_s = settings.request_budget_s * FALLBACK_SHARE
        self._guard = guard
        self.users = UserStateReader(guard, deps.redis, deps.db, reserve_s)
        self.candidates = ModelCandidates(guard, deps.faiss, reserve_s)
        self.catalog = Catalog(
            guard,
            deps.db,
            deps.redis,
            MetadataCache(settings.metadata_cache_items, settings.metadata_cache_s, deps.clock),
        )
        # Metric names built once, not per request.
        self._source_metrics = {
            source: (f"api.recommend.source.{source}", f"api.recommend.source_ms.{source}")
            for source in SOURCES
        }
        self._degraded_metrics: dict[str, str] = {}

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
        count_name, timer_name = self._source_metrics[answer.source]
        metrics.incr(count_name)
        metrics.timing(timer_name, (time.perf_counter() - started) * 1000.0)
        for dependency in answer.degraded:
            name = self._degraded_metrics.get(dependency)
            if name is None:
                name = self._degraded_metrics[dependency] = f"api.degraded.{dependency}"
            metrics.incr(name)
        if answer.degraded:
            metrics.incr("api.recommend.degraded")
        return answer

    # -- the three paths ----------------------------------------------------------------------

    def for_user(self, user_id: str, k: int, budget: Budget) -> Recommendation:
        degraded: set[str] = set()
        state = self.users.load(user_id, budget, degraded)
        found = self.candidates.for_user(state, k, budget, degraded)
        if self._two_tower is not None:
            found = self._with_two_tower(user_id, state.seen, found, k, budget, degraded)
        source = "personalized" if found.hits else "popular"
        return self._answer(found, k, set(state.seen), budget, degraded, source)

    def _with_two_tower(self, user_id: str, seen: list[str], found: Candidates, k: int,
                        budget: Budget, degraded: set[str]) -> Candidates:
        """GMF's (or, for a user GMF does not know, popular) candidates blended with the
        two-tower space's, by :class:`shared.cold_start_blend.BlendRule`; as before when the
        space is not served or not loaded."""
        two_tower = self._two_tower
        if two_tower is None or not two_tower.available:
            return found
        other = found.hits or self._popular(k, set(seen), budget, degraded)
        try:
            blended = self._guard.call(
                "faiss", budget, lambda t: two_tower.blend(user_id, list(seen), other, k, t),
                self._budget_s * FALLBACK_SHARE)
        except DependencyDown:
            degraded.add("faiss")
            return found
        return Candidates(blended, found.model_version) if blended else found

    def similar_to(self, item_id: str, k: int, budget: Budget) -> Recommendation:
        degraded: set[str] = set()
        found = self.candidates.similar_to(item_id, k, budget, degraded)
        if not found.hits:
            found = Candidates()  # popular: no model version to name
        source = "similar" if found.hits else "popular"
        return self._answer(found, k, {item_id}, budget, degraded, source)

    def popular(self, k: int, budget: Budget) -> Recommendation:
        return self._answer(Candidates(), k, set(), budget, set(), "popular")

    # -- steps 3 to 5 ---------------------------------------------------------------------------

    def _answer(
        self,
        found: Candidates,
        k: int,
        exclude: set[str],
        budget: Budget,
        degraded: set[str],
        source: str,
    ) -> Recommendation:
        chosen = self._filter_and_fill(found.hits, k, exclude, budget, degraded)
        metadata = self.catalog.metadata([item_id for item_id, _ in chosen], budget, degraded)
        items = [
            {"item_id": item_id, "score": score, **metadata.get(item_id, {})}
            for item_id, score in chosen
        ]
        return Recommendation(items, source, found.model_version, tuple(sorted(degraded)))

    def _filter_and_fill(
        self,
        primary: Sequence[Hit],
        k: int,
        exclude: set[str],
        budget: Budget,
        degraded: set[str],
    ) -> list[Hit]:
        """``primary`` in order less ``exclude``, repeats and deleted items, then popular items up
        to ``k``, then new items in the tail slots."""
        deleted = self._deleted.current() if self._deleted is not None else frozenset()
        chosen: list[Hit] = []
        taken = set(exclude)
        for item_id, score in drop_deleted(primary, deleted):
            if item_id not in taken and len(chosen) < k:
                chosen.append((item_id, score))
                taken.add(item_id)
        if len(chosen) < k:
            # over-fetch a little: a deleted item may linger in ``popular`` until re-scored
            more = self._popular(k - len(chosen) + min(len(deleted), k), taken, budget, degraded)
            chosen.extend(drop_deleted(more, deleted)[: k - len(chosen)])
        if self._new_items is not None and self._new_items.slots:
            chosen = with_new_items(chosen, k, self._new_items.current(), self._new_items.slots,
                                    taken | deleted)
        return chosen

    def _popular(self, n: int, exclude: set[str], budget: Budget, degraded: set[str]) -> list[Hit]:
        try:
            return self._guard.call(
                "redis", budget, lambda _t: redis_store.top_popular(self._deps.redis, n, exclude)
            )
        except DependencyDown:
            degraded.add("redis")
            return []
