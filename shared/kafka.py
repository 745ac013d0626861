"""confluent-kafka factories, idempotent topic creation, the dead-letter helper, and the one
consume loop every consumer in the platform uses.
"""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import hashlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from shared.config import KafkaSettings
from shared.recovering_producer import RecoveringProducer, current_of
from shared.spaces import DEFAULT_SPACE, space_topic

log = logging.getLogger(__name__)
# librdkafka's own log lines (connection failures, ...) go through Python logging, so they come
# out in the service's JSON format instead of as raw "%3|...|FAIL|" lines on stderr.
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")


class KafkaUnavailable(RuntimeError):
    """The brokers did not answer in time (wrong address, or Kafka down)."""


class DeliveryError(RuntimeError):
    """A message the broker did not acknowledge within the delivery timeout."""


def producer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    # Idempotence + acks=all: a retried send never duplicates or reorders within a partition.
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "socket.timeout.ms": settings.request_timeout_ms,
        "message.timeout.ms": settings.delivery_timeout_ms,
        "logger": LIBRDKAFKA_LOG,
    }
    config.update(overrides)
    return config


def make_producer(settings: KafkaSettings, **overrides: Any) -> Producer:
    return Producer(producer_config(settings, **overrides))


def consumer_config(settings: KafkaSettings, group_id: str, **overrides: Any) -> dict[str, Any]:
    # Manual commits: offsets are committed only once the state holding the events is durable.
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": settings.heartbeat_interval_ms,
        "socket.timeout.ms": settings.request_timeout_ms,
        "fetch.wait.max.ms": settings.fetch_wait_max_ms,
        "logger": LIBRDKAFKA_LOG,
    }
    config.update(overrides)
    return config


def make_consumer(settings: KafkaSettings, group_id: str, **overrides: Any) -> KafkaConsumer:
    return KafkaConsumer(consumer_config(settings, group_id, **overrides))


def ensure_topics(
    settings: KafkaSettings, timeout_s: float = 10.0, spaces: Sequence[str] = ()
) -> None:
    """Create the platform's topics if they are missing; existing topics are left as they are.

    ``spaces`` names vector spaces besides the default one whose compacted update topics
    (``item-vectors.<space>``, shared/spaces.py) should exist too.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "socket.timeout.ms": settings.request_timeout_ms,
        "logger": LIBRDKAFKA_LOG,
    }
    admin = AdminClient(config)
    wanted = [
        NewTopic(settings.interactions_topic, num_partitions=settings.interactions_partitions),
        NewTopic(settings.dead_letter_topic, num_partitions=settings.interactions_partitions),
        NewTopic(
            settings.item_vectors_topic,
            num_partitions=settings.item_vectors_partitions,
            config={"cleanup.policy": "compact"},
        ),
    ]
    wanted += [
        NewTopic(
            space_topic(settings.item_vectors_topic, space),
            num_partitions=settings.item_vectors_partitions,
            config={"cleanup.policy": "compact"},
        )
        for space in spaces
        if space != DEFAULT_SPACE
    ]
    futures = admin.create_topics(wanted, operation_timeout=timeout_s, request_timeout=timeout_s)
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            log.info("created topic %s", topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        except concurrent.futures.TimeoutError:
            raise KafkaUnavailable(
                f"Kafka did not answer within {timeout_s:g} s while creating topic {topic!r}: "
                "is it running, and is RECSYS_KAFKA_BOOTSTRAP_SERVERS right?"
            ) from None


def wait_for_topics(settings: KafkaSettings, topics: list[str], timeout_s: float = 10.0) -> None:
    """Block until the broker's metadata lists every topic in ``topics``."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    deadline = time.monotonic() + timeout_s
    while True:
        present = set(admin.list_topics(timeout=timeout_s).topics)
        if set(topics) <= present:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics {sorted(set(topics) - present)} did not appear")
        time.sleep(0.1)


def produce_blocking(
    producer: Producer,
    topic: str,
    key: bytes | str,
    value: bytes | None,
    on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
) -> None:
    """Produce one message, serving delivery reports while librdkafka's local queue is full.

    For producers that must not drop a record (the trainer, stream replays). An HTTP handler
    answering within a budget should fail fast on BufferError instead.
    """
    extra: dict[str, Any] = {} if on_delivery is None else {"on_delivery": on_delivery}
    while True:
        try:
            producer.produce(topic, key=key, value=value, **extra)
            return
        except BufferError:
            producer.poll(0.05)


def flush_or_raise(producer: Producer, timeout_s: float) -> None:
    """Flush and raise DeliveryError if anything is still queued after ``timeout_s``."""
    remaining = producer.flush(timeout_s)
    if remaining:
        raise DeliveryError(f"{remaining} messages not delivered within {timeout_s}s")


class DeadLetterPublisher:
    """Sends records that cannot be processed to the dead-letter topic, with the reason.

    The original bytes travel base64-encoded so that nothing about the bad record is lost and
    it can be replayed once the producer is fixed. A value too large for one Kafka message is
    cut to its first :attr:`MAX_RAW_BYTES` (``raw_truncated``); its size, SHA-256 and the
    original topic/partition/offset still identify it.

    Every dead letter is kept until the broker acknowledges it: after a failed delivery, or one
    stuck in a producer that was replaced (``shared.recovering_producer``),
    :meth:`resend_undelivered` sends it again (at least once: a late acknowledgement of the
    first copy leaves a duplicate in the DLQ, never a gap).
    """

    MAX_RAW_BYTES = 256 * 1024
    MAX_KEY_BYTES = 1024

    def __init__(self, producer: Producer | RecoveringProducer, topic: str):
        self._producer = producer
        self._topic = topic
        self._lock = threading.Lock()
        self._unconfirmed: dict[int, tuple[bytes, bytes, int]] = {}  # seq → key, value, gen
        self._seq = itertools.count()
        self.failures = 0
        self.failed_generation = -1  # the newest producer generation a delivery failed on

    def _on_delivery(self, seq: int, err: KafkaError | None, _msg: Message) -> None:
        with self._lock:
            if err is None:
                self._unconfirmed.pop(seq, None)
                return
            self.failures += 1
            entry = self._unconfirmed.get(seq)
            if entry is not None:
                self.failed_generation = max(self.failed_generation, entry[2])
        log.error("dead-letter delivery failed: %s", err)

    def publish(self, msg: Message, reason: str) -> None:
        raw = msg.value() or b""
        key = msg.key()
        body = {
            "reason": reason[:1000],
            "topic": msg.topic(),
            "partition": msg.partition(),
            "offset": msg.offset(),
            "raw_base64": base64.b64encode(raw[: self.MAX_RAW_BYTES]).decode("ascii"),
            "raw_bytes": len(raw),
            "raw_truncated": len(raw) > self.MAX_RAW_BYTES,
            "raw_sha256": hashlib.sha256(raw).hexdigest(),
        }
        self._send(key[: self.MAX_KEY_BYTES] if key else b"", json.dumps(body).encode("utf-8"))

    def _send(self, key: bytes, value: bytes) -> None:
        producer, generation = current_of(self._producer)
        seq = next(self._seq)
        with self._lock:
            self._unconfirmed[seq] = (key, value, generation)
        produce_blocking(
            producer, self._topic, key, value, on_delivery=functools.partial(self._on_delivery, seq)
        )
        producer.poll(0)

    @property
    def undelivered(self) -> int:
        """Dead letters not acknowledged yet (after a flush: failed, or on a replaced producer)."""
        with self._lock:
            return len(self._unconfirmed)

    def resend_undelivered(self) -> int:
        """Send every unacknowledged dead letter again on the current producer."""
        with self._lock:
            pending, self._unconfirmed = list(self._unconfirmed.values()), {}
            self.failures = 0
        for key, value, _ in pending:
            self._send(key, value)
        return len(pending)


def poll_batches(
    consumer: KafkaConsumer,
    max_messages: int,
    max_wait_s: float,
    stop: threading.Event,
    on_error: Callable[[KafkaError], None] | None = None,
) -> Iterator[list[Message]]:
    """Yield micro-batches of messages, bounded by count and by time, until ``stop`` is set.

    A batch is yielded when it holds ``max_messages`` or ``max_wait_s`` has passed since its
    first message; an empty poll window yields nothing. Partition EOFs are ignored; other
    errors go to ``on_error`` (default: log) and never end the loop, because librdkafka
    recovers from transient broker errors by itself.
    """
    batch: list[Message] = []
    started = 0.0
    while not stop.is_set():
        timeout = max_wait_s if not batch else max(0.0, started + max_wait_s - time.monotonic())
        messages = consumer.consume(num_messages=max_messages - len(batch), timeout=timeout)
        for msg in messages:
            err = msg.error()
            if err is None:
                if not batch:
                    started = time.monotonic()
                batch.append(msg)
            elif err.code() != KafkaError._PARTITION_EOF:
                (on_error or _log_error)(err)
        if batch and (len(batch) >= max_messages or time.monotonic() - started >= max_wait_s):
            yield batch
            batch = []
    if batch:
        yield batch


class TickingConsumer:
    """Delegates ``consume`` to the real consumer after calling ``tick`` (heartbeat, idle work).

    :func:`poll_batches` calls ``consume`` in every loop turn, also when the topic is idle, so
    the tick proves the loop is alive and lets idle time be used (a pending snapshot, gauges).
    """

    def __init__(self, consumer: KafkaConsumer, tick: Callable[[], None]) -> None:
        self._consumer = consumer
        self._tick = tick

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        self._tick()
        return self._consumer.consume(num_messages=num_messages, timeout=timeout)


def _log_error(err: KafkaError) -> None:
    log.warning("kafka consumer error: %s", err)


def position(msg: Message) -> tuple[str, int, int]:
    """``(topic, partition, offset)`` of a consumed message.

    confluent-kafka types all three as optional because an error event may lack them; the
    messages :func:`poll_batches` yields carry no error and always have them.
    """
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError(f"message has no position: {topic!r}[{partition!r}]@{offset!r}")
    return topic, partition, offset


def next_offsets(messages: list[Message]) -> dict[tuple[str, int], int]:
    """The offset to commit per (topic, partition): one past the last message seen."""
    offsets: dict[tuple[str, int], int] = {}
    for msg in messages:
        topic, partition, offset = position(msg)
        key = (topic, partition)
        offsets[key] = max(offsets.get(key, 0), offset + 1)
    return offsets


def as_partition_map(offsets: Mapping[tuple[str, int], int], topic: str) -> dict[str, int]:
    """``{"<partition>": offset}`` for one topic, the form stored in snapshot manifests."""
    return {str(p): o for (t, p), o in sorted(offsets.items()) if t == topic}
