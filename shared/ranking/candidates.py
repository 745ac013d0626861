"""Candidate sources: each proposes up to ``n`` items for a user, best first, with a score.

A source is one class with a ``name`` and ``fetch(user, n)``; adding one is adding a class here
and listing it in :func:`stream_sources` (the optional vector spaces are appended beside them,
see ``shared/ranking/space_sources.py``).
A source never filters seen items: the reranker does that once for all of them, and asks each
source for ``n`` plus the user's seen count it can cheaply skip.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from shared.ranking.stores import RankingStore

Hit = tuple[str, float]

# Weight of the k-th most recent item's neighbours in co-engagement (1, 1/2, 1/3, ...).
RECENT_ITEMS_USED = 3


@dataclass(frozen=True)
class UserContext:
    """What the ranking stage knows about the user of one request.

    recent : the user's items, newest first (Redis ``seen:{user}``)
    seen : the same as a set, to filter out
    categories : category of each recent item, where known
    """

    user_id: str | None
    recent: tuple[str, ...] = ()
    seen: frozenset[str] = frozenset()
    categories: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, user_id: str | None, recent_newest_first: Sequence[str]) -> UserContext:
        recent = tuple(recent_newest_first)
        return cls(user_id, recent, frozenset(recent))


class CandidateSource(Protocol):
    name: str

    def fetch(self, user: UserContext, n: int) -> list[Hit]:
        """Up to ``n`` ``(item_id, score)``, best first; may include items the user has seen."""
        ...


class GMFCandidates:
    """The user's GMF query vector against every item (faiss_app at serving time)."""

    name = "gmf"

    def __init__(self, search: Callable[[UserContext, int], list[Hit]]) -> None:
        self._search = search

    def fetch(self, user: UserContext, n: int) -> list[Hit]:
        return self._search(user, n)


class CoEngagementCandidates:
    """Items most often engaged right after the user's last few items.

    Each neighbour list is normalised to shares (how often this follower came after that item),
    then summed over the recent items with weight 1/position, so the newest item counts most.
    """

    name = "co_engagement"

    def __init__(self, store: RankingStore, recent_items: int = RECENT_ITEMS_USED) -> None:
        self._store = store
        self._recent_items = recent_items

    def fetch(self, user: UserContext, n: int) -> list[Hit]:
        anchors = user.recent[: self._recent_items]
        if not anchors:
            return []
        scores: dict[str, float] = {}
        for position, followers in enumerate(self._store.neighbours(anchors, n), start=1):
            total = sum(score for _, score in followers)
            if total <= 0:
                continue
            for item_id, score in followers:
                scores[item_id] = scores.get(item_id, 0.0) + score / total / position
        return sorted(scores.items(), key=lambda kv: -kv[1])[:n]


class PopularCandidates:
    """Most engaged items, decayed with the long half-life (the platform's ``popular``)."""

    name = "popular"

    def __init__(self, store: RankingStore) -> None:
        self._store = store

    def fetch(self, user: UserContext, n: int) -> list[Hit]:
        return self._store.lists().popular[:n]


class TrendingCandidates:
    """Most engaged items, decayed with a short half-life: what is rising now."""

    name = "trending"

    def __init__(self, store: RankingStore) -> None:
        self._store = store

    def fetch(self, user: UserContext, n: int) -> list[Hit]:
        return self._store.lists().trending[:n]


class NewItemCandidates:
    """Items first engaged most recently, newest first, so they can be shown before they have
    a history (score: first event time in Unix ms)."""

    name = "new_items"

    def __init__(self, store: RankingStore) -> None:
        self._store = store

    def fetch(self, user: UserContext, n: int) -> list[Hit]:
        return self._store.lists().new_items[:n]


def stream_sources(
    gmf_search: Callable[[UserContext, int], list[Hit]], store: RankingStore
) -> list[CandidateSource]:
    """The sources every ranking pipeline runs (recommender, trainer, evaluators, benchmark):
    GMF answered by ``gmf_search``, the rest from ``store``. One list, so a source added here
    is served, trained and measured alike."""
    return [
        GMFCandidates(gmf_search),
        CoEngagementCandidates(store),
        TrendingCandidates(store),
        PopularCandidates(store),
        NewItemCandidates(store),
    ]
