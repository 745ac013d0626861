"""The ranking stage at request time: the shared pipeline over Redis, behind the guard.

``/recommend?user_id=`` asks faiss_app for the GMF candidates (as before, only more of them),
then :class:`~shared.ranking.pipeline.RankingPipeline` adds the other sources (co-engagement,
trending, popular, new items: the user's co-engagement read in the same Redis round trip as
the user's state, the global lists from an in-process cache), scores every candidate with the
published ranker and reranks.
Every Redis call goes through the request's :class:`Guard` and budget: when Redis is down those
sources drop out (``degraded``) and the GMF candidates are still ranked. The ranker is re-read
from Redis ``ranker:model`` at most every ``RECSYS_RANKING_LISTS_CACHE_S`` and swapped when
its version changes. The diversity rules (``RECSYS_RANKING_MAX_PER_CATEGORY``,
``RECSYS_RANKING_MMR_LAMBDA``) need the candidates' categories: one metadata lookup, made only
when a rule is on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence

import redis

from services.recommender_app.resilience import Budget, DependencyDown, Guard
from services.recommender_app.space_candidates import SPACE_SOURCES, ServingSpaceSources
from shared.config import RankingSettings
from shared.ranking.candidates import (
    RECENT_ITEMS_USED,
    UserContext,
    stream_sources,
)
from shared.ranking.pipeline import Ranking, RankingPipeline, candidates_per_source
from shared.ranking.ranker import LinearRanker
from shared.ranking.stores import GlobalLists
from shared.storage import ranking_store
from shared.storage.request_state import RequestState

log = logging.getLogger(__name__)

Hit = tuple[str, float]


class _GuardedStore:
    """A RankingStore whose Redis calls share the request's budget and circuit breaker; the
    co-engagement followers the user's state already read (same round trip) are not re-read."""

    def __init__(self, store: ranking_store.RedisRankingStore, guard: Guard, budget: Budget,
                 read_with_user: RequestState | None = None):
        self._store = store
        self._guard = guard
        self._budget = budget
        self._read_with_user = read_with_user

    def neighbours(self, item_ids: Sequence[str], n: int) -> list[list[Hit]]:
        if self._read_with_user is not None:
            known = self._read_with_user.neighbours_of(item_ids, n)
            if known is not None:
                return known
        return self._guard.call("redis", self._budget, lambda _t: self._store.neighbours(item_ids, n))

    def lists(self) -> GlobalLists:
        return self._guard.call("redis", self._budget, lambda _t: self._store.lists())


class ServingRanking:
    """Builds the request's pipeline and keeps the published ranker current."""

    def __init__(
        self,
        r: redis.Redis,
        settings: RankingSettings,
        guard: Guard,
        clock: Callable[[], float] = time.monotonic,
        spaces: ServingSpaceSources | None = None,
    ) -> None:
        self._redis = r
        self._settings = settings
        self._guard = guard
        self._clock = clock
        self._spaces = spaces
        self._store = ranking_store.RedisRankingStore(r, settings.list_length, settings.lists_cache_s)
        self._candidates = candidates_per_source(settings)
        # Read with the user's state (UserStateReader): the followers of this many newest seen
        # items, and how many beyond the seen list's length (what the source asks for).
        self.co_engagement_read = (RECENT_ITEMS_USED, self._candidates["co_engagement"])
        self.gmf_candidates = settings.gmf_candidates
        self.max_per_category = settings.max_per_category
        self.mmr_lambda = settings.mmr_lambda
        self._ranker: LinearRanker | None = None
        self._ranker_checked_at = float("-inf")

    def _current_ranker(self, names: list[str], budget: Budget) -> LinearRanker:
        now = self._clock()
        if self._ranker is None or self._ranker.names != names:
            self._ranker = LinearRanker(names)
        if now - self._ranker_checked_at < self._settings.lists_cache_s:
            return self._ranker
        self._ranker_checked_at = now
        try:
            raw = self._guard.call("redis", budget, lambda _t: ranking_store.read_ranker(self._redis))
        except DependencyDown:
            return self._ranker  # keep serving the last model
        if raw is None:
            return self._ranker
        try:
            published = LinearRanker.from_json(raw, names)
        except ValueError as exc:
            log.error("ignoring the published ranker: %s", exc)
            return self._ranker
        if published.version != self._ranker.version:
            log.info("ranker %s in use (%d pairs)", published.version, published.pairs)
            self._ranker = published
        return self._ranker

    def rank(
        self,
        user: UserContext,
        gmf_hits: list[Hit],
        k: int,
        budget: Budget,
        now_ms: int,
        *,
        exclude: Collection[str] = (),
        category: str | None = None,
        categories: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
        explain: bool = False,
        read_with_user: RequestState | None = None,
    ) -> Ranking:
        """Rank for ``user``; ``failed`` names the dependency of each failed source (``redis``,
        or ``faiss`` for the vector-space sources). ``read_with_user``: what the user's state
        read from Redis (the co-engagement followers are taken from it when it holds them)."""
        store = _GuardedStore(self._store, self._guard, budget, read_with_user)
        sources = stream_sources(lambda _user, n: gmf_hits[:n], store)
        if self._spaces is not None:
            sources.extend(self._spaces.sources(self._guard, budget, now_ms))
        pipeline = RankingPipeline(
            sources,
            store,
            lambda: ranker,
            self._candidates,
            self._settings.max_per_category,
            source_errors=(DependencyDown,),
            mmr_lambda=self._settings.mmr_lambda,
        )
        ranker = self._current_ranker(pipeline.names, budget)
        ranking = pipeline.rank(
            user,
            k,
            now_ms,
            exclude=exclude,
            category=category,
            categories=categories,
            explain=explain,
        )
        ranking.failed = sorted({"faiss" if name in SPACE_SOURCES else "redis"
                                 for name in ranking.failed})
        return ranking
