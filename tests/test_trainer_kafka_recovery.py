"""The trainer's own producer (item vectors, dead letters) recovers from a broker stall.

Against a Tansu broker owned by the test (tests/private_kafka.py), stopped with SIGSTOP while
the trainer publishes a batch's item vectors and dead letters, then resumed. Before issue 17
the timed-out deliveries made the next snapshot raise and the trainer exit, and a producer the
broker had fenced stayed fenced; now the producer is replaced, what it lost is sent again and
the snapshot goes through in the same process.
"""

from __future__ import annotations

import hashlib
import json
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from scripts.private_kafka import PrivateKafka
from services.incremental_trainer.service import Trainer
from shared.config import Settings
from shared.events import Interaction
from shared.kafka import ensure_topics, flush_or_raise, make_producer, wait_for_topics
from shared.metrics import Metrics
from shared.model.checkpoint import load_snapshot
from tests.conftest import replace

PILLS = [b'{"user_id": "p", "item_id": "i", "event": {}, "ts": 1}', b"\xff not utf-8"]


def _read_all(settings: Settings, topic: str, partitions: int) -> list[Message]:
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "p"})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    messages: list[Message] = []
    try:
        while batch := consumer.consume(500, timeout=2.0):
            messages += [m for m in batch if m.error() is None]
    finally:
        consumer.close()
    return messages


def test_trainer_replaces_its_fenced_producer_and_resends_after_a_broker_stall(
    settings: Settings, broker: PrivateKafka
) -> None:
    s = replace(
        settings,
        "kafka",
        bootstrap_servers=broker.bootstrap,
        request_timeout_ms=1000,
        delivery_timeout_ms=2000,
    )
    s = replace(s, "model", initial_capacity=10, embedding_dim=8)
    ensure_topics(s.kafka)
    wait_for_topics(s.kafka, [s.kafka.interactions_topic, s.kafka.item_vectors_topic])
    now = int(time.time() * 1000)
    events = [Interaction(f"u{n % 4}", f"i{n}", "click", now + n) for n in range(12)]
    producer = make_producer(s.kafka)
    for event in events:
        producer.produce(s.kafka.interactions_topic, key=event.user_id, value=event.to_bytes())
    for pill in PILLS:
        producer.produce(s.kafka.interactions_topic, key=b"bad", value=pill)
    flush_or_raise(producer, 10.0)

    trainer = Trainer(s, metrics=Metrics(s.statsd))
    trainer._assign_every_partition()
    batch: list[Message] = []
    deadline = time.monotonic() + 20
    while len(batch) < len(events) + len(PILLS) and time.monotonic() < deadline:
        batch += [m for m in trainer.consumer.consume(100, timeout=0.5) if m.error() is None]
    assert len(batch) == len(events) + len(PILLS)

    broker.pause()  # the batch's vectors and dead letters go out while the broker is stopped
    try:
        trainer.process(batch)
        trainer.publish_items(everything=True)
        time.sleep(3.5)  # past delivery_timeout_ms: every one of them times out
        trainer.producer.current()[0].poll(0.5)
    finally:
        broker.resume()
    assert trainer.vectors.failures > 0 and trainer.dead_letters.failures > 0

    version = trainer.snapshot("interval")  # raised before: "item-vector deliveries failed"
    assert trainer.producer.replacements >= 1
    assert load_snapshot(s.model.models_dir).version == version

    dead = _read_all(s, s.kafka.dead_letter_topic, s.kafka.interactions_partitions)
    hashes = {json.loads(m.value())["raw_sha256"] for m in dead}
    assert {hashlib.sha256(p).hexdigest() for p in PILLS} <= hashes
    vectors = _read_all(s, s.kafka.item_vectors_topic, s.kafka.item_vectors_partitions)
    assert {m.key().decode() for m in vectors if m.value()} >= {e.item_id for e in events}
    trainer.consumer.close()
    trainer.users.close(timeout_s=5)
