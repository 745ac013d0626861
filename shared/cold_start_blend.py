"""How the served list mixes the two-tower space with GMF as a user's history grows.

A user with no history gets ``start_share`` of the slots from the two-tower query tower
(their GMF row does not exist yet) and the rest from the list served without it (popular
items for a user GMF does not know). Not all of them: with no history the query tower sees
only the time of day, and its log-frequency correction deliberately took popularity out of
its scores, so for a brand-new user popularity is the better half. Each event moves slots to
GMF, until after ``switch_events`` events GMF fills all but ``min_share`` of them, which stay
with two-tower so that new items (which GMF cannot retrieve until people engage with them)
keep a way into every list. The two lists are interleaved in proportion, best first, without
duplicates; the same function builds the offline evaluator's "served" ranker and
/recommend's answer, so what is measured is what is served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class BlendRule:
    """Two-tower's share of the slots falls linearly from ``start_share`` (no history) to
    ``min_share`` (``switch_events`` events and more)."""

    switch_events: int = 10
    start_share: float = 0.5
    min_share: float = 0.2

    def __post_init__(self) -> None:
        if self.switch_events < 1:
            raise ValueError("switch_events must be >= 1")
        if not 0.0 <= self.min_share <= self.start_share <= 1.0:
            raise ValueError("need 0 <= min_share <= start_share <= 1")

    def share(self, n_events: int) -> float:
        """Two-tower's share of the list for a user with ``n_events`` earlier events."""
        left = max(0.0, 1.0 - max(n_events, 0) / self.switch_events)
        return self.min_share + (self.start_share - self.min_share) * left


def blend(two_tower: Sequence[T], other: Sequence[T], share: float, k: int) -> list[T]:
    """Up to ``k`` items: ``round(share·k)`` from ``two_tower``, the rest from ``other``.

    Interleaved so that after every position each source has used about its share; when one
    list runs dry the other fills in. Items already taken are skipped.
    """
    quota = round(share * k)
    taken: list[T] = []
    seen: set[T] = set()
    sources = [iter(two_tower), iter(other)]
    used = [0, 0]
    wanted = [quota, k - quota]
    while len(taken) < k:
        # the source furthest behind its quota goes next; on a tie the one with more slots
        # (two-tower when they have as many)
        order = sorted((0, 1), key=lambda s: (used[s] / wanted[s] if wanted[s] else 2.0,
                                              -wanted[s], s))
        progressed = False
        for s in order:
            for item in sources[s]:
                if item not in seen:
                    seen.add(item)
                    taken.append(item)
                    used[s] += 1
                    progressed = True
                    break
            if progressed:
                break
        if not progressed:
            break
    return taken
