"""End to end: an event posted to /events reaches the trainer through Kafka and changes that
user's next answer. Real stack, real trainer (``python -m services.incremental_trainer``) and
real faiss_app (gunicorn, following ``item-vectors``), all as subprocesses; the API in-process.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import localstack
from scripts.processes import ManagedProcess, start_gunicorn
from shared.config import Settings
from shared.kafka import ensure_topics
from tests.polling import wait_for
from tests.test_recommender_support import api_settings, client_for

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def e2e_env(stack_env: dict[str, str]) -> dict[str, str]:
    return {
        **stack_env,
        "RECSYS_EMBEDDING_DIM": "8",
        "RECSYS_TRAINER_BATCH_MAX_MS": "50",
        "RECSYS_TRAINER_SNAPSHOT_INTERVAL_S": "2",
        "RECSYS_FAISS_FOLLOW_UPDATES": "true",
    }


@pytest.fixture
def trainer(e2e_env: dict[str, str], tmp_path: Path) -> Iterator[ManagedProcess]:
    proc = ManagedProcess(
        "trainer", [sys.executable, "-m", "services.incremental_trainer"], e2e_env, tmp_path
    )
    try:
        yield proc
    finally:
        proc.stop(grace_s=20)


def test_an_event_posted_to_the_api_changes_that_users_next_answer(
    e2e_env: dict[str, str], trainer: ManagedProcess, tmp_path: Path
):
    settings = Settings.from_env(e2e_env)
    ensure_topics(settings.kafka)
    latest = Path(e2e_env["RECSYS_MODELS_DIR"]) / "LATEST"
    wait_for(lambda: latest.exists() or not trainer.running(), 60, 0.2, "the first snapshot")
    assert trainer.running(), trainer.log_tail(3000)
    port = localstack.free_port()
    faiss = start_gunicorn(
        "services.faiss_app.wsgi:app", port, e2e_env, tmp_path / "faiss.log", workers=1, threads=2
    )
    client, deps = client_for(api_settings(settings, f"http://127.0.0.1:{port}"))
    try:
        rng = random.Random(3)
        now = int(time.time() * 1000)
        history = [
            {"user_id": f"b{u}", "item_id": f"i{rng.randrange(30)}", "event": "click", "ts": now}
            for u in range(10)
            for _ in range(6)
        ] + [{"user_id": "alice", "item_id": f"i{j}", "event": "view", "ts": now} for j in (1, 2)]
        assert client.simulate_post("/events", json=history).status_code == 202

        def personalized() -> dict | None:
            body = client.simulate_get("/recommend", params={"user_id": "alice", "k": 5}).json
            return body if body["source"] == "personalized" and len(body["items"]) == 5 else None

        before = wait_for(personalized, 60, 0.2, "a personalized answer for alice")
        assert isinstance(before, dict)
        top = before["items"][0]["item_id"]
        assert top not in {"i1", "i2"}  # seen items are filtered

        event = {"user_id": "alice", "item_id": top, "event": "purchase", "ts": now + 1}
        assert client.simulate_post("/events", json=event).status_code == 202

        def changed() -> dict | None:
            body = personalized()
            return body if body and top not in [i["item_id"] for i in body["items"]] else None

        after = wait_for(changed, 30, 0.2, "alice's answer to reflect the purchase")
        assert isinstance(after, dict)
        assert after["model_version"]

        # The trainer learnt the posted events; MongoDB is written behind (within a second or
        # so): the answer above came from the Redis copy of the query vector.
        def counted() -> bool:
            user = deps.db["users"].find_one({"_id": "alice"}) or {}
            return int(user.get("n_events", 0)) >= 3

        wait_for(counted, 20, 0.2, "alice's events counted in MongoDB")
    finally:
        deps.close()
        faiss.stop()
