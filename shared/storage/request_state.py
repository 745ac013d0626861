"""Everything a personalized request reads from Redis about its user, in one round trip.

The user's seen list and query vector (``seen:{user}``, ``query:{user}``, written together by
the trainer: :func:`shared.storage.redis_store.queue_seen`) and the co-engagement followers of
the user's most recent items (``coeng:{item}``, :mod:`shared.storage.ranking_store`). The
followers' keys are named by the seen list, so a client-side pipeline would need a second round
trip after the first answer; one server-side script reads the list and then the followers.

The script names the ``coeng:`` keys it builds from the seen list rather than declaring them
(they are unknown until the list is read): fine on the single Redis this platform runs, not on
a Redis Cluster, where these keys would live on other shards anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from shared.storage.ranking_store import COENG_KEY
from shared.storage.redis_store import get_user_state, query_key, seen_key

Hit = tuple[str, float]

# KEYS: seen:{user}, query:{user}. ARGV: how many of the newest seen items to read followers
# of, the followers wanted beyond the seen list's length, the coeng key's prefix. The followers
# read are ZREVRANGE 0 (extra + #seen - 1): exactly what the ranking stage's co-engagement
# source asks for (its candidates plus the user's seen count, which it then filters out).
_READ_USER_STATE = """
local seen = redis.call('LRANGE', KEYS[1], 0, -1)
local query = redis.call('GET', KEYS[2])  -- false when absent: a nil would end the reply
local anchors = math.min(tonumber(ARGV[1]), #seen)
local last = tonumber(ARGV[2]) + #seen - 1
local followers = {}
for i = 1, anchors do
  followers[i] = redis.call('ZREVRANGE', ARGV[3] .. seen[i], 0, last, 'WITHSCORES')
end
return {seen, query, followers, last + 1}
"""
_COENG_PREFIX = COENG_KEY.format(item_id="")


@dataclass(frozen=True)
class RequestState:
    """seen : newest first; query : the encoded query vector, None when absent
    (:func:`shared.storage.redis_store.decode_query_vector`); neighbours : for each of
    ``anchors`` (the newest seen items, at most the number asked), its strongest followers,
    strongest first, ``followers_read`` of them asked."""

    seen: list[str]
    query: str | None
    anchors: tuple[str, ...] = ()
    neighbours: list[list[Hit]] = field(default_factory=list)
    followers_read: int = 0

    def neighbours_of(self, item_ids: Sequence[str], n: int) -> list[list[Hit]] | None:
        """The followers of ``item_ids`` as ``RankingStore.neighbours(item_ids, n)`` would
        read them now, or None when this state did not read those (a prefix of ZREVRANGE is
        the shorter ZREVRANGE)."""
        if tuple(item_ids) != self.anchors or n > self.followers_read:
            return None
        return [hits[:n] for hits in self.neighbours]


class RequestStateReader:
    """Reads :class:`RequestState` with one EVALSHA (the script is loaded on first use and
    again after a Redis restart, by redis-py's ``Script``)."""

    def __init__(self, r: redis.Redis) -> None:
        self._redis = r
        self._script = r.register_script(_READ_USER_STATE)

    def read(self, user_id: str, anchors: int = 0, extra_followers: int = 0) -> RequestState:
        """``user_id``'s state; with ``anchors`` > 0 the followers of that many newest seen
        items too (``extra_followers`` + the seen list's length of each)."""
        if anchors <= 0:
            seen, query = get_user_state(self._redis, user_id)
            return RequestState(seen, query)
        raw = self._script(
            keys=[seen_key(user_id), query_key(user_id)],
            args=[anchors, extra_followers, _COENG_PREFIX],
        )
        seen, query, followers, read = raw
        neighbours = [
            [(str(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2)]
            for flat in followers
        ]
        return RequestState(
            list(seen), query or None, tuple(seen[: len(neighbours)]), neighbours, int(read)
        )
