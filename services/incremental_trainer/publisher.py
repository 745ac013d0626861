"""Publishing the trainer's outputs: item vectors on Kafka, Redis state (MongoDB: user_writer).

Item vectors go to the compacted ``item-vectors`` topic keyed by item id. Delivery reports
are tracked per partition, so a snapshot can record the next offset *after* the last vector
it already contains (docs/CONTRACTS.md: faiss_app loads the snapshot, then tails from there).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

import numpy as np
import redis
from confluent_kafka import KafkaError, Message, Producer
from redis.client import Pipeline

from shared.config import RedisSettings
from shared.item_vectors import encode_values
from shared.kafka import DeliveryError, flush_or_raise, produce_blocking
from shared.recovering_producer import RecoveringProducer, current_of
from shared.storage import redis_store

log = logging.getLogger(__name__)


class VectorPublisher:
    """Produces item vectors and remembers, per partition, the next offset after delivery.

    Items whose vector (or tombstone) was not delivered are kept (:meth:`take_failed`) for the
    trainer to publish again on a fresh producer (``shared.recovering_producer``): after a
    broker stall the old one stays fenced.
    """

    def __init__(
        self,
        producer: Producer | RecoveringProducer,
        topic: str,
        flush_timeout_s: float,
        headers: dict[str, str | bytes | None] | None = None,
    ) -> None:
        self._producer = producer
        self._headers = headers  # e.g. the producing trainer's id (shared_items.py)
        self._topic = topic
        self._flush_timeout_s = flush_timeout_s
        self._lock = threading.Lock()
        self.delivered: dict[int, int] = {}  # partition → next offset after the last delivered
        self.failures = 0
        self.failed_generation = -1  # the newest producer generation a delivery failed on
        self._failed_ids: set[str] = set()
        self._failed_deletes: set[str] = set()
        self.sent = 0

    def _on_delivery(self, generation: int, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            key = (msg.key() or b"").decode("utf-8", "replace")
            with self._lock:
                self.failures += 1
                self.failed_generation = max(self.failed_generation, generation)
                (self._failed_ids if msg.value() is not None else self._failed_deletes).add(key)
            if self.failures <= 3 or self.failures % 1000 == 0:  # a stall fails thousands
                log.error("item-vector delivery failed (%d so far): %s", self.failures, err)
            return
        with self._lock:
            part, offset = msg.partition(), msg.offset()
            if part is not None and offset is not None and offset >= 0:
                self.delivered[part] = max(self.delivered.get(part, 0), offset + 1)

    def publish(
        self,
        item_ids: Sequence[str],
        vectors: np.ndarray,
        model_version: str,
        message_headers: Sequence[dict[str, str | bytes | None]] | None = None,
    ) -> int:
        """Queue one message per item: ``vectors`` float32 (n, serving_dim) in ``item_ids`` order.

        The values are encoded in one pass (``encode_values``); what remains per message is the
        librdkafka ``produce`` call and its delivery report.
        """
        producer, generation = current_of(self._producer)
        produce, topic = producer.produce, self._topic
        on_delivery = functools.partial(self._on_delivery, generation)
        values = encode_values(vectors, model_version)
        per_message: Sequence[dict[str, str | bytes | None] | None] = message_headers or (
            [self._headers] * len(values)
        )
        for item_id, value, headers in zip(item_ids, values, per_message, strict=True):
            while True:
                try:
                    produce(
                        topic, key=item_id, value=value, on_delivery=on_delivery, headers=headers
                    )
                    break
                except BufferError:  # local queue full: serve delivery reports, then retry
                    producer.poll(0.05)
        producer.poll(0)
        self.sent += len(item_ids)
        return len(item_ids)

    def delete(self, item_ids: Sequence[str]) -> int:
        """Queue tombstones (value None: faiss_app drops the item); returns the count."""
        producer, generation = current_of(self._producer)
        on_delivery = functools.partial(self._on_delivery, generation)
        for item_id in item_ids:
            produce_blocking(producer, self._topic, item_id.encode("utf-8"), None, on_delivery)
        producer.poll(0)
        return len(item_ids)

    def flush(self) -> dict[str, int]:
        """Wait for every queued message; returns ``{"<partition>": next_offset}``.

        Raises DeliveryError if something is still undelivered after the timeout or a delivery
        failed (the snapshot must not claim vectors it lacks; :meth:`take_failed` says which).
        """
        flush_or_raise(current_of(self._producer)[0], self._flush_timeout_s)
        if self.failures:
            raise DeliveryError(f"{self.failures} item-vector deliveries failed")
        with self._lock:
            return {str(p): o for p, o in sorted(self.delivered.items())}

    def take_failed(self) -> tuple[set[str], set[str]]:
        """Item ids whose vector, and ids whose tombstone, failed since the last call."""
        with self._lock:
            ids, deletes = self._failed_ids, self._failed_deletes
            self._failed_ids, self._failed_deletes, self.failures = set(), set(), 0
        return ids, deletes


class PendingItemRows:
    """Item rows whose serving vector moved and is not published yet, coalesced over batches.

    Three speeds. Rows the model created in a batch (new items) are due at once: until its
    first vector is out, an item cannot be served at all. Rows engaged with (positives) are due
    every ``positive_interval_s``: each event moves an existing item's vector by one small
    step, and every follower (each faiss_app worker, each recommender worker's copy) applies
    every message, so publishing them per batch cost about one message per event (107k for a
    100k-event drain) and left faiss_app's followers seconds behind at 10k events/s. Rows moved
    only as sampled negatives are due every ``negative_interval_s``, so that a batch's
    ``k × events`` negatives do not cost ``k`` messages per event. Either way a row is published
    once per interval however many batches moved it.
    """

    def __init__(self, positive_interval_s: float, negative_interval_s: float) -> None:
        self.positive_interval_s = positive_interval_s
        self.negative_interval_s = negative_interval_s
        self._new: set[int] = set()
        self._positive: set[int] = set()
        self._negative: set[int] = set()
        self._positive_at = self._negative_at = time.monotonic()

    def add(
        self,
        positive_rows: Iterable[int],
        moved_rows: Iterable[int],
        new_rows: Iterable[int] = (),
    ) -> None:
        self._new.update(new_rows)
        self._positive.update(positive_rows)
        self._negative.update(moved_rows)

    def rows(self) -> set[int]:
        return self._new | self._positive | self._negative

    def __len__(self) -> int:
        return len(self.rows())

    def due(self, now: float | None = None, everything: bool = False) -> list[int]:
        """Rows to publish now (and forget), sorted."""
        now = time.monotonic() if now is None else now
        rows: set[int] = set()
        if everything or now - self._negative_at >= self.negative_interval_s:
            rows, self._negative = self._negative, set()
            self._negative_at = now
        if everything or rows or now - self._positive_at >= self.positive_interval_s:
            rows |= self._positive
            self._positive = set()
            self._positive_at = now
        rows |= self._new
        self._new = set()
        self._positive -= rows
        self._negative -= rows
        return sorted(rows)


class StatePublisher:
    """Redis seen lists and popularity: one pipeline (one round trip) per batch."""

    def __init__(self, r: redis.Redis, settings: RedisSettings) -> None:
        self._redis = r
        self._settings = settings

    def redis(
        self,
        seen: Mapping[str, Sequence[str]],
        popularity: Mapping[str, float],
        ts_ms: int,
        query_vectors: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Seen lists with the users' query vectors beside them, popularity: one pipeline."""
        pipe = self.pipeline()
        self.queue(pipe, seen, popularity, ts_ms, query_vectors)
        pipe.execute()

    def pipeline(self) -> Pipeline:
        """A transaction for one batch's writes (one round trip when executed): its counters
        and the marks of what they counted (``shared.storage.applied_offsets``) land together."""
        return self._redis.pipeline(transaction=True)

    def queue(
        self,
        pipe: Pipeline,
        seen: Mapping[str, Sequence[str]],
        popularity: Mapping[str, float],
        ts_ms: int,
        query_vectors: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Queue what :meth:`redis` writes on ``pipe``."""
        redis_store.queue_seen(pipe, seen, self._settings.seen_list_length, query_vectors)
        redis_store.queue_popularity(pipe, popularity, ts_ms, self._settings.popularity_half_life_s)

    def load_seen(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        """Seen lists of ``user_ids`` in one round trip (newest first)."""
        return redis_store.get_seen_many(self._redis, user_ids)

    def load_popularity(self) -> tuple[list[tuple[str, float]], float | None]:
        """Every ``popular`` entry and the reference time its scores are relative to."""
        ref = self._redis.get(redis_store.POPULAR_REF_KEY)
        entries = cast(  # decode_responses=True: (member, score) pairs of str and float
            "list[tuple[str, float]]",
            self._redis.zrange(redis_store.POPULAR_KEY, 0, -1, withscores=True),
        )
        return [(str(i), float(s)) for i, s in entries], (float(ref) if ref is not None else None)
