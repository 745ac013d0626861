"""The catalogue API against the real MongoDB, Redis, Kafka and a real faiss_app: PUT/GET/DELETE
/items/{id}, DELETE /users/{id}, API keys, validation, new items offered before any
interaction, and a deleted item gone from every answer and staying gone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Message, TopicPartition
from falcon import testing

from services.recommender_app.deps import Deps
from shared.config import Settings
from shared.deleted_items import DELETED_KEY, DELETED_VERSION_KEY
from shared.forgotten_users import forgotten_user_of, load_forgotten
from shared.kafka import make_consumer
from shared.storage import mongo, redis_store
from tests.conftest import replace
from tests.polling import wait_for
from tests.test_recommender_support import (
    World,
    api_settings,
    client_for,
    seed,
)

KEY = "k" * 32
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def app_settings(settings: Settings, faiss_url: str, world: World) -> Settings:
    configured = replace(api_settings(settings, faiss_url), "access", api_keys=(KEY,))
    seed(configured, world)
    return configured


@pytest.fixture
def api(app_settings: Settings) -> Iterator[tuple[testing.TestClient, Deps]]:
    client, deps = client_for(app_settings)
    try:
        yield client, deps
    finally:
        deps.close()


def ids_of(answer: testing.Result) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [item["item_id"] for item in answer.json["items"]]


def test_put_get_replace_and_validation(api) -> None:
    client, deps = api
    body = {"title": "Mug", "category": "kitchen", "price": 4.5}
    assert client.simulate_put("/items/sku-1", json=body).status_code == 401
    wrong = {"Authorization": "Bearer " + "x" * 32}
    assert client.simulate_put("/items/sku-1", json=body, headers=wrong).status_code == 403
    created = client.simulate_put("/items/sku-1", json=body, headers=AUTH)
    assert created.status_code == 201, created.text
    assert created.json == {"item_id": "sku-1", **body, "created": True}
    got = client.simulate_get("/items/sku-1").json
    assert {k: got.get(k) for k in body} == body, got
    assert deps.redis.hgetall(redis_store.item_key("sku-1"))["title"] == "Mug"
    # PUT replaces: a field not sent is gone from both stores
    replaced = client.simulate_put("/items/sku-1", json={"title": "Mug 2"},
                                   headers={"X-API-Key": KEY})
    assert replaced.status_code == 200 and replaced.json["created"] is False
    assert "price" not in client.simulate_get("/items/sku-1").json
    assert deps.redis.hgetall(redis_store.item_key("sku-1")) == {"title": "Mug 2"}
    for bad, status in [({"title": 5}, 400), ({"colour": "red"}, 400), ([1], 400),
                        ({"title": "x" * 257}, 400), ({"price": -1}, 400),
                        ({"title": "x" * 5000}, 413)]:
        answer = client.simulate_put("/items/sku-2", json=bad, headers=AUTH)
        assert answer.status_code == status, (bad, answer.text)
        assert answer.json["title"]
    assert client.simulate_put("/items/bad id", json=body, headers=AUTH).status_code == 400
    assert client.simulate_get("/items/sku-2").status_code == 404
    spec = client.simulate_get("/openapi.json").json
    assert {"get", "put", "delete"} <= set(spec["paths"]["/items/{item_id}"])


def test_new_item_is_offered_before_any_interaction(api, app_settings) -> None:
    client, _ = api
    before = ids_of(client.simulate_get("/recommend", params={"user_id": "u0", "k": 5}))
    put = client.simulate_put("/items/fresh-1", json={"title": "Fresh", "category": "new"},
                              headers=AUTH)
    assert put.status_code == 201
    # another worker: it reads the new items from Redis
    other, other_deps = client_for(app_settings)
    try:
        for params in ({"user_id": "u0", "k": 5}, {"k": 5}, {"item_id": "i3", "k": 5}):
            answer = other.simulate_get("/recommend", params=params)
            items = answer.json["items"]
            assert items[-1]["item_id"] == "fresh-1", (params, items)
            assert items[-1]["title"] == "Fresh" and len(items) == 5
        # the model's own answer is unchanged apart from the last slot
        assert ids_of(other.simulate_get("/recommend", params={"user_id": "u0", "k": 5}))[:4] \
            == before[:4]
    finally:
        other_deps.close()


def test_delete_item_gone_from_every_answer_within_a_second(api, app_settings, world) -> None:
    client, deps = api
    personal = ids_of(client.simulate_get("/recommend", params={"user_id": "u1", "k": 10}))
    victim = personal[0]
    similar_source = world.exact_similar(victim, 1)[0]
    assert victim in ids_of(client.simulate_get("/recommend",
                                                params={"item_id": similar_source, "k": 10}))
    popular_victim = world.popular[0]
    # another worker, already warmed up (its deny-list read before the delete)
    other, other_deps = client_for(app_settings)
    try:
        other.simulate_get("/recommend", params={"k": 3})
        for item_id in (victim, popular_victim):
            answer = client.simulate_delete(f"/items/{item_id}", headers=AUTH)
            assert answer.status_code == 200, answer.text
        assert client.simulate_delete(f"/items/{victim}").status_code == 401

        def gone_everywhere(c: testing.TestClient) -> bool:
            answers = [ids_of(c.simulate_get("/recommend", params=p)) for p in (
                {"user_id": "u1", "k": 10}, {"item_id": similar_source, "k": 10}, {"k": 10},
                {"user_id": "u0", "k": 10})]
            return all(victim not in a and popular_victim not in a for a in answers)

        assert gone_everywhere(client)  # the worker that took the DELETE: at once
        wait_for(lambda: gone_everywhere(other), timeout_s=1.0)  # any other within 1 s
        assert client.simulate_get(f"/items/{victim}").status_code == 404
        assert deps.redis.zscore(redis_store.POPULAR_KEY, popular_victim) is None
    finally:
        other_deps.close()
    # a restart that finds Redis without its copy rebuilds it from MongoDB
    deps.redis.delete(DELETED_KEY, DELETED_VERSION_KEY)
    fresh, fresh_deps = client_for(app_settings)
    try:
        wait_for(lambda: victim not in ids_of(fresh.simulate_get(
            "/recommend", params={"user_id": "u1", "k": 10})), timeout_s=5)
        assert deps.redis.sismember(DELETED_KEY, victim)
        # PUT brings a deleted item back
        assert fresh.simulate_put(f"/items/{victim}", json={"title": "back"},
                                  headers=AUTH).status_code == 201
        assert fresh.simulate_get(f"/items/{victim}").json["title"] == "back"
        assert victim in ids_of(fresh.simulate_get("/recommend",
                                                   params={"user_id": "u1", "k": 10}))
    finally:
        fresh_deps.close()


def test_delete_user_makes_them_new(api, app_settings: Settings) -> None:
    client, deps = api
    assert client.simulate_get("/recommend", params={"user_id": "u0"}).json["source"] \
        == "personalized"
    assert client.simulate_delete("/users/u0").status_code == 401
    deps.redis.set(redis_store.query_key("u0"), b"stale copy")
    answer = client.simulate_delete("/users/u0", headers=AUTH)
    assert answer.status_code == 200 and answer.json["existed"] is True
    assert mongo.get_user(deps.db, "u0") is None
    assert redis_store.get_seen(deps.redis, "u0") == []
    assert not deps.redis.exists(redis_store.query_key("u0"))
    assert client.simulate_get("/recommend", params={"user_id": "u0"}).json["source"] \
        == "popular"
    # the forget record sits on interactions, keyed like the user's events, where MongoDB says
    ((partition, offset),) = load_forgotten(deps.db)["u0"].items()
    record = _read_at(app_settings, partition, offset)
    assert forgotten_user_of(record) == "u0" and record.key() == b"u0"
    # a second deletion moves the point forward
    assert client.simulate_delete("/users/u0", headers=AUTH).json["existed"] is False
    assert load_forgotten(deps.db)["u0"][partition] > offset


def _read_at(s: Settings, partition: int, offset: int) -> Message:
    consumer = make_consumer(s.kafka, f"probe-{uuid.uuid4().hex[:8]}")
    consumer.assign([TopicPartition(s.kafka.interactions_topic, partition, offset)])
    try:
        msg = wait_for(lambda: (lambda m: m if m and m.error() is None else None)(
            consumer.poll(0.5)), timeout_s=10)
        assert msg.offset() == offset
        return msg
    finally:
        consumer.close()
