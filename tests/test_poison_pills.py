"""Poison pills on the real ``interactions`` topic: dead-lettered, never fatal.

Regression for issue 17: a record such as ``{"event": {}}`` (TypeError), an integer of 5,000
digits (ValueError) or an array nested 5,000 deep (RecursionError) used to kill the trainer
at parse time, before it could dead-letter the record, and every restart died on it again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from scripts.poison_pills import TEN_MB, pills
from services.incremental_trainer.service import Trainer
from shared.config import Settings
from shared.events import Interaction
from shared.kafka import (
    DeadLetterPublisher,
    ensure_topics,
    flush_or_raise,
    make_producer,
    wait_for_topics,
)
from shared.metrics import Metrics
from tests.conftest import replace
from tests.polling import wait_for


def read_dead_letters(settings: Settings, expected: int, timeout_s: float = 20.0) -> list[dict]:
    kafka = settings.kafka
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": "dlq-probe",
            "enable.auto.commit": False,
        }
    )
    consumer.assign(
        [
            TopicPartition(kafka.dead_letter_topic, p, OFFSET_BEGINNING)
            for p in range(kafka.interactions_partitions)
        ]
    )
    letters: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(letters) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                letters.append(json.loads(msg.value()))
    finally:
        consumer.close()
    return letters


@pytest.fixture
def pill_settings(settings: Settings) -> Settings:
    s = replace(settings, "model", initial_capacity=10, embedding_dim=8)
    # An interval far beyond the test: the only snapshots are the initial and the "first" one.
    s = replace(s, "trainer", batch_max_events=16, batch_max_ms=50, snapshot_interval_s=3600.0)
    ensure_topics(s.kafka)
    wait_for_topics(s.kafka, [s.kafka.interactions_topic, s.kafka.dead_letter_topic])
    return s


def test_every_known_poison_pill_is_dead_lettered_and_valid_events_are_learned(
    pill_settings: Settings,
) -> None:
    s = pill_settings
    now = int(time.time() * 1000)
    bad = pills(now)
    # Valid events before, between and after the pills, each user on the pills' key too.
    valid = [Interaction(f"v{n}", f"i{n % 7}", "click", now + n) for n in range(3 * len(bad))]
    producer = make_producer(s.kafka, **{"message.max.bytes": TEN_MB + (1 << 20)})
    feed = iter(valid)
    for value in bad.values():
        for event in (next(feed), next(feed)):
            producer.produce(s.kafka.interactions_topic, key=b"pill", value=event.to_bytes())
        producer.produce(s.kafka.interactions_topic, key=b"pill", value=value)
        producer.poll(0)
    for event in feed:
        producer.produce(
            s.kafka.interactions_topic, key=event.user_id.encode(), value=event.to_bytes()
        )
    flush_or_raise(producer, 30.0)

    trainer = Trainer(s, metrics=Metrics(s.statsd))
    thread = threading.Thread(target=trainer.run, daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: trainer.counters["events"] + trainer.counters["dlq"] >= len(valid) + len(bad),
            timeout_s=60,
            what="every record processed",
        )
        assert thread.is_alive()
        # Progress is durable after the first batch of a start, not only after the interval.
        assert trainer.counters["snapshots"] == 2
        assert trainer.last_snapshot["reason"] == "first"
        assert trainer.counters["dlq"] == len(bad)
        assert trainer.counters["events"] == len(valid)
        assert {e.user_id for e in valid} <= set(trainer.learner.state.user_map.ids)
        assert "pill-user" not in set(trainer.learner.state.user_map.ids)
        assert "u1\n" not in set(trainer.learner.state.user_map.ids)
    finally:
        trainer.stop.set()
        thread.join(30)
    assert not thread.is_alive()

    letters = read_dead_letters(s, len(bad))
    assert len(letters) == len(bad)
    assert all(letter["reason"] for letter in letters)
    by_hash = {letter["raw_sha256"]: letter for letter in letters}
    for kind, value in bad.items():
        letter = by_hash[hashlib.sha256(value).hexdigest()]  # each pill, identified
        assert letter["raw_bytes"] == len(value), kind
        kept = base64.b64decode(letter["raw_base64"])
        if letter["raw_truncated"]:
            assert len(value) > DeadLetterPublisher.MAX_RAW_BYTES and value.startswith(kept)
        else:
            assert kept == value, kind
