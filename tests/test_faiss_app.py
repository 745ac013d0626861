"""faiss_app over HTTP (falcon's test client) with its follower on the real local Kafka."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import falcon.testing
import numpy as np
import pytest

from services.faiss_app.app import Deps, create_app
from shared.config import Settings
from shared.kafka import ensure_topics, wait_for_topics
from shared.metrics import Metrics
from tests.conftest import replace
from tests.faiss_helpers import clustered, exact_top_k, publish, write_snapshot
from tests.polling import wait_for

N, DIM = 2000, 17
TOKEN = "s3cret"


@pytest.fixture
def faiss_settings(settings: Settings) -> Settings:
    ensure_topics(settings.kafka)
    wait_for_topics(settings.kafka, [settings.kafka.item_vectors_topic])
    return replace(settings, "faiss", admin_token=TOKEN, max_body_bytes=64 << 10, max_k=50)


@pytest.fixture
def items() -> tuple[list[str], np.ndarray]:
    vectors, _ = clustered(N, DIM, n_clusters=16, seed=3)
    return [f"item-{j}" for j in range(N)], vectors


@pytest.fixture
def client(
    faiss_settings: Settings, items: tuple[list[str], np.ndarray]
) -> Iterator[falcon.testing.TestClient]:
    ids, vectors = items
    write_snapshot(faiss_settings.model.models_dir, ids, vectors)
    app = create_app(faiss_settings, Deps(metrics=Metrics(faiss_settings.statsd)))
    app.runtime.start()
    try:
        yield falcon.testing.TestClient(app)
    finally:
        app.runtime.stop()


def search(client: falcon.testing.TestClient, queries: np.ndarray, k: int = 5, **extra):  # noqa: ANN201
    body = {"queries": np.asarray(queries).tolist(), "k": k, **extra}
    return client.simulate_post("/v1/search", json=body)


def test_search_is_exact_and_stats_describe_the_index(
    client: falcon.testing.TestClient, items: tuple[list[str], np.ndarray]
) -> None:
    ids, vectors = items
    queries = vectors[:8] + 0.1
    answer = search(client, queries, k=7)
    assert answer.status_code == 200, answer.text
    truth = exact_top_k(vectors, queries, 7)
    assert [r["ids"] for r in answer.json["results"]] == [[ids[j] for j in t] for t in truth]
    assert answer.json["index_type"] == "flat"
    stats = client.simulate_get("/v1/stats").json
    assert stats["count"] == N and stats["dimension"] == DIM and stats["index"]["type"] == "flat"
    assert client.simulate_get("/healthz").json["status"] == "ok"
    excluded = search(client, queries[:1], k=3, exclude=[[ids[truth[0][0]]]])
    assert excluded.json["results"][0]["ids"] == [ids[j] for j in truth[0][1:4]]


def test_live_upserts_and_deletes_from_kafka(
    client: falcon.testing.TestClient,
    faiss_settings: Settings,
    items: tuple[list[str], np.ndarray],
) -> None:
    ids, vectors = items
    query = vectors[:1] * 2
    before = search(client, query).json
    first = before["results"][0]["ids"][0]
    winner = (query[0] * 5).astype(np.float32)
    publish(
        faiss_settings.kafka,
        [(b"bad-message", b"not a vector"), ("fresh", winner), (first, None)],
        version="trainer-v2",
    )

    def updated() -> list[str] | None:
        top = search(client, query).json["results"][0]["ids"]
        return top if top[0] == "fresh" and first not in top else None

    wait_for(updated, timeout_s=20)
    assert client.simulate_get("/v1/similar", params={"item_id": first}).status_code == 404
    stats = client.simulate_get("/v1/stats").json
    assert stats["count"] == N  # one added, one deleted
    assert stats["updates"]["malformed"] == 1
    assert stats["updates"]["last"]["item_id"] in {"fresh", first}
    assert stats["follower"]["running"]
    similar = client.simulate_get("/v1/similar", params={"item_id": "fresh", "k": 3}).json
    assert "fresh" not in similar["ids"] and len(similar["ids"]) == 3
    # Answers name the newest trainer version applied, not the snapshot loaded at start (the
    # trailing delete carries no version and must not hide it).
    assert before["model_version"] != "trainer-v2"
    assert search(client, query).json["model_version"] == "trainer-v2"
    assert similar["model_version"] == "trainer-v2"
    assert client.simulate_get("/v1/stats").json["serving_model_version"] == "trainer-v2"


def test_reload_swaps_versions_while_searches_run(
    client: falcon.testing.TestClient,
    faiss_settings: Settings,
    items: tuple[list[str], np.ndarray],
) -> None:
    ids, vectors = items
    old = client.simulate_get("/v1/stats").json["model_version"]
    new = write_snapshot(faiss_settings.model.models_dir, ids[:500], vectors[:500] * -1)
    failures: list[str] = []
    versions: set[str] = set()
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            answer = search(client, vectors[:4], k=5)
            if answer.status_code != 200 or len(answer.json["results"]) != 4:
                failures.append(f"{answer.status_code} {answer.text}")
            else:
                versions.add(answer.json["model_version"])

    workers = [threading.Thread(target=hammer) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        denied = client.simulate_post("/v1/reload", json={}, headers={"Authorization": "Bearer x"})
        assert denied.status_code == 401 and denied.json["title"]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for _ in range(2):
            assert client.simulate_post("/v1/reload", json={}, headers=auth).status_code == 200
            back = client.simulate_post("/v1/reload", json={"version": old}, headers=auth)
            assert back.json["model_version"] == old
        loaded = client.simulate_post("/v1/reload", headers=auth)  # no body → LATEST
        assert loaded.json["model_version"] == new and loaded.json["count"] == 500
        missing = client.simulate_post("/v1/reload", json={"version": "nope"}, headers=auth)
        assert missing.status_code == 404
        # On a loaded machine the searching threads may not get a turn between two reloads:
        # give them one while the new version stays live.
        wait_for(lambda: new in versions and old in versions, timeout_s=20)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert not failures, failures[:3]
    assert {old, new} <= versions


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"queries": [[0.0] * (DIM - 1)], "k": 5}, 400),  # wrong dimension
        ({"queries": [[0.0] * DIM], "k": 0}, 400),
        ({"queries": [[0.0] * DIM], "k": 51}, 400),  # above max_k
        ({"queries": [[0.0] * DIM], "k": "5"}, 400),
        ({"queries": [[0.0] * DIM, [0.0] * 3], "k": 5}, 400),  # ragged
        ({"queries": [["1"] * DIM], "k": 5}, 400),
        ({"queries": [], "k": 5}, 400),
        ({"queries": [[0.0] * DIM], "k": 5, "exclude": [[1]]}, 400),
        ({"queries": [[0.0] * DIM], "k": 5, "exclude": [[], []]}, 400),
        ({"queries": [[1e39] * DIM], "k": 5}, 400),  # overflows float32
        ([1, 2], 400),
    ],
)
def test_bad_search_input_is_a_json_400(
    client: falcon.testing.TestClient, body: object, status: int
) -> None:
    answer = client.simulate_post("/v1/search", json=body)
    assert answer.status_code == status
    assert answer.json["title"] and answer.json["description"]


def test_other_bad_input(client: falcon.testing.TestClient) -> None:
    nan = client.simulate_post(
        "/v1/search", body=b'{"queries": [[NaN' + b", 0.0" * (DIM - 1) + b']], "k": 3}'
    )
    assert nan.status_code == 400 and "NaN" in nan.json["description"]
    broken = client.simulate_post("/v1/search", body=b'{"queries": [[1.0,')
    assert broken.status_code == 400 and "JSON" in broken.json["description"]
    huge = client.simulate_post("/v1/search", body=b"[" + b"0.0," * 20000 + b"0.0]")
    assert huge.status_code == 413 and huge.json["title"]
    unknown = client.simulate_get("/v1/similar", params={"item_id": "nobody"})
    assert unknown.status_code == 404 and "nobody" in unknown.json["description"]
    for params in ({}, {"item_id": "item-1", "k": "0"}, {"item_id": "item-1", "k": "x"}):
        answer = client.simulate_get("/v1/similar", params=params)
        assert answer.status_code == 400 and answer.json["title"]


def test_starts_without_a_snapshot_and_loads_the_first_one(
    faiss_settings: Settings, items: tuple[list[str], np.ndarray]
) -> None:
    app = create_app(faiss_settings, Deps(metrics=Metrics(faiss_settings.statsd)))
    client = falcon.testing.TestClient(app)  # the first request starts the follower
    try:
        alive = client.simulate_get("/healthz")  # alive while not ready: no restart loop
        assert alive.status_code == 200 and alive.json["index_loaded"] is False
        waiting = client.simulate_get("/readyz")
        assert waiting.status_code == 503 and waiting.json["title"]
        assert search(client, items[1][:1]).status_code == 503
        ids, vectors = items
        version = write_snapshot(faiss_settings.model.models_dir, ids, vectors)
        wait_for(lambda: client.simulate_get("/readyz").status_code == 200, timeout_s=15)
        assert client.simulate_get("/healthz").json["model_version"] == version
        assert client.simulate_get("/v1/stats").json["model_version"] == version
    finally:
        app.runtime.stop()


def test_hostile_bodies_are_400_and_errors_show_no_server_path(
    client: falcon.testing.TestClient, faiss_settings: Settings
) -> None:
    # Regression (issue 17): each of these answered 500 (OverflowError, RecursionError,
    # ENAMETOOLONG) and the 404 of /v1/reload named the absolute models folder.
    row = b", 0.0" * (DIM - 1)
    for body in (
        b'{"queries": [[' + b"1" + b"0" * 400 + row + b']], "k": 3}',  # 10**400
        b'{"queries": [[1e400' + row + b']], "k": 3}',
        b'{"queries": [[Infinity' + row + b']], "k": 3}',
        b'{"queries": ' + b"[" * 1500 + b"]" * 1500 + b', "k": 3}',
        b'{"queries": [[0.0' + row + b']], "k": 3, "x": "\xff"}',
        # Finite float32 values whose products overflow: the scores were null (found by
        # schemathesis, scripts/fuzz_api.py).
        b'{"queries": [[' + b", ".join([b"3e38", b"-3e38"] * (DIM // 2) + [b"3e38"] * (DIM % 2))
        + b']], "k": 3}',
    ):
        answer = client.simulate_post("/v1/search", body=body)
        assert answer.status_code == 400, (body[:40], answer.text)
        assert answer.json["title"] and answer.json["description"]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    models_dir = str(faiss_settings.model.models_dir)
    for version in ("v" * 300, "../etc", ".hidden", "a/b", "", 7):
        answer = client.simulate_post("/v1/reload", json={"version": version}, headers=auth)
        assert answer.status_code == 400, (version, answer.text)
    missing = client.simulate_post("/v1/reload", json={"version": "v" * 64}, headers=auth)
    assert missing.status_code == 404
    for answer in (missing, client.simulate_get("/v1/similar", params={"item_id": "x"})):
        assert models_dir not in answer.text and "/tmp" not in answer.text
