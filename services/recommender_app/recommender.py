"""The request path behind ``GET /recommend``, top to bottom:

1. user state — seen list, query vector and (for the ranking stage) the co-engagement followers
   of the newest seen items in one Redis round trip (MongoDB ``users`` when Redis has no
   vector): :mod:`services.recommender_app.user_state`;
2. candidates — the model's items from faiss_app (``/v1/search`` with the seen list excluded,
   or ``/v1/similar`` for an item), or from this worker's copy of the gmf index while it is
   current: :mod:`services.recommender_app.candidates`, :mod:`~services.recommender_app.local_index`;
3. filter and fill — drop excluded, repeated and deleted items
   (:func:`shared.deleted_items.drop_deleted`), fill up to ``k`` with the most popular items
   not seen and not already chosen (Redis ``popular``), give the tail slots to new catalogue
   items (:mod:`services.recommender_app.new_items`);
4. metadata — in-process cache, Redis, MongoDB: :mod:`services.recommender_app.catalog`;
5. answer — items, ``source``, ``model_version``, ``degraded``; a whole popular answer (no
   id, no filters) is kept for a moment: :mod:`services.recommender_app.popular_answers`.

With the ranking stage on (``RECSYS_RANKING_ENABLED``, :mod:`services.recommender_app.ranking`),
step 2 asks faiss_app for ``RECSYS_RANKING_GMF_CANDIDATES`` items and the shared pipeline ranks
them with the other candidate sources before step 3. ``exclude`` ids are never served;
``category`` keeps only items of that category (by their metadata), and then the list is not
filled with popular items of other categories; ``explain`` adds each item's sources and top
feature contributions.

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
from typing import TYPE_CHECKING, Any

from services.recommender_app.candidates import Candidates, Hit, ModelCandidates
from services.recommender_app.catalog import Catalog
from services.recommender_app.deps import Deps
from services.recommender_app.metadata_cache import MetadataCache
from services.recommender_app.new_items import NewItems, with_new_items
from services.recommender_app.popular_answers import PopularAnswers
from services.recommender_app.popular_list import PopularList
from services.recommender_app.ranking import ServingRanking
from services.recommender_app.resilience import Budget, DependencyDown, Guard
from services.recommender_app.two_tower import TwoTowerCandidates
from services.recommender_app.unserved_spaces import UnservedSpaces
from services.recommender_app.user_state import UserState, UserStateReader
from shared.config import RecommenderSettings
from shared.deleted_items import DeletedItems, drop_deleted
from shared.ranking.candidates import UserContext
from shared.ranking.pipeline import explanation
from shared.storage import redis_deadline

if TYPE_CHECKING:  # FAISS is imported only by workers that hold a copy of the index
    from services.recommender_app.local_index import LocalIndex

log = logging.getLogger(__name__)

# Share of the request budget kept free, while the model path runs, for the popular fallback
# and the metadata that follow it.
FALLBACK_SHARE = 0.25
SOURCES = ("personalized", "similar", "popular")
# With a category filter, popular items fetched per item wanted (most are of other categories).
CATEGORY_OVERFETCH = 10


@dataclass(frozen=True)
class Filters:
    """Request filters: ids never to serve, a category to keep, per-item explanations."""

    exclude: frozenset[str] = frozenset()
    category: str | None = None
    explain: bool = False


NO_FILTERS = Filters()
# Popular entries kept in process beyond max_k: room for a seen list (200 by default) and the
# items already chosen, which the fill skips.
POPULAR_COPY_EXTRA = 512


@dataclass(frozen=True)
class Recommendation:
    items: list[dict[str, Any]]
    source: str  # personalized | similar | popular
    model_version: str | None
    degraded: tuple[str, ...]  # names of the dependencies that failed, sorted
    ranker_version: str | None = None  # the ranker that ordered a personalized answer


class Recommender:
    """Answers recommendation requests from the stores and faiss_app within one budget."""

    def __init__(self, deps: Deps, settings: RecommenderSettings, guard: Guard,
                 deleted: DeletedItems | None = None, new_items: NewItems | None = None,
                 two_tower: TwoTowerCandidates | None = None,
                 ranking: ServingRanking | None = None, local_index: LocalIndex | None = None,
                 unserved: UnservedSpaces | None = None):
        self._deps = deps
        self._ranking = ranking
        self._deleted = deleted
        self._new_items = new_items
        self._two_tower = two_tower
        self._budget_s = settings.request_budget_s
        reserve_s = settings.request_budget_s * FALLBACK_SHARE
        self._guard = guard
        self.users = UserStateReader(
            guard, deps.redis, deps.db, reserve_s,
            ranking.co_engagement_read if ranking is not None else (0, 0),
        )  # fmt: skip
        self.candidates = ModelCandidates(
            guard, deps.faiss, reserve_s, settings.similar_space, deps.clock, local_index,
            unserved,
        )
        self.catalog = Catalog(
            guard,
            deps.db,
            deps.redis,
            MetadataCache(settings.metadata_cache_items, settings.metadata_cache_s, deps.clock),
        )
        self.popular_list = PopularList(
            guard,
            deps.redis,
            settings.max_k + POPULAR_COPY_EXTRA,
            settings.popular_cache_s,
            deps.clock,
        )
        self._popular_answers = PopularAnswers(settings.popular_cache_s, deps.clock)
        # Metric names built once, not per request.
        self._source_metrics = {
            source: (f"api.recommend.source.{source}", f"api.recommend.source_ms.{source}")
            for source in SOURCES
        }
        self._degraded_metrics: dict[str, str] = {}

    def recommend(
        self,
        k: int,
        user_id: str | None = None,
        item_id: str | None = None,
        filters: Filters = NO_FILTERS,
    ) -> Recommendation:
        """Dispatch on the id given (at most one) and record the per-source metrics."""
        started = time.perf_counter()
        budget = Budget(self._budget_s, self._deps.clock)
        # Redis reads outside the guard (deleted and new items refreshed on the request path)
        # end within the budget too.
        with redis_deadline.within(self._budget_s):
            if user_id is not None:
                answer = self.for_user(user_id, k, budget, filters)
            elif item_id is not None:
                answer = self.similar_to(item_id, k, budget, filters)
            else:
                answer = self.popular(k, budget, filters)
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

    def for_user(
        self, user_id: str, k: int, budget: Budget, filters: Filters = NO_FILTERS
    ) -> Recommendation:
        degraded: set[str] = set()
        state = self.users.load(user_id, budget, degraded)
        wanted = k if self._ranking is None else max(k, self._ranking.gmf_candidates)
        found = self.candidates.for_user(state, wanted, budget, degraded)
        if self._ranking is not None and (found.hits or state.seen):
            # Something personal to rank from. A user without a vector or a history takes the
            # path below (popular items, or the two-tower blend when that space is served); the
            # vector spaces are ranking-stage sources only with RECSYS_RANKING_SPACE_SOURCES.
            return self._ranked(self._ranking, state, found, k, budget, degraded, filters)
        if self._two_tower is not None:
            found = self._with_two_tower(user_id, state.seen, found, k, budget, degraded)
        source = "personalized" if found.hits else "popular"
        return self._answer(found, k, set(state.seen), budget, degraded, source, filters)

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

    def similar_to(
        self, item_id: str, k: int, budget: Budget, filters: Filters = NO_FILTERS
    ) -> Recommendation:
        degraded: set[str] = set()
        found = self.candidates.similar_to(item_id, k, budget, degraded)
        if not found.hits:
            found = Candidates()  # popular: no model version to name
        source = "similar" if found.hits else "popular"
        return self._answer(found, k, {item_id}, budget, degraded, source, filters)

    def popular(self, k: int, budget: Budget, filters: Filters = NO_FILTERS) -> Recommendation:
        if filters != NO_FILTERS:
            return self._answer(Candidates(), k, set(), budget, set(), "popular", filters)
        built_from = (
            self._deleted.current() if self._deleted is not None else None,
            self._new_items.current() if self._new_items is not None else None,
        )
        redis_failures = self._guard.breakers["redis"].failures
        kept = self._popular_answers.get(k, built_from, redis_failures)
        if kept is not None:
            return kept
        answer = self._answer(Candidates(), k, set(), budget, set(), "popular", filters)
        if not answer.degraded:
            metadata_until = self.catalog.local.fresh_until(i["item_id"] for i in answer.items)
            self._popular_answers.put(k, built_from, redis_failures, answer, metadata_until)
        return answer

    def _ranked(
        self,
        stage: ServingRanking,
        state: UserState,
        found: Candidates,
        k: int,
        budget: Budget,
        degraded: set[str],
        filters: Filters,
    ) -> Recommendation:
        """The model's candidates ranked with the other sources (shared.ranking)."""

        def categories(ids: Sequence[str]) -> dict[str, str]:
            known = self.catalog.metadata(list(ids), budget, degraded)
            return {i: str(m["category"]) for i, m in known.items() if m.get("category")}

        # Metadata of every candidate costs a lookup: only when a rule needs categories.
        needs_categories = (filters.category is not None or stage.max_per_category > 0
                            or stage.mmr_lambda < 1.0)
        deleted = self._deleted.current() if self._deleted is not None else frozenset()
        seen = state.seen
        ranking = stage.rank(
            UserContext.of(state.user_id, seen),
            found.hits,
            k,
            budget,
            self._deps.now_ms(),
            exclude=filters.exclude | deleted,
            category=filters.category,
            categories=categories if needs_categories else None,
            explain=filters.explain,
            read_with_user=state.redis_state,
        )
        degraded.update(ranking.failed)
        ranked = Candidates(
            [(item.item_id, item.score) for item in ranking.items], found.model_version
        )
        explained = (
            {item.item_id: explanation(item) for item in ranking.items} if filters.explain else {}
        )
        source = "personalized" if ranked.hits else "popular"
        return self._answer(ranked, k, set(seen), budget, degraded, source, filters, explained,
                            ranking.ranker_version)

    # -- steps 3 to 5 ---------------------------------------------------------------------------

    def _answer(
        self,
        found: Candidates,
        k: int,
        exclude: set[str],
        budget: Budget,
        degraded: set[str],
        source: str,
        filters: Filters = NO_FILTERS,
        explained: dict[str, dict[str, Any]] | None = None,
        ranker_version: str | None = None,
    ) -> Recommendation:
        chosen = self._filter_and_fill(
            found.hits, k, exclude | filters.exclude, budget, degraded,
            CATEGORY_OVERFETCH if filters.category is not None else 1,
        )
        metadata = self.catalog.metadata([item_id for item_id, _ in chosen], budget, degraded)
        if filters.category is not None:
            chosen = [
                hit for hit in chosen
                if str(metadata.get(hit[0], {}).get("category")) == filters.category
            ][:k]
        items = [
            {"item_id": item_id, "score": score, **metadata.get(item_id, {})}
            for item_id, score in chosen
        ]
        if filters.explain:
            for item in items:
                item["explain"] = (explained or {}).get(
                    item["item_id"], {"sources": {"fill": 0}, "contributions": []}
                )
        return Recommendation(
            items, source, found.model_version, tuple(sorted(degraded)),
            ranker_version if found.hits else None,
        )

    def _filter_and_fill(
        self,
        primary: Sequence[Hit],
        k: int,
        exclude: set[str],
        budget: Budget,
        degraded: set[str],
        overfetch: int = 1,
    ) -> list[Hit]:
        """``primary`` in order less ``exclude``, repeats and deleted items, then popular items up
        to ``k`` (``overfetch`` times as many when a later filter drops some), then new items in
        the tail slots."""
        deleted = self._deleted.current() if self._deleted is not None else frozenset()
        chosen: list[Hit] = []
        taken = set(exclude)
        for item_id, score in drop_deleted(primary, deleted):
            if item_id not in taken and len(chosen) < k:
                chosen.append((item_id, score))
                taken.add(item_id)
        if len(chosen) < k:
            # over-fetch a little: a deleted item may linger in ``popular`` until re-scored
            wanted = (k - len(chosen)) * overfetch
            more = self._popular(wanted + min(len(deleted), k), taken, budget, degraded)
            chosen.extend(drop_deleted(more, deleted)[:wanted])
        if self._new_items is not None and self._new_items.slots:
            chosen = with_new_items(chosen, k, self._new_items.current(), self._new_items.slots,
                                    taken | deleted)
        return chosen

    def _popular(self, n: int, exclude: set[str], budget: Budget, degraded: set[str]) -> list[Hit]:
        try:
            return self.popular_list.top(n, exclude, budget)
        except DependencyDown:
            degraded.add("redis")
            return []
