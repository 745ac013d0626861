"""The ranking stage's stream state in Redis: written by the trainer, read by the recommender.

| key | type | holds |
|---|---|---|
| ``coeng:{item}`` | sorted set | followers of the item, decayed weight (``coeng:ref_ts``) |
| ``trending`` | sorted set | popularity at the short half-life (``trending:ref_ts``) |
| ``items:new`` | sorted set | item → first event time (Unix ms), the newest kept |
| ``ranker:model`` | string | the published ranker, JSON (:mod:`shared.ranking.ranker`) |

Co-engagement weights grow as ``2^((t - ref) / half_life)`` from a reference that never moves
(rescaling every ``coeng:*`` key would cost a scan), computed server side by one script per batch: doubles reach their limit after about
1000 half-lives, about 19 years at the default 7 days. Each list is trimmed to the configured
length with ``ZREMRANGEBYRANK`` whenever it is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import cast

import redis
from redis.client import Pipeline
from redis.typing import EncodableT

from shared.ranking.signals import SignalBatch
from shared.ranking.stores import GlobalLists, StoreLimits
from shared.storage.redis_store import POPULAR_KEY, queue_popularity

Hit = tuple[str, float]

COENG_KEY = "coeng:{item_id}"
COENG_REF_KEY = "coeng:ref_ts"
TRENDING_KEY = "trending"
TRENDING_REF_KEY = "trending:ref_ts"
NEW_ITEMS_KEY = "items:new"
RANKER_KEY = "ranker:model"


def coeng_key(item_id: str) -> str:
    return COENG_KEY.format(item_id=item_id)


# Co-engagement increments decayed against a reference kept in Redis (set by the first writer,
# never moved), each list trimmed to its cap, in one round trip. KEYS: the reference, then one
# coeng:{item} per previous item. ARGV: now (s), half-life (s), cap, then per key: the number of
# followers n, then n (follower, weight) pairs.
_BUMP_CO_ENGAGEMENT = """
local ref = tonumber(redis.call('GET', KEYS[1]))
if not ref then
  ref = tonumber(ARGV[1])
  redis.call('SET', KEYS[1], ARGV[1])
end
local factor = 2 ^ ((tonumber(ARGV[1]) - ref) / tonumber(ARGV[2]))
local cap = tonumber(ARGV[3])
local a = 4
for k = 2, #KEYS do
  local n = tonumber(ARGV[a])
  for i = a + 1, a + 2 * n - 1, 2 do
    redis.call('ZINCRBY', KEYS[k], tostring(tonumber(ARGV[i + 1]) * factor), ARGV[i])
  end
  redis.call('ZREMRANGEBYRANK', KEYS[k], 0, -(cap + 1))
  a = a + 2 * n + 1
end
return #KEYS - 1
"""


def queue_signals(pipe: Pipeline, batch: SignalBatch, limits: StoreLimits) -> None:
    """Queue on ``pipe`` one batch: co-engagement, trending and new items (``popular`` is the
    trainer's state publisher's)."""
    if not batch.ts_ms:
        return
    by_previous: dict[str, list[tuple[str, float]]] = {}
    for (previous, following), weight in batch.co_engagement.items():
        by_previous.setdefault(previous, []).append((following, weight))
    if by_previous:
        keys = [COENG_REF_KEY, *(coeng_key(previous) for previous in by_previous)]
        args: list[EncodableT] = [
            repr(batch.ts_ms / 1000.0),
            repr(limits.co_engagement_half_life_s),
            limits.co_engagement_per_item,
        ]
        for followers in by_previous.values():
            args.append(len(followers))
            for following, weight in followers:
                args.extend((following, repr(float(weight))))
        pipe.eval(_BUMP_CO_ENGAGEMENT, len(keys), *keys, *args)
    if batch.new_items:
        pipe.zadd(NEW_ITEMS_KEY, {i: float(ts) for i, ts in batch.new_items.items()}, nx=True)
        pipe.zremrangebyrank(NEW_ITEMS_KEY, 0, -(limits.new_items_kept + 1))
    queue_popularity(
        pipe,
        batch.engagement,
        batch.ts_ms,
        limits.trending_half_life_s,
        key=TRENDING_KEY,
        ref_key=TRENDING_REF_KEY,
    )


def write_signals(r: redis.Redis, batch: SignalBatch, limits: StoreLimits) -> None:
    """Apply one batch in one round trip (see :func:`queue_signals`)."""
    pipe = r.pipeline(transaction=False)
    queue_signals(pipe, batch, limits)
    pipe.execute()


def publish_ranker(r: redis.Redis, model_json: str) -> None:
    r.set(RANKER_KEY, model_json)


def read_ranker(r: redis.Redis) -> str | None:
    return cast("str | None", r.get(RANKER_KEY))


class RedisRankingStore:
    """:class:`shared.ranking.stores.RankingStore` over Redis; the global lists are cached in
    process for ``cache_s`` seconds (they change slowly and every request reads them)."""

    def __init__(
        self,
        r: redis.Redis,
        list_length: int,
        cache_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = r
        self._list_length = list_length
        self._cache_s = cache_s
        self._clock = clock
        self._lists: GlobalLists | None = None
        self._lists_at = 0.0

    def neighbours(self, item_ids: Sequence[str], n: int) -> list[list[Hit]]:
        if not item_ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.zrevrange(coeng_key(item_id), 0, n - 1, withscores=True)
        return [[(str(i), float(s)) for i, s in hits] for hits in pipe.execute()]

    def lists(self) -> GlobalLists:
        now = self._clock()
        if self._lists is not None and now - self._lists_at < self._cache_s:
            return self._lists
        last = self._list_length - 1
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrevrange(POPULAR_KEY, 0, last, withscores=True)
        pipe.zrevrange(TRENDING_KEY, 0, last, withscores=True)
        pipe.zrevrange(NEW_ITEMS_KEY, 0, last, withscores=True)
        popular, trending, new_items = (
            [(str(i), float(s)) for i, s in hits] for hits in pipe.execute()
        )
        self._lists = GlobalLists.of(popular, trending, new_items)
        self._lists_at = now
        return self._lists
