"""A personalized request's Redis state in one round trip (shared/storage/request_state.py),
against the real local Redis and, for the request path, a real faiss_app."""

from __future__ import annotations

import numpy as np

from shared.config import Settings
from shared.deleted_items import DELETED_VERSION_KEY
from shared.storage import ranking_store, redis_store
from shared.storage.request_state import RequestStateReader
from tests.conftest import replace
from tests.test_recommender_support import api_settings, client_for, seed


def test_one_read_returns_what_the_separate_reads_return(settings: Settings):
    r = redis_store.connect(settings.redis)
    r.flushdb()
    vector = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    redis_store.push_seen(r, {"u": ["a", "b", "c", "d"]}, 200, {"u": vector})  # d newest
    redis_store.push_seen(r, {"short": ["a"]}, 200)  # no vector, one seen item
    r.zadd(ranking_store.coeng_key("d"), {f"x{j}": float(j) for j in range(80)})
    r.zadd(ranking_store.coeng_key("b"), {"y": 2.0, "z": 1.5})  # "c" has no followers
    store = ranking_store.RedisRankingStore(r, 200)
    reader = RequestStateReader(r)

    state = reader.read("u", 3, 50)

    assert (state.seen, state.query) == redis_store.get_user_state(r, "u")
    assert np.array_equal(redis_store.decode_query_vector(state.query or ""), vector)
    assert state.anchors == ("d", "c", "b") and state.followers_read == 50 + 4
    # The ranking stage asks for its candidates plus the seen count; smaller asks are prefixes.
    for n in (54, 10, 1):
        assert state.neighbours_of(["d", "c", "b"], n) == store.neighbours(["d", "c", "b"], n)
    assert state.neighbours_of(["d", "c", "b"], 54)[0][0] == ("x79", 79.0)
    assert state.neighbours_of(["d", "c", "b"], 55) is None  # more than was read
    assert state.neighbours_of(["d", "c"], 10) is None  # other anchors

    short = reader.read("short", 3, 50)
    assert short.seen == ["a"] and short.query is None and short.anchors == ("a",)
    assert short.neighbours_of(["a"], 51) == [[]]
    nobody = reader.read("nobody", 3, 50)
    assert nobody.seen == [] and nobody.query is None and nobody.neighbours_of([], 50) == []
    assert reader.read("u", 0, 0).neighbours_of(["d"], 1) is None  # none read without anchors
    r.close()


def test_a_ranked_answer_reads_redis_once_when_its_lists_are_cached(
        settings: Settings, faiss_url, world):
    """User state, query vector and co-engagement followers in one round trip: the second
    request (metadata, global lists and ranker cached in process) makes exactly one, and its
    answer still holds the item only co-engagement proposes."""
    configured = api_settings(settings, faiss_url, ranking=True)
    # Nothing else due between the two requests, however slow the machine.
    configured = replace(configured, "ranking", lists_cache_s=60.0)
    configured = replace(configured, "catalogue", deleted_refresh_s=60.0, new_item_refresh_s=60.0)
    configured = replace(configured, "recommender", metadata_cache_s=60.0)
    seed(configured, world)
    r = redis_store.connect(configured.redis)
    r.zadd(ranking_store.coeng_key(world.seen["u0"][0]), {"i199": 5.0, "i198": 1.0})
    r.setnx(DELETED_VERSION_KEY, "0")  # the deny-list's copy exists: no rebuild in between
    r.close()
    client, deps = client_for(configured)
    pool = deps.redis.connection_pool
    checkouts = 0
    get_connection = pool.get_connection

    def counted(*args, **kwargs):
        nonlocal checkouts
        checkouts += 1
        return get_connection(*args, **kwargs)

    try:
        first = client.simulate_get("/recommend", params={"user_id": "u0", "k": 10}).json
        pool.get_connection = counted  # type: ignore[method-assign]
        second = client.simulate_get("/recommend", params={"user_id": "u0", "k": 10}).json
    finally:
        pool.get_connection = get_connection  # type: ignore[method-assign]
        deps.close()
    assert second == first and second["source"] == "personalized" and not second["degraded"]
    assert "i199" in [item["item_id"] for item in second["items"]]
    assert checkouts == 1
