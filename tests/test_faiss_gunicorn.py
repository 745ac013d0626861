"""faiss_app under gunicorn as a real subprocess (2 workers), driven through FaissClient."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from scripts.localstack import free_port
from shared.config import Settings
from shared.faiss_client import (
    FaissClient,
    FaissRequestError,
    FaissUnavailable,
    UnknownItem,
    UnknownSpace,
)
from shared.kafka import ensure_topics, wait_for_topics
from shared.snapshots import write_space_snapshot
from tests.faiss_helpers import clustered, exact_top_k, publish, write_snapshot
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "gunicorn-token"


@pytest.fixture
def server(stack_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, np.ndarray, Path]]:
    settings = Settings.from_env(stack_env)
    ensure_topics(settings.kafka)
    wait_for_topics(settings.kafka, [settings.kafka.item_vectors_topic])
    vectors, _ = clustered(1000, 9, n_clusters=8, seed=5)
    write_snapshot(settings.model.models_dir, [f"i{j}" for j in range(1000)], vectors)
    port = free_port()
    env = {**stack_env, "RECSYS_FAISS_ADMIN_TOKEN": TOKEN, "RECSYS_FAISS_WORKERS": "2"}
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "services/faiss_app/gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
                "services.faiss_app.wsgi:app",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), timeout_s=30)
        yield url, vectors, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    text = log_path.read_text()
    assert proc.returncode == 0, text[-2000:]
    # one follower per space per worker; the default space's topic has no ".<space>" suffix
    stopped = f"{settings.kafka.item_vectors_topic} follower stopped"
    assert text.count(stopped) == 2, text[-2000:]
    # Every line, from gunicorn (master, workers), librdkafka and the app, is one JSON object.
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert {r["service"] for r in records} == {"faiss_app"}
    assert "gunicorn.error" in {r["logger"] for r in records}
    assert len({r["instance"] for r in records}) >= 3  # the master and two workers


def _ready(url: str) -> bool:
    try:
        return requests.get(url + "/readyz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _fresh_answer(url: str) -> tuple[int, bool]:
    """(worker pid, whether its index already holds the live update) over a new connection."""
    stats = requests.get(url + "/v1/stats", headers={"Connection": "close"}, timeout=2).json()
    return stats["pid"], stats["updates"]["last"]["item_id"] == "live-item"


def test_two_workers_serve_and_both_apply_live_updates(
    server: tuple[str, np.ndarray, Path], stack_env: dict[str, str]
) -> None:
    url, vectors, _ = server
    with FaissClient(url, timeout_s=2.0, admin_token=TOKEN) as client:
        assert client.healthz()["status"] == "ok"
        queries = vectors[:3] + 0.05
        hits = client.search(queries, 4, exclude=[[], ["i0"], []])
        truth = exact_top_k(vectors, queries, 5)
        assert [h[0] for h in hits[0]] == [f"i{j}" for j in truth[0][:4]]
        assert "i0" not in [h[0] for h in hits[1]]
        assert hits[0][0][1] >= hits[0][1][1]
        with pytest.raises(UnknownItem):
            client.similar("nobody", 3)
        with pytest.raises(FaissRequestError):
            client.search(np.zeros((1, 4), dtype=np.float32), 3)
        assert len(client.similar("i1", 3)) == 3

        publish(Settings.from_env(stack_env).kafka, [("live-item", vectors[0] * 10)])
        seen: dict[int, bool] = {}

        def both_workers_updated() -> bool:
            pid, updated = _fresh_answer(url)
            seen[pid] = updated
            return len(seen) == 2 and all(seen.values())

        wait_for(both_workers_updated, timeout_s=30, every_s=0.02)
        top = client.search(vectors[:1] * 10, 1)[0][0][0]
        assert top == "live-item"

        # A reload answered by one worker reaches the other one too.
        models_dir = Path(stack_env["RECSYS_MODELS_DIR"])
        new = write_snapshot(models_dir, ["a", "b", "c"], vectors[:3])
        assert client.reload()["model_version"] == new
        versions: dict[int, str] = {}

        def both_workers_reloaded() -> bool:
            stats = requests.get(url + "/v1/stats", headers={"Connection": "close"}, timeout=2)
            versions[stats.json()["pid"]] = stats.json()["model_version"]
            return len(versions) == 2 and set(versions.values()) == {new}

        wait_for(both_workers_reloaded, timeout_s=30, every_s=0.02)

        # Another space: its reload reaches both workers too, and the client addresses it.
        triplet = client.for_space("triplet")
        with pytest.raises(FaissUnavailable):  # configured, no snapshot yet: 503
            triplet.similar("t1", 2)
        write_space_snapshot(models_dir, "triplet", ["t0", "t1", "t2"], vectors[:3, :4])
        assert triplet.reload()["space"] == "triplet"
        loaded: dict[int, bool] = {}

        def both_workers_have_triplet() -> bool:
            stats = requests.get(url + "/v1/stats", headers={"Connection": "close"}, timeout=2)
            loaded[stats.json()["pid"]] = stats.json()["spaces"]["triplet"]["loaded"]
            return len(loaded) == 2 and all(loaded.values())

        wait_for(both_workers_have_triplet, timeout_s=30, every_s=0.02)
        assert triplet.similar_full("t0", 2)["space"] == "triplet"
        assert client.stats()["model_version"] == new  # the default space is untouched
        with pytest.raises(UnknownSpace):
            client.similar("i1", 3, space="nope")
        with pytest.raises(UnknownItem):
            triplet.similar("i1", 3)


def test_client_raises_unavailable_when_nothing_listens() -> None:
    client = FaissClient(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    with pytest.raises(FaissUnavailable):
        client.healthz()
    with pytest.raises(FaissUnavailable):
        client.search(np.zeros((1, 3), dtype=np.float32), 1)
