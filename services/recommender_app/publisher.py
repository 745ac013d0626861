"""``POST /events``: validate interactions exactly as the trainer does, publish, confirm.

Validation is :func:`shared.events.from_dict`, the function the trainer applies to every
message, so an event accepted here is one the trainer learns from. Valid events are produced
to the interactions topic keyed by user id (per-user order) with the idempotent producer, and
the answer waits for the broker's acknowledgement of each one: a 202 means the events are in
Kafka, a 503 means they may not be (the producer's message timeout equals the wait, so an
unconfirmed event is not delivered long after the client was told to retry).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from shared.events import Interaction, InvalidEvent, from_dict

# Slice of one producer poll while waiting for acknowledgements; another thread's poll may
# serve this request's callbacks, so a slice must be short.
_POLL_SLICE_S = 0.005


class InvalidEvents(ValueError):
    """No event of the request was valid; ``errors`` lists ``{"index", "reason"}``."""

    def __init__(self, errors: list[dict[str, Any]], batch: bool):
        super().__init__(errors[0]["reason"] if errors else "no events")
        self.errors = errors
        self.batch = batch


class PublishFailed(RuntimeError):
    """Kafka did not acknowledge every event within the publish timeout."""


@dataclass
class Validated:
    events: list[Interaction] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def validate(body: Any, now_ms: int) -> Validated:
    """Validate one event object or a list of them; per-record errors carry the list index."""
    records = body if isinstance(body, list) else [body]
    result = Validated()
    for index, raw in enumerate(records):
        try:
            result.events.append(from_dict(raw, now_ms))
        except InvalidEvent as exc:
            result.errors.append({"index": index, "reason": str(exc)})
    if not result.events:
        if not records:
            result.errors.append({"index": None, "reason": "empty list of events"})
        raise InvalidEvents(result.errors, batch=isinstance(body, list))
    return result


class _Acks:
    """Delivery reports of one request; callbacks may run on any thread that polls."""

    def __init__(self, expected: int):
        self._lock = threading.Lock()
        self._pending = expected
        self.failures: list[str] = []
        self.done = threading.Event()
        if expected == 0:
            self.done.set()

    def on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        with self._lock:
            if err is not None:
                self.failures.append(str(err))
            self._pending -= 1
            if self._pending <= 0:
                self.done.set()


class EventPublisher:
    def __init__(
        self,
        producer: Producer,
        topic: str,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._producer = producer
        self._topic = topic
        self._timeout_s = timeout_s
        self._clock = clock

    def publish(self, events: list[Interaction]) -> None:
        """Produce ``events`` and return once the broker acknowledged all of them.

        Raises :class:`PublishFailed` on a delivery error, a full local queue, or no
        acknowledgement within the publish timeout.
        """
        acks = _Acks(len(events))
        deadline = self._clock() + self._timeout_s
        try:
            for event in events:
                self._producer.produce(
                    self._topic,
                    key=event.user_id.encode("utf-8"),
                    value=event.to_bytes(),
                    on_delivery=acks.on_delivery,
                )
        except (BufferError, KafkaException) as exc:
            raise PublishFailed(f"could not enqueue events: {exc}") from exc
        while not acks.done.is_set():
            left = deadline - self._clock()
            if left <= 0:
                raise PublishFailed(
                    f"Kafka did not acknowledge the events within {self._timeout_s}s"
                )
            self._producer.poll(min(left, _POLL_SLICE_S))
        if acks.failures:
            raise PublishFailed(f"Kafka rejected events: {acks.failures[0]}")
