"""The triplet space's IVF index as faiss_app serves it: new items join their nearest cell at
once, removed items are never answered, and a background rebuild swaps in without a pause in
answers or the loss of updates applied while it ran."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import falcon.testing
import numpy as np
import pytest

import services.faiss_app.index as index_module
from services.faiss_app.app import Deps, create_app
from services.faiss_app.catalog import REBUILD_MIN_DEAD, Catalog, normalize_rows
from services.faiss_app.follower import UpdateFollower
from services.faiss_app.rebuild import BackgroundRebuild
from shared.config import Settings
from shared.item_vectors import ItemVectorUpdate
from shared.kafka import ensure_topics, wait_for_topics
from shared.metrics import Metrics
from shared.snapshots import write_space_snapshot
from shared.spaces import space_topic
from tests.conftest import replace
from tests.faiss_helpers import clustered, exact_top_k, publish, write_snapshot
from tests.polling import wait_for

N, DIM = 3000, 16


def ivf_catalog(vectors: np.ndarray, prefix: str = "i", index_type: str = "ivf") -> Catalog:
    ids = [f"{prefix}{j}" for j in range(len(vectors))]
    return Catalog("v1", ids, vectors, DIM, Settings().faiss, index_type=index_type,
                   normalized=True)  # fmt: skip


@pytest.fixture
def vectors() -> np.ndarray:
    return normalize_rows(clustered(N, DIM, n_clusters=32, seed=5)[0])


@pytest.mark.parametrize("cell_lookup", ["IndexFlatIP", "IndexHNSWFlat"])
def test_a_new_item_joins_its_nearest_cell_and_is_found_at_once(
    vectors: np.ndarray, cell_lookup: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if cell_lookup == "IndexHNSWFlat":  # what 10M items get (4·√n cells): here at 3000 items
        monkeypatch.setattr(index_module, "HNSW_QUANTIZER_MIN_NLIST", 16)
    catalog = ivf_catalog(vectors)
    index = catalog._similar
    assert catalog.index_type == "ivf"
    assert index.describe()["cell_lookup"] == cell_lookup
    assert catalog.recall_at_10 is not None and catalog.recall_at_10 >= 0.9
    new = normalize_rows(vectors[7:8] + 0.02)
    catalog.apply([ItemVectorUpdate("new", "v2", new[0])], {0: 1})
    label = catalog._label_of["new"]
    assert index.cells_of(np.array([label]))[0] == index.nearest_cells(new)[0]
    ids, _ = catalog.search(new, 1)[0]
    assert ids == ["new"]
    assert "new" in catalog.similar("i7", 5)[0]


@pytest.mark.parametrize("index_type", ["flat", "ivf"])
def test_removed_items_are_never_answered(vectors: np.ndarray, index_type: str) -> None:
    catalog = ivf_catalog(vectors, index_type=index_type)
    queries = vectors[:20]
    truth = exact_top_k(vectors, queries, 60)
    # every query loses its 40 nearest items: the first search's over-fetch cannot cover that,
    # so the rows left short are searched again, wider
    removed = {f"i{j}" for j in truth[:, :40].ravel()}
    catalog.apply([ItemVectorUpdate(i, "v2", None) for i in sorted(removed)], {0: 2})
    live = np.array(sorted(set(range(N)) - {int(i[1:]) for i in removed}))
    live_truth = live[exact_top_k(vectors[live], queries, 10)]
    for row, (ids, _) in enumerate(catalog.search(queries, 10)):
        assert len(ids) == 10 and not removed & set(ids)
        if index_type == "flat":
            assert ids == [f"i{j}" for j in live_truth[row]]
        else:
            assert len({int(i[1:]) for i in ids} & set(live_truth[row].tolist())) >= 8


def test_background_rebuild_keeps_answering_and_keeps_updates_made_meanwhile(
    vectors: np.ndarray,
) -> None:
    catalog = ivf_catalog(vectors)
    deleted = [f"i{j}" for j in range(REBUILD_MIN_DEAD + 10)]
    catalog.apply([ItemVectorUpdate(i, "v2", None) for i in deleted], {0: 5})
    assert catalog.needs_rebuild()
    built, release = threading.Event(), threading.Event()

    def slow_rebuild() -> Catalog:
        fresh = catalog.rebuilt()  # reads the live rows now
        built.set()
        release.wait(10)  # the build "still runs" while the test applies more updates
        return fresh

    rebuild = BackgroundRebuild(catalog, slow_rebuild)
    assert built.wait(30)
    during = normalize_rows(vectors[2000:2010] + 0.03)
    batch = [ItemVectorUpdate(f"d{j}", "v3", during[j]) for j in range(10)]
    batch.append(ItemVectorUpdate("i2500", "v3", None))
    catalog.apply(batch, {0: 6}, (0, 5))
    rebuild.record(batch, {0: 6}, (0, 5))
    # the live catalog answers the new items at once, before the rebuild is done
    assert not rebuild.done
    assert catalog.search(during[:1], 1)[0][0] == ["d0"]
    release.set()
    assert rebuild.wait(30)
    fresh = rebuild.finish()
    assert fresh is not None and fresh is not catalog
    assert fresh.count == catalog.count == N - len(deleted) - 1 + 10
    assert fresh.updates.offsets == {0: 6}
    assert [fresh.search(during[j : j + 1], 1)[0][0] for j in range(10)] == [
        [f"d{j}"] for j in range(10)
    ]
    answered = {i for ids, _ in fresh.search(vectors[:50], 10) for i in ids}
    assert not answered & {*deleted, "i2500"}
    assert not fresh.cells_drifted() and fresh.describe()["index"]["drift"]["trained_on"] > 0


@pytest.fixture
def triplet_app(
    settings: Settings, vectors: np.ndarray
) -> Iterator[tuple[falcon.testing.TestClient, Settings]]:
    ensure_topics(settings.kafka, spaces=["triplet"])
    wait_for_topics(settings.kafka, [space_topic(settings.kafka.item_vectors_topic, "triplet")])
    settings = replace(settings, "faiss", spaces="triplet:ivf", max_k=50)
    models_dir = settings.model.models_dir
    write_snapshot(models_dir, ["g0", "g1"], np.eye(2, DIM + 1, dtype=np.float32))
    write_space_snapshot(models_dir, "triplet", [f"i{j}" for j in range(N)], vectors,
                         normalized=True)  # fmt: skip
    app = create_app(settings, Deps(metrics=Metrics(settings.statsd)))
    app.runtime.start()
    try:
        yield falcon.testing.TestClient(app), settings
    finally:
        app.runtime.stop()


def test_follower_rebuilds_in_the_background_and_swaps_without_losing_updates(
    triplet_app: tuple[falcon.testing.TestClient, Settings],
    vectors: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, settings = triplet_app
    built, release = threading.Event(), threading.Event()
    rebuilt = Catalog.rebuilt

    def slow_rebuilt(self: Catalog) -> Catalog:
        fresh = rebuilt(self)
        built.set()
        release.wait(30)
        return fresh

    monkeypatch.setattr(Catalog, "rebuilt", slow_rebuilt)
    assigned: list[str] = []
    assign = UpdateFollower._assign

    def counted_assign(self: UpdateFollower, consumer: Any, catalog: Catalog) -> bool:
        done = assign(self, consumer, catalog)
        if done:
            assigned.append(self.topic)
        return done

    monkeypatch.setattr(UpdateFollower, "_assign", counted_assign)

    def stats() -> dict[str, Any]:
        return client.simulate_get("/v1/stats", params={"space": "triplet"}).json

    wait_for(lambda: client.simulate_get("/v1/stats").status_code == 200
             and stats().get("count") == N, timeout_s=30)  # fmt: skip
    deleted = [f"i{j}" for j in range(REBUILD_MIN_DEAD + 10)]
    publish(settings.kafka, [(i, None) for i in deleted], version="v2", space="triplet")
    assert built.wait(60), stats()
    assert stats()["follower"]["rebuilding"]
    # while the rebuild runs: new items are applied to the live catalog and answered at once
    during = normalize_rows(vectors[2000:2005] + 0.03)
    publish(settings.kafka, [(f"d{j}", during[j]) for j in range(5)], version="v3",
            space="triplet")  # fmt: skip

    def search(row: int) -> list[str]:
        answer = client.simulate_post(
            "/v1/search", json={"queries": [during[row].tolist()], "k": 3, "space": "triplet"}
        )
        assert answer.status_code == 200, answer.text
        return answer.json["results"][0]["ids"]

    wait_for(lambda: all(search(j)[0] == f"d{j}" for j in range(5)), timeout_s=20)
    assert stats()["follower"]["rebuilding"] and stats()["dead_labels"] == len(deleted)
    answers: list[int] = []
    stop = threading.Event()

    def keep_searching() -> None:
        while not stop.is_set():
            answers.append(client.simulate_get(
                "/v1/similar", params={"item_id": "i2000", "k": 10, "space": "triplet"}
            ).status_code)  # fmt: skip

    searcher = threading.Thread(target=keep_searching)
    searcher.start()
    assigned_before_swap = len(assigned)  # the follower may have first assigned after the patch
    try:
        release.set()
        wait_for(lambda: stats()["follower"]["rebuilds"] == 1, timeout_s=30)
    finally:
        stop.set()
        searcher.join(10)
    assert answers and set(answers) == {200}
    after = stats()
    assert after["dead_labels"] == 0 and after["count"] == N - len(deleted) + 5
    assert [search(j)[0] for j in range(5)] == [f"d{j}" for j in range(5)]
    # Regression: the follower re-positioned its consumer after every compaction it swapped
    # in (metadata, watermarks, prefetched messages dropped), which at thousands of updates a
    # second kept a small space seconds behind. It goes on from where it was.
    triplet_topic = space_topic(settings.kafka.item_vectors_topic, "triplet")
    assert assigned[assigned_before_swap:].count(triplet_topic) == 0, assigned
    later = normalize_rows(vectors[2100:2103] - 0.03)
    publish(settings.kafka, [(f"e{j}", later[j]) for j in range(3)], version="v4",
            space="triplet")  # fmt: skip
    wait_for(lambda: all(
        client.simulate_post("/v1/search", json={
            "queries": [later[j].tolist()], "k": 1, "space": "triplet"}).json["results"][0]["ids"]
        == [f"e{j}"] for j in range(3)), timeout_s=20)  # fmt: skip
    assert assigned[assigned_before_swap:].count(triplet_topic) == 0
    similar = client.simulate_get(
        "/v1/similar", params={"item_id": "i2000", "k": 50, "space": "triplet"}
    ).json["ids"]
    assert not set(similar) & set(deleted)
