"""``POST /events``: validate interactions exactly as the trainer does, publish, confirm.

Validation is :func:`shared.events.from_dict`, the function the trainer applies to every
message, so an event accepted here is one the trainer learns from. Valid events are produced
to the interactions topic keyed by user id (per-user order) with the idempotent producer, and
the answer waits for the broker's acknowledgement of each one. What Kafka does not acknowledge
in time goes to the durable local spool (spool.py), which a background thread delivers later:
a 202 means the events are in Kafka or fsync'd in the spool (``"spooled": n``). With the spool
on, "in time" is the short direct wait (handover.py), otherwise the publish timeout; without a
spool, or with a full one, the answer is a 503.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from services.recommender_app.handover import HandOver
from services.recommender_app.spool import Spool
from shared.events import Interaction, InvalidEvent, from_dict
from shared.recovering_producer import RecoveringProducer

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
        self.acked = [False] * expected
        self.failures: list[str] = []
        self.done = threading.Event()
        if expected == 0:
            self.done.set()

    def on_delivery(self, index: int) -> Callable[[KafkaError | None, Message], None]:
        def report(err: KafkaError | None, _msg: Message) -> None:
            with self._lock:
                if err is None:
                    self.acked[index] = True
                else:
                    self.failures.append(str(err))
                self._pending -= 1
                if self._pending <= 0:
                    self.done.set()

        return report


class EventPublisher:
    """Delivers events to Kafka directly, or to the spool when Kafka does not confirm.

    Without a spool, an unconfirmed publish raises :class:`PublishFailed` (a 503). With one,
    the events Kafka did not acknowledge within the timeout are spooled and the publish
    succeeds; while the spool holds anything, new events are spooled too (without waiting for
    Kafka), so per-user order survives an outage. :class:`SpoolFull` when it has no room.
    """

    def __init__(
        self,
        producers: RecoveringProducer,
        topic: str,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        spool: Spool | None = None,
        on_spooled: Callable[[], None] | None = None,
        handover: HandOver | None = None,
        direct_wait_s: float | None = None,
    ):
        self._producers = producers
        self._topic = topic
        self._timeout_s = timeout_s
        self._clock = clock
        self._spool = spool
        self._on_spooled = on_spooled
        # With a hand-over, a request waits only direct_wait_s; its unacknowledged events are
        # spooled while their messages are still in flight (handover.py).
        self._handover = handover if spool is not None else None
        self._wait_s = (
            min(timeout_s, direct_wait_s)
            if self._handover is not None and direct_wait_s is not None
            else timeout_s
        )

    def publish(self, events: list[Interaction]) -> int:
        """Deliver ``events``; returns how many went to the spool instead of Kafka.

        Raises :class:`PublishFailed` on a delivery error, a full local queue, or no
        acknowledgement within the publish timeout (without a spool), and
        :class:`~services.recommender_app.spool.SpoolFull`.
        """
        spool = self._spool
        if spool is not None and spool.pending():
            return self._to_spool(spool, events)
        try:
            self._deliver(events)
            return 0
        except _StillInFlight as waiting:
            return self._hand_over(events, waiting)
        except _Unconfirmed as exc:
            if spool is None:
                raise PublishFailed(str(exc)) from None
            return self._to_spool(spool, exc.events)

    def _to_spool(self, spool: Spool, events: list[Interaction]) -> int:
        spooled = spool.append([event.to_bytes() for event in events])
        self._spooled()
        return spooled

    def _spooled(self) -> None:
        if self._on_spooled is not None:
            self._on_spooled()

    def _hand_over(self, events: list[Interaction], waiting: _StillInFlight) -> int:
        assert self._handover is not None  # only raised with one
        acks = waiting.acks
        indexes = [index for index, ok in enumerate(acks.acked) if not ok]
        spooled = self._handover.spool(
            waiting.producer, waiting.generation, acks, indexes,
            [events[index].to_bytes() for index in indexes], self._clock() - waiting.produced_at,
        )  # fmt: skip
        self._spooled()
        return spooled

    def _deliver(self, events: list[Interaction]) -> None:
        producer, generation = self._producers.current()
        acks = _Acks(len(events))
        produced_at = self._clock()
        deadline = produced_at + self._wait_s
        problem = ""
        try:
            for index, event in enumerate(events):
                producer.produce(
                    self._topic,
                    key=event.user_id.encode("utf-8"),
                    value=event.to_bytes(),
                    on_delivery=acks.on_delivery(index),
                )
            while not acks.done.is_set():
                left = deadline - self._clock()
                if left <= 0:
                    if self._handover is not None:
                        raise _StillInFlight(producer, generation, acks, produced_at)
                    problem = f"Kafka did not acknowledge the events within {self._timeout_s}s"
                    break
                producer.poll(min(left, _POLL_SLICE_S))
        except (BufferError, KafkaException) as exc:
            problem = f"could not enqueue events: {exc}"
        if not problem and acks.failures:
            problem = f"Kafka rejected events: {acks.failures[0]}"
        if problem:
            self._producers.failed(generation, problem)
            unconfirmed = [e for e, ok in zip(events, acks.acked, strict=True) if not ok]
            raise _Unconfirmed(problem, unconfirmed)


class _Unconfirmed(Exception):
    """Events Kafka did not acknowledge (the others were)."""

    def __init__(self, message: str, events: list[Interaction]):
        super().__init__(message)
        self.events = events


class _StillInFlight(Exception):
    """The request stopped waiting; the events' messages are still in ``producer``."""

    def __init__(self, producer: Producer, generation: int, acks: _Acks, produced_at: float):
        super().__init__("Kafka has not acknowledged the events yet")
        self.producer = producer
        self.generation = generation
        self.acks = acks
        self.produced_at = produced_at
