"""A Kafka producer replaced after a failed delivery (the recommender's and the trainer's).

Why a replacement: with ``enable.idempotence`` librdkafka answers a timed-out message by
bumping the producer epoch, and after a broker stall (SIGSTOP/SIGCONT) the broker fenced the
bumped producer: every later delivery failed with ``PRODUCER_FENCED`` (after a restart:
``UNKNOWN_PRODUCER_ID``, then ``Local: Fatal error``) until the process was restarted. A new
producer gets a new producer id and delivers at once. So any failed delivery retires the
producer that failed (``generation`` makes concurrent reports of one failure replace it once).
The old one is closed off the request thread, and only after ``retire_after_s``: other threads
may still be polling it for their own (bounded) waits, and closing a producer under a thread
that polls it raised inside librdkafka callbacks and left a lock held. Closing purges what it
still holds: those messages get failed delivery reports, so their senders can send them again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Producer

log = logging.getLogger(__name__)


class RecoveringProducer:
    """Holds the worker's current producer; :meth:`failed` swaps in a fresh one.

    Parameters
    ----------
    factory : callable
        Builds a new, configured :class:`confluent_kafka.Producer`.
    """

    def __init__(self, factory: Callable[[], Producer], retire_after_s: float = 10.0):
        self._factory = factory
        self._retire_after_s = retire_after_s
        self._lock = threading.Lock()
        self._producer = factory()
        self.generation = 0
        self.replacements = 0

    def current(self) -> tuple[Producer, int]:
        """The producer to use now and its generation (pass it back to :meth:`failed`)."""
        with self._lock:
            return self._producer, self.generation

    def failed(self, generation: int, reason: KafkaError | str | Exception) -> None:
        """Retire the producer of ``generation`` after a failed delivery (once per generation)."""
        with self._lock:
            if generation != self.generation:
                return  # already replaced
            old = self._producer
            self._producer = self._factory()
            self.generation += 1
            self.replacements += 1
        log.warning("Kafka producer replaced after a failed delivery: %s", reason)
        threading.Thread(
            target=_retire, args=(old, self._retire_after_s), name="producer-retire", daemon=True
        ).start()

    # Callers that need no failure accounting (readiness, one-off sends) use the current one.
    def list_topics(self, *args: Any, **kwargs: Any) -> Any:
        return self.current()[0].list_topics(*args, **kwargs)

    def produce(self, *args: Any, **kwargs: Any) -> None:
        self.current()[0].produce(*args, **kwargs)

    def flush(self, *args: Any, **kwargs: Any) -> int:
        return int(self.current()[0].flush(*args, **kwargs))

    def close(self) -> None:
        producer, _ = self.current()
        _retire(producer)


def _retire(producer: Producer, after_s: float = 0.0) -> None:
    """After ``after_s``, drop whatever the producer still holds and close it."""
    time.sleep(after_s)
    try:
        producer.purge()
        producer.flush(0)
        producer.close()
    except Exception as exc:  # noqa: BLE001 - a producer being thrown away may be broken
        log.info("closing a retired producer: %s", exc)


def current_of(producer: Producer | RecoveringProducer) -> tuple[Producer, int]:
    """The producer to use now and its generation, for a plain producer (generation 0) too."""
    if isinstance(producer, RecoveringProducer):
        return producer.current()
    return producer, 0


def replace_failed(producer: Producer | RecoveringProducer, generation: int, reason: str) -> None:
    """:meth:`RecoveringProducer.failed` for a recovering producer; nothing for a plain one."""
    if isinstance(producer, RecoveringProducer):
        producer.failed(generation, reason)
