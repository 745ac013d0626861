"""Where the candidate sources and the features read the stream's state.

:class:`RankingStore` is what the ranking stage needs: co-engagement neighbours of a few items
in one round trip, and the global lists (popular, trending, new items) that every request
shares. :class:`MemoryRankingStore` keeps them in process for the offline evaluator and tests;
``shared.storage.ranking_store.RedisRankingStore`` reads what the trainer writes to Redis.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np

from shared.config import RankingSettings
from shared.ranking.co_engagement import CoEngagement
from shared.ranking.decay import DecayedScores
from shared.ranking.signals import SignalBatch

Hit = tuple[str, float]


@dataclass(frozen=True)
class GlobalLists:
    """Lists shared by every request, each best first, with lookups by item.

    popular, trending : (item, decayed score) — relative scores, only ratios are meaningful
    new_items : (item, first event time in Unix ms), newest first
    """

    popular: list[Hit] = field(default_factory=list)
    trending: list[Hit] = field(default_factory=list)
    new_items: list[Hit] = field(default_factory=list)
    popular_score: dict[str, float] = field(default_factory=dict)
    trending_score: dict[str, float] = field(default_factory=dict)
    first_seen_ms: dict[str, float] = field(default_factory=dict)

    @cached_property
    def signal_rows(self) -> tuple[dict[str, int], np.ndarray]:
        """(item → row, float64 (m + 1, 3)): each listed item's popularity share, trending
        share and first event time (NaN when unknown) in one row, so a candidate costs one
        lookup instead of three; the last row is an unlisted item's (0, 0, NaN). Built once
        per lists object (the service shares one between requests)."""
        rows: dict[str, int] = {}
        for item in (*self.popular_score, *self.trending_score, *self.first_seen_ms):
            rows.setdefault(item, len(rows))
        table = np.zeros((len(rows) + 1, 3), dtype=np.float64)
        table[:, 2] = np.nan
        for column, values in enumerate(
            (self.popular_score, self.trending_score, self.first_seen_ms)
        ):
            if values:
                table[[rows[item] for item in values], column] = list(values.values())
        return rows, table

    @classmethod
    def of(cls, popular: list[Hit], trending: list[Hit], new_items: list[Hit]) -> GlobalLists:
        """Lists with their lookups normalised: the top popular/trending item scores 1."""
        return cls(
            popular,
            trending,
            new_items,
            _normalised(popular),
            _normalised(trending),
            dict(new_items),
        )


def _normalised(hits: list[Hit]) -> dict[str, float]:
    top = hits[0][1] if hits and hits[0][1] > 0 else 1.0
    return {item: score / top for item, score in hits}


class RankingStore(Protocol):
    def neighbours(self, item_ids: Sequence[str], n: int) -> list[list[Hit]]:
        """For each of ``item_ids``, its ``n`` strongest co-engaged followers."""
        ...

    def lists(self) -> GlobalLists:
        """The global lists (possibly cached for a short while)."""
        ...


@dataclass(frozen=True)
class StoreLimits:
    """Bounds shared by the in-memory and the Redis stores, so both hold the same lists."""

    popular_half_life_s: float
    trending_half_life_s: float
    co_engagement_half_life_s: float
    co_engagement_per_item: int
    list_length: int  # items kept in each global list
    new_items_kept: int


class MemoryRankingStore:
    """The ranking stage's stream state kept in process (offline evaluation, tests).

    ``lists()`` is recomputed at most every ``refresh_every`` applied batches, the way the
    service caches the Redis lists for a short time.
    """

    def __init__(self, limits: StoreLimits, refresh_every: int = 1) -> None:
        self.limits = limits
        self.co_engagement = CoEngagement(
            limits.co_engagement_half_life_s, limits.co_engagement_per_item
        )
        self.popular = DecayedScores(limits.popular_half_life_s)
        self.trending = DecayedScores(limits.trending_half_life_s)
        self.first_seen: dict[str, int] = {}
        self.refresh_every = max(1, refresh_every)
        self._batches_since_refresh = 0
        self._lists: GlobalLists | None = None

    def apply(self, batch: SignalBatch) -> None:
        if not batch.ts_ms:
            return
        self.co_engagement.add(batch.co_engagement, batch.ts_ms)
        self.popular.add(batch.engagement, batch.ts_ms)
        self.trending.add(batch.engagement, batch.ts_ms)
        for item_id, ts in batch.new_items.items():
            self.first_seen.setdefault(item_id, ts)
        if len(self.first_seen) > 2 * self.limits.new_items_kept:
            self.first_seen = {item: int(ts) for item, ts in self._newest()}
        self._batches_since_refresh += 1

    def _newest(self) -> list[Hit]:
        return [
            (item, float(ts))
            for item, ts in heapq.nlargest(
                self.limits.new_items_kept, self.first_seen.items(), key=lambda kv: kv[1]
            )
        ]

    def neighbours(self, item_ids: Sequence[str], n: int) -> list[list[Hit]]:
        return [self.co_engagement.neighbours(item_id, n) for item_id in item_ids]

    def lists(self) -> GlobalLists:
        if self._lists is None or self._batches_since_refresh >= self.refresh_every:
            n = self.limits.list_length
            self._lists = GlobalLists.of(
                _top(self.popular.scores, n), _top(self.trending.scores, n), self._newest()
            )
            self._batches_since_refresh = 0
        return self._lists


def _top(scores: dict[str, float], n: int) -> list[Hit]:
    return heapq.nlargest(n, scores.items(), key=lambda kv: kv[1])


def store_limits(ranking: RankingSettings, popular_half_life_s: float) -> StoreLimits:
    """The bounds the configured trainer writes and the service reads."""
    return StoreLimits(
        popular_half_life_s=popular_half_life_s,
        trending_half_life_s=ranking.trending_half_life_s,
        co_engagement_half_life_s=ranking.co_engagement_half_life_s,
        co_engagement_per_item=ranking.co_engagement_per_item,
        list_length=ranking.list_length,
        new_items_kept=ranking.new_items_kept,
    )
