"""Publishing one micro-batch's effects: MongoDB query vectors, item vectors on Kafka, Redis.

Item vectors go to the compacted ``item-vectors`` topic keyed by item id. Delivery reports
are tracked per partition, so a snapshot can record the next offset *after* the last vector
it already contains (docs/CONTRACTS.md: faiss_app loads the snapshot, then tails from there).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

import numpy as np
import redis
from confluent_kafka import KafkaError, Message, Producer
from pymongo.database import Database

from shared.config import RedisSettings
from shared.item_vectors import encode_value
from shared.kafka import flush_or_raise, produce_blocking
from shared.storage import mongo, redis_store

log = logging.getLogger(__name__)


class VectorPublisher:
    """Produces item vectors and remembers, per partition, the next offset after delivery."""

    def __init__(self, producer: Producer, topic: str, flush_timeout_s: float) -> None:
        self._producer = producer
        self._topic = topic
        self._flush_timeout_s = flush_timeout_s
        self._lock = threading.Lock()
        self.delivered: dict[int, int] = {}  # partition → next offset after the last delivered
        self.failures = 0
        self.sent = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failures += 1
            log.error("item-vector delivery failed: %s", err)
            return
        with self._lock:
            part, offset = msg.partition(), msg.offset()
            if part is not None and offset is not None and offset >= 0:
                self.delivered[part] = max(self.delivered.get(part, 0), offset + 1)

    def publish(self, items: Iterable[tuple[str, np.ndarray]], model_version: str) -> int:
        """Queue ``(item_id, serving vector float32 (serving_dim,))`` pairs; returns the count."""
        count = 0
        for item_id, vector in items:
            produce_blocking(
                self._producer,
                self._topic,
                item_id.encode("utf-8"),
                encode_value(vector, model_version),
                self._on_delivery,
            )
            count += 1
        self._producer.poll(0)
        self.sent += count
        return count

    def delete(self, item_ids: Sequence[str]) -> int:
        """Queue tombstones (value None: faiss_app drops the item); returns the count."""
        for item_id in item_ids:
            produce_blocking(
                self._producer, self._topic, item_id.encode("utf-8"), None, self._on_delivery
            )
        self._producer.poll(0)
        return len(item_ids)

    def flush(self) -> dict[str, int]:
        """Wait for every queued message; returns ``{"<partition>": next_offset}``.

        Raises DeliveryError if something is still undelivered after the timeout, or
        RuntimeError if a delivery failed (the snapshot must not claim vectors it lacks).
        """
        flush_or_raise(self._producer, self._flush_timeout_s)
        if self.failures:
            failed, self.failures = self.failures, 0
            raise RuntimeError(f"{failed} item-vector deliveries failed")
        with self._lock:
            return {str(p): o for p, o in sorted(self.delivered.items())}


class StatePublisher:
    """MongoDB user vectors and Redis seen lists and popularity, written synchronously."""

    def __init__(self, db: Database, r: redis.Redis, settings: RedisSettings) -> None:
        self._db = db
        self._redis = r
        self._settings = settings

    def users(self, rows: Iterable[tuple[str, np.ndarray, int]], model_version: str) -> int:
        return mongo.upsert_user_vectors(self._db, rows, model_version)

    def redis(
        self,
        seen: Mapping[str, Sequence[str]],
        popularity: Mapping[str, float],
        ts_ms: int,
        query_vectors: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Seen lists with the users' query vectors beside them (one pipeline), popularity."""
        redis_store.push_seen(
            self._redis, seen, self._settings.seen_list_length, query_vectors
        )
        redis_store.bump_popularity(
            self._redis, popularity, ts_ms, self._settings.popularity_half_life_s
        )

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
