"""The trainer's half of the ranking stage: stream signals to Redis, and the online ranker.

Per micro-batch, :class:`RankingSignalPublisher` turns the events into a
:class:`~shared.ranking.signals.SignalBatch` (the same function the offline evaluator uses) and
writes it to Redis. :class:`OnlineRankerTraining` ranks a few of the batch's events with the
recommender's own pipeline over the same stores (GMF from the learner's tables instead of
faiss_app: the same inner products) before the model learns them, takes one pairwise step per
event whose item was among the candidates, and publishes the ranker to Redis
(``ranker:model``) and beside the snapshots (``models/ranker.json``) every few seconds; the
recommender hot-swaps it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import redis

from services.incremental_trainer.learner import Learner
from services.incremental_trainer.popularity import top_k
from shared.atomic import write_text_atomic
from shared.config import RankingSettings
from shared.events import Interaction
from shared.ranking.candidates import (
    CandidateSource,
    CoEngagementCandidates,
    GMFCandidates,
    NewItemCandidates,
    PopularCandidates,
    TrendingCandidates,
    UserContext,
)
from shared.ranking.pipeline import RankingPipeline, candidates_per_source
from shared.ranking.ranker import LinearRanker, RankerParams
from shared.ranking.signals import RecentItems, signal_batch
from shared.ranking.stores import RankingStore, StoreLimits
from shared.storage import ranking_store

log = logging.getLogger(__name__)

RANKER_FILE = "ranker.json"
# Events ranked per micro-batch to train the ranker: a bounded cost per batch (each is one
# Redis round trip and one GMF scoring pass), plenty for ~15 weights.
RANKER_EVENTS_PER_BATCH = 16
Hit = tuple[str, float]


def new_items(learner: Learner, events: Sequence[Interaction]) -> set[str]:
    """Items of ``events`` the model has never seen (call before it learns them)."""
    item_map = learner.state.item_map
    return {e.item_id for e in events if item_map.row(e.item_id, create=False) is None}


def learner_sources(learner: Learner, store: RankingStore) -> list[CandidateSource]:
    """The recommender's sources, with GMF answered from the learner's own tables."""

    def search(user: UserContext, n: int) -> list[Hit]:
        user_row = learner.state.user_map.row(user.user_id or "", create=False)
        if user_row is None:
            return []
        scores = learner.tables.scores(user_row, learner.n_item_rows)
        rows = [int(r) for r in top_k(scores, n, learner.seen.get(user_row, ()))]
        return [(item_id, float(scores[row])) for item_id, row in learner.item_ids_of_rows(rows)]

    return [
        GMFCandidates(search),
        CoEngagementCandidates(store),
        TrendingCandidates(store),
        PopularCandidates(store),
        NewItemCandidates(store),
    ]


class RankingSignalPublisher:
    """Writes each batch's co-engagement, trending and new items to Redis."""

    def __init__(self, r: redis.Redis, limits: StoreLimits) -> None:
        self._redis = r
        self._limits = limits
        self.recent = RecentItems()

    def seed(self, user_id: str, newest_first: Sequence[str]) -> None:
        """Recent items of a user from before this process (Redis ``seen:{user}``)."""
        self.recent.seed(user_id, newest_first)

    def publish(self, events: Sequence[Interaction], fresh_items: set[str]) -> None:
        batch = signal_batch(events, self.recent, fresh_items.__contains__)
        ranking_store.write_signals(self._redis, batch, self._limits)


class OnlineRankerTraining:
    """Trains the ranker from the stream and publishes it."""

    def __init__(
        self,
        learner: Learner,
        r: redis.Redis,
        ranking: RankingSettings,
        recent: RecentItems,
        models_dir: Path,
        seed: int = 0,
    ) -> None:
        self._learner = learner
        self._redis = r
        self._recent = recent
        self._store = ranking_store.RedisRankingStore(r, ranking.list_length, ranking.lists_cache_s)
        self.pipeline = RankingPipeline(
            learner_sources(learner, self._store),
            self._store,
            lambda: self.ranker,
            candidates_per_source(ranking),
        )
        self._path = models_dir / RANKER_FILE
        self.ranker = self._load(self.pipeline.names)
        self._params = RankerParams(learning_rate=ranking.ranker_learning_rate)
        self._publish_every_s = ranking.ranker_publish_interval_s
        self._published_at = 0.0
        self._rng = np.random.default_rng(seed)
        self.steps = 0

    def _load(self, names: list[str]) -> LinearRanker:
        try:
            return LinearRanker.from_json(self._path.read_text(), names)
        except FileNotFoundError:
            return LinearRanker(names)
        except (OSError, ValueError) as exc:
            log.warning("ignoring ranker model %s: %s", self._path, exc)
            return LinearRanker(names)

    def learn(self, events: Sequence[Interaction]) -> int:
        """Rank up to :data:`RANKER_EVENTS_PER_BATCH` eligible events, one step each."""
        state = self._learner.state
        steps = 0
        for event in events:
            if steps >= RANKER_EVENTS_PER_BATCH:
                break
            user_row = state.user_map.row(event.user_id, create=False)
            item_row = state.item_map.row(event.item_id, create=False)
            if user_row is None or item_row is None:
                continue
            seen_rows = self._learner.seen.get(user_row, set())
            if item_row in seen_rows:
                continue
            seen = frozenset(i for i, _ in self._learner.item_ids_of_rows(sorted(seen_rows)))
            user = UserContext(event.user_id, self._recent.of(event.user_id), seen)
            ranking = self.pipeline.rank(user, 10, event.ts)
            pool = ranking.pool
            if pool is None or event.item_id not in pool.item_ids:
                continue
            self.ranker.learn(pool.features, pool.item_ids.index(event.item_id), self._rng,
                              self._params)
            steps += 1
        self.steps += steps
        return steps

    def publish_if_due(self, force: bool = False) -> str | None:
        """Publish the ranker (file beside the snapshots, then Redis) when the interval passed."""
        now = time.monotonic()
        if not force and now - self._published_at < self._publish_every_s:
            return None
        self._published_at = now
        if not self.steps and not force:
            return None
        published = self.ranker.stamped()
        body = published.to_json()
        write_text_atomic(self._path, body)
        ranking_store.publish_ranker(self._redis, body)
        self.ranker = published
        log.info("published ranker %s after %d pairs", published.version, published.pairs)
        return published.version


class TrainerRankingStage:
    """What the trainer's loop calls: before learning a batch, after publishing it, at
    snapshots. Redis failures while ranking for the ranker are logged and skipped (the ranker
    simply learns less); signal writes fail like the other Redis writes of the batch."""

    def __init__(
        self, learner: Learner, r: redis.Redis, ranking: RankingSettings, limits: StoreLimits,
        models_dir: Path, seed: int = 0,
    ) -> None:
        self._learner = learner
        self.signals = RankingSignalPublisher(r, limits)
        self.ranker = OnlineRankerTraining(learner, r, ranking, self.signals.recent, models_dir,
                                           seed)

    def before_learning(self, events: Sequence[Interaction]) -> set[str]:
        """Train the ranker on the model's state before ``events``; returns the new items."""
        fresh = new_items(self._learner, events)
        try:
            self.ranker.learn(events)
        except redis.RedisError as exc:
            log.warning("ranker training skipped for this batch: %s", exc)
        return fresh

    def after_publishing(self, events: Sequence[Interaction], fresh: set[str]) -> None:
        self.signals.publish(events, fresh)
        try:
            self.ranker.publish_if_due()
        except (OSError, redis.RedisError) as exc:
            log.warning("could not publish the ranker: %s", exc)

    def seed(self, user_id: str, newest_first: Sequence[str]) -> None:
        self.signals.seed(user_id, newest_first)

    def snapshot(self) -> None:
        try:
            self.ranker.publish_if_due(force=True)
        except (OSError, redis.RedisError) as exc:
            log.warning("could not publish the ranker: %s", exc)
