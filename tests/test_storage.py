"""MongoDB and Redis access against the real local servers."""

import numpy as np
import pytest
from pymongo.errors import OperationFailure

from shared.config import Settings
from shared.storage import mongo, redis_store


def test_users_upsert_then_find(settings: Settings) -> None:
    db = mongo.connect(settings.mongo)
    mongo.ensure_indexes(db)
    mongo.ensure_indexes(db)
    vector = np.arange(5, dtype=np.float32) / 10
    assert mongo.upsert_user_vectors(db, [("u1", vector, 2), ("u2", vector * 2, 1)], "v1") == 2
    mongo.upsert_user_vectors(db, [("u1", vector * 3, 4)], "v2")
    doc = mongo.get_user(db, "u1")
    assert doc is not None
    assert np.allclose(doc["query_vector"], vector * 3)
    assert doc["model_version"] == "v2"
    assert doc["n_events"] == 6
    assert mongo.get_user(db, "nobody") is None


def test_users_upsert_raises_when_a_write_fails(settings: Settings) -> None:
    db = mongo.connect(settings.mongo)
    db[mongo.USERS].insert_one({"_id": "broken", "n_events": "not a number"})
    vector = np.ones(3, np.float32)
    with pytest.raises(OperationFailure, match="1 of 2 user vectors not written"):
        mongo.upsert_user_vectors(db, [("ok", vector, 1), ("broken", vector, 1)], "v1")
    written = mongo.get_user(db, "ok")  # unordered: the others are still written
    assert written is not None and written["n_events"] == 1


def test_user_lookup_cannot_be_turned_into_an_operator(settings: Settings) -> None:
    db = mongo.connect(settings.mongo)
    mongo.upsert_user_vectors(db, [("u1", np.zeros(3, np.float32), 1)], "v1")
    assert mongo.get_user(db, {"$ne": None}) is None  # type: ignore[arg-type]


def test_items_upsert_and_bulk_get(settings: Settings) -> None:
    db = mongo.connect(settings.mongo)
    mongo.upsert_items(db, [{"item_id": "i1", "title": "Lamp", "price": 3.5},
                            {"item_id": "i2", "title": "Desk", "category": "home"}])
    found = mongo.get_items(db, ["i1", "i2", "missing"])
    assert set(found) == {"i1", "i2"}
    assert found["i1"] == {"title": "Lamp", "price": 3.5}


def test_item_metadata_cache_round_trip(settings: Settings) -> None:
    r = redis_store.connect(settings.redis)
    redis_store.put_item_metadata(r, [{"item_id": "i1", "title": "Lamp", "price": 3.5}])
    cached = redis_store.get_item_metadata(r, ["i1", "i2"])
    assert cached == {"i1": {"title": "Lamp", "price": "3.5"}}


def test_popularity_decays_with_time(settings: Settings) -> None:
    r = redis_store.connect(settings.redis)
    half_life = 3600.0
    t0 = 1_780_000_000_000
    redis_store.bump_popularity(r, {"old": 3.0}, t0, half_life)
    # Two half-lives later, weight 1 is worth 4 at t0, so "new" overtakes "old".
    redis_store.bump_popularity(r, {"new": 1.0}, t0 + int(2 * half_life * 1000), half_life)
    ranked = redis_store.top_popular(r, 5)
    assert [item for item, _ in ranked] == ["new", "old"]
    assert ranked[0][1] / ranked[1][1] == 4.0 / 3.0
    assert redis_store.top_popular(r, 5, exclude=["new"]) == [("old", ranked[1][1])]


def test_popularity_rescales_without_changing_the_order(settings: Settings) -> None:
    r = redis_store.connect(settings.redis)
    half_life = 1.0
    t0 = 1_780_000_000_000
    redis_store.bump_popularity(r, {"a": 1.0, "b": 2.0}, t0, half_life)
    redis_store.bump_popularity(r, {"a": 0.5}, t0 + 100_000, half_life)  # 100 half-lives later
    ranked = redis_store.top_popular(r, 2)
    assert [item for item, _ in ranked] == ["a", "b"]
    assert all(np.isfinite(score) for _, score in ranked)


def test_seen_list_is_newest_first_and_capped(settings: Settings) -> None:
    r = redis_store.connect(settings.redis)
    redis_store.push_seen(r, {"u1": ["i1", "i2", "i3"]}, cap=2)
    redis_store.push_seen(r, {"u1": ["i4"]}, cap=2)
    assert redis_store.get_seen(r, "u1") == ["i4", "i3"]
    redis_store.push_seen(r, {"u2": ["i9"]}, cap=2)
    assert redis_store.get_seen_many(r, ["u1", "u2", "nobody"]) == {
        "u1": ["i4", "i3"],
        "u2": ["i9"],
    }


def test_seen_list_holds_each_item_once_when_a_batch_is_replayed(settings: Settings) -> None:
    # Regression (issue 17): a trainer restarted from a snapshot replays batches, and every
    # replay pushed the same items again.
    r = redis_store.connect(settings.redis)
    batch = {"u1": ["i1", "i2", "i1", "i3"]}
    redis_store.push_seen(r, batch, cap=10)
    redis_store.push_seen(r, batch, cap=10)
    redis_store.push_seen(r, {"u1": ["i2"]}, cap=10)
    assert redis_store.get_seen(r, "u1") == ["i2", "i3", "i1"]  # newest first, each once


def test_query_vector_is_written_beside_the_seen_list_and_read_back_with_it(
    settings: Settings,
) -> None:
    r = redis_store.connect(settings.redis)
    vector = np.array([0.1, -2.5, 3.0e-7, 1.0], dtype=np.float32)
    redis_store.push_seen(r, {"u1": ["i1", "i2"]}, cap=10, query_vectors={"u1": vector})
    seen, raw = redis_store.get_user_state(r, "u1")
    assert seen == ["i2", "i1"]
    assert raw is not None
    assert redis_store.decode_query_vector(raw).tobytes() == vector.tobytes()  # bit-exact
    assert redis_store.get_user_state(r, "nobody") == ([], None)
    with pytest.raises(ValueError):
        redis_store.decode_query_vector("not base64 at all!")
    with pytest.raises(ValueError):
        redis_store.decode_query_vector("AAA=")  # two bytes: not whole float32s


def test_a_batch_longer_than_a_lua_slice_keeps_newest_first(settings: Settings) -> None:
    r = redis_store.connect(settings.redis)
    items = [f"i{n}" for n in range(2500)]  # three slices of the server-side push
    redis_store.push_seen(r, {"u1": items, "u2": []}, cap=3000)
    assert redis_store.get_seen(r, "u1") == items[::-1]
    assert redis_store.get_seen(r, "u2") == []
