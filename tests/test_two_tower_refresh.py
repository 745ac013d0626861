"""The two-tower space kept fresh: a re-train swaps the served space atomically."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import falcon.testing
import numpy as np
import pytest

from services.faiss_app.app import Deps, create_app
from shared import snapshots
from shared.config import Settings
from shared.data import SyntheticConfig, generate
from shared.kafka import ensure_topics, wait_for_topics
from shared.metrics import Metrics
from shared.model.triplet_refresh import run_periodically
from shared.model.two_tower import TwoTowerConfig
from shared.model.two_tower_refresh import TwoTowerRefresh, end_offsets, merged_metadata
from shared.model.two_tower_snapshot import load_two_tower, space_dir
from shared.spaces import space_topic
from tests.conftest import replace
from tests.faiss_helpers import publish, write_snapshot
from tests.polling import wait_for
from tests.test_two_tower_serving import write_two_tower

TOKEN = "two-tower-refresh-token"
CONFIG = TwoTowerConfig(dim=8, hidden=16, epochs=2)
PUT_ITEM = "put-before-retrain"
PUT_FIELDS = {"title": "Deluxe garden set", "category": "garden", "price": 12.5}


@pytest.fixture
def faiss_settings(settings: Settings) -> Settings:
    ensure_topics(settings.kafka, spaces=["two_tower"])
    wait_for_topics(settings.kafka, [space_topic(settings.kafka.item_vectors_topic, "two_tower")])
    return replace(settings, "faiss", admin_token=TOKEN, spaces="two_tower")


@pytest.fixture
def faiss(faiss_settings: Settings) -> Iterator[falcon.testing.TestClient]:
    models_dir = faiss_settings.model.models_dir
    write_snapshot(models_dir, ["g0", "g1"], np.eye(2, 5, dtype=np.float32))
    write_two_tower(models_dir)
    app = create_app(faiss_settings, Deps(metrics=Metrics(faiss_settings.statsd)))
    app.runtime.start()
    try:
        yield falcon.testing.TestClient(app)
    finally:
        app.runtime.stop()


def _search(client: falcon.testing.TestClient, vector: np.ndarray) -> falcon.testing.Result:
    return client.simulate_post("/v1/search", json={"queries": [vector.tolist()], "k": 1,
                                                    "space": "two_tower"})


def test_retrain_swaps_the_space_under_searches_and_re_embeds_items_put_before(
    faiss: falcon.testing.TestClient, faiss_settings: Settings
) -> None:
    models_dir = faiss_settings.model.models_dir
    old_encoder, old_manifest = load_two_tower(models_dir)
    old_vector = old_encoder.candidate_vectors(
        old_encoder.item_table([PUT_ITEM], {PUT_ITEM: PUT_FIELDS}), np.zeros(1, np.int64))[0]
    # PUT /items before the re-train: the old model's vector on the space's topic
    publish(faiss_settings.kafka, [(PUT_ITEM, old_vector)], version=old_manifest["version"],
            space="two_tower")
    assert wait_for(lambda: _search(faiss, old_vector).json["results"][0]["ids"] == [PUT_ITEM],
                    timeout_s=20)

    frame, items = generate(SyntheticConfig(n_users=120, n_items=70, n_events=2500, seed=5))
    metadata = merged_metadata({str(r["item_id"]): r for r in items.to_dict("records")},
                               {PUT_ITEM: PUT_FIELDS})  # the catalogue holds the PUT item

    def reload(version: str) -> None:
        answer = faiss.simulate_post("/v1/reload", json={"space": "two_tower", "version": version},
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200, answer.text

    topic = space_topic(faiss_settings.kafka.item_vectors_topic, "two_tower")
    refresh = TwoTowerRefresh(lambda: (frame, metadata),
                              lambda: end_offsets(faiss_settings.kafka, topic), CONFIG,
                              models_dir, keep=3, reload=reload)
    served: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def keep_searching() -> None:
        query = np.ones(8, dtype=np.float32) / np.sqrt(8)
        # A breath between searches: back to back, this thread took the GIL from the re-train
        # it watches and the test ran for a minute; a search every few ms still spans the swap.
        while not stop.wait(0.002):
            answer = _search(faiss, query)
            if answer.status_code != 200:
                failures.append(answer.text)
            else:
                served.append(answer.json["model_version"])

    searcher = threading.Thread(target=keep_searching)
    searcher.start()
    try:
        done = refresh.run_once()
        wait_for(lambda: served and served[-1] == done.version, timeout_s=10)
    finally:
        stop.set()
        searcher.join(timeout=10)

    assert done.reloaded and done.version != old_manifest["version"]
    assert snapshots.read_latest(space_dir(models_dir)) == done.version
    assert not failures  # never a failed search while the space was swapped
    switched = served.index(done.version)
    assert set(served[:switched]) == {old_manifest["version"]}  # the old space until the swap,
    assert set(served[switched:]) == {done.version}  # then only the new one, never back
    new_encoder, manifest = load_two_tower(models_dir)
    assert manifest["offsets"]["item-vectors.two_tower"] == end_offsets(faiss_settings.kafka,
                                                                        topic)
    assert manifest["n_items"] == len(set(frame["item_id"]) | set(metadata))
    # the PUT item is in the new space with the new model's vector: the old vector, published
    # before the snapshot's offsets, is not applied over it
    new_vector = new_encoder.candidate_vectors(
        new_encoder.item_table([PUT_ITEM], metadata), np.zeros(1, np.int64))[0]
    hit = _search(faiss, new_vector).json["results"][0]
    assert hit["ids"] == [PUT_ITEM] and hit["scores"][0] == pytest.approx(1.0, abs=1e-4)
    assert not np.allclose(new_vector, old_vector, atol=1e-3)


def test_periodic_retrain_writes_a_new_version_each_period_until_stopped(
    tmp_path: pytest.TempPathFactory,
) -> None:
    frame, items = generate(SyntheticConfig(n_users=60, n_items=40, n_events=800, seed=6))
    metadata = {str(r["item_id"]): r for r in items.to_dict("records")}
    refresh = TwoTowerRefresh(lambda: (frame, metadata), dict,
                              TwoTowerConfig(dim=8, hidden=16, epochs=1), tmp_path, keep=2)
    stop = threading.Event()
    versions: list[str] = []

    def once() -> None:
        versions.append(refresh.run_once().version)
        if len(versions) == 3:
            stop.set()

    # a period over a second: versions are named by the second, so they sort in time order
    worker = threading.Thread(target=run_periodically, args=(once, 1.05, stop))
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive() and len(versions) == 3 and len(set(versions)) == 3
    assert snapshots.read_latest(space_dir(tmp_path)) == versions[-1]
    kept = sorted(p.name for p in space_dir(tmp_path).iterdir() if p.is_dir())
    assert kept == sorted(versions[-2:])  # --keep 2: older versions removed
