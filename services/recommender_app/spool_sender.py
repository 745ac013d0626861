"""The background thread that delivers the spool to Kafka, in order, once Kafka answers.

A batch is produced and waited for; the longest acknowledged prefix is marked delivered, so
the order of the spool is the order on the topic (per user, since the key is the user id).
A failed or unacknowledged batch retires the producer (see producer.py) and is retried after
a short pause. Spooled copies of events whose originals may still be in flight wait for those
to settle, and are skipped when Kafka acknowledged the original (handover.py). Logs of workers that died meanwhile are adopted every ``ADOPT_EVERY_S``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Message

from services.recommender_app.handover import HandOver
from services.recommender_app.spool import Spool, SpooledRecord
from shared.metrics import Metrics
from shared.recovering_producer import RecoveringProducer

log = logging.getLogger(__name__)

BATCH = 500
RETRY_PAUSE_S = 0.5
IDLE_WAIT_S = 0.2
ADOPT_EVERY_S = 5.0
_POLL_SLICE_S = 0.01


def key_of(value: bytes) -> bytes | None:
    """The partition key (user id) of a spooled event, which the API itself serialized."""
    try:
        user_id = json.loads(value).get("user_id")
    except (ValueError, AttributeError):
        return None
    return user_id.encode("utf-8") if isinstance(user_id, str) else None


class SpoolSender:
    def __init__(
        self,
        spool: Spool,
        producers: RecoveringProducer,
        topic: str,
        timeout_s: float,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        handover: HandOver | None = None,
    ):
        self._spool = spool
        self._handover = handover
        self._producers = producers
        self._topic = topic
        self._timeout_s = timeout_s
        self._metrics = metrics
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spool-sender", daemon=True)
        self.delivered = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)

    def wake(self) -> None:
        """Something was spooled: start delivering without waiting for the idle tick."""
        self._wake.set()

    def _run(self) -> None:
        last_adopt = self._clock()
        while not self._stop.is_set():
            try:
                if self._clock() - last_adopt >= ADOPT_EVERY_S:
                    last_adopt = self._clock()
                    self._spool.adopt()
                self._metrics.gauge("api.spool.depth", self._spool.depth)
                records = self._spool.read_batch(BATCH)
                if not records:
                    self._wake.wait(IDLE_WAIT_S)
                    self._wake.clear()
                    continue
                if self._handover is not None:
                    # Originals of spooled copies may still be in flight: their fate first.
                    for generation, reason in self._handover.settle(self._stop):
                        self._producers.failed(generation, reason)
                acked = self.send(records)
                if acked:
                    self._spool.delivered(records[acked - 1], acked)
                    if self._handover is not None:
                        self._handover.forget(records[:acked])
                    self.delivered += acked
                    self._metrics.incr("api.spool.delivered", acked)
                if acked < len(records):
                    self._stop.wait(RETRY_PAUSE_S)
            except Exception:  # noqa: BLE001 - the sender must outlive any one failure
                log.exception("spool sender round failed; retrying")
                self._stop.wait(RETRY_PAUSE_S)

    def send(self, records: list[SpooledRecord]) -> int:
        """Produce ``records`` and wait; returns the length of the acknowledged prefix."""
        producer, generation = self._producers.current()
        status: list[KafkaError | None | bool] = [False] * len(records)  # False = no report yet

        def report(index: int) -> Callable[[KafkaError | None, Message], None]:
            def on_delivery(err: KafkaError | None, _msg: Message) -> None:
                status[index] = err

            return on_delivery

        sent = 0  # records[:sent] are produced, or skipped as already in Kafka
        try:
            for index, record in enumerate(records):
                if self._handover is not None and self._handover.acknowledged(record):
                    status[index] = None  # its original reached Kafka after all
                else:
                    producer.produce(
                        self._topic, key=key_of(record.value), value=record.value,
                        on_delivery=report(index),
                    )  # fmt: skip
                sent = index + 1
        except (BufferError, KafkaException) as exc:
            log.info("spool sender could not enqueue: %s", exc)
        deadline = self._clock() + self._timeout_s
        try:
            while any(s is False for s in status[:sent]) and self._clock() < deadline:
                producer.poll(_POLL_SLICE_S)
        except KafkaException as exc:
            log.info("spool sender poll failed: %s", exc)
        acked = 0
        while acked < sent and status[acked] is None:
            acked += 1
        if acked < len(records):
            # isinstance, never ==: KafkaError compared with None/False raises inside C and
            # leaves the error set (SystemError later, with a lock held).
            errors = [s for s in status if isinstance(s, KafkaError)]
            self._producers.failed(generation, errors[0] if errors else "no acknowledgement")
        return acked
