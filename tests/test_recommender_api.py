"""recommender_app against the real local stack and a real faiss_app (gunicorn subprocess)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from falcon import inspect, testing

from services.recommender_app.app import ROUTES
from services.recommender_app.deps import Deps
from shared.config import Settings
from shared.events import parse
from shared.kafka import ensure_topics, make_consumer
from shared.logs import request_id_var
from shared.storage import redis_store
from tests.conftest import replace
from tests.test_recommender_support import (
    NEW_ITEM,
    World,
    api_settings,
    client_for,
    seed,
)


@pytest.fixture
def app_settings(settings: Settings, faiss_url: str, world: World) -> Settings:
    configured = api_settings(settings, faiss_url)
    seed(configured, world)
    return configured


@pytest.fixture
def api(app_settings: Settings) -> Iterator[tuple[testing.TestClient, Deps]]:
    client, deps = client_for(app_settings)
    try:
        yield client, deps
    finally:
        deps.close()


def ids_of(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


# -- /recommend -------------------------------------------------------------------------------


def test_personalized_is_the_exact_top_k_less_seen_items_with_metadata(api, world, app_settings):
    client, deps = api
    seen = set(world.seen["u0"])
    result = client.simulate_get("/recommend", params={"user_id": "u0", "k": 10})
    assert result.status_code == 200
    body = result.json
    expected = world.exact_top_k("u0", 10, seen)
    assert ids_of(body) == [item for item, _ in expected]
    assert [item["score"] for item in body["items"]] == pytest.approx(
        [score for _, score in expected], rel=1e-4, abs=1e-4
    )
    assert not seen & set(ids_of(body))
    assert body["user_id"] == "u0"
    assert body["source"] == "personalized"
    assert body["model_version"] == world.version
    assert body["degraded"] is False
    # Metadata for every item; the best one came from MongoDB (cache miss) and is now cached.
    first = body["items"][0]
    assert first["item_id"] in world.redis_missing
    assert first["title"].startswith("Item ") and isinstance(first["price"], float)
    assert all({"title", "category", "price"} <= item.keys() for item in body["items"])
    cached = redis_store.get_item_metadata(deps.redis, [first["item_id"]])
    assert cached[first["item_id"]]["title"] == first["title"]
    sent = deps.metrics.sent
    for name in ("api.recommend.ms", "api.dependency.faiss.ms", "api.dependency.mongo.ms",
                 "api.dependency.redis.ms", "api.recommend.source.personalized"):  # fmt: skip
        assert name in sent, name


def test_short_model_list_is_filled_with_popular_items_not_seen_nor_chosen(
    settings, faiss_url, world
):
    configured = api_settings(settings, faiss_url, max_k=300)
    seed(configured, world)
    client, deps = client_for(configured)
    try:
        body = client.simulate_get("/recommend", params={"user_id": "u0", "k": 300}).json
    finally:
        deps.close()
    seen = set(world.seen["u0"])
    model_part = [item for item, _ in world.exact_top_k("u0", 300, seen)]
    assert len(model_part) == len(world.ids) - len(seen)
    # Every indexed item is already chosen or seen, so only the unindexed popular item is added.
    assert ids_of(body) == [*model_part, NEW_ITEM]
    assert body["source"] == "personalized"
    assert "title" not in body["items"][-1]  # no metadata anywhere for it
    assert len(set(ids_of(body))) == len(body["items"])


def test_similar_items_are_the_exact_cosine_neighbours(api, world):
    client, _ = api
    body = client.simulate_get("/recommend", params={"item_id": "i7", "k": 5}).json
    assert ids_of(body) == world.exact_similar("i7", 5)
    assert body["item_id"] == "i7"
    assert body["source"] == "similar"
    assert body["model_version"] == world.version
    assert body["degraded"] is False
    assert all("title" in item for item in body["items"])


@pytest.mark.parametrize(
    "params",
    [{}, {"user_id": "nobody"}, {"item_id": "no-such-item"}],
    ids=["no-id", "unknown-user", "unknown-item"],
)
def test_popular_answers_when_there_is_no_id_or_it_is_unknown(api, world, params):
    client, deps = api
    body = client.simulate_get("/recommend", params={**params, "k": 4}).json
    assert ids_of(body) == world.popular[:4]
    assert body["source"] == "popular"
    assert body["degraded"] is False
    assert body["model_version"] is None
    assert deps.metrics.sent["api.recommend.source.popular"] == 1


def test_popular_fallback_of_a_known_user_without_a_vector_skips_seen_items(api, world):
    client, deps = api
    deps.db["users"].update_one({"_id": "u0"}, {"$unset": {"query_vector": ""}})
    body = client.simulate_get("/recommend", params={"user_id": "u0", "k": 3}).json
    seen = set(world.seen["u0"])
    assert ids_of(body) == [item for item in world.popular if item not in seen][:3]
    assert body["source"] == "popular"


@pytest.mark.parametrize(
    "query",
    [
        "k=0",
        "k=10000",
        "k=abc",
        "user_id=bad%20id",
        "user_id=",
        "user_id=" + "x" * 129,
        "user_id[$ne]=",
        "user_id[$ne]=x",
        "user_id=u0&item_id=i1",
        "user_id=u0&user_id=u1",
        "item_id=%7B%22%24ne%22%3A1%7D",  # {"$ne":1}
        "limit=3",
    ],
)
def test_bad_parameters_are_400_with_a_json_error(api, query):
    client, deps = api
    result = client.simulate_get("/recommend", query_string=query)
    assert result.status_code == 400, result.text
    assert result.json["title"]
    assert deps.metrics.sent["api.errors.400"] == 1


def test_unknown_route_is_a_json_404(api):
    client, _ = api
    result = client.simulate_get("/nope")
    assert result.status_code == 404
    assert "title" in result.json


# -- /events ----------------------------------------------------------------------------------


def consume_all(settings: Settings, expected: int, timeout_s: float = 15.0) -> list:
    consumer = make_consumer(settings.kafka, f"check-{settings.kafka.interactions_topic}")
    partitions = [
        TopicPartition(settings.kafka.interactions_topic, p, OFFSET_BEGINNING)
        for p in range(settings.kafka.interactions_partitions)
    ]
    consumer.assign(partitions)
    messages = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(messages) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=100, timeout=0.5):
                if msg.error() is None:
                    messages.append(msg)
    finally:
        consumer.close()
    return messages


def event(user_id: str, item_id: str, kind: str = "click", **extra: object) -> dict:
    ts = int(time.time() * 1000)
    return {"user_id": user_id, "item_id": item_id, "event": kind, "ts": ts, **extra}


def test_events_batch_publishes_only_the_valid_records_keyed_by_user(api, app_settings):
    client, deps = api
    ensure_topics(app_settings.kafka)
    batch = [
        event("u1", "i3", item={"title": "Lamp", "price": 12.5}),
        event("u1", "i4", kind="teleport"),
        {"user_id": "u2", "item_id": "i5"},
        event("u2", "i6", kind="purchase"),
        event("u$bad", "i7"),
        "not an object",
    ]
    result = client.simulate_post("/events", json=batch)
    assert result.status_code == 202, result.text
    body = result.json
    assert body["accepted"] == 2 and body["rejected"] == 4
    assert [e["index"] for e in body["errors"]] == [1, 2, 4, 5]
    assert "event must be one of" in body["errors"][0]["reason"]
    assert "missing fields" in body["errors"][1]["reason"]
    assert [(e["user_id"], e["item_id"]) for e in body["events"]] == [("u1", "i3"), ("u2", "i6")]

    messages = consume_all(app_settings, expected=2)
    got = sorted((m.key().decode(), parse(m.value()).to_dict()) for m in messages)
    assert got == sorted((e["user_id"], e) for e in (batch[0], batch[3]))
    assert deps.metrics.sent["api.events.accepted"] == 2
    assert deps.metrics.sent["api.events.rejected"] == 4


def test_events_single_record_invalid_json_and_all_invalid(api, app_settings):
    client, deps = api
    ensure_topics(app_settings.kafka)
    ok = client.simulate_post("/events", json=event("u0", "i1"))
    assert ok.status_code == 202 and ok.json["accepted"] == 1
    one_bad = client.simulate_post("/events", json=event("u0", "i1", kind="nope"))
    assert one_bad.status_code == 400
    assert one_bad.json["title"] == "Invalid event"
    assert one_bad.json["errors"] == [{"index": 0, "reason": one_bad.json["description"]}]
    all_bad = client.simulate_post("/events", json=[{"user_id": "u0"}, 3])
    assert all_bad.status_code == 400
    assert [e["index"] for e in all_bad.json["errors"]] == [0, 1]
    for body in (b"{not json", b"", b"[]", b"[" * 100_000 + b"]" * 100_000):
        result = client.simulate_post("/events", body=body)
        assert result.status_code in (400, 413) and result.json["title"], body[:20]
    assert client.simulate_post("/events", body=b"[]").status_code == 400


def test_oversized_bodies_and_batches_are_413(settings, faiss_url, world):
    configured = api_settings(settings, faiss_url, max_body_bytes=2000, max_events_per_request=3)
    client, deps = client_for(configured)
    try:
        big = json.dumps([event("u0", "i1", item={"title": "x" * 200})] * 12).encode()
        assert len(big) > 2000
        result = client.simulate_post("/events", body=big)
        assert result.status_code == 413 and result.json["title"] == "Body too large"
        chunked = client.simulate_post(
            "/events", body=big, headers={"Transfer-Encoding": "chunked"}
        )
        assert chunked.status_code == 413
        many = client.simulate_post("/events", json=[event("u0", "i1")] * 4)
        assert many.status_code == 413 and many.json["title"] == "Too many events"
        assert deps.metrics.sent["api.errors.413"] >= 2
    finally:
        deps.close()


# -- health, docs, request ids ---------------------------------------------------------------


def test_healthz_and_readyz_with_every_dependency_up(api):
    client, _ = api
    assert client.simulate_get("/healthz").json == {"status": "ok"}
    ready = client.simulate_get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json["status"] == "ready" and ready.json["degraded"] == []
    assert set(ready.json["dependencies"]) == {"mongo", "redis", "faiss", "kafka"}
    assert all(dep["ok"] for dep in ready.json["dependencies"].values())
    report = client.simulate_get("/healthz/dependencies").json["dependencies"]
    assert all(dep["ok"] and dep["ms"] >= 0 and dep["used_for"] for dep in report.values())


def test_events_need_a_valid_key_when_keys_are_set(app_settings):
    key = "k" * 24
    client, deps = client_for(replace(app_settings, "access", api_keys=(key,)))
    event = {"user_id": "u-key", "item_id": "i1", "event": "view", "ts": int(time.time() * 1000)}
    try:
        missing = client.simulate_post("/events", json=event)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = client.simulate_post("/events", json=event, headers={"X-API-Key": key + "x"})
        assert wrong.status_code == 403 and wrong.json["title"] == "Invalid API key"
        bearer = client.simulate_post(
            "/events", json=event, headers={"Authorization": f"Bearer {key}"}
        )
        assert bearer.status_code == 202, bearer.text
        assert client.simulate_get("/recommend", params={"k": 2}).status_code == 200  # open
        assert deps.metrics.sent["api.errors.401"] == 1
    finally:
        deps.close()


def test_openapi_lists_every_route_and_method(api):
    client, _ = api
    spec = client.simulate_get("/openapi.json").json
    assert spec["openapi"].startswith("3.1")
    routes = {route.path: route for route in inspect.inspect_routes(client.app)}
    assert set(routes) == set(spec["paths"]) == set(ROUTES)
    for path, route in routes.items():
        methods = {m.method.lower() for m in route.methods if m.internal is False}
        assert methods == set(spec["paths"][path]), path


def test_request_id_is_echoed_or_generated(api):
    client, _ = api
    given = client.simulate_get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = client.simulate_get("/recommend", headers={"X-Request-ID": "bad id\nforged=1"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])
    error = client.simulate_get("/recommend", params={"k": "0"})
    assert re.fullmatch(r"[0-9a-f]{32}", error.headers["X-Request-ID"])


def test_request_id_is_on_the_log_lines_of_the_request(api):
    client, _ = api
    seen: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(request_id_var.get())  # what shared.logs puts on every line

    logger = logging.getLogger("services.recommender_app")
    handler, level = Capture(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        client.simulate_get("/recommend", params={"user_id": "u0"}, headers={"X-Request-ID": "r-7"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert seen and set(seen) == {"r-7"}
    assert request_id_var.get() == "-"  # reset after the request


def test_wsgi_module_builds_the_app_from_the_environment(stack_env, tmp_path: Path):
    code = "from services.recommender_app.wsgi import app; print(type(app).__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=stack_env, capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "App"


def test_events_with_hostile_fields_or_json_are_400_not_500(api, app_settings):
    # Regression (issue 17): an event type that is an object answered 500 (TypeError).
    client, _ = api
    ensure_topics(app_settings.kafka)
    record = {"event": {}, "item": {"category": "", "price": 0.0, "title": ""}, "item_id": "0"}
    answer = client.simulate_post("/events", json=[{**record, "ts": 0, "user_id": "0"}])
    assert answer.status_code == 400 and answer.json["errors"][0]["index"] == 0
    for body in (
        b'{"user_id": "u1", "item_id": "i", "event": "view", "ts": ' + b"9" * 5000 + b"}",
        b'[{"user_id": "u1", "item_id": "i", "event": "view", "ts": NaN}]',
        b'{"user_id": "\xff"}',
        b"[" * 3000 + b"]" * 3000,
    ):
        answer = client.simulate_post("/events", body=body)
        assert answer.status_code == 400 and answer.json["title"] == "Invalid JSON", body[:30]
    newline = client.simulate_post("/events", json=event("u1\n", "i1"))
    assert newline.status_code == 400
