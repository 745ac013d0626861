"""Two trainer processes in one consumer group on the local stack (RECSYS_TRAINER_SHARE_ITEMS).

They split the ``interactions`` partitions, share item rows through ``item-vectors``; one is
killed with ``kill -9`` mid-stream, its partitions move to the other with their users (from the
partition files), and every event produced is learned: the survivor ends at the topic's end
offsets, knows every user and item, and MongoDB counts every event at least once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from services.incremental_trainer import partition_state
from shared.config import Settings
from shared.events import Interaction
from shared.kafka import ensure_topics, flush_or_raise, make_producer, wait_for_topics
from shared.model.checkpoint import load_snapshot
from shared.storage import mongo
from tests.polling import wait_for
from tests.test_trainer_service import _status, end_offsets

ROOT = Path(__file__).resolve().parents[1]


def _start(env: dict[str, str], status: Path, log: Path) -> subprocess.Popen:
    with open(log, "wb") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "services.incremental_trainer"],
            cwd=ROOT,
            env={**env, "RECSYS_TRAINER_STATUS_FILE": str(status)},
            stdout=subprocess.DEVNULL,
            stderr=handle,
        )


def test_two_trainers_split_partitions_share_items_and_survive_a_kill(
    stack_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    env = {
        **stack_env,
        "RECSYS_INITIAL_CAPACITY": "10",
        "RECSYS_EMBEDDING_DIM": "8",
        "RECSYS_TRAINER_BATCH_MAX_EVENTS": "20",
        "RECSYS_TRAINER_BATCH_MAX_MS": "50",
        "RECSYS_TRAINER_SNAPSHOT_INTERVAL_S": "0.5",
        "RECSYS_TRAINER_SHARE_ITEMS": "true",
        "RECSYS_TRAINER_ITEM_VECTORS_INTERVAL_MS": "50",
        "RECSYS_TRAINER_NEGATIVE_VECTORS_INTERVAL_S": "0.5",
    }
    s = Settings.from_env(env)
    kafka = s.kafka
    ensure_topics(kafka)
    wait_for_topics(kafka, [kafka.interactions_topic, kafka.item_vectors_topic])
    now = int(time.time() * 1000)
    events = [Interaction(f"u{n % 60}", f"i{(n * 7) % 90}", "view", now + n) for n in range(700)]
    status_a, status_b = tmp_path / "a.json", tmp_path / "b.json"
    stop = threading.Event()

    def trickle() -> None:  # 100 events/s: the kill lands mid-stream
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

    first = _start(env, status_a, tmp_path / "a.log")
    second = None
    producer = threading.Thread(target=trickle, daemon=True)
    try:
        wait_for(lambda: _status(status_a).get("state") == "running", timeout_s=40)
        second = _start(env, status_b, tmp_path / "b.log")
        everything = set(range(kafka.interactions_partitions))

        def split() -> bool:
            a, b = (
                set(_status(status_a).get("assigned", [])),
                set(_status(status_b).get("assigned", [])),
            )
            return bool(a) and bool(b) and not a & b and a | b == everything

        wait_for(split, timeout_s=40)
        producer.start()
        wait_for(
            lambda: (
                _status(status_a).get("events", 0) >= 80
                and _status(status_b).get("events", 0) >= 80
                and _status(status_a).get("snapshots", 0) >= 2
            ),
            timeout_s=40,
        )
        assert split()  # never both owners of one partition while both live
        # Items learned by one member reach the other through item-vectors.
        wait_for(lambda: _status(status_b).get("items", 0) > 0.6 * 90, timeout_s=20)
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        killed_at = _status(status_a)
        wait_for(lambda: set(_status(status_b).get("assigned", [])) == everything, timeout_s=40)
        producer.join(30)
        ends = end_offsets(kafka, kafka.interactions_topic, kafka.interactions_partitions)
        assert sum(ends.values()) == len(events)
        assert killed_at["events"] < len(events)  # really mid-stream
        wait_for(
            lambda: {int(p): o for p, o in _status(status_b).get("positions", {}).items()} == ends,
            timeout_s=40,
        )
        assert _status(status_b)["users_handed_over"] > 0  # A's users came from its files
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, (tmp_path / "b.log").read_text()[-2000:]
    finally:
        stop.set()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    snap = load_snapshot(s.model.models_dir)  # the survivor's shutdown snapshot
    assert {int(p): o for p, o in snap.offsets["interactions"].items()} == ends
    assert set(snap.user_map.ids) >= {e.user_id for e in events}
    assert set(snap.item_map.ids) >= {e.item_id for e in events}
    for part, offset in ends.items():
        saved = partition_state.load(s.model.models_dir, part)
        assert saved is not None and saved.next_offset == offset
    produced = Counter(e.user_id for e in events)
    counts = {d["_id"]: d["n_events"] for d in mongo.connect(s.mongo)[mongo.USERS].find()}
    assert all(counts.get(u, 0) >= n for u, n in produced.items())
