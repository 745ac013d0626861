"""Degraded answers with dependencies really down: servers stopped, or ports nobody listens on.

A private stack (its own Kafka, MongoDB, Redis) and a private faiss_app are started for this
module, then stopped one by one under a live app; the shared session stack is never touched.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import localstack
from shared.config import Settings
from shared.kafka import ensure_topics
from tests.conftest import replace
from tests.test_recommender_support import (
    World,
    api_settings,
    client_for,
    seed,
    start_faiss,
)

# Tight enough to show the budget at work, loose enough for a shared two-core machine.
BUDGET_S = 0.6
SLACK_S = 1.0


def dead_port_url(scheme: str) -> str:
    return f"{scheme}://127.0.0.1:{localstack.free_port()}"


def timed_get(client, **params: object):
    started = time.monotonic()
    result = client.simulate_get("/recommend", params=params)
    elapsed = time.monotonic() - started
    assert result.status_code == 200, result.text  # a dependency failure is never an error
    return result.json, elapsed


def ids_of(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def test_mongo_down_gives_popular_items_minus_seen(settings: Settings, faiss_url, world):
    configured = api_settings(settings, faiss_url, request_budget_s=BUDGET_S)
    seed(configured, world)
    down = replace(configured, "mongo", uri=dead_port_url("mongodb"), timeout_ms=300)
    client, deps = client_for(down)
    try:
        for _ in range(3):  # the first pays pymongo's selection wait, the others the breaker's
            body, elapsed = timed_get(client, user_id="u0", k=3)
            assert body["source"] == "popular"
            assert body["degraded"] is True and body["degraded_dependencies"] == ["mongo"]
            seen = set(world.seen["u0"])
            assert ids_of(body) == [i for i in world.popular if i not in seen][:3]
            assert elapsed < BUDGET_S + SLACK_S
        assert deps.metrics.sent["api.degraded.mongo"] == 3
    finally:
        deps.close()


def test_kafka_down_keeps_the_api_ready_while_events_are_spooled(settings: Settings, faiss_url, world):
    configured = api_settings(settings, faiss_url, request_budget_s=BUDGET_S, publish_timeout_s=0.5)
    seed(configured, world)
    host_port = dead_port_url("x").split("://")[1]
    client, deps = client_for(replace(configured, "kafka", bootstrap_servers=host_port))
    event = {"user_id": "u0", "item_id": "i1", "event": "view", "ts": int(time.time() * 1000)}
    try:
        ready = client.simulate_get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json["status"] == "ready" and ready.json["degraded"] == ["kafka"]
        body, _ = timed_get(client, user_id="u0", k=3)
        assert body["source"] == "personalized" and body["degraded"] is False
        spooled = client.simulate_post("/events", json=event)
        assert spooled.status_code == 202 and spooled.json["spooled"] == 1
        report = client.simulate_get("/healthz/dependencies").json["dependencies"]
        assert report["kafka"]["ok"] is False and report["kafka"]["used_for"] == "POST /events"
        assert host_port not in json.dumps(report)
    finally:
        deps.close()


def test_redis_down_gives_unfiltered_model_items_with_metadata_from_mongo(
    settings: Settings, faiss_url, world
):
    configured = api_settings(settings, faiss_url, request_budget_s=BUDGET_S)
    seed(configured, world)
    down = replace(configured, "redis", url=dead_port_url("redis") + "/0")
    client, deps = client_for(down)
    try:
        body, elapsed = timed_get(client, user_id="u0", k=5)
    finally:
        deps.close()
    # No seen list without Redis: the plain exact top-k (seen items included), still the model.
    assert ids_of(body) == [i for i, _ in world.exact_top_k("u0", 5, set())]
    assert body["source"] == "personalized"
    assert body["degraded"] is True and body["degraded_dependencies"] == ["redis"]
    with_metadata = {item["item_id"] for item in body["items"] if "title" in item}
    assert with_metadata == world.redis_missing  # the only item whose metadata MongoDB holds
    assert elapsed < BUDGET_S + SLACK_S


@pytest.fixture(scope="module")
def doomed(tmp_path_factory: pytest.TempPathFactory, world: World) -> Iterator[dict]:
    """A private stack and faiss_app that the test below stops one server at a time."""
    folder = tmp_path_factory.mktemp("doomed")
    info = localstack.start(folder / "stack")
    env = {**os.environ, **info.env()}
    faiss_proc, faiss_url = start_faiss(world, env, folder)
    try:
        yield {"info": info, "env": env, "faiss": faiss_proc, "faiss_url": faiss_url}
    finally:
        faiss_proc.stop()
        localstack.stop(folder / "stack")


def stop_server(info: localstack.StackInfo, name: str) -> None:
    localstack._stop_pid(info.pids[name], timeout_s=5.0)


def test_servers_stopped_one_by_one_under_a_live_app(doomed: dict, world: World, tmp_path: Path):
    env = {
        **doomed["env"],
        "RECSYS_MONGO_DATABASE": "degraded",
        "RECSYS_MODELS_DIR": str(world.models_dir),
        "RECSYS_RECOMMENDER_SPOOL_DIR": str(tmp_path / "spool"),
        "RECSYS_STATSD_ENABLED": "false",
        "RECSYS_MONGO_TIMEOUT_MS": "400",
        "RECSYS_RECOMMENDER_PUBLISH_TIMEOUT_S": "1.0",
    }
    settings = api_settings(Settings.from_env(env), doomed["faiss_url"], request_budget_s=BUDGET_S)
    settings = replace(settings, "faiss", timeout_s=0.4)
    seed(settings, world)
    ensure_topics(settings.kafka)
    client, deps = client_for(settings)
    info: localstack.StackInfo = doomed["info"]
    seen = set(world.seen["u0"])
    popular_unseen = [i for i in world.popular if i not in seen]
    try:
        body, _ = timed_get(client, user_id="u0", k=3)
        assert body["source"] == "personalized" and body["degraded"] is False
        event = {"user_id": "u0", "item_id": "i1", "event": "view", "ts": int(time.time() * 1000)}
        assert client.simulate_post("/events", json=event).status_code == 202

        # 1. faiss_app killed: popular items (seen filtered), with metadata; similar → popular.
        doomed["faiss"].stop()
        body, elapsed = timed_get(client, user_id="u0", k=3)
        assert body["source"] == "popular" and body["degraded_dependencies"] == ["faiss"]
        assert ids_of(body) == popular_unseen[:3]
        assert all("title" in item for item in body["items"] if item["item_id"] != "new-1")
        assert elapsed < BUDGET_S + SLACK_S
        body, _ = timed_get(client, item_id=world.popular[0], k=2)
        assert body["source"] == "popular" and body["degraded_dependencies"] == ["faiss"]
        assert ids_of(body) == world.popular[1:3]
        # Still ready: popular answers come from Redis; the report names faiss, not its host.
        ready = client.simulate_get("/readyz")
        assert ready.status_code == 200 and ready.json["degraded"] == ["faiss"]
        assert {n: d["ok"] for n, d in ready.json["dependencies"].items()} == {
            "mongo": True, "redis": True, "faiss": False, "kafka": True,
        }  # fmt: skip
        report = client.simulate_get("/healthz/dependencies").json["dependencies"]
        assert report["faiss"]["error"] == "FaissUnavailable"
        assert "127.0.0.1" not in json.dumps(report)

        # 2. Redis stopped too: no popular list and no seen list; what is left is nothing.
        stop_server(info, "redis")
        body, elapsed = timed_get(client, user_id="u0", k=3)
        assert body["items"] == [] and body["degraded_dependencies"] == ["faiss", "redis"]
        assert elapsed < BUDGET_S + SLACK_S
        body, _ = timed_get(client, k=3)
        assert body["items"] == [] and body["degraded"] is True
        # Neither item source answers: out of the load balancer until one is back.
        assert client.simulate_get("/readyz").status_code == 503

        # 3. MongoDB stopped too: still a 200, empty and degraded.
        stop_server(info, "mongo")
        body, elapsed = timed_get(client, user_id="u0", k=3)
        assert body["items"] == [] and body["degraded_dependencies"] == ["mongo", "redis"]
        assert elapsed < BUDGET_S + SLACK_S

        # 4. Kafka stopped: POST /events still a 202 within the publish timeout, the event
        # spooled; once the spool holds events, later ones go there without waiting.
        # (The healthy post above may have been spooled too: a new producer's first delivery
        # can take longer than the direct wait.)
        spooled_before = deps.metrics.sent.get("api.events.spooled", 0)
        stop_server(info, "kafka")
        started = time.monotonic()
        result = client.simulate_post("/events", json=event)
        assert result.status_code == 202, result.text
        assert result.json["spooled"] == 1
        assert time.monotonic() - started < 1.0 + SLACK_S
        started = time.monotonic()
        result = client.simulate_post("/events", json=[event, event])
        assert result.status_code == 202 and result.json["spooled"] == 2
        assert time.monotonic() - started < 0.5
        spooled = deps.metrics.sent["api.events.spooled"] - spooled_before
        assert spooled == 3, (deps.metrics.sent, result.json)

        ready = client.simulate_get("/readyz")
        assert ready.status_code == 503 and ready.json["status"] == "not ready"
        assert not any(d["ok"] for d in ready.json["dependencies"].values())
        sent = deps.metrics.sent
        assert {"api.degraded.faiss", "api.degraded.redis", "api.degraded.mongo"} <= set(sent)
        assert sent["api.errors.503"] >= 2  # the two /readyz
        assert "api.errors.500" not in sent
    finally:
        deps.close()
