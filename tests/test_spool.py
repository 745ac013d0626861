"""The durable event spool: fsync'd appends, crash replay, size bound, one log per worker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from falcon import testing

from services.recommender_app.app import create_app
from services.recommender_app.deps import Deps
from services.recommender_app.spool import Spool, SpoolFull
from services.recommender_app.spool_sender import SpoolSender
from shared.config import Settings
from shared.kafka import ensure_topics, make_producer, wait_for_topics
from shared.metrics import Metrics
from shared.recovering_producer import RecoveringProducer
from tests.conftest import replace
from tests.polling import wait_for
from tests.test_ingestion_recovery import read_topic

ROOT = Path(__file__).resolve().parents[1]


def event(n: int) -> bytes:
    body = {"user_id": f"u{n % 3}", "item_id": f"i{n}", "event": "view", "ts": 1_700_000_000_000}
    return json.dumps(body).encode()


def drain(spool: Spool) -> list[bytes]:
    out: list[bytes] = []
    while batch := spool.read_batch(7):
        out.extend(r.value for r in batch)
        spool.delivered(batch[-1], len(batch))
    return out


def test_order_positions_and_truncation(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append([event(n) for n in range(10)])
    spool.append([event(n) for n in range(10, 20)])
    assert spool.depth == 20 and spool.pending()
    first = spool.read_batch(4)
    spool.delivered(first[-1], 4)
    assert spool.depth == 16
    assert drain(spool) == [event(n) for n in range(4, 20)]
    assert not spool.pending() and spool.pending_bytes == 0
    log_file = next(tmp_path.glob("events-*.log"))
    assert log_file.stat().st_size == 0  # an emptied log is truncated, not left to grow
    with pytest.raises(ValueError):
        spool.append([b"two\nlines"])


def test_full_spool_refuses_whole_batches(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=3 * len(event(0)) + 5)
    spool.append([event(0), event(1)])
    with pytest.raises(SpoolFull):
        spool.append([event(2), event(3)])
    assert spool.depth == 2  # nothing of the refused batch was written
    spool.append([event(2)])
    assert drain(spool) == [event(0), event(1), event(2)]


def test_live_workers_never_adopt_each_other_and_a_closed_log_is_adopted(tmp_path: Path) -> None:
    one, two = Spool(tmp_path, 1 << 20), Spool(tmp_path, 1 << 20)
    one.append([event(1)])
    two.append([event(2)])
    assert one.adopt() == 0 and two.adopt() == 0  # each holds its own lock
    assert one.depth == 1 and two.depth == 1
    two.close()  # the worker is gone
    assert one.adopt() == 1
    assert drain(one) == [event(2), event(1)]  # adopted (older) logs first
    assert len(list(tmp_path.glob("events-*.log"))) == 1  # the delivered orphan is removed


_CRASHER = """
import sys, os, json
from pathlib import Path
from services.recommender_app.spool import Spool
spool = Spool(Path(sys.argv[1]), 1 << 20)
body = lambda n: json.dumps({"user_id": "u", "item_id": f"i{n}", "event": "view",
                             "ts": 1700000000000 + n}).encode()
spool.append([body(n) for n in range(50)])
batch = spool.read_batch(10)
spool.delivered(batch[-1], 10)
# a torn write: the process dies in the middle of a record
spool._own.handle.write(b'{"user_id": "u", "item')
spool._own.handle.flush()
print("ready", flush=True)
sys.stdin.read()
"""


def test_kill_9_of_the_api_loses_no_spooled_event(tmp_path: Path, settings: Settings) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHER, str(tmp_path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    # The next worker adopts the dead one's log and delivers what was not acknowledged.
    ensure_topics(settings.kafka)
    wait_for_topics(settings.kafka, [settings.kafka.interactions_topic])
    spool = Spool(tmp_path, 1 << 20)
    assert spool.depth == 40
    producers = RecoveringProducer(lambda: make_producer(settings.kafka))
    sender = SpoolSender(
        spool, producers, settings.kafka.interactions_topic, 5.0, Metrics(settings.statsd)
    )
    sender.start()
    try:
        wait_for(lambda: sender.delivered == 40, timeout_s=20, what="spool delivered")
    finally:
        sender.stop()
        producers.close()
    got = read_topic(settings, 40)
    assert [ts for _, ts in got] == [1_700_000_000_000 + n for n in range(10, 50)]  # in order
    assert not spool.pending()
    assert list(tmp_path.glob("events-*.log")) == [spool._own.path]


def test_full_spool_is_a_503_with_retry_after(settings: Settings, tmp_path: Path) -> None:
    dead = replace(settings, "kafka", bootstrap_servers="127.0.0.1:1", request_timeout_ms=500)
    dead = replace(dead, "recommender", publish_timeout_s=0.3, spool_max_bytes=300)
    deps = Deps.from_settings(dead)
    client = testing.TestClient(create_app(dead, deps))
    now = int(time.time() * 1000)
    body = {"user_id": "u1", "item_id": "i1", "event": "view", "ts": now}
    try:
        first = client.simulate_post("/events", json=body)
        assert first.status_code == 202 and first.json["spooled"] == 1
        statuses = [client.simulate_post("/events", json=body).status_code for _ in range(5)]
        assert statuses[0] == 202 and statuses[-1] == 503
        full = client.simulate_post("/events", json=body)
        assert full.status_code == 503 and full.headers["Retry-After"] == "5"
        assert full.json["title"] == "Kafka unavailable"
    finally:
        deps.close()
