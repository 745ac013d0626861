"""/recommend?item_id= asks the item-to-item (triplet) space first, GMF cosine as the fallback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

from shared.config import Settings
from shared.faiss_client import FaissClient
from shared.snapshots import write_space_snapshot
from tests.test_recommender_support import (
    World,
    api_settings,
    client_for,
    seed,
    start_faiss,
)

TRIPLET_DIM = 6
TOKEN = "similar-space-token"


@pytest.fixture(scope="module")
def faiss_url(world: World, stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {**os.environ, **stack.env(), "RECSYS_FAISS_ADMIN_TOKEN": TOKEN}
    proc, url = start_faiss(world, env, tmp_path_factory.mktemp("faiss"))
    try:
        yield url
    finally:
        proc.stop()


def triplet_world(world: World) -> tuple[list[str], np.ndarray]:
    """Unit vectors for all items but the last ten (those only GMF knows)."""
    ids = world.ids[:-10]
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((len(ids), TRIPLET_DIM)).astype(np.float32)
    return ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def exact_neighbours(ids: list[str], vectors: np.ndarray, item: str, k: int) -> list[str]:
    j = ids.index(item)
    order = np.argsort(-(vectors @ vectors[j]), kind="stable")
    return [ids[i] for i in order if i != j][:k]


def recommend(settings: Settings, item: str, k: int = 5) -> dict:
    client, deps = client_for(settings)
    try:
        return client.simulate_get("/recommend", params={"item_id": item, "k": k}).json
    finally:
        deps.close()


def ids_of(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def test_similar_uses_the_triplet_space_and_falls_back_to_gmf(
    settings: Settings, faiss_url: str, world: World
) -> None:
    configured = api_settings(settings, faiss_url)
    seed(configured, world)
    # No triplet snapshot yet (the space answers 503): GMF cosine answers, nothing degraded.
    before = recommend(configured, "i7")
    assert ids_of(before) == world.exact_similar("i7", 5) and before["degraded"] is False

    ids, vectors = triplet_world(world)
    version = write_space_snapshot(world.models_dir, "triplet", ids, vectors, normalized=True)
    FaissClient(faiss_url, 5.0, admin_token=TOKEN, space="triplet").reload()

    body = recommend(configured, "i7")
    assert body["source"] == "similar" and body["model_version"] == version
    assert ids_of(body) == exact_neighbours(ids, vectors, "i7", 5)
    assert ids_of(body) != world.exact_similar("i7", 5)  # the two spaces do differ here

    only_gmf = world.ids[-1]  # not in the triplet space: GMF cosine answers
    fallback = recommend(configured, only_gmf)
    assert ids_of(fallback) == world.exact_similar(only_gmf, 5)
    assert fallback["model_version"] == world.version and fallback["degraded"] is False

    gmf_only = api_settings(settings, faiss_url, similar_space="gmf")
    assert ids_of(recommend(gmf_only, "i7")) == world.exact_similar("i7", 5)
    unknown_space = api_settings(settings, faiss_url, similar_space="nope")
    assert ids_of(recommend(unknown_space, "i7")) == world.exact_similar("i7", 5)


class SpacesAsked(FaissClient):
    """The real client, noting which space each /v1/similar call asked."""

    def __init__(self, url: str) -> None:
        super().__init__(url, 2.0)
        self.asked: list[str | None] = []

    def similar_full(self, item_id: str, k: int, timeout_s: float | None = None,
                     space: str | None = None) -> dict:
        self.asked.append(space)
        return super().similar_full(item_id, k, timeout_s, space)


def test_an_unserved_space_is_skipped_for_a_second_not_asked_every_time(
    settings: Settings, faiss_url: str, world: World
) -> None:
    now = [100.0]
    faiss = SpacesAsked(faiss_url)
    configured = api_settings(settings, faiss_url, similar_space="nope")
    seed(configured, world)
    client, deps = client_for(configured, faiss=faiss, clock=lambda: now[0])
    try:
        for _ in range(3):
            body = client.simulate_get("/recommend", params={"item_id": "i7", "k": 5}).json
            assert ids_of(body) == world.exact_similar("i7", 5) and body["degraded"] is False
        assert faiss.asked == ["nope", None, None, None]  # asked once, then gmf directly
        now[0] += 1.01
        client.simulate_get("/recommend", params={"item_id": "i7", "k": 5})
        assert faiss.asked[-2:] == ["nope", None]  # asked again after the pause
    finally:
        deps.close()
