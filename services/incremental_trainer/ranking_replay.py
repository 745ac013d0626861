"""Prequential replay of the whole ranking stage, without Kafka, Redis or faiss_app.

The trainer's :class:`Learner` learns the GMF model, the stream's signals (co-engagement,
trending, popular, new items) are computed by :func:`signal_batch` exactly as the trainer
computes them and applied to in-memory stores, and the recommender's :class:`RankingPipeline`
ranks the candidates. Every ranker (streaming popularity, GMF alone, each candidate source
alone, the full pipeline) is tested on the same events.

The stream is replayed in micro-batches of ``batch_size`` events, as the trainer learns it.
The test-then-train rule of a micro-batch: an event is tested when it is sampled, its user and
its item both had rows before the batch, and the user has not engaged with the item before
(earlier in the batch included). Every tested event is scored against the learned state **as
it stood at the start of the batch** — GMF rows, streaming popularity, co-engagement counts,
the popular/trending/new-item lists and the ranker's weights — and only then does the batch
update any of them (the learner learns the batch, its signals are applied, the ranker takes a
pairwise step per tested event whose item was a candidate). So no event is ever scored by a
state that has learned it. The user's own history (seen items, recent items) is known event
by event, earlier events of the batch included: it is the user's input, not learned state, and
in the services the trainer publishes it within a batch interval, long before the user's next
request. ``batch_size=1`` is the strict event-by-event replay.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.incremental_trainer.learner import UPDATE_CHUNK, Learner
from services.incremental_trainer.prequential import MovingMean
from services.incremental_trainer.ranking_signals import learner_sources
from services.incremental_trainer.space_replay import ReplaySpace
from services.incremental_trainer.stream_slices import SliceScores
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
# Events per micro-batch: the learner's own update chunk (services/incremental_trainer/learner).
DEFAULT_BATCH_SIZE = UPDATE_CHUNK


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
    """Test-then-train over a stream, micro-batch by micro-batch, for every ranker on the same
    events (the rule is in the module docstring).

    Parameters
    ----------
    learner : the trainer's learner (its own evaluation is switched off here)
    ranking : settings of the ranking stage (candidates per source, store bounds, ranker)
    popular_half_life_s : half-life of ``popular`` (Redis popularity)
    sample_rate : share of eligible events tested
    categories : item id → category where known (features, never the rerank filter here)
    window : size of the moving windows of the curves
    batch_size : events per micro-batch (1 = event by event)
    spaces : learned vector spaces (two-tower, triplet) trained on the warm prefix: more
        candidate sources, each measured alone and ranked by the pipeline
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
        batch_size: int = DEFAULT_BATCH_SIZE,
        spaces: Sequence[ReplaySpace] = (),
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.learner = learner
        self.batch_size = batch_size
        self.spaces = list(spaces)
        self._now_ms = 0  # time of the event being tested (the two-tower query's context)
        self.slices = SliceScores()
        self.store = MemoryRankingStore(
            store_limits(ranking, popular_half_life_s),
            refresh_every=max(1, LISTS_REFRESH_EVENTS // batch_size),
        )
        self.sources = [*learner_sources(learner, self.store),
                        *(space.source(lambda: self._now_ms) for space in self.spaces)]
        self.ranker = LinearRanker([])  # replaced below once the feature layout is known
        self.pipeline = RankingPipeline(
            self.sources,
            self.store,
            lambda: self.ranker,
            candidates_per_source(ranking),
            # the served diversity rules, off unless configured (RECSYS_RANKING_MMR_LAMBDA,
            # RECSYS_RANKING_MAX_PER_CATEGORY): their cost in recall is measured with them on
            max_per_category=ranking.max_per_category,
            source_errors=(),
            mmr_lambda=ranking.mmr_lambda,
        )
        self.ranker = LinearRanker(self.pipeline.names)
        self.ranker_params = RankerParams(learning_rate=ranking.ranker_learning_rate)
        self.recent = RecentItems()
        self.history: dict[str, deque[str]] = {}  # user → items, newest first (seen list)
        self.seen: dict[str, set[str]] = {}  # user → every item engaged, event by event
        self.seen_list_length = seen_list_length
        self.sample_rate = sample_rate
        self.categories = categories or {}
        self.rng = np.random.default_rng(seed)
        names = [POPULARITY, *(s.name for s in self.sources), PIPELINE]
        self.scores = {name: RankerScore(window) for name in names}
        self.categories_served: list[int] = []  # distinct categories in each served top k
        self.events = 0
        self.curve_every = max(1, window // 4)

    def warm(self, events: Sequence[Interaction]) -> None:
        """Fold a prefix into the stream signals and histories (no testing, no GMF learning)."""
        for start in range(0, len(events), self.batch_size):
            batch = events[start : start + self.batch_size]
            fresh = {e.item_id for e in batch if e.item_id not in self.store.first_seen}
            for event in batch:
                self._remember(event)
                self.slices.observe(event)
            self.store.apply(signal_batch(batch, self.recent, fresh.__contains__))

    def _is_new(self, item_id: str) -> bool:
        return self.learner.state.item_map.row(item_id, create=False) is None

    def _remember(self, event: Interaction) -> None:
        """The user's history, event by event (see the module docstring)."""
        history = self.history.get(event.user_id)
        if history is None:
            history = self.history[event.user_id] = deque(maxlen=self.seen_list_length)
            self.seen[event.user_id] = set()
        history.appendleft(event.item_id)
        self.seen[event.user_id].add(event.item_id)

    def step(self, events: Sequence[Interaction]) -> int:
        """Test the batch's eligible sampled events on the state before it, then learn it;
        returns how many were tested."""
        fresh = {e.item_id for e in events if self._is_new(e.item_id)}  # before learning
        chosen: list[tuple[np.ndarray, int]] = []
        tested = 0
        for event in events:
            for space in self.spaces:  # an item enters the spaces when first seen
                space.add([event.item_id], event.ts)
            if self._eligible(event) and self.rng.random() < self.sample_rate:
                tested += 1
                pair = self._test(event)
                if pair is not None:
                    chosen.append(pair)
            self._remember(event)
            self.slices.observe(event)
        self.learner.learn(events)
        for space in self.spaces:
            space.learn(events)
        self.store.apply(signal_batch(events, self.recent, fresh.__contains__))
        for features, index in chosen:
            self.ranker.learn(features, index, self.rng, self.ranker_params)
        self.events += len(events)
        return tested

    def _eligible(self, event: Interaction) -> bool:
        state = self.learner.state
        if state.user_map.row(event.user_id, create=False) is None:
            return False
        if state.item_map.row(event.item_id, create=False) is None:
            return False
        return event.item_id not in self.seen.get(event.user_id, ())

    def _test(self, event: Interaction) -> tuple[np.ndarray, int] | None:
        """Rank ``event`` with every ranker; the pool's features and the chosen row for the
        ranker's step after the batch (None if the item was not a candidate)."""
        learner = self.learner
        seen_ids = frozenset(self.seen.get(event.user_id, ()))
        recent = tuple(self.history.get(event.user_id, ()))
        user = UserContext(event.user_id, recent, seen_ids)
        self._now_ms = event.ts
        seen_rows = learner.state.item_map.rows(list(seen_ids), create=False)
        popular_rows = learner.popularity.top(
            K, {int(r) for r in seen_rows if r >= 0}, learner.n_item_rows
        )
        popular_ids = [i for i, _ in learner.item_ids_of_rows([int(r) for r in popular_rows])]
        self._record(POPULARITY, popular_ids, event)
        gathered = self.pipeline.gather(user)
        for name, hits in gathered.lists.items():
            self._record(name, [i for i, _ in hits[:K]], event)
        ranking = self.pipeline.rank(
            user, K, event.ts, categories=self.categories, gathered=gathered
        )
        served = [item.item_id for item in ranking.items]
        self._record(PIPELINE, served, event)
        known = [self.categories[i] for i in served if i in self.categories]
        if known:
            self.categories_served.append(len(set(known)))
        tested = self.scores[PIPELINE].tested
        if tested % self.curve_every == 0:
            for score in self.scores.values():
                score.curve.append((tested, score.moving.mean))
        pool = ranking.pool
        if pool is None or event.item_id not in pool.item_ids:
            return None
        return pool.features, pool.item_ids.index(event.item_id)

    def _record(self, name: str, ranked: list[str], event: Interaction) -> None:
        self.scores[name].record(ranked, event.item_id)
        self.slices.record(name, ranked, event)

    def run(
        self, events: Sequence[Interaction], progress: Callable[[int], None] | None = None
    ) -> None:
        for start in range(0, len(events), self.batch_size):
            batch = events[start : start + self.batch_size]
            self.step(batch)
            if progress is not None:
                progress(len(batch))

    def report(self) -> dict[str, Any]:
        return {
            "rankers": {name: score.as_dict() for name, score in self.scores.items()},
            # events whose item (user) had < 5 earlier interactions, the warm prefix included
            "slices": self.slices.report(),
            "events": self.events,
            "batch_size": self.batch_size,
            # diversity of the pipeline's lists (when categories are known, e.g. --items)
            "pipeline_distinct_categories_at_10": (
                round(float(np.mean(self.categories_served)), 3) if self.categories_served
                else None
            ),
            "ranker": self.ranker.to_dict(),
        }
