"""The most popular items for the fill step, kept in process for a moment.

Redis ``popular`` changes slowly (a time-decayed score), and the fill step asks for it on every
popular answer: a copy of its top ``size`` entries is served for ``ttl_s`` (a second by
default) instead of a Redis round trip each time. The copy is dropped as soon as any Redis
call of this worker fails (the Redis breaker counts failures), so an outage shows in answers
as it did without the copy: no popular items, ``degraded`` naming Redis. Exclusions (seen
items, items already chosen) are applied to the copy per request; when they leave fewer than
asked for and Redis holds more, Redis is asked directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from services.recommender_app.resilience import Budget, Guard
from shared.storage import redis_store

Hit = tuple[str, float]


@dataclass(frozen=True)
class _Copy:
    expires: float
    failures: int  # the Redis breaker's failure count when the copy was read
    ranked: list[Hit]


class PopularList:
    def __init__(
        self,
        guard: Guard,
        cache: redis.Redis,
        size: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._guard = guard
        self._cache = cache
        self._size = size
        self._ttl_s = ttl_s
        self._clock = clock
        self._copy: _Copy | None = None
        self._lock = threading.Lock()

    def top(self, n: int, exclude: set[str], budget: Budget) -> list[Hit]:
        """The ``n`` most popular items not in ``exclude``; raises DependencyDown."""
        breaker = self._guard.breakers["redis"]
        copy = self._copy
        if copy is None or copy.expires <= self._clock() or copy.failures != breaker.failures:
            copy = self._refresh(budget)
        if copy is not None:
            found = [hit for hit in copy.ranked if hit[0] not in exclude][:n]
            if len(found) == n or len(copy.ranked) < self._size:  # the copy holds all of them
                return found
        return self._guard.call(
            "redis", budget, lambda _t: redis_store.top_popular(self._cache, n, exclude)
        )

    def _refresh(self, budget: Budget) -> _Copy | None:
        if self._ttl_s <= 0:
            return None
        with self._lock:  # one reader per worker refreshes; the others wait for its copy
            copy = self._copy
            breaker = self._guard.breakers["redis"]
            if (
                copy is not None
                and copy.expires > self._clock()
                and copy.failures == breaker.failures
            ):
                return copy
            failures = breaker.failures
            ranked = self._guard.call(
                "redis", budget, lambda _t: redis_store.top_popular(self._cache, self._size)
            )
            self._copy = _Copy(self._clock() + self._ttl_s, failures, ranked)
            return self._copy
