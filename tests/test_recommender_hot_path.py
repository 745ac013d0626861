"""The one-round-trip user state and the in-process metadata cache, against the real stores and
a real faiss_app (the shared session stack)."""

from __future__ import annotations

import pytest

from scripts.bench_api import metadata
from scripts.localstack import free_port
from services.recommender_app.app import make_guard
from services.recommender_app.catalog import Catalog, normalize
from services.recommender_app.deps import Deps
from services.recommender_app.metadata_cache import MetadataCache
from services.recommender_app.popular_list import PopularList
from services.recommender_app.resilience import Budget
from shared.config import Settings
from shared.storage import mongo, redis_store
from tests.conftest import replace
from tests.test_recommender_support import (
    api_settings,
    client_for,
    seed,
)


def ids_of(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def test_query_vector_from_redis_needs_no_mongodb(settings: Settings, faiss_url, world):
    """With the vector in Redis beside the seen list, MongoDB is never asked: a dead MongoDB
    leaves the personalized answer intact and not degraded."""
    configured = api_settings(settings, faiss_url)
    seed(configured, world)
    r = redis_store.connect(configured.redis)
    # Another user's vector in Redis only: the answer can only have come from there.
    redis_store.push_seen(r, {}, 200, query_vectors={"u0": world.queries["u1"]})
    # Every item's metadata in Redis too, so that nothing on the path needs MongoDB.
    redis_store.put_item_metadata(r, [metadata(i, j) for j, i in enumerate(world.ids)])
    dead = f"mongodb://127.0.0.1:{free_port()}"
    client, deps = client_for(replace(configured, "mongo", uri=dead, timeout_ms=300))
    try:
        body = client.simulate_get("/recommend", params={"user_id": "u0", "k": 5}).json
    finally:
        deps.close()
    seen = set(world.seen["u0"])
    assert ids_of(body) == [i for i, _ in world.exact_top_k("u1", 5, seen)]
    assert body["source"] == "personalized"
    assert body["degraded"] is False


@pytest.mark.parametrize("redis_value", [None, "garbled!"])
def test_redis_miss_or_garbled_vector_falls_back_to_mongodb(
    settings: Settings, faiss_url, world, redis_value
):
    configured = api_settings(settings, faiss_url)
    seed(configured, world)  # vectors in MongoDB only, seen lists in Redis
    r = redis_store.connect(configured.redis)
    if redis_value is not None:
        r.set(redis_store.query_key("u0"), redis_value)
    client, deps = client_for(configured)
    try:
        body = client.simulate_get("/recommend", params={"user_id": "u0", "k": 5}).json
    finally:
        deps.close()
    assert "api.dependency.mongo.ms" in deps.metrics.sent  # the vector came from MongoDB
    seen = set(world.seen["u0"])  # the seen list still came from Redis
    assert ids_of(body) == [i for i, _ in world.exact_top_k("u0", 5, seen)]
    assert body["source"] == "personalized" and body["degraded"] is False


def test_metadata_changes_show_once_the_cache_entry_expires(settings: Settings, faiss_url, world):
    now = [1000.0]
    configured = replace(api_settings(settings, faiss_url), "recommender", metadata_cache_s=5.0)
    seed(configured, world)
    client, deps = client_for(configured, clock=lambda: now[0])
    r = redis_store.connect(configured.redis)
    db = mongo.connect(configured.mongo)
    top = world.popular[0]

    def title_of(item_id: str) -> str | None:
        body = client.simulate_get("/recommend", params={"k": 3}).json
        return {i["item_id"]: i.get("title") for i in body["items"]}[item_id]

    try:
        first = title_of(top)
        assert first is not None
        redis_store.put_item_metadata(r, [{"item_id": top, "title": "Renamed"}])
        now[0] += 4.9
        assert title_of(top) == first  # within the TTL: the cached title, no store read
        now[0] += 0.2
        assert title_of(top) == "Renamed"  # expired: read again from Redis
        # An item with no metadata anywhere is remembered as such, then looked up again.
        assert title_of(world.popular[1]) is None
        mongo.upsert_items(db, [{"item_id": world.popular[1], "title": "Now known"}])
        assert title_of(world.popular[1]) is None
        now[0] += 5.1
        assert title_of(world.popular[1]) == "Now known"
    finally:
        deps.close()
        db.client.close()


def test_metadata_cache_is_bounded_and_never_caches_a_failed_read_as_absent():
    now = [0.0]
    cache = MetadataCache(max_items=3, ttl_s=10.0, clock=lambda: now[0])
    cache.store({"a": {"title": "A"}, "b": None, "c": {"title": "C"}})
    cache.store({"d": {"title": "D"}})  # over the bound: the oldest entry goes
    found, missing = cache.lookup(["a", "b", "c", "d"])
    assert found == {"b": None, "c": {"title": "C"}, "d": {"title": "D"}} and missing == ["a"]
    cache.invalidate(["c"])
    assert cache.lookup(["c", "d"]) == ({"d": {"title": "D"}}, ["c"])
    now[0] = 10.0
    assert cache.lookup(["d"]) == ({}, ["d"])
    off = MetadataCache(max_items=3, ttl_s=0.0)
    off.store({"a": {"title": "A"}})
    assert off.lookup(["a"]) == ({}, ["a"])


def test_metadata_is_not_cached_as_absent_while_mongodb_is_down(settings: Settings, world):
    seed(settings, world)
    only_in_mongo = next(iter(world.redis_missing))
    dead = replace(settings, "mongo", uri=f"mongodb://127.0.0.1:{free_port()}", timeout_ms=300)
    deps = Deps.from_settings(dead)
    try:
        catalog = Catalog(make_guard(dead, deps), deps.db, deps.redis, MetadataCache(100, 60.0))
        degraded: set[str] = set()
        assert catalog.metadata([only_in_mongo, world.ids[0]], Budget(3.0), degraded) == {
            world.ids[0]: normalize(metadata(world.ids[0], 0))
        }
        assert degraded == {"mongo"}
        assert catalog.local.lookup([only_in_mongo]) == ({}, [only_in_mongo])
    finally:
        deps.close()


def test_popular_list_is_reused_for_a_second_and_dropped_when_redis_fails(
    settings: Settings, world
):
    now = [1000.0]
    seed(settings, world)
    deps = Deps.from_settings(settings)
    guard = make_guard(settings, deps)
    popular = PopularList(guard, deps.redis, size=4, ttl_s=1.0, clock=lambda: now[0])

    def top(n: int, exclude: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
        return [item for item, _ in popular.top(n, set(exclude), Budget(3.0))]

    try:
        assert top(3) == world.popular[:3]
        deps.redis.zadd(redis_store.POPULAR_KEY, {"rising": 1e9})
        now[0] += 0.9
        assert top(3) == world.popular[:3]  # the copy, no Redis call
        # Exclusions apply to the copy; past what it holds (4 entries), Redis is asked.
        assert top(2, {world.popular[0]}) == world.popular[1:3]
        assert top(3, set(world.popular[:2])) == ["rising", *world.popular[2:4]]
        now[0] += 0.2
        assert top(3) == ["rising", *world.popular[:2]]  # expired: read again
        deps.redis.zrem(redis_store.POPULAR_KEY, "rising")
        guard.breakers["redis"].failure()  # what any failed Redis call of this worker records
        guard.breakers["redis"].success()
        assert top(3) == world.popular[:3]  # the copy was dropped at once
    finally:
        deps.close()
