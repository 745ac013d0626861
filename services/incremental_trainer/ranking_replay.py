"""Prequential replay of the whole ranking stage, without Kafka, Redis or faiss_app.

The trainer's :class:`Learner` learns the GMF model event by event, the stream's signals
(co-engagement, trending, popular, new items) are computed by :func:`signal_batch` exactly as
the trainer computes them and applied to in-memory stores, and the recommender's
:class:`RankingPipeline` ranks the candidates. Each sampled event whose user and item are known
and that the user has not engaged with before is tested first (test-then-train) by every
ranker on the same event: streaming popularity, GMF alone, each candidate source alone, and
the full pipeline; then the ranker learns from it (pairwise, online) and everything else
learns the event.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.incremental_trainer.learner import Learner
from services.incremental_trainer.prequential import MovingMean
from services.incremental_trainer.ranking_signals import learner_sources
from services.incremental_trainer.stream_slices import SliceScores, TwoTowerRanker
from shared.config import RankingSettings
from shared.events import Interaction
from shared.ranking.candidates import UserContext
from shared.ranking.pipeline import RankingPipeline, candidates_per_source
from shared.ranking.ranker import LinearRanker, RankerParams
from shared.ranking.signals import RecentItems, signal_batch
from shared.ranking.stores import MemoryRankingStore, store_limits

K = 10
POPULARITY = "popularity"
PIPELINE = "pipeline"
# The global lists are recomputed every this many events, as the service caches them briefly.
LISTS_REFRESH_EVENTS = 50


@dataclass
class RankerScore:
    """Hits of one ranker on the tested events."""

    window: int
    hits: int = 0
    dcg: float = 0.0
    tested: int = 0
    moving: MovingMean = field(init=False)
    curve: list[tuple[int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.moving = MovingMean(self.window)

    def record(self, ranked: list[str], item_id: str) -> None:
        self.tested += 1
        try:
            position = ranked.index(item_id, 0, K)
        except ValueError:
            self.moving.add(0.0)
            return
        self.hits += 1
        self.dcg += 1.0 / math.log2(position + 2)
        self.moving.add(1.0)

    def as_dict(self) -> dict[str, Any]:
        tested = max(1, self.tested)
        return {
            "recall_at_10": round(self.hits / tested, 5),
            "ndcg_at_10": round(self.dcg / tested, 5),
            "tested": self.tested,
        }


class RankingReplay:
    """Test-then-train over a stream for every ranker on the same events.

    Parameters
    ----------
    learner : the trainer's learner (its own evaluation is switched off here)
    ranking : settings of the ranking stage (candidates per source, store bounds, ranker)
    popular_half_life_s : half-life of ``popular`` (Redis popularity)
    sample_rate : share of eligible events tested
    categories : item id → category where known (features, never the rerank filter here)
    window : size of the moving windows of the curves
    """

    def __init__(
        self,
        learner: Learner,
        ranking: RankingSettings,
        popular_half_life_s: float,
        sample_rate: float = 1.0,
        categories: dict[str, str] | None = None,
        window: int = 2000,
        seed: int = 0,
        seen_list_length: int = 200,
        two_tower: TwoTowerRanker | None = None,
    ) -> None:
        self.learner = learner
        self.two_tower = two_tower  # a ranker of its own, measured beside the pipeline
        self.slices = SliceScores()
        self.store = MemoryRankingStore(
            store_limits(ranking, popular_half_life_s), refresh_every=LISTS_REFRESH_EVENTS
        )
        self.sources = learner_sources(learner, self.store)
        self.ranker = LinearRanker([])  # replaced below once the feature layout is known
        self.pipeline = RankingPipeline(
            self.sources,
            self.store,
            lambda: self.ranker,
            candidates_per_source(ranking),
            max_per_category=0,  # a served rule, not a relevance signal: measured without it
            source_errors=(),
        )
        self.ranker = LinearRanker(self.pipeline.names)
        self.ranker_params = RankerParams(learning_rate=ranking.ranker_learning_rate)
        self.recent = RecentItems()
        self.history: dict[str, deque[str]] = {}
        self.seen_list_length = seen_list_length
        self.sample_rate = sample_rate
        self.categories = categories or {}
        self.rng = np.random.default_rng(seed)
        names = [POPULARITY, *(s.name for s in self.sources),
                 *([two_tower.name] if two_tower is not None else []), PIPELINE]
        self.scores = {name: RankerScore(window) for name in names}
        self.events = 0
        self.curve_every = max(1, window // 4)

    def warm(self, events: Iterable[Interaction]) -> None:
        """Fold a prefix into the stream signals and histories (no testing, no GMF learning)."""
        for event in events:
            self._observe(event, event.item_id not in self.store.first_seen)
            self.slices.observe(event)

    def _is_new(self, item_id: str) -> bool:
        return self.learner.state.item_map.row(item_id, create=False) is None

    def _observe(self, event: Interaction, new_item: bool) -> None:
        batch = signal_batch([event], self.recent, lambda _item: new_item)
        self.store.apply(batch)
        history = self.history.get(event.user_id)
        if history is None:
            history = self.history[event.user_id] = deque(maxlen=self.seen_list_length)
        history.appendleft(event.item_id)

    def step(self, event: Interaction) -> bool:
        """Test ``event`` (if eligible and sampled), then learn it; True if it was tested."""
        tested = self._eligible(event) and self.rng.random() < self.sample_rate
        if self.two_tower is not None:  # an item enters the space when first seen
            self.two_tower.add([event.item_id])
        if tested:
            self._test(event)
        new_item = self._is_new(event.item_id)  # before the learner gives it a row
        self.learner.learn([event])
        self._observe(event, new_item)
        self.slices.observe(event)
        self.events += 1
        return tested

    def _eligible(self, event: Interaction) -> bool:
        state = self.learner.state
        user_row = state.user_map.row(event.user_id, create=False)
        item_row = state.item_map.row(event.item_id, create=False)
        if user_row is None or item_row is None:
            return False
        return item_row not in self.learner.seen.get(user_row, ())

    def _test(self, event: Interaction) -> None:
        learner = self.learner
        user_row = learner.state.user_map.row(event.user_id, create=False)
        seen_rows = learner.seen.get(user_row, set()) if user_row is not None else set()
        seen_ids = frozenset(i for i, _ in learner.item_ids_of_rows(sorted(seen_rows)))
        recent = tuple(self.history.get(event.user_id, ()))
        user = UserContext(event.user_id, recent, seen_ids)
        popular_rows = learner.popularity.top(K, seen_rows, learner.n_item_rows)
        popular_ids = [i for i, _ in learner.item_ids_of_rows([int(r) for r in popular_rows])]
        self._record(POPULARITY, popular_ids, event)
        gathered = self.pipeline.gather(user)
        for name, hits in gathered.lists.items():
            self._record(name, [i for i, _ in hits[:K]], event)
        if self.two_tower is not None:
            self._record(self.two_tower.name,
                         self.two_tower.rank(event.user_id, recent, seen_ids, event.ts), event)
        ranking = self.pipeline.rank(
            user, K, event.ts, categories=self.categories, gathered=gathered
        )
        self._record(PIPELINE, [item.item_id for item in ranking.items], event)
        pool = ranking.pool
        if pool is not None and event.item_id in pool.item_ids:
            chosen = pool.item_ids.index(event.item_id)
            self.ranker.learn(pool.features, chosen, self.rng, self.ranker_params)
        tested = self.scores[PIPELINE].tested
        if tested % self.curve_every == 0:
            for score in self.scores.values():
                score.curve.append((tested, score.moving.mean))

    def _record(self, name: str, ranked: list[str], event: Interaction) -> None:
        self.scores[name].record(ranked, event.item_id)
        self.slices.record(name, ranked, event)

    def run(
        self, events: Iterable[Interaction], progress: Callable[[int], None] | None = None
    ) -> None:
        for event in events:
            self.step(event)
            if progress is not None:
                progress(1)

    def report(self) -> dict[str, Any]:
        return {
            "rankers": {name: score.as_dict() for name, score in self.scores.items()},
            # events whose item (user) had < 5 earlier interactions, the warm prefix included
            "slices": self.slices.report(),
            "events": self.events,
            "ranker": self.ranker.to_dict(),
        }
