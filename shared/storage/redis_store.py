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
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from shared.config import RedisSettings

POPULAR_KEY = "popular"
POPULAR_REF_KEY = "popular:ref_ts"
ITEM_KEY = "item:{item_id}"
SEEN_KEY = "seen:{user_id}"
QUERY_KEY = "query:{user_id}"
_RESCALE_AFTER_HALF_LIVES = 32.0


def connect(settings: RedisSettings, **options: Any) -> redis.Redis:
    """A client for ``settings``; ``options`` are further ``redis.Redis`` keyword arguments."""
    return redis.Redis.from_url(
        settings.url,
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
        decode_responses=True,
        health_check_interval=30,
        **options,
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


# Decayed increments computed where the reference lives: one round trip, atomic, and right when
# several trainers bump the same set (a client-side copy of the reference would go stale when
# another one rescales). KEYS: popular, its reference time. ARGV: now (s), half-life (s), the
# rescale threshold in half-lives, then item, weight pairs.
_BUMP_POPULARITY = """
local ref = tonumber(redis.call('GET', KEYS[2]))
local now = tonumber(ARGV[1])
local half_life = tonumber(ARGV[2])
if not ref then
  ref = now
  redis.call('SET', KEYS[2], ARGV[1])
end
local half_lives = (now - ref) / half_life
if half_lives > tonumber(ARGV[3]) then
  redis.call('ZUNIONSTORE', KEYS[1], 1, KEYS[1], 'WEIGHTS', tostring(2 ^ (-half_lives)))
  redis.call('SET', KEYS[2], ARGV[1])
  half_lives = 0
end
local factor = 2 ^ math.max(half_lives, -tonumber(ARGV[3]))
for n = 4, #ARGV, 2 do
  redis.call('ZINCRBY', KEYS[1], tostring(tonumber(ARGV[n + 1]) * factor), ARGV[n])
end
return #ARGV / 2 - 1
"""


def queue_popularity(
    pipe: Pipeline,
    weights: Mapping[str, float],
    ts_ms: int,
    half_life_s: float,
    key: str = POPULAR_KEY,
    ref_key: str = POPULAR_REF_KEY,
) -> None:
    """Queue on ``pipe`` the decayed popularity bump of :func:`bump_popularity`.

    ``key``/``ref_key`` name the sorted set and its reference time (another half-life, e.g.
    the ranking stage's ``trending``, is another pair).
    """
    if not weights:
        return
    args: list[EncodableT] = [repr(ts_ms / 1000.0), repr(half_life_s), _RESCALE_AFTER_HALF_LIVES]
    for item_id, weight in weights.items():
        args.extend((item_id, repr(float(weight))))
    pipe.eval(_BUMP_POPULARITY, 2, key, ref_key, *args)


def bump_popularity(
    r: redis.Redis, weights: Mapping[str, float], ts_ms: int, half_life_s: float
) -> None:
    """Add decayed weight to each item's popularity as of event time ``ts_ms``."""
    pipe = r.pipeline(transaction=False)
    queue_popularity(pipe, weights, ts_ms, half_life_s)
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


# Every user's seen-list push, trim and query-vector write of a batch as one command: redis-py
# spends ~10 µs packing each pipelined command, three per user, which made Redis the largest
# stage of the trainer; one EVAL with the same arguments costs a fraction of that. KEYS: per
# user its seen key and its query key. ARGV: the cap, then per user the number of new items,
# those items (oldest first, distinct), and its encoded query vector ("" = leave it as it is).
# An item already in the list moves to the front (LREM then LPUSH), so a list holds each item
# once however often a batch is replayed after a crash.
_PUSH_SEEN = """
local cap = tonumber(ARGV[1])
local a = 2
for k = 1, #KEYS, 2 do
  local n = tonumber(ARGV[a])
  if n > 0 then
    for r = a + 1, a + n do  -- each item once: a replayed batch leaves no duplicate behind
      redis.call('LREM', KEYS[k], 0, ARGV[r])
    end
    local i = a + 1
    while i <= a + n do  -- in slices: unpack is bounded by Lua's stack
      local j = math.min(i + 999, a + n)
      redis.call('LPUSH', KEYS[k], unpack(ARGV, i, j))
      i = j + 1
    end
    redis.call('LTRIM', KEYS[k], 0, cap - 1)
  end
  a = a + n + 1
  if ARGV[a] ~= '' then
    redis.call('SET', KEYS[k + 1], ARGV[a])
  end
  a = a + 1
end
return #KEYS / 2
"""


def queue_seen(
    pipe: Pipeline,
    user_items: Mapping[str, Sequence[str]],
    cap: int,
    query_vectors: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Queue on ``pipe`` what :func:`push_seen` does (one command for all the users)."""
    vectors = query_vectors or {}
    keys: list[str] = []
    args: list[EncodableT] = [cap]
    for user_id in dict.fromkeys([*user_items, *vectors]):
        # Distinct, each at its latest position (the list is newest first).
        items = list(dict.fromkeys(reversed(user_items.get(user_id, ()))))[::-1]
        vector = vectors.get(user_id)
        keys += (seen_key(user_id), query_key(user_id))
        args.append(len(items))
        args.extend(items)
        args.append("" if vector is None else encode_query_vector(vector))
    if keys:
        pipe.eval(_PUSH_SEEN, len(keys), *keys, *args)


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
    queue_seen(pipe, user_items, cap, query_vectors)
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
