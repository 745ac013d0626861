"""Candidates → features → ranker → rerank, the same object in the service and the evaluator.

A source that fails (its store is down, a timeout) is left out and named in ``failed``; the
remaining sources are ranked. The ranker comes from a provider called once per request, so a
newly published model is picked up without restarting (hot swap).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.config import RankingSettings
from shared.ranking.candidates import CandidateSource, UserContext
from shared.ranking.features import CandidatePool, build_pool, feature_names
from shared.ranking.ranker import LinearRanker
from shared.ranking.rerank import RerankRules, rerank
from shared.ranking.stores import GlobalLists, RankingStore

log = logging.getLogger(__name__)

Hit = tuple[str, float]

# Candidates asked of a source the settings do not name (e.g. a newly added one).
DEFAULT_CANDIDATES_PER_SOURCE = 50


@dataclass
class Gathered:
    """Each source's list, seen items removed, and the sources that failed."""

    lists: dict[str, list[Hit]]
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RankedItem:
    item_id: str
    score: float
    sources: dict[str, int]  # source name → rank in its list (0 = best)
    contributions: list[tuple[str, float]] | None = None


@dataclass
class Ranking:
    items: list[RankedItem]
    failed: list[str]
    ranker_version: str
    pool: CandidatePool | None = None


class RankingPipeline:
    """Runs the three stages for one user.

    Parameters
    ----------
    sources : candidate sources, in feature-layout order
    store : where global lists (popularity, trending, item age) are read for the features
    ranker : returns the ranker to use now (a cached, hot-swapped model in the service)
    candidates : items asked of each source by name (:func:`candidates_per_source`;
        :data:`DEFAULT_CANDIDATES_PER_SOURCE` for a source not listed)
    max_per_category : the diversity cap of :mod:`shared.ranking.rerank` (0 = off)
    mmr_lambda : MMR's λ of :mod:`shared.ranking.rerank` (1 = off)
    """

    def __init__(
        self,
        sources: Sequence[CandidateSource],
        store: RankingStore,
        ranker: Callable[[], LinearRanker],
        candidates: Mapping[str, int] | None = None,
        max_per_category: int = 0,
        source_errors: tuple[type[BaseException], ...] = (Exception,),
        mmr_lambda: float = 1.0,
    ) -> None:
        self.sources = list(sources)
        self.source_names = [s.name for s in self.sources]
        self.names = feature_names(self.source_names)
        self._store = store
        self._ranker = ranker
        self._candidates = dict(candidates or {})
        self.max_per_category = max_per_category
        self.mmr_lambda = mmr_lambda
        self._source_errors = source_errors

    def gather(self, user: UserContext) -> Gathered:
        gathered = Gathered({})
        for source in self.sources:
            n = self._candidates.get(source.name, DEFAULT_CANDIDATES_PER_SOURCE)
            try:
                hits = source.fetch(user, n + len(user.seen))
            except self._source_errors as exc:  # noqa: PERF203 - one try per source is the point
                log.warning("candidate source %s failed: %s", source.name, exc)
                gathered.failed.append(source.name)
                continue
            gathered.lists[source.name] = [h for h in hits if h[0] not in user.seen][:n]
        return gathered

    def global_lists(self) -> GlobalLists:
        try:
            return self._store.lists()
        except self._source_errors as exc:
            log.warning("global lists unavailable: %s", exc)
            return GlobalLists()

    def pool(
        self,
        user: UserContext,
        gathered: Gathered,
        now_ms: int,
        categories: Mapping[str, str] | None = None,
        lists: GlobalLists | None = None,
    ) -> CandidatePool:
        return build_pool(
            user,
            gathered.lists,
            self.source_names,
            self.global_lists() if lists is None else lists,
            categories or {},
            now_ms,
        )

    def rank(
        self,
        user: UserContext,
        k: int,
        now_ms: int,
        *,
        exclude: Collection[str] = (),
        category: str | None = None,
        categories: Mapping[str, str] | Callable[[Sequence[str]], Mapping[str, str]] | None = None,
        explain: bool = False,
        gathered: Gathered | None = None,
    ) -> Ranking:
        """The top ``k`` for ``user``.

        ``categories`` maps item ids to categories, or is a function looking up the categories
        of the given ids (called once with the candidates and the user's recent items).
        """
        gathered = self.gather(user) if gathered is None else gathered
        ranker = self._ranker()
        if callable(categories):
            ids = {i for hits in gathered.lists.values() for i, _ in hits}
            known = dict(categories([*ids, *user.recent[:20]]))
        else:
            known = dict(categories or {})
        pool = self.pool(user, gathered, now_ms, known)
        scores = ranker.scores(pool.features) if pool.item_ids else pool.features[:, 0]
        rules = RerankRules(
            k, frozenset(exclude), category, self.max_per_category, self.mmr_lambda
        )
        chosen = rerank(pool.item_ids, scores, user.seen, known, rules)
        items = [
            RankedItem(
                pool.item_ids[i],
                float(scores[i]),
                pool.found_by[i],
                ranker.contributions(pool.features[i]) if explain else None,
            )
            for i in chosen
        ]
        return Ranking(items, gathered.failed, ranker.version, pool)


def explanation(item: RankedItem) -> dict[str, Any]:
    """The ``explain=true`` body of one served item."""
    return {
        "sources": item.sources,
        "contributions": [{"feature": f, "value": v} for f, v in item.contributions or []],
    }


def candidates_per_source(ranking: RankingSettings) -> dict[str, int]:
    """Items asked of each source, from the settings."""
    return {
        "gmf": ranking.gmf_candidates,
        "co_engagement": ranking.co_engagement_candidates,
        "trending": ranking.trending_candidates,
        "popular": ranking.popular_candidates,
        "new_items": ranking.new_item_candidates,
    }
