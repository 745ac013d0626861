"""incremental_trainer against the real local Kafka, MongoDB and Redis, with a real faiss_app.

- in process (a Trainer thread, faiss_app through falcon's test client): growth, publishing to
  MongoDB / Redis / item-vectors → faiss_app search, a user's recommendations moving toward
  what they engage with, dead letters, and a clean stop that snapshots and commits;
- as a process: ``kill -9`` mid-stream, restart, nothing lost; SIGTERM flushes and commits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from services.faiss_app.app import Deps, create_app
from services.incremental_trainer.service import Trainer
from shared import snapshots
from shared.config import KafkaSettings, Settings
from shared.events import Interaction
from shared.kafka import ensure_topics, flush_or_raise, make_producer, wait_for_topics
from shared.metrics import Metrics
from shared.model.checkpoint import load_snapshot
from shared.model.gmf import grown_capacity
from shared.storage import mongo, ranking_store, redis_store
from tests.conftest import replace
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parents[1]
N_USERS, N_ITEMS, GROUPS = 30, 24, 3


def produce(kafka: KafkaSettings, events: list[Interaction], raw: list[bytes] = ()) -> None:
    producer = make_producer(kafka)
    for event in events:
        producer.produce(
            kafka.interactions_topic, key=event.user_id.encode(), value=event.to_bytes()
        )
    for value in raw:
        producer.produce(kafka.interactions_topic, key=b"bad", value=value)
    flush_or_raise(producer, 10.0)


def end_offsets(kafka: KafkaSettings, topic: str, partitions: int) -> dict[int, int]:
    """Next offset per partition, by reading the topic (Tansu's ListOffsets answers are off)."""
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "probe"})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    ends = dict.fromkeys(range(partitions), 0)
    try:
        while True:
            batch = consumer.consume(500, timeout=1.0)
            if not batch:
                return ends
            for msg in batch:
                if msg.error() is None:
                    ends[msg.partition()] = max(ends[msg.partition()], msg.offset() + 1)
    finally:
        consumer.close()


def committed(kafka: KafkaSettings) -> dict[int, int]:
    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap_servers, "group.id": kafka.trainer_group_id}
    )
    try:
        parts = [
            TopicPartition(kafka.interactions_topic, p)
            for p in range(kafka.interactions_partitions)
        ]
        return {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
    finally:
        consumer.close()


def grouped_events(now_ms: int) -> list[Interaction]:
    """Each user engages with the items of its taste group (user j and item i share j % 3)."""
    rng = np.random.default_rng(5)
    events = []
    for n in range(240):
        user = n % N_USERS
        item = int(rng.integers(0, N_ITEMS // GROUPS)) * GROUPS + user % GROUPS
        events.append(Interaction(f"u{user}", f"i{item}", "click", now_ms + n))
    return events


@pytest.fixture
def trainer_settings(settings: Settings) -> Settings:
    s = replace(settings, "model", initial_capacity=10, embedding_dim=8)
    s = replace(
        s,
        "trainer",
        batch_max_events=64,
        batch_max_ms=50,
        snapshot_interval_s=1.0,
        eval_sample_rate=1.0,
    )
    ensure_topics(s.kafka)
    wait_for_topics(s.kafka, [s.kafka.interactions_topic, s.kafka.item_vectors_topic])
    return s


@pytest.fixture
def running(trainer_settings: Settings) -> Iterator[tuple[Trainer, threading.Thread]]:
    trainer = Trainer(trainer_settings, metrics=Metrics(trainer_settings.statsd))
    thread = threading.Thread(target=trainer.run, daemon=True)
    thread.start()
    yield trainer, thread
    trainer.stop.set()
    thread.join(30)


def top_ids(client: falcon.testing.TestClient, db, user_id: str, k: int) -> list[str]:
    query = mongo.get_user(db, user_id)["query_vector"]
    answer = client.simulate_post("/v1/search", json={"queries": [query], "k": k})
    assert answer.status_code == 200, answer.text
    return answer.json["results"][0]["ids"]


def test_learns_grows_publishes_and_stops_cleanly(
    trainer_settings: Settings, running: tuple[Trainer, threading.Thread]
) -> None:
    s, (trainer, thread) = trainer_settings, running
    kafka = s.kafka
    now = int(time.time() * 1000)
    produce(kafka, grouped_events(now), raw=[b"{not json", b'{"user_id": "u1"}', b""])
    wait_for(
        lambda: trainer.counters["events"] == 240 and trainer.counters["dlq"] == 3, timeout_s=30
    )

    # Growth by 10% steps from 10 rows, logged as metrics.
    model = trainer.learner.state.model
    assert model.item_capacity == grown_capacity(10, N_ITEMS, 0.10)
    assert model.user_capacity == grown_capacity(10, N_USERS, 0.10)
    assert trainer.metrics.sent["trainer.growth.items"] >= 1
    assert trainer.metrics.sent["trainer.capacity.users"] == model.user_capacity

    # MongoDB (written behind, coalesced: flush() waits for it): every user with a
    # serving-dim query vector and its event count.
    assert trainer.users.flush(10)
    db = mongo.connect(s.mongo)
    docs = list(db[mongo.USERS].find())
    assert len(docs) == N_USERS
    assert all(len(d["query_vector"]) == 9 for d in docs)
    assert sum(d["n_events"] for d in docs) == 240
    # Redis: seen lists and popularity.
    r = redis_store.connect(s.redis)
    assert set(redis_store.get_seen(r, "u0")) <= {f"i{j}" for j in range(0, N_ITEMS, GROUPS)}
    assert r.zcard(redis_store.POPULAR_KEY) == N_ITEMS
    # The recommender's copy of each query vector, written with the seen list, equals MongoDB's.
    for user in ("u0", f"u{N_USERS - 1}"):
        seen, raw = redis_store.get_user_state(r, user)
        assert seen and raw is not None
        stored = mongo.get_user(db, user)["query_vector"]
        np.testing.assert_allclose(redis_store.decode_query_vector(raw), stored, rtol=1e-6)

    # faiss_app (loads the trainer's snapshot, tails item-vectors) finds every item.
    app = create_app(s, Deps(metrics=Metrics(s.statsd)))
    app.runtime.start()
    try:
        client = falcon.testing.TestClient(app)
        wait_for(lambda: len(top_ids(client, db, "u0", 50)) == N_ITEMS, timeout_s=20)

        def serves_every_published_vector() -> bool:
            # Engaged items' vectors go out once a second (new items' at once): "before" must
            # be the learned model's answer, not one from the items' first vectors.
            applied = client.simulate_get("/v1/stats").json["updates"]["offsets"]
            return len(trainer.pending_items) == 0 and all(
                int(applied.get(str(p), 0)) >= o for p, o in trainer.vectors.delivered.items()
            )

        wait_for(serves_every_published_vector, timeout_s=20)
        targets = [f"i{j}" for j in range(1, N_ITEMS, GROUPS)][:4]  # another taste group
        before = top_ids(client, db, "u0", 8)
        # u0 now buys items of another group: its recommendations move toward them.
        later = [
            Interaction("u0", t, "purchase", now + 1000 + n) for n in range(10) for t in targets
        ]
        produce(kafka, later)
        wait_for(lambda: trainer.counters["events"] == 280, timeout_s=20)

        def moved() -> list[str] | None:
            after = top_ids(client, db, "u0", 8)
            return after if len(set(after) & set(targets)) >= 3 else None

        after = wait_for(moved, timeout_s=10)
        assert len(set(after) & set(targets)) > len(set(before) & set(targets))
    finally:
        app.runtime.stop()

    # Dead letters keep the raw bytes and say why.
    dlq = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": "dlq-probe",
            "auto.offset.reset": "earliest",
        }
    )
    dlq.assign(
        [
            TopicPartition(kafka.dead_letter_topic, p, OFFSET_BEGINNING)
            for p in range(kafka.interactions_partitions)
        ]
    )
    letters = []
    deadline = time.monotonic() + 15
    while len(letters) < 3 and time.monotonic() < deadline:
        msg = dlq.poll(0.5)
        if msg is not None and msg.error() is None:
            letters.append(json.loads(msg.value()))
    dlq.close()
    assert len(letters) == 3 and all(letter["reason"] for letter in letters)

    # Stop: flush, snapshot, commit exactly the end of the topic.
    trainer.stop.set()
    thread.join(30)
    assert not thread.is_alive()
    ends = end_offsets(kafka, kafka.interactions_topic, kafka.interactions_partitions)
    assert committed(kafka) == ends
    snap = load_snapshot(s.model.models_dir)
    assert {int(p): o for p, o in snap.offsets["interactions"].items()} == {
        p: o for p, o in ends.items() if o > 0
    }
    vector_ends = end_offsets(kafka, kafka.item_vectors_topic, kafka.item_vectors_partitions)
    assert {int(p): o for p, o in snap.offsets["item-vectors"].items()} == vector_ends
    status = json.loads((Path(s.model.models_dir) / "trainer_status.json").read_text())
    assert status["state"] == "stopped" and status["events"] == 280 and status["dlq"] == 3
    assert status["prequential"]["tested"] > 0


def _start(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "services.incremental_trainer"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _status(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_kill_9_mid_stream_then_restart_loses_nothing_and_sigterm_commits(
    stack_env: dict[str, str], settings: Settings
) -> None:
    env = {
        **stack_env,
        "RECSYS_INITIAL_CAPACITY": "10",
        "RECSYS_EMBEDDING_DIM": "8",
        "RECSYS_TRAINER_BATCH_MAX_EVENTS": "20",
        "RECSYS_TRAINER_BATCH_MAX_MS": "50",
        "RECSYS_TRAINER_SNAPSHOT_INTERVAL_S": "0.5",
        # Decay slower than the test runs: every counter then reads the number of events.
        "RECSYS_POPULARITY_HALF_LIFE_S": "1e9",
        "RECSYS_RANKING_TRENDING_HALF_LIFE_S": "1e9",
    }
    s = Settings.from_env(env)
    kafka = s.kafka
    ensure_topics(kafka)
    wait_for_topics(kafka, [kafka.interactions_topic])
    status_path = Path(s.model.models_dir) / "trainer_status.json"
    now = int(time.time() * 1000)
    events = [Interaction(f"u{n % 50}", f"i{(n * 7) % 90}", "view", now + n) for n in range(400)]

    stop = threading.Event()

    def trickle() -> None:  # 100 events/s, so the kill lands mid-stream
        producer = make_producer(kafka)
        for event in events:
            if stop.is_set():
                break
            producer.produce(
                kafka.interactions_topic, key=event.user_id.encode(), value=event.to_bytes()
            )
            producer.poll(0)
            time.sleep(0.01)
        flush_or_raise(producer, 10.0)

    first = _start(env)
    producer = threading.Thread(target=trickle, daemon=True)
    try:
        wait_for(lambda: _status(status_path).get("state") == "running", timeout_s=30)
        producer.start()
        wait_for(
            lambda: (
                _status(status_path).get("events", 0) >= 120
                and _status(status_path).get("snapshots", 0) >= 2
            ),
            timeout_s=30,
        )
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        killed_at = _status(status_path)
        assert killed_at["events"] < len(events)  # really mid-stream

        second = _start(env)
        producer.join(30)
        total = sum(
            end_offsets(kafka, kafka.interactions_topic, kafka.interactions_partitions).values()
        )
        assert total == len(events)
        wait_for(
            lambda: (
                _status(status_path).get("pid") == second.pid
                and sum(_status(status_path).get("positions", {}).values()) == total
            ),
            timeout_s=40,
        )
        resumed = _status(status_path)
        # It resumed from a snapshot taken before the kill and replayed since, not from zero.
        assert 0 < sum(resumed["resumed_from"].values()) <= killed_at["events"]
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, second.stderr.read().decode()[-2000:]
    finally:
        stop.set()
        for proc in (first, locals().get("second")):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    ends = end_offsets(kafka, kafka.interactions_topic, kafka.interactions_partitions)
    assert committed(kafka) == ends  # SIGTERM snapshotted and committed everything
    snap = load_snapshot(s.model.models_dir)
    assert {int(p): o for p, o in snap.offsets["interactions"].items()} == ends
    assert set(snap.user_map.ids) == {e.user_id for e in events}
    assert set(snap.item_map.ids) == {e.item_id for e in events}
    # The replay after the kill counted nothing twice: MongoDB users.n_events, Redis popular
    # and trending read exactly what was sent, and every seen list holds each item once.
    produced = Counter(e.user_id for e in events)
    counts = {d["_id"]: d["n_events"] for d in mongo.connect(s.mongo)[mongo.USERS].find()}
    assert counts == produced
    r = redis_store.connect(s.redis)
    engaged = Counter(e.item_id for e in events)
    for key in (redis_store.POPULAR_KEY, ranking_store.TRENDING_KEY):
        scores = dict(r.zrange(key, 0, -1, withscores=True))
        assert scores == pytest.approx(dict(engaged), rel=1e-6), key
    for user in produced:
        seen = redis_store.get_seen(r, user)
        assert sorted(seen) == sorted({e.item_id for e in events if e.user_id == user})
    assert len(snapshots.list_versions(s.model.models_dir)) <= s.trainer.snapshots_kept
    assert os.path.exists(status_path) and _status(status_path)["state"] == "stopped"
