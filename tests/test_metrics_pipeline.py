"""Metrics end to end on the local stack: services → statsd (npm) → carbon-cache → whisper.

The trainer and faiss_app run as real processes, the API in-process, all sending to the
stack's statsd under a prefix of this test's own. Afterwards every name statsd received must
be catalogued with the kind it was sent as, be stored in whisper under the Graphite names the
Grafana dashboard queries, and carry values that match what was done.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import localstack, metrics, metrics_servers
from scripts.dashboard_png import render
from scripts.processes import ManagedProcess, start_gunicorn
from shared.config import Settings
from shared.kafka import ensure_topics
from shared.metrics import spec_for
from tests.polling import wait_for
from tests.test_recommender_support import api_settings, client_for

REPO = Path(__file__).resolve().parents[1]
KINDS = {"counters": "counter", "timers": "timer", "gauges": "gauge"}


@pytest.fixture
def metrics_env(stack: localstack.StackInfo, stack_env: dict[str, str]) -> dict[str, str]:
    if stack.statsd_port is None:
        pytest.skip(f"no metrics servers on this machine: {stack.metrics_missing}")
    return {
        **stack_env,
        **stack.env(),
        "RECSYS_STATSD_ENABLED": "true",
        "RECSYS_STATSD_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        "RECSYS_EMBEDDING_DIM": "8",
        "RECSYS_TRAINER_BATCH_MAX_MS": "50",
        "RECSYS_TRAINER_SNAPSHOT_INTERVAL_S": "2",
        "RECSYS_FAISS_FOLLOW_UPDATES": "true",
    }


@pytest.fixture
def trainer(metrics_env: dict[str, str], tmp_path: Path) -> Iterator[ManagedProcess]:
    proc = ManagedProcess(
        "trainer", [sys.executable, "-m", "services.incremental_trainer"], metrics_env, tmp_path
    )
    try:
        yield proc
    finally:
        proc.stop(grace_s=20)


def received(stack: localstack.StackInfo, prefix: str) -> dict[str, str]:
    """Name (without prefix) → kind, for everything statsd received under ``prefix``."""
    assert stack.statsd_admin_port is not None
    names = {}
    for command, kind in KINDS.items():
        for full in metrics_servers.received_names(stack.statsd_admin_port, command):
            if full.startswith(prefix + "."):
                names[full[len(prefix) + 1:]] = kind
    return names


def total(whisper_dir: Path, series: str) -> float:
    return sum(metrics.fetch(whisper_dir, series, since_s=3600).values)


def dashboard_patterns(prefix: str) -> list[str]:
    text = (REPO / "grafana" / "dashboards" / "recsys.json").read_text()
    targets = [t["target"] for p in json.loads(text)["panels"] for t in p.get("targets", [])]
    found = re.findall(r"(stats(?:_counts)?\.[A-Za-z0-9_.$*]+)", " ".join(targets))
    return sorted({pattern.replace("$prefix", prefix) for pattern in found})


def test_what_the_services_send_arrives_in_whisper_under_the_dashboards_names(
    stack: localstack.StackInfo, metrics_env: dict[str, str], trainer: ManagedProcess,
    tmp_path: Path,
) -> None:
    prefix = metrics_env["RECSYS_STATSD_PREFIX"]
    whisper_dir = stack.whisper_dir
    assert whisper_dir is not None
    settings = Settings.from_env(metrics_env)
    ensure_topics(settings.kafka)
    latest = Path(metrics_env["RECSYS_MODELS_DIR"]) / "LATEST"
    wait_for(lambda: latest.exists() or not trainer.running(), 60, 0.2, "the first snapshot")
    assert trainer.running(), trainer.log_tail(3000)
    port = localstack.free_port()
    faiss = start_gunicorn("services.faiss_app.wsgi:app", port, metrics_env,
                           tmp_path / "faiss.log", workers=1, threads=2)
    client, deps = client_for(api_settings(settings, f"http://127.0.0.1:{port}"))
    try:
        rng = random.Random(5)
        now = int(time.time() * 1000)
        events = [{"user_id": f"m{u}", "item_id": f"i{rng.randrange(20)}", "event": "click",
                   "ts": now} for u in range(8) for _ in range(5)]
        malformed = [{"user_id": "m0", "item_id": "i1", "event": "teleport", "ts": now}]
        assert client.simulate_post("/events", json=events + malformed).status_code == 202

        def personalized() -> bool:
            body = client.simulate_get("/recommend", params={"user_id": "m1", "k": 3}).json
            return body["source"] == "personalized"

        wait_for(personalized, 60, 0.3, "a personalized answer from the learned model")
        for params in ({"user_id": "m2", "k": 3}, {"item_id": "i1", "k": 3}, {"k": 3}):
            assert client.simulate_get("/recommend", params=params).status_code == 200
        api_counts = dict(deps.metrics.sent)
    finally:
        deps.close()
        faiss.stop()
    trainer.stop(grace_s=20)

    # statsd flushes every second; carbon writes a new series' file on its next pass.
    learned = metrics.graphite_series(prefix, "trainer.events", "counter")["count"]
    wait_for(lambda: total(whisper_dir, learned) >= len(events), 30, 0.5,
             "trainer.events in whisper")

    sent = received(stack, prefix)
    for name, kind in sent.items():
        assert spec_for(name).kind == kind, f"{name} sent as a {kind}"
    # Gauges arrive as <name>.<host>-<pid> (one series per instance), and statsd forgets a
    # gauge once flushed (deleteGauges: a dead instance's value must not be re-sent), so
    # they are read back from whisper.
    head = f"stats.gauges.{prefix}."

    def stored_gauges() -> dict[str, str]:
        return {series[len(head):]: "gauge" for series in metrics.stored_series(whisper_dir)
                if series.startswith(head)}

    wanted_gauges = {"trainer.capacity.users", "faiss.index_size"}
    wait_for(lambda: wanted_gauges <= {n.rsplit(".", 1)[0] for n in stored_gauges()}, 30, 0.5,
             "gauges in whisper")
    sent.update(stored_gauges())
    gauges = {name.rsplit(".", 1)[0] for name, kind in sent.items() if kind == "gauge"}
    for name, kind in sent.items():
        assert spec_for(name).kind == kind, f"{name} sent as a {kind}"
    exercised = {"trainer.events", "trainer.batch_ms", "trainer.capacity.users",
                 "faiss.search_ms", "faiss.queries", "faiss.index_size", "api.recommend.ms",
                 "api.recommend.requests", "api.events.accepted", "api.events.rejected",
                 "api.recommend.source.personalized", "api.recommend.source.popular"}
    assert exercised <= set(sent) | gauges, exercised - set(sent) - gauges

    def all_stored() -> list[str]:
        return [series for name, kind in sent.items()
                for field, series in metrics.graphite_series(prefix, name, kind).items()
                if field in ("count", "value", "median", "upper_99")
                and not metrics.whisper_file(whisper_dir, series).exists()]

    deadline = time.monotonic() + 20
    while (missing := all_stored()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not missing, missing

    # Counters count what was done; timers count and rank what they timed; gauges hold values.
    def count_of(name: str) -> float:
        return total(whisper_dir, metrics.graphite_series(prefix, name, "counter")["count"])

    assert count_of("trainer.events") == len(events)
    assert count_of("api.events.accepted") == len(events)
    assert count_of("api.events.rejected") == len(malformed)
    assert count_of("api.recommend.requests") == api_counts["api.recommend.requests"]
    timer = metrics.graphite_series(prefix, "api.recommend.ms", "timer")
    assert total(whisper_dir, timer["count"]) == api_counts["api.recommend.requests"]
    p50 = metrics.fetch(whisper_dir, timer["median"], 3600).values
    p99 = metrics.fetch(whisper_dir, timer["upper_99"], 3600).values
    assert p50 and all(v > 0 for v in p50) and max(p99) >= max(p50)
    pattern = metrics.graphite_series(prefix, "trainer.capacity.users.*", "gauge")["value"]
    (users,) = metrics.expand(whisper_dir, pattern)  # one trainer instance
    assert metrics.fetch(whisper_dir, users, 3600).values[-1] >= 8

    # Every dashboard query over an exercised metric finds stored series.
    resolved = 0
    for pattern in dashboard_patterns(prefix):
        if any(metrics._matches(series, pattern) for name, kind in sent.items()
               for series in metrics.graphite_series(prefix, name, kind).values()):
            assert metrics.expand(whisper_dir, pattern), pattern
            resolved += 1
    assert resolved >= 15

    png = render(whisper_dir, prefix, tmp_path / "dashboard.png", since_s=600)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
