"""Named vector spaces in faiss_app: each its own snapshot, topic, version and index type."""

from __future__ import annotations

from collections.abc import Iterator

import falcon.testing
import numpy as np
import pytest

from services.faiss_app.app import Deps, create_app
from services.faiss_app.catalog import Catalog, normalize_rows
from shared.config import ConfigError, Settings
from shared.kafka import ensure_topics, wait_for_topics
from shared.metrics import Metrics
from shared.snapshots import write_space_snapshot
from shared.spaces import parse_spaces, space_topic
from tests.conftest import replace
from tests.faiss_helpers import clustered, exact_top_k, publish, recall, write_snapshot
from tests.polling import wait_for

N_GMF, N_TRIPLET, DIM = 300, 3000, 16
TOKEN = "spaces-token"


@pytest.fixture
def spaces_settings(settings: Settings) -> Settings:
    ensure_topics(settings.kafka, spaces=["triplet", "two_tower"])
    topics = [space_topic(settings.kafka.item_vectors_topic, s) for s in ("gmf", "triplet")]
    wait_for_topics(settings.kafka, topics)
    return replace(settings, "faiss", admin_token=TOKEN, spaces="triplet:ivf,two_tower", max_k=50)


@pytest.fixture
def gmf_vectors() -> np.ndarray:
    return clustered(N_GMF, DIM + 1, n_clusters=8, seed=1)[0]


@pytest.fixture
def triplet_vectors() -> np.ndarray:
    return normalize_rows(clustered(N_TRIPLET, DIM, n_clusters=32, seed=2)[0])


@pytest.fixture
def client(
    spaces_settings: Settings, gmf_vectors: np.ndarray, triplet_vectors: np.ndarray
) -> Iterator[falcon.testing.TestClient]:
    models_dir = spaces_settings.model.models_dir
    write_snapshot(models_dir, [f"g{j}" for j in range(N_GMF)], gmf_vectors)
    write_space_snapshot(
        models_dir, "triplet", [f"t{j}" for j in range(N_TRIPLET)], triplet_vectors,
        normalized=True,
    )  # fmt: skip
    app = create_app(spaces_settings, Deps(metrics=Metrics(spaces_settings.statsd)))
    app.runtime.start()
    try:
        yield falcon.testing.TestClient(app)
    finally:
        app.runtime.stop()


def test_each_space_answers_from_its_own_snapshot(
    client: falcon.testing.TestClient, gmf_vectors: np.ndarray, triplet_vectors: np.ndarray
) -> None:
    default = client.simulate_post("/v1/search", json={"queries": [gmf_vectors[0].tolist()]})
    assert default.status_code == 200, default.text
    assert default.json["space"] == "gmf" and default.json["results"][0]["ids"][0].startswith("g")

    queries = triplet_vectors[:20]
    answer = client.simulate_post(
        "/v1/search", json={"queries": queries.tolist(), "k": 10, "space": "triplet"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json["space"] == "triplet" and answer.json["index_type"] == "ivf"
    truth = exact_top_k(triplet_vectors, queries, 10)
    found = [[int(i[1:]) for i in r["ids"]] for r in answer.json["results"]]
    assert recall(found, truth) >= 0.9

    similar = client.simulate_get(
        "/v1/similar", params={"item_id": "t5", "k": 5, "space": "triplet"}
    )
    assert similar.status_code == 200, similar.text
    assert "t5" not in similar.json["ids"] and len(similar.json["ids"]) == 5
    assert client.simulate_get("/v1/similar", params={"item_id": "t5"}).status_code == 404

    stats = client.simulate_get("/v1/stats").json
    assert stats["space"] == "gmf" and stats["count"] == N_GMF  # the default space, as before
    spaces = stats["spaces"]
    assert list(spaces) == ["gmf", "triplet", "two_tower"]
    assert spaces["triplet"]["loaded"] and spaces["triplet"]["index"]["type"] == "ivf"
    assert spaces["triplet"]["count"] == N_TRIPLET and spaces["triplet"]["recall_at_10"] >= 0.9
    assert spaces["triplet"]["topic"].endswith(".triplet")
    assert spaces["two_tower"]["loaded"] is False
    triplet_stats = client.simulate_get("/v1/stats", params={"space": "triplet"}).json
    assert triplet_stats["space"] == "triplet" and triplet_stats["normalized"] is True


def test_unknown_unloaded_and_malformed_spaces_are_json_errors(
    client: falcon.testing.TestClient,
) -> None:
    query = {"queries": [[0.0] * DIM], "space": "nope"}
    for response in (
        client.simulate_post("/v1/search", json=query),
        client.simulate_get("/v1/similar", params={"item_id": "t1", "space": "nope"}),
        client.simulate_get("/v1/stats", params={"space": "nope"}),
        client.simulate_post(
            "/v1/reload", json={"space": "nope"}, headers={"Authorization": f"Bearer {TOKEN}"}
        ),
    ):
        assert response.status_code == 404, response.text
        assert response.json["title"] == "Unknown space" and "nope" in response.json["description"]
    not_loaded = client.simulate_post("/v1/search", json={**query, "space": "two_tower"})
    assert not_loaded.status_code == 503 and "two_tower" in not_loaded.json["description"]
    wrong_type = client.simulate_post("/v1/search", json={**query, "space": 3})
    assert wrong_type.status_code == 400


def test_updates_reach_only_their_space_and_new_items_join_a_cell_at_once(
    client: falcon.testing.TestClient, spaces_settings: Settings, triplet_vectors: np.ndarray
) -> None:
    fresh = normalize_rows(triplet_vectors[:1] + 0.01)
    publish(spaces_settings.kafka, [("t-new", fresh[0])], version="v2", space="triplet")

    def similar_has_it() -> bool:
        answer = client.simulate_get(
            "/v1/similar", params={"item_id": "t0", "k": 3, "space": "triplet"}
        )
        return answer.status_code == 200 and "t-new" in answer.json["ids"]

    wait_for(similar_has_it, timeout_s=20)
    stats = client.simulate_get("/v1/stats").json
    assert stats["spaces"]["triplet"]["serving_model_version"] == "v2"
    assert stats["spaces"]["triplet"]["index"]["drift"]["added_since_training"] == 1
    assert stats["count"] == N_GMF and stats["updates"]["applied"] == 0  # gmf untouched


def test_reload_of_one_space_leaves_the_others(
    client: falcon.testing.TestClient, spaces_settings: Settings, triplet_vectors: np.ndarray
) -> None:
    before = client.simulate_get("/v1/stats").json["model_version"]
    version = write_space_snapshot(
        spaces_settings.model.models_dir, "two_tower", ["a", "b"], triplet_vectors[:2]
    )
    answer = client.simulate_post(
        "/v1/reload", json={"space": "two_tower"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json["space"] == "two_tower" and answer.json["model_version"] == version
    stats = client.simulate_get("/v1/stats").json
    assert stats["model_version"] == before and stats["spaces"]["two_tower"]["count"] == 2


def test_ivf_cells_are_retrained_when_the_catalogue_drifts() -> None:
    settings = Settings().faiss
    vectors = normalize_rows(clustered(2000, DIM, n_clusters=16, seed=4)[0])
    catalog = Catalog("v1", [f"i{j}" for j in range(2000)], vectors, DIM, settings,
                      index_type="ivf", normalized=True)  # fmt: skip
    assert catalog.index_type == "ivf" and not catalog.cells_drifted()
    # a few items near the trained cells: no drift yet
    from shared.item_vectors import ItemVectorUpdate

    near = [ItemVectorUpdate(f"n{j}", "v2", vectors[j] + 0.01) for j in range(50)]
    catalog.apply(near, {})
    assert not catalog.cells_drifted()
    # items in a region no cell covers (new catalogue section): the cells are stale
    rng = np.random.default_rng(9)
    region = normalize_rows(rng.normal(size=(1, DIM)) + 0.05 * rng.normal(size=(300, DIM)))
    catalog.apply([ItemVectorUpdate(f"r{j}", "v2", region[j]) for j in range(300)], {})
    drift = catalog.describe()["index"]["drift"]
    assert catalog.needs_rebuild(), drift
    rebuilt = catalog.rebuilt()
    assert rebuilt.count == 2350 and not rebuilt.cells_drifted()
    assert rebuilt.describe()["index"]["drift"]["trained_on"] == 2350
    assert rebuilt.recall_at_10 is not None and rebuilt.recall_at_10 >= 0.9
    # the new region is answered well by the retrained cells
    hits, _ = rebuilt.similar("r0", 10)
    assert sum(h.startswith("r") for h in hits) == 10


def test_space_list_is_checked_at_start() -> None:
    assert [s.name for s in parse_spaces("")] == ["gmf"]
    assert [(s.name, s.index_type) for s in parse_spaces("triplet:ivf, two_tower")] == [
        ("gmf", "auto"),
        ("triplet", "ivf"),
        ("two_tower", "auto"),
    ]
    for bad in ("Triplet", "triplet:annoy", "a,a", "x/y"):
        with pytest.raises(ConfigError):
            Settings.from_env({"RECSYS_FAISS_SPACES": bad})
