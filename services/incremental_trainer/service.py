"""The trainer's consume loop: micro-batches in, model updates and published state out.

Durability protocol (at-least-once, "commit at snapshot time"):

1. Each micro-batch is validated (malformed → ``interactions.dlq``), evaluated then learned
   (:class:`Learner`), and its effects are published: seen lists, query vectors, popularity
   and the ranking stage's signals to Redis in one transaction (executed in order by its own
   thread, two batches queued at most: :mod:`redis_writer`); changed users' query vectors to
   MongoDB through the coalescing write-behind (:mod:`user_writer`, off the consume path);
   changed item vectors to ``item-vectors``, coalesced and produced when due (engaged items
   within ``item_vectors_interval_ms``).
   Nothing is committed to Kafka yet: the only durable copy of the model is the last snapshot.
2. Every ``snapshot_interval_s`` (and on SIGTERM/SIGINT, on partition revocation and at the
   end), the Redis writes are flushed (a failed one stops the trainer, as it always did), the
   producer is flushed (vectors and dead letters acknowledged), a snapshot is written
   atomically with the ``interactions`` next-offsets it reflects and the ``item-vectors``
   next-offsets it already contains, and only then are those ``interactions`` offsets
   committed synchronously, as explicit offsets.
3. At start (a lone trainer assigns itself every partition: no group join to wait for; with
   ``share_items``, on every group assignment) the consumer is positioned at the offsets of the
   model in memory, i.e. those of the snapshot it was loaded from (absent partition = from the
   beginning), not at the group's committed offsets. So after ``kill -9`` at any moment the
   trainer reloads the last snapshot and replays everything after it: each event is reflected
   in the model at least once. The replayed batches are published again: MongoDB and
   item-vectors are overwritten by the newer vectors (idempotent) and seen lists hold each item
   once, while the counters (Redis popularity and ranking signals, ``users.n_events``) leave
   out what their store already counted (:mod:`replay_guard`, ``shared.storage.applied_offsets``).
   The committed offsets are what the group and lag dashboards see; if a commit is lost after a
   snapshot, the snapshot's offsets still win.
4. Within one process a message whose offset is below the model's position for its partition is
   skipped, so a rebalance that revokes and re-assigns a partition never learns an event twice.

One trainer owns one model: run a single replica (a lone trainer takes every partition; several
share them only with ``RECSYS_TRAINER_SHARE_ITEMS``, see docs/CONTRACTS.md).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, KafkaException, Message, TopicPartition
from confluent_kafka import Consumer as KafkaConsumer

from services.incremental_trainer import users_owed
from services.incremental_trainer.forgetting import UserForgetting
from services.incremental_trainer.group import GroupMember
from services.incremental_trainer.learner import ITEMS, USERS, BatchResult, Learner
from services.incremental_trainer.publisher import (
    PendingItemRows,
    StatePublisher,
    VectorPublisher,
)
from services.incremental_trainer.ranking_signals import TrainerRankingStage
from services.incremental_trainer.redis_writer import PipelineWriter
from services.incremental_trainer.replay_guard import CountedBatch, ReplayGuard
from services.incremental_trainer.startup_timing import StartupTiming
from services.incremental_trainer.status import StatusFile
from services.incremental_trainer.user_writer import UserVectorWriter
from shared import snapshots
from shared.config import Settings
from shared.deleted_items import DeletedItems
from shared.events import InvalidEvent, parse
from shared.forgotten_users import forgotten_user_of
from shared.kafka import (
    DeadLetterPublisher,
    DeliveryError,
    KafkaUnavailable,
    ensure_topics,
    make_consumer,
    make_producer,
    poll_batches,
    position,
)
from shared.metrics import Metrics
from shared.model.checkpoint import save_snapshot
from shared.ranking.stores import store_limits
from shared.recovering_producer import RecoveringProducer
from shared.storage import applied_offsets, mongo, redis_store

log = logging.getLogger(__name__)

# Logical topic names of the snapshot manifest's "offsets" (docs/CONTRACTS.md).
INTERACTIONS = "interactions"
ITEM_VECTORS = "item-vectors"
STATUS_EVERY_S = 1.0
# Where a batch's time goes (Trainer.stage_s); MongoDB is the write-behind thread's busy time.
STAGES = (
    "consume", "evaluate", "learn", "redis", "item_vectors", "rank_train", "ranking_signals"
)
# Manifest metric: MongoDB users owed writes when the snapshot was taken (restart catches up).
USERS_BEHIND = "mongo_users_behind"
USERS_FLUSH_TIMEOUT_S = 20.0
SNAPSHOT_USERS_FLUSH_S = 10.0
CATCH_UP_CHUNK = 10_000
# How long a snapshot keeps replacing the producer and resending before it gives up (a broker
# outage longer than this restarts the process, which resumes from the last snapshot).
DELIVERY_RETRY_S = 120.0
LAG_EVERY_S = 2.0
# Snapshot interval after a start until the lag first reads 0 (see run).
CATCH_UP_S = 2.0


def _unexpected(exc: Exception) -> str:
    return f"could not parse the record: {type(exc).__name__}: {exc}"[:500]


class _TickingConsumer:
    """Delegates ``consume`` to the real consumer after calling ``tick`` (heartbeat, idle work).

    ``poll_batches`` calls ``consume`` in every loop turn, also when the topic is idle, so the
    tick proves the loop is alive and lets idle time be used for a pending snapshot. The time
    spent in ``consume`` while messages arrive is the Kafka share of the work (``stage_s``).
    """

    def __init__(
        self, consumer: KafkaConsumer, tick: Callable[[], None], stage_s: dict[str, float]
    ) -> None:
        self._consumer = consumer
        self._tick = tick
        self._stage_s = stage_s

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        self._tick()
        started = time.perf_counter()
        messages = self._consumer.consume(num_messages=num_messages, timeout=timeout)
        if messages:
            self._stage_s["consume"] += time.perf_counter() - started
        return messages


class Trainer:
    """Consumes ``interactions`` as a group member and keeps the model and its outputs current.

    Parameters
    ----------
    settings : Settings
    learner : Learner, optional
        Defaults to one loaded from ``models/LATEST`` (or an empty model).
    metrics : Metrics, optional
    clock : callable, optional
        Wall clock in seconds (``time.time``), swappable for tests.
    timing : StartupTiming, optional
        Start-up milestones since the process started (``__main__`` starts it first thing).
    """

    def __init__(
        self,
        settings: Settings,
        learner: Learner | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        timing: StartupTiming | None = None,
    ) -> None:
        self.timing = timing or StartupTiming()
        self.settings = settings
        kafka = settings.kafka
        self.topic = kafka.interactions_topic
        self.learner = learner or Learner.from_settings(
            settings.model, settings.trainer, settings.redis
        )
        self.timing.mark("snapshot_loaded")
        self.metrics = metrics or Metrics(settings.statsd)
        self.clock = clock
        self.stop = threading.Event()
        self.models_dir = Path(settings.model.models_dir)

        offsets = self.learner.state.offsets
        interactions = offsets.get(INTERACTIONS, offsets.get(self.topic)) or {}
        vectors = offsets.get(ITEM_VECTORS, offsets.get(kafka.item_vectors_topic)) or {}
        # Next offset per interactions partition already reflected in the in-memory model.
        self.positions: dict[int, int] = {int(p): int(o) for p, o in interactions.items()}
        self.snapshot_positions = dict(self.positions)
        self.base_vector_offsets = {str(p): int(o) for p, o in vectors.items()}
        self.assigned: set[int] = set()

        ensure_topics(kafka)
        # Replaced after a failed delivery: after a broker stall the old one stays fenced.
        self.producer = RecoveringProducer(partial(make_producer, kafka))
        self.dead_letters = DeadLetterPublisher(self.producer, kafka.dead_letter_topic)
        self.pending_items = PendingItemRows(
            settings.trainer.item_vectors_interval_ms / 1000.0,
            settings.trainer.negative_vectors_interval_s,
        )
        self.group = (
            GroupMember(
                kafka,
                self.learner,
                self.models_dir,
                self.base_vector_offsets,
            )
            if settings.trainer.share_items
            else None
        )
        self.vectors = VectorPublisher(
            self.producer,
            kafka.item_vectors_topic,
            kafka.delivery_timeout_ms / 1000.0 + 5.0,
            headers=self.group.headers if self.group else None,
        )
        db, r = mongo.connect(settings.mongo), redis_store.connect(settings.redis)
        self.state = StatePublisher(r, settings.redis)
        # Each batch's pipeline, off the consume path. A Redis write of the loop that must land
        # after the batches before it (e.g. removing a user's keys) flushes it first.
        self.redis_writes = PipelineWriter()
        # Events for deleted items are not learned from (shared/deleted_items.py).
        self.deleted = DeletedItems(r, db, settings.catalogue.deleted_refresh_s)
        self.users = UserVectorWriter(
            partial(applied_offsets.upsert_user_vectors_once, db),
            delete=partial(mongo.delete_users, db),
            users_per_s=settings.trainer.mongo_users_per_s,
        )
        self.replays = ReplayGuard(r, self.topic, settings.redis.popularity_half_life_s)
        # Seconds per stage since start: where a batch's time goes (bench_trainer reports it).
        self.stage_s: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.consumer = make_consumer(kafka, kafka.trainer_group_id)
        self.ranking = (
            TrainerRankingStage(
                self.learner,
                redis_store.connect(settings.redis),
                settings.ranking,
                store_limits(settings.ranking, settings.redis.popularity_half_life_s),
                self.models_dir,
                settings.model.seed,
            )
            if settings.ranking.enabled
            else None
        )
        # DELETE /users/{id}: fresh rows, earlier events dropped (shared/forgotten_users.py).
        self.forgetting = UserForgetting(
            db, r, self.learner, self.users, self.ranking.signals.recent if self.ranking else None
        )
        # Owed writes first: a deletion the model has not passed yet (forgotten below) then
        # drops what they hold of the user's events from before it.
        self._catch_up_users()
        self.forgetting.forget(self.forgetting.predating(self.positions))
        status_path = settings.trainer.status_file or str(self.models_dir / "trainer_status.json")
        self.status = StatusFile(Path(status_path))
        self.heartbeat = (
            Path(settings.trainer.heartbeat_file) if settings.trainer.heartbeat_file else None
        )

        self.counters: dict[str, Any] = {
            "events": 0,
            "dlq": 0,
            "batches": 0,
            "skipped": 0,
            "deleted_items": 0,
            "tombstones_resent": 0,
            "snapshots": 0,
            "growths": {USERS: 0, ITEMS: 0},
        }
        # Where this process resumed: the offsets of the snapshot it loaded.
        self.resumed_from = {str(p): o for p, o in sorted(self.positions.items())}
        self.last_snapshot: dict[str, Any] = {"version": self.learner.state.version, "at": None}
        self.last_snapshot_at = time.monotonic()
        self.last_status_at = 0.0
        self.last_lag_at = 0.0
        self.lag: int | None = None
        self.freshness_ms: float | None = None
        self.started_at = clock()
        self._known_users: set[str] = set()
        self._seed_popularity()
        self.timing.mark("initialised")

    # ------------------------------------------------------------------ start-up
    def _seed_popularity(self) -> None:
        """Start the in-process popularity from Redis ``popular`` (it survives restarts)."""
        try:
            entries, ref = self.state.load_popularity()
        except Exception as exc:  # noqa: BLE001 - a cold baseline is acceptable
            log.warning("could not read popularity from Redis: %s", exc)
            return
        if ref is None or not entries:
            return
        item_map = self.learner.state.item_map
        pairs = [(item_map.row(i, create=False), s) for i, s in entries]
        known = [(r, s) for r, s in pairs if r is not None]
        self.learner.popularity.load([r for r, _ in known], [s for _, s in known], ref)
        log.info("popularity seeded from Redis with %d items", len(known))

    def _catch_up_users(self) -> None:
        """Hand the MongoDB ``users`` writes the loaded snapshot owed to the write-behind again
        (:mod:`users_owed`); a snapshot from before that file rewrites all its users instead."""
        state = self.learner.state
        if not state.loaded_from_snapshot:
            return
        owed = users_owed.load(snapshots.resolve(self.models_dir, state.version))
        if owed is not None:
            ids = [o.user_id for o in owed if o.vector]
            rows = state.user_map.rows(ids, create=False)
            known = rows >= 0
            queries = state.model.query_vectors(rows[known])
            vectors = dict(zip(np.array(ids, dtype=object)[known].tolist(), queries, strict=True))
            self.users.restore(owed, vectors, state.version)
            if owed:
                log.info("snapshot %s owed MongoDB %d users: handed over again",
                         state.version, len(owed))
            return
        if not state.metrics.get(USERS_BEHIND):
            return
        forgotten = self.forgetting.offsets  # their rows were reset: nothing to rewrite
        user_ids = [u for u in state.user_map.ids if u not in forgotten]
        log.info(
            "snapshot %s was taken with user writes owed: rewriting %d users in the background",
            state.version,
            len(user_ids),
        )
        for start in range(0, len(user_ids), CATCH_UP_CHUNK):
            chunk = user_ids[start : start + CATCH_UP_CHUNK]
            queries = state.model.query_vectors(state.user_map.rows(chunk, create=False))
            self.users.catch_up(zip(chunk, queries, strict=True), state.version)

    # ------------------------------------------------------------------ rebalance
    def _on_assign(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if self.group is not None:  # the previous owner's users, if it got further than us
                handed = self.group.take_over(tp.partition, self.positions.get(tp.partition))
                if handed is not None:
                    self.positions[tp.partition] = handed
                    self.snapshot_positions[tp.partition] = handed
                    self._known_users.difference_update(self.group.users_of(tp.partition))
            # a model (or handed rows) from before a user's deletion holds their old row
            self._forget(self.forgetting.predating(self.positions, {tp.partition}))
            tp.offset = self.positions.get(tp.partition, OFFSET_BEGINNING)
            self.assigned.add(tp.partition)
        self.replays.load(tp.partition for tp in partitions)
        consumer.assign(partitions)
        self.timing.mark("assigned")
        log.info(
            "assigned %s partitions %s at %s",
            self.topic,
            sorted(tp.partition for tp in partitions),
            {tp.partition: tp.offset for tp in partitions},
        )

    def _assign_every_partition(self) -> None:
        """A lone trainer takes every partition itself instead of joining the group.

        It positions itself at its snapshot's offsets anyway, so group membership brought it
        nothing but a wait: after a ``kill -9`` the broker held the new member until the dead
        one's session expired (15-19 s measured against Tansu, 3 s even for a fresh group).
        Commits still go to the group (a member-less group accepts them), for lag dashboards.
        """
        timeout_s = self.settings.kafka.request_timeout_ms / 1000.0
        metadata = self.consumer.list_topics(self.topic, timeout=timeout_s)
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise KafkaUnavailable(f"no partitions for topic {self.topic!r}: {topic and topic.error}")
        self._on_assign(
            self.consumer, [TopicPartition(self.topic, p) for p in sorted(topic.partitions)]
        )

    def _on_revoke(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        # Make what we learned from these partitions durable and commit it while we still own
        # them; whoever gets them next resumes exactly after.
        log.info("revoking partitions %s", sorted(tp.partition for tp in partitions))
        if self.dirty:
            self.snapshot("revoke")
        for tp in partitions:
            self.assigned.discard(tp.partition)

    def _on_lost(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        # Ownership is already gone: committing now could overwrite the new owner's progress.
        log.warning("lost partitions %s", sorted(tp.partition for tp in partitions))
        for tp in partitions:
            self.assigned.discard(tp.partition)

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        """Consume until :attr:`stop` is set, then flush, snapshot, commit and close."""
        trainer = self.settings.trainer
        if self.group is None:
            self._assign_every_partition()
        else:
            self.consumer.subscribe(
                [self.topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        if not self.learner.state.loaded_from_snapshot:
            self.snapshot("initial")  # gives faiss_app and the recommender a version to load
        log.info("trainer consuming %s as %s", self.topic, self.settings.kafka.trainer_group_id)
        try:
            batches = poll_batches(
                _TickingConsumer(self.consumer, self._tick, self.stage_s),  # type: ignore[arg-type]
                trainer.batch_max_events,
                trainer.batch_max_ms / 1000.0,
                self.stop,
            )
            learned_since_start = caught_up = False
            for batch in batches:
                self.process(batch)
                if "first_batch" not in self.timing.milestones:
                    self.timing.mark("first_batch")
                    log.info("first batch learned; start-up (s since process start): %s",
                             self.timing.as_dict())
                if not learned_since_start and self.dirty:
                    # The first batch of every start is made durable at once: a trainer that
                    # dies more often than the interval still commits progress, instead of
                    # replaying ever more from an old snapshot.
                    learned_since_start = True
                    self.snapshot("first")
                elif time.monotonic() - self.last_snapshot_at >= trainer.snapshot_interval_s:
                    self.snapshot("interval")
                elif not caught_up and time.monotonic() - self.last_snapshot_at >= CATCH_UP_S:
                    # Still replaying (or draining a backlog) after a start: durable progress
                    # every few seconds until caught up. With only the "first" one a trainer
                    # killed every few seconds kept one batch per start and replayed ever more
                    # (bench_ingestion kills: the last start replayed 10k events).
                    self.snapshot("catching_up")
                caught_up = caught_up or self.lag == 0
            if not self.users.flush(USERS_FLUSH_TIMEOUT_S):
                log.warning(
                    "MongoDB users still behind after %.0f s: the next start catches up",
                    USERS_FLUSH_TIMEOUT_S,
                )
            if self.dirty or self.users.behind != bool(
                self.learner.state.metrics.get(USERS_BEHIND)
            ):
                self.snapshot("shutdown")
        finally:
            self.write_status("stopped")
            self.consumer.close()
            self.users.close(timeout_s=0)
            self.redis_writes.close()
            if self.group is not None:
                self.group.close()
            log.info("trainer stopped after %d events", self.counters["events"])

    @property
    def dirty(self) -> bool:
        """True when the model holds events that the last snapshot does not."""
        return self.positions != self.snapshot_positions

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self.last_status_at >= STATUS_EVERY_S:
            self.write_status("running")
            # A counter: when the loop stops, the series reads 0 (a gauge would be re-sent).
            self.metrics.incr("trainer.heartbeat")
            self.metrics.gauge("trainer.snapshot_age_s", now - self.last_snapshot_at)
        self._report_lag()  # also while idle: gauges are dropped by statsd when not re-sent
        if self.dirty and now - self.last_snapshot_at >= self.settings.trainer.snapshot_interval_s:
            self.snapshot("idle")

    def process(self, batch: list[Message]) -> BatchResult:
        """Validate, evaluate, learn and publish one micro-batch."""
        started = time.perf_counter()
        events = []
        produced_ms: list[int] = []
        new_positions: dict[int, int] = {}
        deleted = self.deleted.current()
        parts: list[int] = []
        forgotten, forget_records = self._forget_records(batch)
        offsets: list[int] = []
        for msg in batch:
            _, part, offset = position(msg)
            if part not in self.assigned or offset < self.positions.get(part, 0):
                self.counters["skipped"] += 1  # revoked meanwhile, or learned already
                continue
            new_positions[part] = max(new_positions.get(part, 0), offset + 1)
            if (part, offset) in forget_records:
                continue
            try:
                # Any failure here is the record's (parse is pure): dead-letter it, go on.
                event = parse(msg.value())
            except Exception as exc:  # noqa: BLE001 - a poison pill must never stop learning
                reason = str(exc) if isinstance(exc, InvalidEvent) else _unexpected(exc)
                self.dead_letters.publish(msg, reason)
                self.counters["dlq"] += 1
                self.metrics.incr("trainer.dlq")
                log.info("dead-lettered %s[%d]@%d: %s", msg.topic(), part, offset, reason)
                continue
            if event.item_id in deleted:
                self.counters["deleted_items"] += 1
                continue
            if self.forgetting.stale(event.user_id, part, offset):
                continue  # sent before the user's deletion (replayed, or earlier in this batch)
            events.append(event)
            parts.append(part)
            offsets.append(offset)
            kind, stamp = msg.timestamp()
            produced_ms.append(stamp if kind and stamp > 0 else event.ts)

        stage_s = self.stage_s
        stage_before = dict(stage_s)
        if self.group is not None:
            shared_started = time.perf_counter()
            self.group.before_batch()
            self.group.note([e.user_id for e in events], parts)
            stage_s["item_vectors"] += time.perf_counter() - shared_started
        seen_started = time.perf_counter()
        if forgotten:
            self._forget(forgotten)
            self._known_users.difference_update(forgotten)
        self._load_seen([e.user_id for e in events])
        ranking_started = time.perf_counter()
        stage_s["redis"] += ranking_started - seen_started
        fresh = self.ranking.before_learning(events) if self.ranking else set()
        learn_started = time.perf_counter()
        stage_s["rank_train"] += learn_started - ranking_started
        result = self.learner.learn(events)
        publish_started = time.perf_counter()
        stage_s["evaluate"] += result.evaluate_s
        stage_s["learn"] += publish_started - learn_started - result.evaluate_s
        counted = self.replays.split(events, parts, offsets, new_positions, result.ts_ms)
        self.publish(result, counted, fresh)
        if self.ranking:
            ranker_started = time.perf_counter()
            self.ranking.after_publishing()
            stage_s["rank_train"] += time.perf_counter() - ranker_started
        done_ms = self.clock() * 1000.0
        self.positions.update(new_positions)

        model = self.learner.state.model
        self.counters["events"] += len(events)
        self.counters["batches"] += 1
        self.metrics.incr("trainer.events", len(events))
        self.metrics.gauge("trainer.batch_size", len(events))
        self.metrics.timing("trainer.publish_ms", (time.perf_counter() - publish_started) * 1000)
        self.metrics.gauge("trainer.users_backlog", self.users.backlog)
        if produced_ms:
            self.freshness_ms = max(0.0, done_ms - min(produced_ms))
            self.metrics.timing("trainer.freshness_ms", self.freshness_ms)
        for growth in result.growths:
            self.counters["growths"][growth.table] += 1
            self.metrics.incr(f"trainer.growth.{growth.table}")
        self.metrics.gauge("trainer.capacity.users", model.user_capacity)
        self.metrics.gauge("trainer.capacity.items", model.item_capacity)
        if result.tested:
            figures = self.learner.evaluator.figures()
            self.metrics.gauge("trainer.prequential.recall_at_10", figures.recall)
            self.metrics.gauge("trainer.prequential.precision_at_10", figures.precision)
            self.metrics.gauge(
                "trainer.prequential.popularity_recall_at_10", figures.popularity_recall
            )
        for stage, seconds in stage_s.items():
            if stage != "consume":  # consume time is spent before the batch exists
                self.metrics.timing(
                    f"trainer.stage_ms.{stage}", (seconds - stage_before[stage]) * 1000
                )
        self._report_lag()
        self.metrics.timing("trainer.batch_ms", (time.perf_counter() - started) * 1000)
        return result

    def _forget(self, user_ids: list[str]) -> None:
        """Start these users again; their keys are removed from Redis after the earlier
        batches' writes (which may hold their old seen lists and vectors) have landed."""
        if user_ids:
            self.redis_writes.flush()
            self.forgetting.forget(user_ids)

    def _forget_records(self, batch: list[Message]) -> tuple[list[str], set[tuple[int, int]]]:
        """The batch's forget records that are due (noted before any event of the batch is
        screened, so the user's earlier events in the same batch are dropped too)."""
        users: list[str] = []
        records: set[tuple[int, int]] = set()
        for msg in batch:
            user_id = forgotten_user_of(msg)
            if user_id is None:
                continue
            _, part, offset = position(msg)
            records.add((part, offset))
            if part in self.assigned and offset >= self.positions.get(part, 0):
                self.forgetting.note(user_id, part, offset)
                users.append(user_id)
        return users, records

    def _load_seen(self, user_ids: list[str]) -> None:
        """Seen lists of users this process has not met yet, so evaluation excludes them."""
        fresh = [u for u in dict.fromkeys(user_ids) if u not in self._known_users]
        if not fresh:
            return
        self._known_users.update(fresh)
        for user_id, items in self.state.load_seen(fresh).items():
            self.learner.remember_seen(user_id, items)
            if self.ranking:
                self.ranking.seed(user_id, items)

    def publish(
        self,
        result: BatchResult,
        counted: CountedBatch,
        fresh: set[str] | None = None,
    ) -> None:
        """Hand the batch's effects to the outputs.

        Users' query vectors go to the MongoDB write-behind (:class:`UserVectorWriter`), moved
        item rows join the coalesced set that :meth:`publish_items` sends when due, and the
        Redis state (seen lists, query vectors, popularity, and the ranking stage's signals of
        the batch's events, ``fresh`` being their new items) is one transaction, executed by the
        :class:`PipelineWriter` thread while the next batch is learned. ``counted`` says what
        the counters still have to count (a replay after a crash: :mod:`replay_guard`) and
        raises the marks of what they counted in the same transaction.
        """
        state = self.learner.state
        self.pending_items.add(result.positive_rows, result.item_rows, result.new_item_rows)
        self.publish_items()
        if result.user_events:
            user_ids = list(result.user_events)
            queries = state.model.query_vectors(state.user_map.rows(user_ids, create=False))
            self.users.put(
                (
                    (u, q, counted.user_offsets.get(u, {}))
                    for u, q in zip(user_ids, queries, strict=True)
                ),
                state.version,
            )
            started = time.perf_counter()
            by_user = dict(zip(user_ids, queries, strict=True))
            pipe = self.state.pipeline()
            popularity = result.popularity if counted.popularity is None else counted.popularity
            self.state.queue(pipe, result.seen, popularity, result.ts_ms, by_user)
            signals_s = 0.0
            if self.ranking and counted.events:
                signals_started = time.perf_counter()
                self.ranking.queue_signals(pipe, counted.events, fresh or set())
                signals_s = time.perf_counter() - signals_started
                self.stage_s["ranking_signals"] += signals_s
            applied_offsets.queue_mark(pipe, self.topic, counted.next_offsets)
            self.redis_writes.submit(pipe)
            self.stage_s["redis"] += time.perf_counter() - started - signals_s

    def publish_items(self, everything: bool = False) -> int:
        """Produce the item vectors that are due (all pending ones if ``everything``)."""
        if self.vectors.failures or self.dead_letters.failures:
            self._recover_producer("a delivery failed")
        rows = self.pending_items.due(everything=everything)
        if not rows:
            return 0
        started = time.perf_counter()
        pairs = self.learner.item_ids_of_rows(rows)
        model, version = self.learner.state.model, self.learner.state.version
        vectors = model.item_vectors(np.array([r for _, r in pairs], dtype=np.int64))
        headers = (
            None
            if self.group is None
            else self.group.outgoing(np.array([r for _, r in pairs], dtype=np.int64), vectors)
        )
        count = self.vectors.publish([i for i, _ in pairs], vectors, version, headers)
        self.stage_s["item_vectors"] += time.perf_counter() - started
        return count

    # ------------------------------------------------------------------ durability
    def snapshot(self, reason: str) -> str:
        """Flush, write a snapshot with the offsets it reflects, then commit those offsets."""
        started = time.perf_counter()
        self.redis_writes.flush()  # raises if a batch's Redis writes failed
        self.publish_items(everything=True)
        if self.group is not None and not self.users.flush(SNAPSHOT_USERS_FLUSH_S):
            # A partition moves to another member with its users (partition files), not with
            # this process's owed writes: a member lets the store catch up first, bounded.
            log.warning("snapshot with %d user writes still owed to MongoDB", self.users.backlog)
        # What MongoDB is still owed goes into the snapshot (users_owed.py) instead of being
        # waited for: the consume loop does not stop for the slowest store.
        owed = self.users.owed()
        delivered = self._confirm_deliveries()
        vector_offsets = (
            {**self.base_vector_offsets, **delivered}
            if self.group is None
            else self.group.vector_offsets()
        )
        positions = dict(self.positions)
        if self.group is not None:
            self.group.save_partitions(positions, self.assigned)
        state = self.learner.state
        version = save_snapshot(
            self.models_dir,
            state.model,
            state.user_map,
            state.item_map,
            offsets={
                INTERACTIONS: {str(p): o for p, o in sorted(positions.items())},
                ITEM_VECTORS: vector_offsets,
            },
            metrics={
                "prequential": self.learner.evaluator.figures().as_dict(),
                "reason": reason,
                USERS_BEHIND: bool(owed),
            },
            keep=self.settings.trainer.snapshots_kept,
            extra_json={users_owed.FILE: users_owed.to_json(owed)},
        )
        state.version = version
        state.metrics[USERS_BEHIND] = bool(owed)
        self.snapshot_positions = positions
        if self.ranking:
            self.ranking.snapshot()
        self.commit(positions)
        self.last_snapshot_at = time.monotonic()
        self.counters["snapshots"] += 1
        self._republish_deletes()
        elapsed = (time.perf_counter() - started) * 1000
        self.last_snapshot = {
            "version": version, "at": self.clock(), "reason": reason, "ms": round(elapsed)
        }
        self.metrics.timing("trainer.snapshot_ms", elapsed)
        log.info("snapshot %s (%s) at %s in %.0f ms", version, reason, positions, elapsed)
        return version

    def _confirm_deliveries(self) -> dict[str, int]:
        """Wait until every item vector and dead letter so far is acknowledged; returns the
        next ``item-vectors`` offset per partition.

        A broker that stalled or restarted leaves the producer fenced or its messages timed
        out: the producer is replaced and what it lost is sent again, for up to
        ``DELIVERY_RETRY_S``; only then does the snapshot fail (and the process restart).
        """
        deadline = time.monotonic() + DELIVERY_RETRY_S
        while True:
            self.publish_items(everything=True)  # what a recovery queued again
            _, generation = self.producer.current()
            try:
                delivered = self.vectors.flush()
                if self.dead_letters.undelivered:
                    raise DeliveryError(f"{self.dead_letters.undelivered} dead letters not acked")
                return delivered
            except DeliveryError as exc:
                if time.monotonic() >= deadline or self.stop.is_set():
                    raise
                self.producer.failed(generation, str(exc))
                self._recover_producer(str(exc))

    def _recover_producer(self, reason: str) -> None:
        """Replace a producer a delivery failed on; send again what was not delivered."""
        failed_on = max(self.vectors.failed_generation, self.dead_letters.failed_generation)
        if failed_on >= 0:
            self.producer.failed(failed_on, reason)
        item_ids, deleted_ids = self.vectors.take_failed()
        known = self.learner.state.item_map.rows(sorted(item_ids), create=False)
        rows = [r for r in known.tolist() if r >= 0]
        self.pending_items.add(rows, ())
        if deleted_ids:
            self.vectors.delete(sorted(deleted_ids))
        resent = self.dead_letters.resend_undelivered()
        log.warning("after %s: %d item vectors, %d tombstones and %d dead letters sent again",
                    reason, len(rows), len(deleted_ids), resent)

    def _republish_deletes(self) -> None:
        """Tombstones of deleted items, after the snapshot's offsets: a faiss_app that loads
        this snapshot (which may still hold their vectors) replays the deletes after it. Only
        items the snapshot holds: one deleted before the model ever learned it has no vector
        to take back."""
        item_map = self.learner.state.item_map
        deleted = sorted(i for i in self.deleted.current() if i in item_map)
        if not deleted:
            return
        self.counters["tombstones_resent"] += self.vectors.delete(deleted)
        try:
            self.vectors.flush()
        except Exception as exc:  # noqa: BLE001 - a resend; the next snapshot tries again
            log.warning("tombstones of %d deleted items not confirmed: %s", len(deleted), exc)

    def commit(self, positions: dict[int, int]) -> None:
        """Synchronously commit the offsets of ``positions`` for partitions this member owns."""
        owned = [
            TopicPartition(self.topic, p, o)
            for p, o in sorted(positions.items())
            if p in self.assigned
        ]
        if not owned:
            return
        try:
            self.consumer.commit(offsets=owned, asynchronous=False)
        except KafkaException as exc:  # the snapshot's offsets are what a restart resumes from
            log.warning("committing %s failed (lag dashboards lag behind): %s", owned, exc)

    # ------------------------------------------------------------------ observability
    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self.last_lag_at < LAG_EVERY_S:
            return
        self.last_lag_at = now
        lag = 0
        for part in sorted(self.assigned):
            low, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, part), cached=True
            )
            if high is None or high < 0:
                continue
            lag += max(0, high - max(self.positions.get(part, 0), low))
        self.lag = lag
        self.metrics.gauge("trainer.lag", lag)

    def status_dict(self, state: str) -> dict[str, Any]:
        model = self.learner.state.model
        elapsed = max(1e-9, self.clock() - self.started_at)
        return {
            "state": state,
            "pid": os.getpid(),
            "updated_at": self.clock(),
            "started_at": self.started_at,
            "model_version": self.learner.state.version,
            "last_snapshot": self.last_snapshot,
            "events": self.counters["events"],
            "events_per_s": round(self.counters["events"] / elapsed, 1),
            "batches": self.counters["batches"],
            "dlq": self.counters["dlq"],
            "skipped": self.counters["skipped"],
            "forgotten_users": self.forgetting.forgotten,
            "forgotten_events_dropped": self.forgetting.dropped,
            "snapshots": self.counters["snapshots"],
            "growths": self.counters["growths"],
            "users": len(self.learner.state.user_map),
            "items": len(self.learner.state.item_map),
            "capacity": {USERS: model.user_capacity, ITEMS: model.item_capacity},
            "resumed_from": self.resumed_from,
            "positions": {str(p): o for p, o in sorted(self.positions.items())},
            "assigned": sorted(self.assigned),
            "lag": self.lag,
            "freshness_ms": self.freshness_ms,
            "prequential": self.learner.evaluator.figures().as_dict(),
            "users_backlog": self.users.backlog,
            "users_handed_over": self.group.handed_over if self.group is not None else None,
            "stage_s": {
                **{k: round(v, 3) for k, v in self.stage_s.items()},
                "mongo": round(self.users.busy_s, 3),  # the write-behind thread, overlapping
                "redis_writer": round(self.redis_writes.busy_s, 3),  # its thread, overlapping
                # part of "redis": the loop waiting for the writer thread (two batches behind)
                "redis_wait": round(self.redis_writes.waited_s, 3),
            },
            "users_written": self.users.written,
            "replayed_not_recounted": self.replays.left_out,
            "startup": self.timing.as_dict(),
            "process_started_at": self.timing.started_at,
        }

    def write_status(self, state: str) -> None:
        self.last_status_at = time.monotonic()
        try:
            self.status.write(self.status_dict(state))
            if self.heartbeat is not None:
                self.heartbeat.touch()
        except OSError as exc:
            log.warning("could not write trainer status: %s", exc)
