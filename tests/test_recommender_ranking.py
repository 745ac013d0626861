"""/recommend with the ranking stage on, against the real stack and a real faiss_app."""

from __future__ import annotations

import json

import pytest

from scripts import localstack
from shared.config import Settings
from shared.ranking.features import feature_names
from shared.storage import ranking_store, redis_store
from tests.conftest import replace
from tests.test_recommender_support import (
    World,
    api_settings,
    client_for,
    seed,
)

SOURCES = ["gmf", "co_engagement", "trending", "popular", "new_items"]


@pytest.fixture
def ranked_settings(settings: Settings, faiss_url: str, world: World) -> Settings:
    configured = api_settings(settings, faiss_url, ranking=True)
    configured = replace(configured, "ranking", lists_cache_s=0.0)
    seed(configured, world)
    # The item u0 engaged with most recently is often followed by i199 (far down u0's GMF list).
    r = redis_store.connect(configured.redis)
    r.zadd(ranking_store.coeng_key(world.seen["u0"][0]), {"i199": 5.0, "i198": 1.0})
    r.close()
    return configured


def ids_of(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def get(settings: Settings, **params: object) -> dict:
    client, deps = client_for(settings)
    try:
        result = client.simulate_get("/recommend", params=params)
    finally:
        deps.close()
    assert result.status_code == 200, result.text
    return result.json


def test_ranked_answer_mixes_sources_explains_itself_and_never_serves_seen_items(
        ranked_settings, world):
    body = get(ranked_settings, user_id="u0", k=10, explain="true")
    served = ids_of(body)
    assert len(served) == 10 and not set(served) & set(world.seen["u0"])
    assert body["source"] == "personalized" and body["ranker_version"] == "prior"
    assert "i199" in served  # from co-engagement only
    by_id = {item["item_id"]: item for item in body["items"]}
    assert "co_engagement" in by_id["i199"]["explain"]["sources"]
    for item in body["items"]:
        assert item["explain"]["sources"] and item["explain"]["contributions"]
        assert "title" in item  # metadata still attached
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert "explain" not in get(ranked_settings, user_id="u0", k=3)["items"][0]


def test_exclude_and_category_filters(ranked_settings, world):
    first = ids_of(get(ranked_settings, user_id="u0", k=5))
    excluded = ids_of(get(ranked_settings, user_id="u0", k=5, exclude=",".join(first[:2])))
    assert not set(first[:2]) & set(excluded) and len(excluded) == 5
    body = get(ranked_settings, user_id="u0", k=5, category="cat-3")
    assert body["items"] and {item["category"] for item in body["items"]} == {"cat-3"}
    popular = get(ranked_settings, k=5, category="cat-3", exclude=body["items"][0]["item_id"])
    assert {item["category"] for item in popular["items"]} <= {"cat-3"}
    assert body["items"][0]["item_id"] not in ids_of(popular)


def test_bad_filter_parameters_are_400s(ranked_settings):
    client, deps = client_for(ranked_settings)
    try:
        for params in ({"exclude": "ok,not ok"}, {"category": "x" * 129},
                       {"explain": "maybe"}, {"exclude": ",".join(["a"] * 501)}):
            result = client.simulate_get("/recommend", params={"user_id": "u0", **params})
            assert result.status_code == 400, params
            assert result.json["title"]
    finally:
        deps.close()


def test_a_published_ranker_is_swapped_in_without_restart(ranked_settings, world):
    names = feature_names(SOURCES)
    weights = [1.0 if name == "rank:popular" else 0.0 for name in names]
    client, deps = client_for(ranked_settings)
    try:
        before = client.simulate_get("/recommend", params={"user_id": "u0", "k": 3}).json
        assert before["ranker_version"] == "prior"
        ranking_store.publish_ranker(deps.redis, json.dumps(
            {"version": "ranker-test", "features": names, "weights": weights, "pairs": 1}))
        after = client.simulate_get("/recommend", params={"user_id": "u0", "k": 3}).json
    finally:
        deps.close()
    assert after["ranker_version"] == "ranker-test"
    seen = set(world.seen["u0"])
    assert ids_of(after) == [i for i in world.popular if i not in seen][:3]


def test_redis_down_still_ranks_the_gmf_candidates(ranked_settings, world):
    down = replace(ranked_settings, "redis",
                   url=f"redis://127.0.0.1:{localstack.free_port()}/0")
    body = get(down, user_id="u0", k=5)
    assert body["degraded"] is True and body["degraded_dependencies"] == ["redis"]
    assert body["source"] == "personalized"
    assert ids_of(body) == [i for i, _ in world.exact_top_k("u0", 5, set())]


def test_faiss_down_ranks_the_redis_sources(ranked_settings, world):
    down = replace(ranked_settings, "faiss", url=f"http://127.0.0.1:{localstack.free_port()}")
    body = get(down, user_id="u0", k=5, explain="1")
    assert body["degraded"] is True and "faiss" in body["degraded_dependencies"]
    assert ids_of(body)[0] == "i199"  # co-engagement leads when GMF is missing
    assert not set(ids_of(body)) & set(world.seen["u0"])
    assert all("gmf" not in item["explain"]["sources"] for item in body["items"])
