"""The background thread that applies ``item-vectors`` updates to the live catalog.

One follower per vector space: each tails its space's topic (``item-vectors`` for the default
space ``gmf``, ``item-vectors.<space>`` for the others; shared/spaces.py).

Every worker of every replica applies every update, so it does not join a consumer group: it
uses a group id of its own (never committed) and assigns all partitions itself, starting at the
offsets the live catalog has folded in (the snapshot manifest's ``offsets["item-vectors"]`` at
load, then the offsets of the batches applied since). When a reload swaps in another catalog
the follower is woken and re-positions on the new catalog's offsets; a compaction it swapped in
itself holds what it applied, so it goes on from the same position.

One micro-batch from :func:`shared.kafka.poll_batches` is applied under the catalog's write
lock as a unit. Malformed messages are logged, counted and skipped; nothing a message holds
can end the thread.

``caught_up`` turns true once the catalog it follows (``following``) has applied everything
each partition held when the follower was assigned for it, and ``last_turn_at`` is the
monotonic time of the poll loop's latest turn: together they say whether the catalog is as
fresh as the topic (the recommender's in-process copy searches only then).

When the catalog needs re-building (too many dead rows, or IVF cells the catalogue has drifted
away from), a :class:`~services.faiss_app.rebuild.BackgroundRebuild` builds the new one on its
own thread while this thread keeps applying updates to the live catalog; between two batches
this thread replays what it applied meanwhile into the new catalog and swaps it in.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_NOT_AVAILABLE, TopicPartition
from confluent_kafka import Consumer as KafkaConsumer

from services.faiss_app.catalog import Catalog
from services.faiss_app.rebuild import BackgroundRebuild
from services.faiss_app.service import IndexService
from shared.config import KafkaSettings
from shared.item_vectors import ItemVectorUpdate, VectorDecodeError, decode
from shared.kafka import TickingConsumer, make_consumer, next_offsets, poll_batches
from shared.metrics import Metrics
from shared.snapshots import version_time
from shared.spaces import DEFAULT_SPACE

log = logging.getLogger(__name__)

BATCH_MAX_MESSAGES = 1000
BATCH_MAX_WAIT_S = 0.05
RETRY_S = 1.0  # wait before retrying when there is no snapshot or no topic yet
METADATA_TIMEOUT_S = 5.0
MODEL_AGE_EVERY_S = 1.0
REBUILD_RETRY_S = 60.0  # after a failed rebuild, before trying again


class UpdateFollower:
    """Tails the item-vectors topic in a daemon thread; ``start``/``stop`` are idempotent."""

    def __init__(self, service: IndexService, kafka: KafkaSettings, metrics: Metrics):
        self._service = service
        self._kafka = kafka
        self._metrics = metrics
        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.malformed = 0
        self._model_age_at = 0.0
        self.caught_up = False  # about ``following``
        self.following: Catalog | None = None  # the catalog the consumer is positioned for
        self.last_turn_at: float | None = None
        self._catch_up_to: dict[int, int] = {}  # partition → end offset when assigned
        self.rebuild: BackgroundRebuild | None = None
        self._compacted: Catalog | None = None  # the rebuild this thread swapped in last
        self.rebuilds = 0  # swapped in
        self._rebuild_failed_at = float("-inf")
        self.topic = service.topic
        suffix = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.group_id = f"faiss-app-{service.name}-{socket.gethostname()}-{suffix}"
        service.on_swap(self._wakeup.set)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._stopping.is_set():
                return
            self._thread = threading.Thread(target=self._run, name=self.topic, daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def describe(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "topic": self.topic,
            "group_id": self.group_id,
            "malformed": self.malformed,
            "caught_up": self.caught_up,
            "rebuilding": self.rebuild is not None,
            "rebuilds": self.rebuilds,
        }

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        if self._stopping.is_set():
            return  # stopped before the thread got its turn (an app torn down at once)
        log.info("following %s as %s", self.topic, self.group_id)
        consumer = make_consumer(self._kafka, self.group_id)
        try:
            while not self._stopping.is_set():
                self._wakeup.clear()  # before reading the catalog: a later swap wakes us again
                catalog = self._service.catalog
                if catalog is None and not self._load_latest():
                    self._stopping.wait(RETRY_S)
                    continue
                catalog = self._service.catalog
                if catalog is None or not self._assign(consumer, catalog):
                    self._stopping.wait(RETRY_S)
                    continue
                self._follow(consumer, catalog)
        except Exception:
            log.exception("%s follower stopped by an unexpected error", self.topic)
            raise
        finally:
            consumer.close()
            log.info("%s follower stopped", self.topic)

    def _follow(self, consumer: KafkaConsumer, catalog: Catalog) -> None:
        """Apply batches to ``catalog`` until the service swaps it for another one.

        A compaction this thread swapped in (:meth:`_finish_rebuild`) holds everything applied
        so far, so following goes on from the same consumer position, prefetched messages and
        all; any other swap (a reload) returns, and the caller re-positions on the new
        catalog's offsets. Re-positioning after every compaction is what left faiss_app's gmf
        space seconds behind at 10k events/s: 5,000 items updated 10k times a second pass the
        dead-row threshold several times a second, and each re-assign dropped librdkafka's
        prefetched messages and asked the broker for metadata and watermarks again.
        """
        ticking = TickingConsumer(consumer, self._turn)
        while not self._stopping.is_set():
            for batch in poll_batches(
                ticking,  # type: ignore[arg-type]
                BATCH_MAX_MESSAGES,
                BATCH_MAX_WAIT_S,
                self._wakeup,
            ):
                if self._service.catalog is not catalog:
                    adopted = self._adopt_compaction()
                    if adopted is None:
                        return  # reloaded while polling: re-position on the new catalog
                    catalog = adopted
                self._apply(catalog, batch)
                if self.rebuild is None and catalog.needs_rebuild():
                    self._start_rebuild(catalog)
            if self._stopping.is_set() or self._service.catalog is catalog:
                return
            adopted = self._adopt_compaction()
            if adopted is None:
                return
            catalog = adopted

    def _adopt_compaction(self) -> Catalog | None:
        """The service's catalog if it is the compaction this thread swapped in, else None."""
        self._wakeup.clear()  # before reading the catalog: a later reload wakes us again
        current = self._service.catalog
        if current is None or current is not self._compacted:
            return None
        self._compacted = None
        self.following = current
        return current

    def _load_latest(self) -> bool:
        try:
            return self._service.load_if_present()
        except Exception:
            log.exception("could not load the latest snapshot; retrying")
            return False

    def _assign(self, consumer: KafkaConsumer, catalog: Catalog) -> bool:
        topic = self.topic
        try:
            metadata = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S)
        except Exception as exc:  # KafkaException: broker down; librdkafka will reconnect
            log.warning("no metadata for %s: %s", topic, exc)
            return False
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            log.info("topic %s is not there yet", topic)
            return False
        offsets = catalog.updates.offsets
        self.caught_up = False
        self.following = catalog
        self._catch_up_to = {}
        for partition in described.partitions:
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=METADATA_TIMEOUT_S
                )
            except Exception as exc:  # KafkaException: broker down; retried by the caller
                log.warning("no end offsets for %s: %s", topic, exc)
                return False
            if high > max(low, offsets.get(partition, low)):
                self._catch_up_to[partition] = high
        consumer.assign(
            [
                TopicPartition(topic, partition, offsets.get(partition, OFFSET_BEGINNING))
                for partition in sorted(described.partitions)
            ]
        )
        log.info("assigned %s at %s for %s", topic, offsets or "the beginning", catalog.version)
        return True

    def _apply(self, catalog: Catalog, batch: list) -> None:
        updates: list[ItemVectorUpdate] = []
        for msg in batch:
            try:
                update = decode(msg.key(), msg.value())
                if update.vector is not None and update.vector.shape != (catalog.dim,):
                    raise VectorDecodeError(
                        f"dimension {update.vector.shape[0]}, the index has {catalog.dim}"
                    )
            except VectorDecodeError as exc:
                self.malformed += 1
                catalog.updates.malformed += 1
                self._metrics.incr("faiss.updates_malformed")
                log.warning(
                    "skipping malformed item vector at %s[%d]@%d: %s",
                    msg.topic(),
                    msg.partition(),
                    msg.offset(),
                    exc,
                )
                continue
            updates.append(update)
        positions = {p: o for (_t, p), o in next_offsets(batch).items()}
        last = (batch[-1].partition(), batch[-1].offset())
        try:
            applied = catalog.apply(updates, positions, last)
        except Exception:
            # Not expected (inputs are checked above); never let one batch end the thread.
            log.exception("failed to apply a batch of %d item vectors", len(updates))
            return
        rebuild = self.rebuild
        if rebuild is not None and rebuild.source is catalog:
            rebuild.record(updates, positions, last)
        if applied and self._service.name == DEFAULT_SPACE:  # the gauges describe gmf
            self._metrics.incr("faiss.updates_applied", applied)
            self._metrics.gauge("faiss.index_size", catalog.count)
            kind, produced_ms = batch[0].timestamp()
            if kind != TIMESTAMP_NOT_AVAILABLE:
                self._metrics.timing("faiss.update_lag_ms", time.time() * 1000.0 - produced_ms)

    def _turn(self) -> None:
        """Called from every poll-loop turn."""
        self.last_turn_at = time.monotonic()
        self._finish_rebuild()
        if not self.caught_up and self.following is not None:
            applied = self.following.updates.offsets
            self.caught_up = all(
                applied.get(partition, 0) >= end for partition, end in self._catch_up_to.items()
            )
        self._report_model_age()

    def _report_model_age(self) -> None:
        """Sends the instance's gauges about once a second."""
        now = time.monotonic()
        if now - self._model_age_at < MODEL_AGE_EVERY_S or self._service.name != DEFAULT_SPACE:
            return
        self._model_age_at = now
        catalog = self._service.catalog
        if catalog is None:
            return
        # Re-sent while idle: statsd drops a gauge nobody refreshes (deleteGauges).
        self._metrics.gauge("faiss.index_size", catalog.count)
        written = version_time(catalog.serving_version)
        if written is not None:
            self._metrics.gauge("faiss.model_age_s", max(0.0, time.time() - written))

    def _start_rebuild(self, catalog: Catalog) -> None:
        if time.monotonic() - self._rebuild_failed_at < REBUILD_RETRY_S:
            return
        described = catalog.describe()
        log.info(
            "rebuilding %s %s in the background: %d dead labels, index %s",
            self._service.name,
            catalog.version,
            described["dead_labels"],
            described["index"],
        )
        self.rebuild = BackgroundRebuild(catalog)

    def _finish_rebuild(self) -> None:
        """Swap in a finished rebuild (on this thread, the catalog's only writer)."""
        rebuild = self.rebuild
        if rebuild is None or not rebuild.done:
            return
        self.rebuild = None
        if self._service.catalog is not rebuild.source:
            return  # a reload replaced the catalog meanwhile: the rebuild is moot
        fresh = rebuild.finish()
        if fresh is None:
            self._rebuild_failed_at = time.monotonic()
            return
        self._compacted = fresh  # before the swap: its wake-up must find it
        if self._service.replace_if_current(rebuild.source, fresh):
            self.rebuilds += 1  # the swap woke the poll loop: it goes on with ``fresh``
