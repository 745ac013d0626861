"""The two-tower space in the recommender: a new item's vector goes out on PUT /items."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from services.recommender_app.two_tower import TwoTowerCandidates, TwoTowerModel, update_topic
from shared import snapshots
from shared.cold_start_blend import BlendRule
from shared.config import Settings
from shared.data import SyntheticConfig, generate
from shared.faiss_client import FaissClient, SpaceNotReady, UnknownItem
from shared.item_vectors import decode
from shared.kafka import make_consumer
from shared.model.two_tower import TwoTowerConfig
from shared.model.two_tower_cli import catalogue_vectors, train_two_tower
from shared.model.two_tower_features import FeatureSpace
from shared.model.two_tower_snapshot import save_two_tower, space_dir
from tests.conftest import replace
from tests.polling import wait_for
from tests.test_recommender_support import client_for

KEY = "k" * 32
SPACE = FeatureSpace(id_buckets=1024, user_buckets=1024, category_buckets=64,
                     token_buckets=512, history=8)


def write_two_tower(models_dir: Path) -> str:
    frame, items = generate(SyntheticConfig(n_users=100, n_items=60, n_events=1500, seed=3))
    metadata = {str(r["item_id"]): r for r in items.to_dict("records")}
    encoder, _, _ = train_two_tower(frame, metadata, TwoTowerConfig(dim=8, hidden=16, epochs=1),
                                    SPACE)
    ids, vectors = catalogue_vectors(encoder, frame, metadata)
    return save_two_tower(models_dir, encoder.weights, encoder.space, encoder.known_items,
                          encoder.known_users, ids, vectors)


def read_topic(settings: Settings, topic: str, timeout_s: float = 15.0) -> list:
    consumer = make_consumer(settings.kafka, f"check-{topic}")
    partitions = consumer.list_topics(topic, timeout=5.0).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages: list = []
    try:
        deadline = time.monotonic() + timeout_s
        while not messages and time.monotonic() < deadline:
            messages += [m for m in consumer.consume(num_messages=10, timeout=0.5)
                         if m.error() is None]
    finally:
        consumer.close()
    return messages


def test_model_is_absent_until_a_snapshot_exists(tmp_path: Path) -> None:
    now = [0.0]
    model = TwoTowerModel(tmp_path, clock=lambda: now[0])
    assert model.item_vector("x", {"title": "a"}) is None
    version = write_two_tower(tmp_path)
    assert model.current() is None  # checked less than RELOAD_CHECK_S ago
    now[0] += 60.0
    vector = model.item_vector("x", {"title": "Eco books kit", "category": "books"})
    assert model.version == version and vector is not None
    assert vector.shape == (8,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    query = model.query_vector("new-user", ["i000001", "unknown"], 1_704_067_200_000)
    assert query is not None and np.isfinite(query).all()


def test_put_item_publishes_its_candidate_vector(settings: Settings, tmp_path: Path) -> None:
    configured = replace(replace(settings, "model", models_dir=tmp_path), "access",
                         api_keys=(KEY,))
    write_two_tower(tmp_path)
    topic = update_topic(configured.kafka.item_vectors_topic)
    client, deps = client_for(configured)
    try:
        fields = {"title": "Deluxe garden set", "category": "garden", "price": 12.5}
        answer = client.simulate_put("/items/fresh-1", json=fields,
                                     headers={"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 201, answer.text
        messages = read_topic(configured, topic)
        assert [m.key() for m in messages] == [b"fresh-1"]
        update = decode(messages[0].key(), messages[0].value())
        expected = TwoTowerModel(tmp_path).item_vector("fresh-1", fields)
        assert expected is not None and update.vector is not None
        np.testing.assert_allclose(update.vector, expected, atol=1e-6)
    finally:
        deps.close()


def test_blend_moves_from_two_tower_to_gmf_as_the_seen_list_grows(tmp_path: Path) -> None:
    write_two_tower(tmp_path)
    asked: list[tuple[int, list[str]]] = []

    def search(query: np.ndarray, k: int, exclude: list[str], timeout_s: float) -> dict:
        asked.append((k, list(exclude)))
        assert query.shape == (8,)
        return {"results": [{"ids": [f"t{j}" for j in range(k)],
                             "scores": [1.0 - j / 100 for j in range(k)]}]}

    popular = [(f"p{j}", 100.0 - j) for j in range(10)]
    source = TwoTowerCandidates(TwoTowerModel(tmp_path), search,
                                now_ms=lambda: 1_704_067_200_000)
    new_user = source.blend("nobody", [], popular, 10, 1.0)
    assert new_user is not None and len(new_user) == 10
    assert sum(i.startswith("t") for i, _ in new_user) == 5  # half popular for a new user
    assert sum(i.startswith("p") for i, _ in new_user) == 5
    gmf = [(f"g{j}", 5.0 - j) for j in range(10)]
    seen = [f"s{j}" for j in range(30)]
    known = source.blend("regular", seen, gmf, 10, 1.0)
    assert known is not None and [i for i, _ in known][:2] == ["g0", "t0"]
    assert sum(i.startswith("t") for i, _ in known) == 2  # the floor: a fifth
    assert asked[-1] == (10, seen)  # seen items excluded inside faiss_app


def test_recommend_blends_the_two_tower_space_for_a_new_user(
        stack, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.test_recommender_support import api_settings, make_world, seed, start_faiss

    world = make_world(tmp_path_factory.mktemp("models"))
    version = write_two_tower(world.models_dir)
    two_tower_ids = set(snapshots.read_json(
        space_dir(world.models_dir) / version / snapshots.ITEM_IDS))
    proc, url = start_faiss(world, {**os.environ, **stack.env()}, tmp_path_factory.mktemp("f"))
    try:
        configured = replace(api_settings(settings, url), "model", models_dir=world.models_dir)
        seed(configured, world)
        client, deps = client_for(configured)
        try:
            def answer_for(user: str) -> list[str]:
                got = client.simulate_get("/recommend", params={"user_id": user, "k": 10})
                assert got.status_code == 200, got.text
                return [item["item_id"] for item in got.json["items"]]

            assert wait_for(lambda: any(i in two_tower_ids for i in answer_for("brand-new")),
                            timeout_s=30)
            new_user = answer_for("brand-new")
            from_tower = [i for i in new_user if i in two_tower_ids]
            assert 3 <= len(from_tower) <= 6  # half the list, less what filters drop
            known = answer_for("u0")  # a user GMF knows: fewer slots the longer their history
            share = BlendRule().share(len(world.seen["u0"]))
            assert share < 0.5
            assert 1 <= sum(i in two_tower_ids for i in known) <= round(10 * share)
        finally:
            deps.close()
    finally:
        proc.stop()


def test_put_item_becomes_searchable_in_the_two_tower_space(
        stack_env: dict[str, str], settings: Settings,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.test_recommender_support import api_settings, make_world, start_faiss

    world = make_world(tmp_path_factory.mktemp("models"))
    write_two_tower(world.models_dir)
    # faiss_app tails this test's own item-vector topics, those the recommender publishes on
    proc, url = start_faiss(world, stack_env, tmp_path_factory.mktemp("f"), follow=True)
    faiss = FaissClient(url, 2.0, space="two_tower")
    try:
        def holds(item_id: str) -> bool:
            try:
                faiss.similar(item_id, 1)
                return True
            except (UnknownItem, SpaceNotReady):
                return False

        assert wait_for(lambda: holds("i000001"), timeout_s=60)  # the snapshot's space loaded
        with pytest.raises(UnknownItem):
            faiss.similar("fresh-searchable", 1)
        configured = replace(replace(api_settings(settings, url), "model",
                                     models_dir=world.models_dir), "access", api_keys=(KEY,))
        client, deps = client_for(configured)
        try:
            fields = {"title": "Deluxe garden set", "category": "garden", "price": 12.5}
            answer = client.simulate_put("/items/fresh-searchable", json=fields,
                                         headers={"Authorization": f"Bearer {KEY}"})
            assert answer.status_code == 201, answer.text
            vector = TwoTowerModel(world.models_dir).item_vector("fresh-searchable", fields)
            assert vector is not None

            def nearest() -> list[str]:
                return [i for i, _ in faiss.search(vector, 1)[0]]

            # searchable: its own vector's nearest neighbour in the two-tower space is itself
            assert wait_for(lambda: nearest() == ["fresh-searchable"], timeout_s=20)
            assert faiss.similar("fresh-searchable", 3)  # and it has neighbours of its own
        finally:
            deps.close()
    finally:
        proc.stop()
