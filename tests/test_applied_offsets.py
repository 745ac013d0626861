"""Counters written twice for the same interactions offsets count once (real MongoDB, Redis)."""

import numpy as np

from services.incremental_trainer.replay_guard import ReplayGuard
from shared.config import Settings
from shared.events import Interaction
from shared.storage import applied_offsets, mongo, redis_store
from shared.storage.applied_offsets import upsert_user_vectors_once


def _n_events(db, user_id: str) -> int:
    doc = mongo.get_user(db, user_id)
    assert doc is not None
    return int(doc["n_events"])


def test_user_events_are_counted_once_per_offset_however_often_written(
    settings: Settings,
) -> None:
    db = mongo.connect(settings.mongo)
    vector = np.ones(3, np.float32)
    upsert_user_vectors_once(db, [("a", vector, {0: [3, 4, 5]}), ("b", vector, {1: [7]})], "v1")
    # A replay after a crash: part of a's events again (plus new ones), b's again exactly.
    upsert_user_vectors_once(
        db, [("a", vector * 2, {0: [4, 5, 6, 9]}), ("b", vector, {1: [7]})], "v2"
    )
    assert _n_events(db, "a") == 5 and _n_events(db, "b") == 1
    doc = mongo.get_user(db, "a")
    assert doc["model_version"] == "v2" and np.allclose(doc["query_vector"], 2.0)
    # Fresh events on two partitions, one of them never seen for this user; a catch-up
    # rewrite (no events) counts nothing.
    upsert_user_vectors_once(db, [("a", vector, {0: [10], 2: [1, 2]}), ("b", vector, {})], "v3")
    assert _n_events(db, "a") == 8 and _n_events(db, "b") == 1
    upsert_user_vectors_once(db, [("a", vector, {0: [10], 2: [1, 2, 3]})], "v4")
    assert _n_events(db, "a") == 9


def test_redis_marks_only_rise_and_split_a_replayed_batch(settings: Settings) -> None:
    r = redis_store.connect(settings.redis)
    topic = "interactions-test"
    for marks in ({0: 5, 1: 2}, {0: 3, 1: 4}):  # the second would lower partition 0
        pipe = r.pipeline(transaction=True)
        applied_offsets.queue_mark(pipe, topic, marks)
        pipe.execute()
    assert applied_offsets.load_marks(r, topic) == {0: 5, 1: 4}

    guard = ReplayGuard(r, topic, half_life_s=3600.0)
    guard.load([0, 1])
    assert guard.marks == {0: 5, 1: 4}
    ts = 1_700_000_000_000
    events = [Interaction(f"u{n}", "i1" if n % 2 else "i2", "click", ts) for n in range(4)]
    counted = guard.split(events, [0, 0, 1, 1], [4, 5, 3, 4], {0: 6, 1: 5}, ts)
    # p0@4 and p1@3 (both i2) were counted before the crash; p0@5 and p1@4 (both i1) were not.
    assert counted.popularity == {"i1": 2 * events[0].weight}
    assert counted.events == [events[1], events[3]]  # what the ranking signals count
    assert counted.user_offsets == {"u0": {0: [4]}, "u1": {0: [5]}, "u2": {1: [3]}, "u3": {1: [4]}}
    assert guard.left_out == 2
    # Past the marks the learner's popularity and every event are used as they are.
    later = guard.split(events, [0, 0, 1, 1], [6, 7, 5, 6], {0: 8, 1: 7}, ts)
    assert later.popularity is None and later.events == events and guard.marks == {}
