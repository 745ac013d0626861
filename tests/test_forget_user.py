"""DELETE /users/{id} makes the user new for good: the stores, the trainer's row, its snapshots,
and a restart that replays events sent before the deletion. Real Kafka, MongoDB, Redis and a
real trainer (in this process, so its rows can be read)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import TopicPartition

from services.incremental_trainer import partition_state
from services.incremental_trainer.service import Trainer
from shared import snapshots
from shared.config import Settings
from shared.events import Interaction
from shared.forgotten_users import load_forgotten
from shared.kafka import ensure_topics, wait_for_topics
from shared.metrics import Metrics
from shared.model.checkpoint import load_snapshot
from shared.storage import mongo, redis_store
from tests.conftest import replace
from tests.polling import wait_for
from tests.test_catalogue_api import AUTH, KEY
from tests.test_catalogue_trainer import _faiss
from tests.test_recommender_support import api_settings, client_for
from tests.test_trainer_service import grouped_events, produce
from tests.trainer_thread import run_in_thread, start_trainer, stop_trainer

VICTIM = "u0"
NOW = int(time.time() * 1000)
BEFORE = [Interaction(VICTIM, f"i{3 * (n % 8)}", "purchase", NOW + 10_000 + n) for n in range(40)]
AFTER = [Interaction(VICTIM, "i1", "click", NOW + 90_000),
         Interaction(VICTIM, "i4", "click", NOW + 90_001)]



def _row(trainer: Trainer, user_id: str = VICTIM) -> np.ndarray:
    row = trainer.learner.state.user_map.row(user_id, create=False)
    assert row is not None
    return trainer.learner.tables.user_embedding[row].copy()


def _snapshot_row(models_dir: Path, version: str | None = None, user_id: str = VICTIM
                  ) -> np.ndarray:
    snap = load_snapshot(models_dir, version)
    row = snap.user_map.row(user_id, create=False)
    assert row is not None
    return snap.model.user_embedding.data.numpy()[row].copy()


def _learned(trainer: Trainer, events: int) -> bool:
    return trainer.counters["events"] >= events and not trainer.dirty


@pytest.fixture
def forget_settings(settings: Settings) -> Settings:
    s = replace(settings, "model", initial_capacity=10, embedding_dim=16)
    s = replace(s, "trainer", batch_max_events=64, batch_max_ms=50, snapshot_interval_s=0.5,
                snapshots_kept=50)
    return replace(s, "access", api_keys=(KEY,))


def test_deleted_user_starts_again_and_a_replay_does_not_bring_them_back(
    forget_settings: Settings, stack_env: dict[str, str], tmp_path: Path
) -> None:
    s = forget_settings
    models_dir = Path(s.model.models_dir)
    ensure_topics(s.kafka)
    wait_for_topics(s.kafka, [s.kafka.interactions_topic, s.kafka.item_vectors_topic])
    trainer, thread = start_trainer(s)
    faiss = deps = None
    try:
        # the victim's taste is learned and in a snapshot (S1), then more of it that is not
        produce(s.kafka, grouped_events(NOW))
        wait_for(lambda: _learned(trainer, 240), timeout_s=30)
        faiss, faiss_url = _faiss(stack_env, tmp_path)
        client, deps = client_for(api_settings(s, faiss_url))
        produce(s.kafka, BEFORE[:20])
        wait_for(lambda: _learned(trainer, 260), timeout_s=30)
        before_deletion = snapshots.read_latest(models_dir)
        produce(s.kafka, BEFORE[20:])
        wait_for(lambda: trainer.counters["events"] >= 280, timeout_s=30)
        old = _row(trainer)
        wait_for(lambda: (mongo.get_user(deps.db, VICTIM) or {}).get("n_events", 0) >= 40,
                 timeout_s=10)
        new_user_answer = client.simulate_get("/recommend", params={"user_id": "nobody"}).json
        wait_for(lambda: client.simulate_get("/recommend", params={"user_id": VICTIM}).json[
            "source"] == "personalized", timeout_s=10)

        answer = client.simulate_delete(f"/users/{VICTIM}", headers=AUTH)
        assert answer.status_code == 200 and answer.json["existed"] is True
        (offsets,) = [v for u, v in load_forgotten(deps.db).items() if u == VICTIM]
        assert len(offsets) == 1

        # the trainer meets the forget record: a fresh row, the stores emptied again
        wait_for(lambda: trainer.forgetting.forgotten == 1, timeout_s=20, what="forget record")
        fresh = _row(trainer)
        assert np.all(fresh != old)
        wait_for(lambda: trainer.users.backlog == 0, timeout_s=10)
        assert mongo.get_user(deps.db, VICTIM) is None
        assert redis_store.get_seen(deps.redis, VICTIM) == []
        assert not deps.redis.exists(redis_store.query_key(VICTIM))
        victim_answer = client.simulate_get("/recommend", params={"user_id": VICTIM}).json
        assert victim_answer["source"] == new_user_answer["source"] == "popular"
        assert victim_answer["items"] == new_user_answer["items"]

        # new events are learned from the fresh row, and counted from zero
        produce(s.kafka, AFTER)
        wait_for(lambda: _learned(trainer, 282), timeout_s=30)
        learned = _row(trainer)
        step = np.linalg.norm(learned - fresh)
        assert 0 < step < np.linalg.norm(learned - old) / 3
        wait_for(lambda: (mongo.get_user(deps.db, VICTIM) or {}).get("n_events") == 2,
                 timeout_s=10, what="the user's document counts only the new events")
        assert redis_store.get_seen(deps.redis, VICTIM) == ["i4", "i1"]
        stop_trainer(trainer, thread)
        # the snapshot holds the new row, not the old one
        assert np.allclose(_snapshot_row(models_dir), learned)

        # restart from S1, as after a crash before any later snapshot: the events sent before
        # the deletion are replayed, dropped, and the old row does not come back
        assert before_deletion is not None
        snapshots.write_text_atomic(models_dir / snapshots.LATEST, before_deletion + "\n")
        trainer = Trainer(s, metrics=Metrics(s.statsd))
        # the snapshot's row predates the deletion: reset at load, before any replay
        assert np.all(_row(trainer) != _snapshot_row(models_dir, before_deletion))
        assert trainer.forgetting.forgotten == 1
        thread = run_in_thread(trainer)
        wait_for(lambda: trainer.counters["events"] >= 2 and not trainer.dirty
                 and trainer.forgetting.forgotten >= 2, timeout_s=30, what="replay")
        assert trainer.forgetting.dropped == 20  # BEFORE[20:], after S1, before the deletion
        assert trainer.counters["events"] == 2
        replayed = _row(trainer)
        assert np.linalg.norm(replayed - old) > 3 * step
        wait_for(lambda: trainer.users.backlog == 0, timeout_s=10)
        assert mongo.get_user(deps.db, VICTIM)["n_events"] == 2
        assert redis_store.get_seen(deps.redis, VICTIM) == ["i4", "i1"]
        assert client.simulate_get("/recommend", params={"user_id": VICTIM}).json["source"] \
            == "personalized"
        stop_trainer(trainer, thread)
        assert np.allclose(_snapshot_row(models_dir), replayed)
    finally:
        if thread.is_alive():
            stop_trainer(trainer, thread)
        if deps is not None:
            deps.close()
        if faiss is not None:
            faiss.stop()


def test_a_partition_handed_over_from_before_the_deletion_does_not_bring_the_row_back(
    forget_settings: Settings,
) -> None:
    """Several trainers (RECSYS_TRAINER_SHARE_ITEMS): the member that is assigned the user's
    partition loads its previous owner's file, written before the deletion; the old row it
    copies is reset at once, not only when the member reaches the forget record."""
    s = replace(forget_settings, "trainer", share_items=True)
    models_dir = Path(s.model.models_dir)
    ensure_topics(s.kafka)
    wait_for_topics(s.kafka, [s.kafka.interactions_topic, s.kafka.item_vectors_topic])
    owner, thread = start_trainer(s)
    deps = None
    try:
        produce(s.kafka, BEFORE)
        wait_for(lambda: _learned(owner, 40), timeout_s=30)
        partition = owner.group.user_partition[VICTIM]
        stop_trainer(owner, thread)
        handed = partition_state.load(models_dir, partition)
        assert handed is not None and VICTIM in handed.user_ids
        old = handed.user_embedding[handed.user_ids.index(VICTIM)]

        client, deps = client_for(api_settings(s, "http://127.0.0.1:9"))
        assert client.simulate_delete(f"/users/{VICTIM}", headers=AUTH).status_code == 200
        # a member that never held the user (no snapshot of its own) is assigned the partition
        (models_dir / snapshots.LATEST).unlink()
        member = Trainer(s, metrics=Metrics(s.statsd))
        try:
            member._on_assign(member.consumer, [TopicPartition(s.kafka.interactions_topic,
                                                               partition)])
            assert member.positions[partition] == handed.next_offset
            assert np.all(_row(member) != old)
        finally:
            member.consumer.close()
            member.users.close(timeout_s=5)
            if member.group is not None:
                member.group.close()
    finally:
        if thread.is_alive():
            stop_trainer(owner, thread)
        if deps is not None:
            deps.close()
