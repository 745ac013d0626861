"""/recommend with the vector spaces as ranking-stage sources (RECSYS_RANKING_SPACE_SOURCES),
against the real stack and a real faiss_app: a space that is not loaded is no answer (not an
outage); once loaded, its candidates are ranked with the others and explained."""

from __future__ import annotations

import numpy as np

from scripts import localstack
from shared.faiss_client import FaissClient
from shared.snapshots import write_space_snapshot
from tests.conftest import replace
from tests.test_recommender_ranking import get
from tests.test_recommender_similar_space import TOKEN
from tests.test_recommender_similar_space import faiss_url as faiss_url  # with an admin token
from tests.test_recommender_support import api_settings, seed

DIM = 6


def test_space_sources_answer_nothing_until_loaded_then_are_ranked_and_explained(
        settings, faiss_url, world):
    configured = api_settings(settings, faiss_url, ranking=True)
    configured = replace(configured, "ranking", lists_cache_s=0.0,
                         space_sources=("two_tower", "triplet"))
    seed(configured, world)
    seen = set(world.seen["u0"])
    newest = world.seen["u0"][0]
    # far below the 100 GMF candidates of u0: only the triplet space can propose it
    target = [i for i, _ in world.exact_top_k("u0", 200, seen)][150]

    # No triplet snapshot (faiss_app answers 503 for the space), no two-tower model: the other
    # sources are ranked and nothing is degraded.
    before = get(configured, user_id="u0", k=10, explain="true")
    assert before["degraded"] is False and before["source"] == "personalized"
    assert len(before["items"]) == 10
    for item in before["items"]:
        assert not {"triplet", "two_tower"} & set(item["explain"]["sources"])

    # The triplet space: the target is the newest item's nearest neighbour.
    ids = world.ids
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    vectors[ids.index(target)] = vectors[ids.index(newest)]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    write_space_snapshot(world.models_dir, "triplet", ids, vectors, normalized=True)
    FaissClient(faiss_url, 5.0, admin_token=TOKEN, space="triplet").reload()

    after = get(configured, user_id="u0", k=10, explain="true")
    assert after["degraded"] is False
    by_id = {item["item_id"]: item for item in after["items"]}
    assert target in by_id and by_id[target]["explain"]["sources"] == {"triplet": 0}
    assert not seen & set(by_id)

    # faiss_app down: GMF and the spaces fail, the Redis sources are still ranked.
    down = replace(configured, "faiss", url=f"http://127.0.0.1:{localstack.free_port()}")
    body = get(down, user_id="u0", k=5, explain="true")
    assert body["degraded"] is True and body["degraded_dependencies"] == ["faiss"]
    assert body["items"] and not seen & {item["item_id"] for item in body["items"]}
