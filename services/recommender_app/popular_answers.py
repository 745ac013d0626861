"""Whole popular answers (no id, no filters) kept per ``k`` for a moment.

Every anonymous page view asks for the same answer: the top of the popular list less deleted
items, new items in the tail slots, metadata. Building it costs more than serving it, so the
answer is kept for ``RECSYS_RECOMMENDER_POPULAR_CACHE_S`` (the lifetime of the popular list
copy it is built from, :mod:`services.recommender_app.popular_list`), and only while what it
was built from is unchanged: the deleted-items set and the new-items list this worker holds
(both re-read in the background every fraction of a second; a new object means a refresh) and
the Redis breaker's failure count (an answer built before a Redis failure is not served after
it). Nor is it kept past the moment the metadata cache would read its items' metadata again,
so the metadata rule (services/recommender_app/metadata_cache.py) holds for it too. Degraded
answers are never kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class _Kept:
    expires: float
    built_from: tuple[object, ...]  # compared by identity
    redis_failures: int
    answer: Any


class PopularAnswers:
    """``k`` → the answer, valid until it expires, an object in ``built_from`` is replaced or
    Redis failed since."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._kept: dict[int, _Kept] = {}
        self._lock = threading.Lock()

    def get(self, k: int, built_from: tuple[object, ...], redis_failures: int) -> Any | None:
        kept = self._kept.get(k)
        if kept is None or kept.expires <= self._clock() or kept.redis_failures != redis_failures:
            return None
        same = len(kept.built_from) == len(built_from) and all(
            a is b for a, b in zip(kept.built_from, built_from, strict=True)
        )
        return kept.answer if same else None

    def put(
        self,
        k: int,
        built_from: tuple[object, ...],
        redis_failures: int,
        answer: Any,
        not_after: float,
    ) -> None:
        """Keep ``answer`` for the TTL, but never past ``not_after`` (when the metadata it
        holds would have been read again)."""
        expires = min(self._clock() + self._ttl_s, not_after)
        if expires <= self._clock():
            return
        with self._lock:
            self._kept[k] = _Kept(expires, built_from, redis_failures, answer)
