"""Item-to-item co-engagement: for each item, the items most often engaged right after it.

Kept in memory here (the offline evaluator); the trainer keeps the same counts in Redis sorted
sets (:mod:`shared.storage.ranking_store`). Counts decay with a half-life (see
:mod:`shared.ranking.decay`) and each item keeps at most ``max_per_item`` followers: when a list
grows to twice that, the weakest are dropped, as ``ZREMRANGEBYRANK`` does in Redis.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from shared.ranking.decay import DecayClock

Hit = tuple[str, float]


class CoEngagement:
    """Decayed, bounded "engaged right after" counts.

    Parameters
    ----------
    half_life_s : float
        Half-life of a pair's weight in event time.
    max_per_item : int
        Followers kept per item.
    """

    def __init__(self, half_life_s: float, max_per_item: int) -> None:
        if max_per_item < 1:
            raise ValueError("max_per_item must be at least 1")
        self.clock = DecayClock(half_life_s)
        self.max_per_item = max_per_item
        self.followers: dict[str, dict[str, float]] = {}

    def add(self, pairs: Mapping[tuple[str, str], float], ts_ms: int) -> None:
        """Add ``{(previous, next): weight}`` as of event time ``ts_ms``."""
        shrink = self.clock.rescale_due(ts_ms)
        if shrink is not None:
            for counts in self.followers.values():
                for key in counts:
                    counts[key] *= shrink
        factor = self.clock.factor(ts_ms)
        for (previous, following), weight in pairs.items():
            counts = self.followers.setdefault(previous, {})
            counts[following] = counts.get(following, 0.0) + weight * factor
            if len(counts) >= 2 * self.max_per_item:
                kept = heapq.nlargest(self.max_per_item, counts.items(), key=lambda kv: kv[1])
                self.followers[previous] = dict(kept)

    def neighbours(self, item_id: str, n: int) -> list[Hit]:
        """The ``n`` strongest followers of ``item_id``, strongest first (stored sums)."""
        counts = self.followers.get(item_id)
        if not counts:
            return []
        return heapq.nlargest(n, counts.items(), key=lambda kv: kv[1])
