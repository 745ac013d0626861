"""Item rows shared by several trainer processes through the ``item-vectors`` topic.

Each trainer learns the users of its own partitions, but every process moves item rows. Each
publishes the item vectors it changed (as a single trainer does: the absolute vector, which is
what faiss_app indexes) with two headers: ``producer`` (its member id) and ``delta``, the change
of that row since this producer last published or applied it. Every process tails
``item-vectors`` with its own consumer (no group: every partition) and **adds** the other
producers' deltas to its rows, so every member's steps on an item compose (the sum of steps,
as within one batch), whichever order they arrive in and whatever it changed meanwhile. An item
not known locally yet gets the sender's absolute vector.

The snapshot of a sharing trainer records, as its ``item-vectors`` offsets, the position this
tail had reached after the pre-snapshot flush: every delta before it is folded into the
snapshot's rows (faiss_app applies absolute vectors: re-applying a newer one is harmless).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from shared.config import KafkaSettings
from shared.item_vectors import VectorDecodeError, decode
from shared.kafka import make_consumer

log = logging.getLogger(__name__)

PRODUCER_HEADER = "producer"
DELTA_HEADER = "delta"  # float32 LE: the change since this producer's previous message of the item
MAX_MESSAGES = 5000


class SharedItems:
    """Tails ``item-vectors`` and applies other producers' vectors to the local item rows.

    Parameters
    ----------
    settings : KafkaSettings
    producer_id : str
        This process's id in the ``producer`` header (its own messages are skipped).
    offsets : mapping partition → next offset
        Where to start (the snapshot's ``item-vectors`` offsets; absent = beginning).
    apply : callable
        ``apply(item_ids, deltas, vectors)``: for each item the sum of the others' deltas since
        the last call and their newest absolute vector (for items not known here yet).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        producer_id: str,
        offsets: dict[int, int],
        apply: Callable[[list[str], np.ndarray, np.ndarray], int],
    ) -> None:
        self.producer_id = producer_id.encode("utf-8")
        self._apply = apply
        self._consumer: Consumer = make_consumer(
            settings, f"{settings.trainer_group_id}.items.{producer_id}"
        )
        topic = settings.item_vectors_topic
        self._topic = topic
        self.positions = {p: int(o) for p, o in offsets.items()}
        parts = [
            TopicPartition(topic, p, self.positions.get(p, OFFSET_BEGINNING))
            for p in range(settings.item_vectors_partitions)
        ]
        self._consumer.assign(parts)
        self.applied = 0
        self.busy_s = 0.0

    def poll(self, timeout_s: float = 0.0) -> int:
        """Apply what arrived since the last call; returns how many vectors were applied."""
        started = time.perf_counter()
        messages = self._consumer.consume(num_messages=MAX_MESSAGES, timeout=timeout_s)
        deltas: dict[str, np.ndarray] = {}
        latest: dict[str, np.ndarray] = {}
        for msg in messages:
            if msg.error():
                continue
            part, offset = msg.partition(), msg.offset()
            if part is not None and offset is not None:
                self.positions[part] = max(self.positions.get(part, 0), offset + 1)
            headers = dict(msg.headers() or ())
            if headers.get(PRODUCER_HEADER) == self.producer_id:
                continue
            try:
                update = decode(msg.key(), msg.value())
            except VectorDecodeError as exc:
                log.warning("skipping an item-vectors message: %s", exc)
                continue
            raw_delta = headers.get(DELTA_HEADER)
            if update.vector is None or not isinstance(raw_delta, bytes):
                continue
            delta = np.frombuffer(raw_delta, dtype="<f4").astype(np.float32)
            if delta.shape != update.vector.shape:
                continue
            latest[update.item_id] = update.vector
            before = deltas.get(update.item_id)
            deltas[update.item_id] = delta if before is None else before + delta
        applied = 0
        if deltas:
            ids = list(deltas)
            applied = self._apply(
                ids, np.stack([deltas[i] for i in ids]), np.stack([latest[i] for i in ids])
            )
            self.applied += applied
        self.busy_s += time.perf_counter() - started
        return applied

    def catch_up(self, high: dict[int, int], timeout_s: float) -> None:
        """Poll until every partition's position reaches ``high`` (e.g. after a flush)."""
        deadline = time.monotonic() + timeout_s
        while any(self.positions.get(p, 0) < o for p, o in high.items()):
            if time.monotonic() > deadline:
                log.warning("item-vectors tail did not reach %s in %.0f s", high, timeout_s)
                return
            self.poll(0.1)

    def close(self) -> None:
        self._consumer.close()
