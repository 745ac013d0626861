"""The trainer's output buffers: MongoDB write-behind and coalesced item-vector rows."""

from __future__ import annotations

import threading

import numpy as np

from services.incremental_trainer.publisher import PendingItemRows
from services.incremental_trainer.user_writer import UserVectorWriter
from tests.polling import wait_for


class _Store:
    """Records bulk upserts; blocks while ``gate`` is clear; fails ``fail`` times first."""

    def __init__(self, fail: int = 0) -> None:
        self.rounds: list[dict[str, tuple[float, int, str]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = fail

    def __call__(self, rows, version: str) -> int:
        self.gate.wait(5)
        if self.fail:
            self.fail -= 1
            raise ConnectionError("store down")
        written = {u: (float(v[0]), sum(map(len, o.values())), version) for u, v, o in rows}
        self.rounds.append(written)
        return len(written)


def _vec(x: float) -> np.ndarray:
    return np.full(3, x, dtype=np.float32)


_next_offset = iter(range(10**6))


def _events(n: int) -> dict[int, list[int]]:
    """``n`` events of partition 0 at new offsets."""
    return {0: [next(_next_offset) for _ in range(n)]}


def test_writes_behind_coalescing_each_user_to_its_newest_vector_and_summed_events() -> None:
    store = _Store()
    writer = UserVectorWriter(store)
    store.gate.clear()  # the first round blocks: later batches pile up behind it
    writer.put([("a", _vec(1), _events(1))], "v1")
    for step in range(2, 6):
        writer.put([("b", _vec(step), _events(2)), ("a", _vec(step), _events(1))], "v1")
    assert writer.behind
    store.gate.set()
    assert writer.flush(5)
    assert not writer.behind
    merged: dict[str, tuple[float, int, str]] = {}
    for written in store.rounds:
        for user, (value, events, version) in written.items():
            old = merged.get(user, (0.0, 0, ""))
            merged[user] = (value, old[1] + events, version)
    assert merged == {"a": (5.0, 5, "v1"), "b": (5.0, 8, "v1")}
    assert len(store.rounds) <= 3  # one round in flight, the rest coalesced into few rounds
    writer.close(1)


def test_a_failed_round_is_retried_under_newer_writes_and_loses_nothing() -> None:
    store = _Store(fail=1)
    writer = UserVectorWriter(store)
    writer.put([("a", _vec(1), _events(1))], "v1")
    writer.put([("a", _vec(2), _events(1)), ("c", _vec(7), _events(3))], "v2")
    assert writer.flush(10)
    final = {u: w for written in store.rounds for u, w in written.items()}
    assert final["a"][0] == 2.0 and final["a"][2] == "v2"
    assert sum(w[u][1] for w in store.rounds for u in w if u == "a") == 2
    assert final["c"] == (7.0, 3, "v2")
    assert writer.failures == 1
    writer.close(1)


def test_a_forgotten_user_is_deleted_in_order_with_the_writes_and_counted_from_zero() -> None:
    store = _Store()
    log: list[tuple[str, object]] = []

    def delete(user_ids: list[str]) -> int:
        log.append(("delete", sorted(user_ids)))
        return len(user_ids)

    def upsert(rows, version: str) -> int:
        rows = list(rows)
        log.append(("upsert", sorted((u, sum(map(len, o.values()))) for u, _, o in rows)))
        return store(rows, version)

    writer = UserVectorWriter(upsert, delete=delete)
    store.gate.clear()  # a round holding the old vector of "a" is in flight
    writer.put([("a", _vec(1), _events(4)), ("b", _vec(1), _events(1))], "v1")
    wait_for(lambda: writer._in_flight, timeout_s=5)
    writer.put([("a", _vec(2), _events(3))], "v1")  # events before the deletion: never written
    writer.forget(["a"])
    writer.put([("a", _vec(9), _events(1))], "v2")  # the first event after it
    store.gate.set()
    assert writer.flush(5)
    assert log == [("upsert", [("a", 4), ("b", 1)]), ("delete", ["a"]), ("upsert", [("a", 1)])]
    assert store.rounds[-1] == {"a": (9.0, 1, "v2")}
    writer.close(1)


def test_a_failed_deletion_is_retried_and_drops_what_came_before_it() -> None:
    store = _Store(fail=1)
    deleted: list[str] = []
    writer = UserVectorWriter(store, delete=lambda ids: deleted.extend(ids) or len(ids))
    writer.forget(["a"])
    writer.put([("a", _vec(3), _events(2))], "v1")
    assert writer.flush(10)
    assert deleted == ["a"]  # the upsert failed after it: not deleted twice
    assert store.rounds == [{"a": (3.0, 2, "v1")}]
    writer.close(1)


def test_pending_item_rows_publish_engaged_items_fast_and_negatives_slowly() -> None:
    rows = PendingItemRows(positive_interval_s=0.2, negative_interval_s=5.0)
    rows.add([1, 2], [1, 2, 7, 8])
    assert rows.due(now=rows._positive_at + 0.1) == []
    assert rows.due(now=rows._positive_at + 0.3) == [1, 2]
    rows.add([2], [2, 9])
    assert rows.due(now=rows._negative_at + 5.1) == [2, 7, 8, 9]
    assert len(rows) == 0
    rows.add([], [3])
    assert rows.due(everything=True) == [3]


def test_pending_item_rows_publish_new_items_with_their_batch() -> None:
    """Regression: new items waited for the engaged-items interval like any other row."""
    rows = PendingItemRows(positive_interval_s=1.0, negative_interval_s=5.0)
    start = rows._positive_at
    rows.add([1, 2, 30], [1, 2, 30, 7], new_rows=[30])
    assert rows.due(now=start + 0.01) == [30]  # the new item at once, the others wait
    assert rows.due(now=start + 0.02) == []
    rows.add([30], [30])  # engaged again: now an ordinary row
    assert rows.due(now=start + 0.5) == []
    assert rows.due(now=start + 1.1) == [1, 2, 30]
    assert rows.due(now=start + 5.1) == [7]


def test_rounds_are_paced_to_the_users_per_second_longest_waiting_first_and_a_flush_is_not() -> None:
    store = _Store()
    writer = UserVectorWriter(store, min_round_interval_s=0.2, users_per_s=10)  # 2 per round
    store.gate.clear()
    writer.put([("first", _vec(0), _events(1))], "v1")  # a round in flight
    wait_for(lambda: writer._in_flight, timeout_s=5)
    writer.put([(f"u{n}", _vec(n), _events(1)) for n in range(7)], "v1")
    writer.put([("u0", _vec(9), _events(1))], "v1")  # touched again: keeps its place, newest
    store.gate.set()
    wait_for(lambda: len(store.rounds) >= 3, timeout_s=5)
    assert [sorted(r) for r in store.rounds[:3]] == [["first"], ["u0", "u1"], ["u2", "u3"]]
    assert store.rounds[1]["u0"] == (9.0, 2, "v1")
    writer.put([(f"w{n}", _vec(n), _events(1)) for n in range(60)], "v1")
    assert writer.flush(2)  # unpaced: 60 more users at two per 0.2 s would take 6 s
    assert {u for r in store.rounds for u in r} == {
        "first", *(f"u{n}" for n in range(7)), *(f"w{n}" for n in range(60))
    }
    writer.close(1)


def test_learner_reports_the_item_rows_a_batch_created() -> None:
    import dataclasses
    from pathlib import Path

    from services.incremental_trainer.learner import Learner, ModelState
    from shared.config import Settings
    from shared.events import Interaction

    settings = Settings.from_env({})
    model = dataclasses.replace(settings.model, models_dir=Path("/nonexistent/models"))
    learner = Learner(ModelState.load_or_create(model), settings.trainer, 3600.0, 0)
    first = learner.learn([Interaction("u1", "a", "click", 1_000), Interaction("u2", "b", "view", 1_001)])
    item_map = learner.state.item_map
    assert first.new_item_rows == set(item_map.rows(["a", "b"], create=False).tolist())
    second = learner.learn([Interaction("u1", "b", "click", 2_000), Interaction("u3", "c", "view", 2_001)])
    assert second.new_item_rows == {int(item_map.row("c", create=False))}
    assert second.new_item_rows < second.positive_rows
