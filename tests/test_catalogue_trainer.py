"""A deleted item never comes back: not through new events (the trainer ignores them), not
through faiss_app (tombstones, replayed after any snapshot it loads), not after the trainer and
faiss_app restart. Real Kafka, MongoDB, Redis, a real trainer and faiss_app under gunicorn."""

from __future__ import annotations

import time
from pathlib import Path

from scripts import localstack
from scripts.processes import ManagedProcess, start_gunicorn
from shared.config import Settings
from shared.events import Interaction
from shared.faiss_client import FaissClient, UnknownItem
from shared.kafka import ensure_topics, wait_for_topics
from shared.storage import redis_store
from tests.conftest import replace
from tests.polling import wait_for
from tests.test_catalogue_api import AUTH, KEY
from tests.test_recommender_support import api_settings, client_for
from tests.test_trainer_service import grouped_events, produce
from tests.trainer_thread import start_trainer, stop_trainer


def _faiss(env: dict[str, str], log_dir: Path) -> tuple[ManagedProcess, str]:
    port = localstack.free_port()
    proc = start_gunicorn("services.faiss_app.wsgi:app", port,
                          {**env, "RECSYS_FAISS_FOLLOW_UPDATES": "true"},
                          log_dir / f"faiss_{port}.log", workers=1, threads=2, timeout_s=60)
    return proc, f"http://127.0.0.1:{port}"


def _in_faiss(url: str, item_id: str) -> bool:
    try:
        FaissClient(url, 2.0).similar_full(item_id, 3)
    except UnknownItem:
        return False
    return True


def test_deleted_item_stays_out_through_events_and_restarts(
    settings: Settings, stack_env: dict[str, str], tmp_path: Path
) -> None:
    s = replace(settings, "model", initial_capacity=10, embedding_dim=8)
    s = replace(s, "trainer", batch_max_events=64, batch_max_ms=50, snapshot_interval_s=1.0)
    s = replace(s, "access", api_keys=(KEY,))
    ensure_topics(s.kafka)
    wait_for_topics(s.kafka, [s.kafka.interactions_topic, s.kafka.item_vectors_topic])
    trainer, thread = start_trainer(s)
    faiss = None
    try:
        now = int(time.time() * 1000)
        produce(s.kafka, grouped_events(now))
        wait_for(lambda: trainer.counters["events"] == 240, timeout_s=30)
        wait_for(lambda: not trainer.dirty, timeout_s=10)  # a snapshot holds every item
        faiss, faiss_url = _faiss(stack_env, tmp_path)
        client, deps = client_for(api_settings(s, faiss_url))
        personal = wait_for(lambda: (lambda a: a if a["source"] == "personalized" else None)(
            client.simulate_get("/recommend", params={"user_id": "u0", "k": 5}).json))
        victim = personal["items"][0]["item_id"]
        assert _in_faiss(faiss_url, victim)

        # an item the model never learned: no vector to take back at each snapshot
        assert client.simulate_delete("/items/never-seen", headers=AUTH).status_code == 200
        assert client.simulate_delete(f"/items/{victim}", headers=AUTH).status_code == 200
        wait_for(lambda: not _in_faiss(faiss_url, victim), timeout_s=10, what="faiss delete")
        # more events for the deleted item: not learned, no vector, no popularity
        snapshots, resent = trainer.counters["snapshots"], trainer.counters["tombstones_resent"]
        produce(s.kafka, [Interaction(f"u{n % 30}", victim, "purchase", now + 1000 + n)
                          for n in range(20)])
        wait_for(lambda: trainer.counters["deleted_items"] == 20, timeout_s=20)
        wait_for(lambda: trainer.counters["snapshots"] > snapshots and not trainer.dirty,
                 timeout_s=10)
        # each snapshot since re-sent the victim's tombstone, not never-seen's
        wait_for(lambda: trainer.counters["tombstones_resent"] - resent
                 == trainer.counters["snapshots"] - snapshots, timeout_s=5)
        assert deps.redis.zscore(redis_store.POPULAR_KEY, victim) is None
        deps.close()

        # restart the trainer (its snapshot still holds the vector) and faiss_app after it
        stop_trainer(trainer, thread)
        trainer, thread = start_trainer(s)
        produce(s.kafka, [Interaction("u1", "i1", "click", now + 5000)])
        wait_for(lambda: trainer.counters["events"] == 1 and not trainer.dirty, timeout_s=20)
        faiss.stop()
        faiss, faiss_url = _faiss(stack_env, tmp_path)
        wait_for(lambda: not _in_faiss(faiss_url, victim), timeout_s=10,
                 what="faiss replays the delete after the snapshot it loaded")
        client, deps = client_for(api_settings(s, faiss_url))
        for n in range(30):
            for params in ({"user_id": f"u{n}", "k": 24}, {"k": 24},
                           {"item_id": f"i{n % 24}", "k": 23}):
                answer = client.simulate_get("/recommend", params=params)
                assert answer.status_code == 200
                assert victim not in [i["item_id"] for i in answer.json["items"]], params
        deps.close()
    finally:
        stop_trainer(trainer, thread)
        if faiss is not None:
            faiss.stop()
