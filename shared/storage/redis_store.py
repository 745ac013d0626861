"""Redis: item metadata cache, time-decayed popularity, per-user seen lists and query vectors.

Popularity decays exponentially with a half-life without rewriting every score: an event at
time t adds ``w · 2^((t - ref) / half_life)``, so newer events weigh more and the order of the
set at any moment equals the order of decayed scores. When the exponent gets large the whole
set is rescaled once and ``ref`` moves forward, keeping scores in float range.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import redis
from redis.typing import EncodableT, FieldT

from shared.config import RedisSettings

POPULAR_KEY = "popular"
POPULAR_REF_KEY = "popular:ref_ts"
ITEM_KEY = "item:{item_id}"
SEEN_KEY = "seen:{user_id}"
QUERY_KEY = "query:{user_id}"
_RESCALE_AFTER_HALF_LIVES = 32.0


def connect(settings: RedisSettings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.url,
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
        decode_responses=True,
        health_check_interval=30,
    )


def item_key(item_id: str) -> str:
    return ITEM_KEY.format(item_id=item_id)


def seen_key(user_id: str) -> str:
    return SEEN_KEY.format(user_id=user_id)


def query_key(user_id: str) -> str:
    return QUERY_KEY.format(user_id=user_id)


def encode_query_vector(vector: np.ndarray) -> str:
    """A query vector as Redis stores it: base64 of its little-endian float32 bytes (text, so
    the ``decode_responses`` clients read it like every other key)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_query_vector(raw: str) -> np.ndarray:
    """Inverse of :func:`encode_query_vector`: float32 (serving_dim,); ValueError if garbled."""
    data = base64.b64decode(raw, validate=True)
    if not data or len(data) % 4:
        raise ValueError(f"a query vector of {len(data)} bytes is not float32")
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def put_item_metadata(r: redis.Redis, items: Iterable[Mapping[str, Any]]) -> int:
    """Cache metadata hashes; each mapping needs ``item_id``. Returns how many were written."""
    pipe = r.pipeline(transaction=False)
    count = 0
    for item in items:
        fields: dict[FieldT, EncodableT] = {
            k: str(v) for k, v in item.items() if k not in ("item_id", "_id") and v is not None
        }
        if fields:
            pipe.hset(item_key(str(item["item_id"])), mapping=fields)
            count += 1
    pipe.execute()
    return count


def get_item_metadata(r: redis.Redis, item_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """Cached metadata for ``item_ids`` in one round trip; misses are absent from the result."""
    pipe = r.pipeline(transaction=False)
    for item_id in item_ids:
        pipe.hgetall(item_key(item_id))
    return {i: h for i, h in zip(item_ids, pipe.execute(), strict=True) if h}


def bump_popularity(
    r: redis.Redis, weights: Mapping[str, float], ts_ms: int, half_life_s: float
) -> None:
    """Add decayed weight to each item's popularity as of event time ``ts_ms``."""
    if not weights:
        return
    now_s = ts_ms / 1000.0
    ref_raw = r.get(POPULAR_REF_KEY)
    ref = float(ref_raw) if ref_raw is not None else now_s
    if ref_raw is None:
        r.set(POPULAR_REF_KEY, repr(ref))
    half_lives = (now_s - ref) / half_life_s
    if half_lives > _RESCALE_AFTER_HALF_LIVES:
        _rescale(r, ref, now_s, half_life_s)
        ref, half_lives = now_s, 0.0
    factor = 2.0 ** max(half_lives, -_RESCALE_AFTER_HALF_LIVES)
    pipe = r.pipeline(transaction=False)
    for item_id, weight in weights.items():
        pipe.zincrby(POPULAR_KEY, weight * factor, item_id)
    pipe.execute()


def _rescale(r: redis.Redis, old_ref: float, new_ref: float, half_life_s: float) -> None:
    shrink = 2.0 ** (-(new_ref - old_ref) / half_life_s)
    pipe = r.pipeline(transaction=True)
    pipe.zunionstore(POPULAR_KEY, {POPULAR_KEY: shrink})
    pipe.set(POPULAR_REF_KEY, repr(new_ref))
    pipe.execute()


def top_popular(r: redis.Redis, k: int, exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
    """The ``k`` most popular items not in ``exclude``, best first, with their scores."""
    excluded = set(exclude)
    wanted = k + len(excluded)
    # decode_responses=True (see connect): members are str, and withscores pairs them with floats.
    ranked = cast(
        "list[tuple[str, float]]", r.zrevrange(POPULAR_KEY, 0, wanted - 1, withscores=True)
    )
    return [(item, score) for item, score in ranked if item not in excluded][:k]


def push_seen(
    r: redis.Redis,
    user_items: Mapping[str, Sequence[str]],
    cap: int,
    query_vectors: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Prepend each user's new items (oldest first in the sequence) and trim to ``cap``.

    ``query_vectors`` (user → float32 (serving_dim,)) are written in the same pipeline, so the
    recommender reads a user's seen list and query vector in one round trip
    (:func:`get_user_state`); MongoDB keeps the durable copy of the vectors.
    """
    pipe = r.pipeline(transaction=False)
    for user_id, items in user_items.items():
        if items:
            pipe.lpush(seen_key(user_id), *items)
            pipe.ltrim(seen_key(user_id), 0, cap - 1)
    for user_id, vector in (query_vectors or {}).items():
        pipe.set(query_key(user_id), encode_query_vector(vector))
    pipe.execute()


def get_seen_many(r: redis.Redis, user_ids: Sequence[str]) -> dict[str, list[str]]:
    """Recent items of each user, newest first, in one round trip; users with none are absent."""
    pipe = r.pipeline(transaction=False)
    for user_id in user_ids:
        pipe.lrange(seen_key(user_id), 0, -1)
    return {u: list(items) for u, items in zip(user_ids, pipe.execute(), strict=True) if items}


def get_user_state(r: redis.Redis, user_id: str) -> tuple[list[str], str | None]:
    """A user's seen list (newest first) and encoded query vector (None when absent), in one
    round trip; decode the vector with :func:`decode_query_vector`."""
    pipe = r.pipeline(transaction=False)
    pipe.lrange(seen_key(user_id), 0, -1)
    pipe.get(query_key(user_id))
    seen, query = pipe.execute()
    return list(seen), query


def get_seen(r: redis.Redis, user_id: str) -> list[str]:
    """Recent items of a user, newest first."""
    return list(cast("list[str]", r.lrange(seen_key(user_id), 0, -1)))  # decode_responses=True
