"""The trainer's half of the ranking stage: stream signals to Redis, and the online ranker.

Per micro-batch, :class:`RankingSignalPublisher` turns the events into a
:class:`~shared.ranking.signals.SignalBatch` (the same function the offline evaluator uses) and
queues it on the batch's one Redis pipeline. :class:`OnlineRankerTraining` ranks a budgeted
sample of the batch's events with the recommender's own pipeline over the same stores (GMF
from the learner's tables instead of faiss_app: the same inner products) before the model
learns them (see :mod:`services.incremental_trainer.ranker_training` for what bounds its
cost), takes one pairwise step per event whose item was among the candidates, and publishes
the ranker to Redis (``ranker:model``) and beside the snapshots (``models/ranker.json``) every
few seconds; the recommender hot-swaps it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import redis
from redis.client import Pipeline

from services.incremental_trainer.learner import Learner
from services.incremental_trainer.ranker_training import (
    LearnerSearch,
    PrefetchedNeighbours,
    RankerBudget,
    sample_where,
)
from services.incremental_trainer.space_training_sources import TrainerSpaceSources
from shared.atomic import write_text_atomic
from shared.config import RankingSettings
from shared.events import Interaction
from shared.ranking.candidates import (
    RECENT_ITEMS_USED,
    CandidateSource,
    UserContext,
    stream_sources,
)
from shared.ranking.pipeline import RankingPipeline, candidates_per_source
from shared.ranking.ranker import LinearRanker, RankerParams
from shared.ranking.signals import RecentItems, signal_batch
from shared.ranking.stores import RankingStore, StoreLimits
from shared.storage import ranking_store

log = logging.getLogger(__name__)

RANKER_FILE = "ranker.json"
# Events ranked per micro-batch at most, however much time budget is left: ~15 weights learn
# from a trickle, and a batch's ranking stays a small part of it even when the trainer idles.
RANKER_EVENTS_PER_BATCH = 16


def new_items(learner: Learner, events: Sequence[Interaction]) -> set[str]:
    """Items of ``events`` the model has never seen (call before it learns them)."""
    item_map = learner.state.item_map
    return {i for i in {e.item_id for e in events} if i not in item_map}


def learner_sources(
    learner: Learner, store: RankingStore, search: LearnerSearch | None = None
) -> list[CandidateSource]:
    """The recommender's sources, with GMF answered from the learner's own tables."""
    return stream_sources(search or LearnerSearch(learner), store)


class RankingSignalPublisher:
    """Writes each batch's co-engagement, trending and new items to Redis."""

    def __init__(self, r: redis.Redis, limits: StoreLimits) -> None:
        self._redis = r
        self._limits = limits
        self.recent = RecentItems()

    def seed(self, user_id: str, newest_first: Sequence[str]) -> None:
        """Recent items of a user from before this process (Redis ``seen:{user}``)."""
        self.recent.seed(user_id, newest_first)

    def queue(self, pipe: Pipeline, events: Sequence[Interaction], fresh_items: set[str]) -> None:
        """Queue the batch's signals on ``pipe`` (the batch's one Redis round trip)."""
        batch = signal_batch(events, self.recent, fresh_items.__contains__)
        ranking_store.queue_signals(pipe, batch, self._limits)

    def publish(self, events: Sequence[Interaction], fresh_items: set[str]) -> None:
        """Write the batch's signals in a round trip of their own."""
        pipe = self._redis.pipeline(transaction=False)
        self.queue(pipe, events, fresh_items)
        pipe.execute()


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._learner = learner
        self._redis = r
        self._recent = recent
        self._store = PrefetchedNeighbours(
            ranking_store.RedisRankingStore(r, ranking.list_length, ranking.lists_cache_s)
        )
        self._search = LearnerSearch(learner)
        self._candidates = candidates_per_source(ranking)
        self._now_ms = 0  # the ranked event's time: the two-tower query's context
        # the vector spaces the recommender ranks too (space_training_sources.py), so the
        # published ranker has learned weights for them
        spaces = TrainerSpaceSources(ranking.space_sources, models_dir).sources(
            lambda: self._now_ms)
        self.pipeline = RankingPipeline(
            [*learner_sources(learner, self._store, self._search), *spaces],
            self._store,
            lambda: self.ranker,
            self._candidates,
        )
        self._path = models_dir / RANKER_FILE
        self.ranker = self._load(self.pipeline.names)
        self._params = RankerParams(learning_rate=ranking.ranker_learning_rate)
        self._publish_every_s = ranking.ranker_publish_interval_s
        self._published_at = 0.0
        self._rng = np.random.default_rng(seed)
        self.budget = RankerBudget(ranking.ranker_train_share, clock)
        self.steps = 0  # pairwise steps taken (events whose item was a candidate)
        self.ranked = 0  # events ranked

    def _load(self, names: list[str]) -> LinearRanker:
        try:
            return LinearRanker.from_json(self._path.read_text(), names)
        except FileNotFoundError:
            return LinearRanker(names)
        except (OSError, ValueError) as exc:
            log.warning("ignoring ranker model %s: %s", self._path, exc)
            return LinearRanker(names)

    def learn(self, events: Sequence[Interaction]) -> int:
        """Rank a budgeted, uniform sample of the eligible events (ranker_training.py), one
        pairwise step each; returns the steps taken."""
        wanted = self.budget.affordable(RANKER_EVENTS_PER_BATCH)
        if not wanted:
            return 0
        started = time.perf_counter()
        picked = [
            (events[i], self._user(events[i])) for i in self._pick(events, wanted)
        ]
        steps = 0
        try:
            self._prepare([user for _, user in picked])
            for event, user in picked:
                self._now_ms = event.ts
                pool = self.pipeline.rank(user, 10, event.ts).pool
                if pool is None or event.item_id not in pool.item_ids:
                    continue
                chosen = pool.item_ids.index(event.item_id)
                self.ranker.learn(pool.features, chosen, self._rng, self._params)
                steps += 1
        finally:
            self._store.clear()
            self._search.clear()
            self.budget.spend(time.perf_counter() - started, len(picked))
        self.ranked += len(picked)
        self.steps += steps
        return steps

    def _pick(self, events: Sequence[Interaction], wanted: int) -> list[int]:
        """Indices of up to ``wanted`` events drawn uniformly among the eligible ones: user and
        item known to the model, item new to the user."""
        state, seen = self._learner.state, self._learner.seen
        user_map, item_map = state.user_map, state.item_map

        def eligible(index: int) -> bool:
            event = events[index]
            user_row = user_map.row(event.user_id, create=False)
            item_row = item_map.row(event.item_id, create=False)
            return (
                user_row is not None
                and item_row is not None
                and item_row not in seen.get(user_row, ())
            )

        return sample_where(len(events), wanted, eligible, self._rng)

    def _user(self, event: Interaction) -> UserContext:
        """The user as the ranking stage sees them, from the trainer's in-memory seen items
        and recent items."""
        user_row = self._learner.state.user_map.row(event.user_id, create=False)
        seen_rows = sorted(self._learner.seen.get(user_row, ())) if user_row is not None else []
        seen_ids = frozenset(i for i, _ in self._learner.item_ids_of_rows(seen_rows))
        return UserContext(event.user_id, self._recent.of(event.user_id), seen_ids)

    def _prepare(self, users: Sequence[UserContext]) -> None:
        """One Redis read for every sampled user's co-engagement anchors, one GMF product."""
        if not users:
            return
        # CoEngagementCandidates asks for its candidates plus the user's seen count.
        per_anchor = self._candidates["co_engagement"] + max(len(u.seen) for u in users)
        anchors = [i for u in users for i in u.recent[:RECENT_ITEMS_USED]]
        if anchors:
            self._store.prefetch(anchors, per_anchor)
        self._search.prepare([u.user_id or "" for u in users])

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
    """What the trainer's loop calls: before learning a batch, when its Redis pipeline is
    built, after publishing it, at snapshots. Redis failures while ranking for the ranker are
    logged and skipped (the ranker simply learns less); signal writes fail like the other Redis
    writes of the batch (they share its pipeline)."""

    def __init__(
        self, learner: Learner, r: redis.Redis, ranking: RankingSettings, limits: StoreLimits,
        models_dir: Path, seed: int = 0, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._learner = learner
        self.signals = RankingSignalPublisher(r, limits)
        self.ranker = OnlineRankerTraining(learner, r, ranking, self.signals.recent, models_dir,
                                           seed, clock)

    def before_learning(self, events: Sequence[Interaction]) -> set[str]:
        """Train the ranker on the model's state before ``events``; returns the new items."""
        fresh = new_items(self._learner, events)
        try:
            self.ranker.learn(events)
        except redis.RedisError as exc:
            log.warning("ranker training skipped for this batch: %s", exc)
        return fresh

    def queue_signals(
        self, pipe: Pipeline, events: Sequence[Interaction], fresh: set[str]
    ) -> None:
        """The batch's co-engagement, trending and new items, queued on its Redis pipeline."""
        self.signals.queue(pipe, events, fresh)

    def after_publishing(
        self, events: Sequence[Interaction] = (), fresh: set[str] | None = None
    ) -> None:
        """Publish the ranker when due; with ``events``, first write their signals in a round
        trip of their own (callers that did not queue them on the batch's pipeline)."""
        if events:
            self.signals.publish(events, fresh or set())
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
