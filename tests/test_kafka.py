"""Produce/consume through the real broker: consumer groups, committed offsets, dead letters."""

import base64
import json
import threading
import time

from confluent_kafka import Message, TopicPartition

from shared.config import Settings
from shared.kafka import (
    DeadLetterPublisher,
    ensure_topics,
    flush_or_raise,
    make_consumer,
    make_producer,
    next_offsets,
    poll_batches,
)


def _consume(consumer, wanted: int, timeout_s: float = 30.0) -> list[Message]:
    stop = threading.Event()
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    for batch in poll_batches(consumer, max_messages=wanted, max_wait_s=0.2, stop=stop):
        got.extend(batch)
        if len(got) >= wanted or time.monotonic() > deadline:
            stop.set()
    return got


def test_topics_are_created_idempotently(settings: Settings) -> None:
    ensure_topics(settings.kafka)
    ensure_topics(settings.kafka)  # a second run must not fail on existing topics
    consumer = make_consumer(settings.kafka, "metadata-probe")
    try:
        topics = consumer.list_topics(timeout=5).topics
    finally:
        consumer.close()
    assert len(topics[settings.kafka.interactions_topic].partitions) == (
        settings.kafka.interactions_partitions
    )
    assert settings.kafka.item_vectors_topic in topics


def test_second_group_member_resumes_after_committed_offsets(settings: Settings) -> None:
    ensure_topics(settings.kafka)
    topic = settings.kafka.interactions_topic
    producer = make_producer(settings.kafka)
    for i in range(40):
        producer.produce(topic, key=f"user-{i % 7}", value=json.dumps({"n": i}).encode())
    flush_or_raise(producer, 10)

    first = make_consumer(settings.kafka, settings.kafka.trainer_group_id)
    first.subscribe([topic])
    head = _consume(first, 15)
    offsets = next_offsets(head)
    first.commit(
        offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
    )
    first.close()

    second = make_consumer(settings.kafka, settings.kafka.trainer_group_id)
    second.subscribe([topic])
    rest = _consume(second, 40 - len(head))
    second.close()

    seen = [json.loads(m.value())["n"] for m in head + rest]
    assert sorted(seen) == list(range(40)), "every message exactly once across the two members"
    for msg in rest:
        assert msg.offset() >= offsets.get((msg.topic(), msg.partition()), 0)


def test_same_user_keeps_its_partition_and_order(settings: Settings) -> None:
    ensure_topics(settings.kafka)
    topic = settings.kafka.interactions_topic
    producer = make_producer(settings.kafka)
    for i in range(20):
        producer.produce(topic, key="the-user", value=str(i).encode())
    flush_or_raise(producer, 10)
    consumer = make_consumer(settings.kafka, "order-check")
    consumer.subscribe([topic])
    got = _consume(consumer, 20)
    consumer.close()
    assert len({m.partition() for m in got}) == 1
    assert [int(m.value()) for m in got] == list(range(20))


def test_dead_letter_keeps_raw_bytes_and_reason(settings: Settings) -> None:
    ensure_topics(settings.kafka)
    producer = make_producer(settings.kafka)
    producer.produce(settings.kafka.interactions_topic, key=b"u1", value=b"\xffnot json")
    flush_or_raise(producer, 10)
    consumer = make_consumer(settings.kafka, "dlq-writer")
    consumer.subscribe([settings.kafka.interactions_topic])
    [bad] = _consume(consumer, 1)
    consumer.close()

    dead_letters = DeadLetterPublisher(producer, settings.kafka.dead_letter_topic)
    dead_letters.publish(bad, "not valid JSON")
    flush_or_raise(producer, 10)
    assert dead_letters.failures == 0

    reader = make_consumer(settings.kafka, "dlq-reader")
    reader.subscribe([settings.kafka.dead_letter_topic])
    [letter] = _consume(reader, 1)
    reader.close()
    body = json.loads(letter.value())
    assert letter.key() == b"u1"
    assert body["reason"] == "not valid JSON"
    assert base64.b64decode(body["raw_base64"]) == b"\xffnot json"
    assert (body["topic"], body["partition"], body["offset"]) == (
        bad.topic(), bad.partition(), bad.offset()
    )


def test_consumers_ask_the_broker_not_to_hold_an_empty_fetch_for_long(settings: Settings) -> None:
    """Regression: with librdkafka's default fetch.wait.max.ms (500) the local Tansu held every
    fetch that found nothing new for the whole wait, adding 115-500 ms to each event → trainer,
    item vector → faiss_app and item vector → recommender hop (scripts.bench_trainer: new items
    searchable p50 859 ms at 10k events/s before, reports/bench_trainer.md after)."""
    from shared.kafka import consumer_config

    config = consumer_config(settings.kafka, "g")
    assert config["fetch.wait.max.ms"] == settings.kafka.fetch_wait_max_ms == 50
    tuned = Settings.from_env({"RECSYS_KAFKA_FETCH_WAIT_MAX_MS": "20"})
    assert consumer_config(tuned.kafka, "g")["fetch.wait.max.ms"] == 20
    consumer = make_consumer(settings.kafka, "fetch-wait-check")  # librdkafka accepts it
    consumer.close()
