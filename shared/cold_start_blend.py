"""How the served list mixes the two-tower space with GMF as a user's history grows.

A user with no history is served from the two-tower query tower alone (their GMF row does
not exist yet, or is its random start); each event moves a share of the slots to GMF, until
after ``switch_events`` events GMF fills all but ``min_share`` of them, which stay with
two-tower so that new items (which GMF cannot retrieve until people engage with them) keep
a way into every list. The two lists are interleaved in proportion, best first, without
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
    """``share(n) = max(min_share, 1 - n / switch_events)`` of the slots go to two-tower."""

    switch_events: int = 10
    min_share: float = 0.2

    def __post_init__(self) -> None:
        if self.switch_events < 1 or not 0.0 <= self.min_share <= 1.0:
            raise ValueError("switch_events must be >= 1 and min_share in [0, 1]")

    def share(self, n_events: int) -> float:
        """Two-tower's share of the list for a user with ``n_events`` earlier events."""
        return max(self.min_share, 1.0 - max(n_events, 0) / self.switch_events)


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
        # the source furthest behind its quota goes next (two-tower first on a tie)
        order = sorted((0, 1), key=lambda s: (used[s] / wanted[s] if wanted[s] else 2.0, s))
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
