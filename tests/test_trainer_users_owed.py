"""Snapshots do not wait for MongoDB: what the write-behind owes is stored in the snapshot and
handed over again by a trainer that starts from it (real Kafka, MongoDB, Redis)."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from services.incremental_trainer import users_owed
from services.incremental_trainer.user_writer import UserVectorWriter
from shared import snapshots
from shared.atomic import write_text_atomic
from shared.config import Settings
from shared.events import Interaction
from shared.kafka import ensure_topics, wait_for_topics
from shared.model.checkpoint import load_snapshot
from shared.storage import applied_offsets, mongo
from tests.conftest import replace
from tests.polling import wait_for
from tests.test_trainer_service import end_offsets, produce
from tests.trainer_thread import start_trainer, stop_trainer


def _n_events(db, user_id: str) -> int:
    return int((mongo.get_user(db, user_id) or {}).get("n_events", 0))


def _snapshot_offsets(models: Path) -> dict[int, int] | None:
    try:
        offsets = load_snapshot(models).offsets.get("interactions", {})
    except (snapshots.SnapshotNotFound, FileNotFoundError):
        return None
    return {int(p): o for p, o in offsets.items()}


def test_owed_writes_round_trip_and_are_counted_once_after_a_crash(settings: Settings) -> None:
    db = mongo.connect(settings.mongo)
    gate, lost = threading.Event(), threading.Event()

    def upsert(rows, version: str) -> int:  # the first round lands, then the process "dies"
        rows = list(rows)
        gate.wait(10)
        if lost.is_set():
            return len(rows)  # never reaches the store
        lost.set()
        return applied_offsets.upsert_user_vectors_once(db, rows, version)

    vector = np.ones(3, np.float32)
    writer = UserVectorWriter(upsert, delete=lambda ids: mongo.delete_users(db, ids))
    writer.put([("a", vector, {0: [1, 2]}), ("b", vector, {1: [5]})], "v1")
    wait_for(lambda: writer._in_flight, timeout_s=5)  # a and b are in flight
    writer.put([("a", vector * 2, {0: [3]}), ("c", vector, {0: [4]})], "v1")
    writer.forget(["d"])
    owed = writer.owed()
    assert {o.user_id: (o.forget, o.vector, o.events) for o in owed} == {
        "a": (False, True, {0: [1, 2, 3]}),  # the round in flight may yet fail: still owed
        "b": (False, True, {1: [5]}),
        "c": (False, True, {0: [4]}),
        "d": (True, False, {}),
    }
    gate.set()
    writer.close(5)  # a and b landed, the rest was lost with the process
    assert _n_events(db, "a") == 2 and _n_events(db, "b") == 1 and _n_events(db, "c") == 0

    folder = Path(settings.model.models_dir) / "owed"
    folder.mkdir(parents=True)
    snapshots.write_json(folder / users_owed.FILE, users_owed.to_json(owed))
    restarted = UserVectorWriter(
        lambda rows, version: applied_offsets.upsert_user_vectors_once(db, rows, version),
        delete=lambda ids: mongo.delete_users(db, ids),
    )
    loaded = users_owed.load(folder)
    assert loaded == owed
    restarted.restore(loaded, {"a": vector * 3, "b": vector, "c": vector}, "v2")
    assert restarted.flush(10)
    restarted.close(1)
    # What landed before the crash is not counted again; what was lost is counted once.
    assert (_n_events(db, "a"), _n_events(db, "b"), _n_events(db, "c")) == (3, 1, 1)
    assert np.allclose(mongo.get_user(db, "a")["query_vector"], 3.0)
    assert users_owed.load(Path(settings.model.models_dir)) is None  # an older snapshot


def test_snapshots_do_not_wait_for_a_stalled_store_and_a_restart_counts_every_event(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = replace(settings, "model", initial_capacity=10, embedding_dim=8)
    s = replace(s, "trainer", batch_max_events=50, batch_max_ms=50, snapshot_interval_s=0.3,
                snapshots_kept=1000)  # fmt: skip
    ensure_topics(s.kafka)
    wait_for_topics(s.kafka, [s.kafka.interactions_topic, s.kafka.item_vectors_topic])
    db = mongo.connect(s.mongo)
    stalled = threading.Event()
    stalled.set()
    real_upsert = applied_offsets.upsert_user_vectors_once

    def stalling(database, rows, version: str) -> int:
        rows = list(rows)
        while stalled.is_set():  # MongoDB stalls: the trainer must go on learning
            time.sleep(0.05)
        return len(rows)  # the process died: nothing of this reaches the store

    monkeypatch.setattr(applied_offsets, "upsert_user_vectors_once", stalling)
    monkeypatch.setattr("services.incremental_trainer.service.USERS_FLUSH_TIMEOUT_S", 0.2)
    now = int(time.time() * 1000)
    events = [Interaction(f"u{n % 17}", f"i{(n * 5) % 23}", "click", now + n) for n in range(300)]
    produce(s.kafka, events)
    ends = end_offsets(s.kafka, s.kafka.interactions_topic, s.kafka.interactions_partitions)
    models = Path(s.model.models_dir)

    trainer, thread = start_trainer(s)
    started = time.monotonic()
    # Snapshots keep coming while every write is owed; one covers the whole stream.
    wait_for(lambda: _snapshot_offsets(models) == ends, timeout_s=30)
    assert time.monotonic() - started < 10  # not one 10 s wait for the store
    version = snapshots.read_latest(models)
    assert version is not None
    aside = models.parent / f"crashed-{version}"
    shutil.copytree(models / version, aside)
    owed = users_owed.load(aside)
    assert owed is not None
    counted = Counter(e.user_id for e in events)
    assert {o.user_id: sum(map(len, o.events.values())) for o in owed} == counted
    assert load_snapshot(models).manifest["metrics"]["mongo_users_behind"] is True
    stalled.clear()  # from here the writes "return" without reaching the store: lost
    stop_trainer(trainer, thread)
    assert all(_n_events(db, u) == 0 for u in counted)

    # The process had died right after that snapshot: a new one starts from it.
    monkeypatch.setattr(applied_offsets, "upsert_user_vectors_once", real_upsert)
    for name in [p for p in models.iterdir() if p.is_dir()]:
        shutil.rmtree(name)
    shutil.copytree(aside, models / version)
    write_text_atomic(models / snapshots.LATEST, version + "\n")
    trainer, thread = start_trainer(s)
    try:
        wait_for(lambda: all(_n_events(db, u) == n for u, n in counted.items()), timeout_s=20)
        model = trainer.learner.state
        rows = model.user_map.rows(["u0"], create=False)
        assert np.allclose(
            mongo.get_user(db, "u0")["query_vector"], model.model.query_vectors(rows)[0],
            atol=1e-5,
        )
    finally:
        stop_trainer(trainer, thread)
    assert {u: _n_events(db, u) for u in counted} == dict(counted)  # nothing counted twice
