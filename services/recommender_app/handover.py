"""Events a request stopped waiting for: spooled, and perhaps still on their way to Kafka.

``POST /events`` waits for Kafka's acknowledgement only ``RECSYS_RECOMMENDER_EVENTS_DIRECT_
WAIT_S`` (a fraction of the publish timeout); what is not acknowledged by then is appended to
the spool (fsync'd) and the answer is 202. So a stalled broker holds a request thread for that
short wait, not the publish timeout, and GETs do not queue behind event posts (with one thread
per worker they did, for seconds).

The messages themselves stay in their producer until Kafka acknowledges them or the publish
timeout (librdkafka's ``message.timeout.ms``) fails them. Delivering their spooled copies
meanwhile would send them twice, and might put them on the topic after later events of the
same user. So the spool sender first :meth:`HandOver.settle`\\ s: it polls until every message
handed over is acknowledged or failed; the spooled copies of those Kafka acknowledged are then
skipped (:meth:`HandOver.acknowledged`) and the rest delivered in spool order. A process that
dies in between delivers the spooled copy again at its next start: at least once, as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from confluent_kafka import Producer

from services.recommender_app.spool import Spool, SpooledRecord

# Past the publish timeout, a message's fate is reported at the next poll; this much more is
# waited for that report before its copy counts as not delivered.
SETTLE_GRACE_S = 0.5
_POLL_SLICE_S = 0.01


class Deliveries(Protocol):
    """Delivery reports of one request: which events Kafka acknowledged, and whether every
    event produced has been reported (:class:`services.recommender_app.publisher._Acks`)."""

    acked: list[bool]
    failures: list[str]
    done: threading.Event


@dataclass
class _InFlight:
    producer: Producer
    generation: int
    deliveries: Deliveries
    indexes: list[int]  # the request's events handed over, in order
    copies: list[tuple[Path, int]]  # where each one's spooled copy ends, same order
    deadline: float  # monotonic: by then the producer has reported on every message


class HandOver:
    """The spool entries whose originals may still reach Kafka. Thread-safe."""

    def __init__(self, spool: Spool, timeout_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self._spool = spool
        self._timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight: list[_InFlight] = []
        self._delivered: set[tuple[Path, int]] = set()

    def spool(self, producer: Producer, generation: int, deliveries: Deliveries,
              indexes: Sequence[int], values: Sequence[bytes], waited_s: float) -> int:
        """Append ``values`` (the request's events at ``indexes``, produced ``waited_s`` ago
        and not yet acknowledged) to the spool; returns how many. Raises ``SpoolFull``."""
        with self._lock:  # settle() must see the entry of every record it may read
            copies = self._spool.append_located(list(values))
            self._in_flight.append(_InFlight(
                producer, generation, deliveries, list(indexes), copies,
                self._clock() - waited_s + self._timeout_s + SETTLE_GRACE_S,
            ))  # fmt: skip
        return len(copies)

    @property
    def pending(self) -> bool:
        with self._lock:
            return bool(self._in_flight)

    def settle(self, stop: threading.Event | None = None) -> list[tuple[int, str]]:
        """Wait until every message handed over so far is reported (at most the publish
        timeout); returns ``(producer generation, reason)`` of each failed hand-over, for the
        caller to retire that producer."""
        with self._lock:
            waiting = list(self._in_flight)
        failed: list[tuple[int, str]] = []
        for entry in waiting:
            while not entry.deliveries.done.is_set() and self._clock() < entry.deadline:
                if stop is not None and stop.is_set():
                    return failed
                entry.producer.poll(_POLL_SLICE_S)
            acked = entry.deliveries.acked
            with self._lock:
                self._delivered.update(
                    copy for index, copy in zip(entry.indexes, entry.copies, strict=True)
                    if acked[index]
                )
                self._in_flight.remove(entry)
            if not all(acked[index] for index in entry.indexes):
                failures = entry.deliveries.failures
                failed.append((entry.generation, failures[0] if failures else
                               f"no acknowledgement within {self._timeout_s}s"))
        return failed

    def acknowledged(self, record: SpooledRecord) -> bool:
        """Kafka acknowledged this record's original after its request stopped waiting."""
        with self._lock:
            return (record.log, record.end) in self._delivered

    def forget(self, records: Iterable[SpooledRecord]) -> None:
        """``records`` are marked delivered in the spool: their ends may be reused."""
        with self._lock:
            self._delivered.difference_update((r.log, r.end) for r in records)
