"""Candidate sources over learned vector spaces: the two-tower space (issue 14) and the triplet
item-to-item space (issue 15).

Both take callables, so the same classes run over faiss_app's named spaces in the recommender
and over an :class:`InMemorySpace` in the offline evaluator. A space that does not exist (not
served, no model loaded yet) answers nothing — the pipeline ranks the other sources, and the
request is not degraded; an outage of the store behind it raises like any other source
(the pipeline names it in ``failed``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from shared.ranking.candidates import UserContext

Hit = tuple[str, float]

TWO_TOWER = "two_tower"
TRIPLET = "triplet"
# Triplet anchors: the user's newest item only. Each anchor is one similar-items search in the
# service (a faiss_app round trip); the newest item carries most of the next-item signal.
TRIPLET_ANCHORS = 1


class TwoTowerSpaceCandidates:
    """The query tower's vector of the user (id, recent items, time) against the item space.

    query : the user's unit query vector, or None when there is no two-tower model
    search : ``(query, n)`` → the ``n`` nearest items of the space, best first
    """

    name = TWO_TOWER

    def __init__(
        self,
        query: Callable[[UserContext], np.ndarray | None],
        search: Callable[[np.ndarray, int], list[Hit]],
    ) -> None:
        self._query = query
        self._search = search

    def fetch(self, user: UserContext, n: int) -> list[Hit]:
        if user.user_id is None and not user.recent:
            return []
        query = self._query(user)
        if query is None:
            return []
        return self._search(query, n)


class TripletSpaceCandidates:
    """Items closest in the triplet space to the user's newest items (cosine; with several
    anchors the k-th newest counts 1/k, as in co-engagement).

    similar : ``(item_id, n)`` → the ``n`` items most similar to it, best first (empty when
        the space does not hold the item)
    """

    name = TRIPLET

    def __init__(
        self, similar: Callable[[str, int], list[Hit]], anchors: int = TRIPLET_ANCHORS
    ) -> None:
        self._similar = similar
        self._anchors = anchors

    def fetch(self, user: UserContext, n: int) -> list[Hit]:
        scores: dict[str, float] = {}
        for position, anchor in enumerate(user.recent[: self._anchors], start=1):
            for item_id, score in self._similar(anchor, n):
                scores[item_id] = scores.get(item_id, 0.0) + score / position
        return sorted(scores.items(), key=lambda kv: -kv[1])[:n]


class InMemorySpace:
    """Unit item vectors held in process: exact inner-product search, for the evaluator and
    tests (faiss_app serves the same answers from its index)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._vectors = np.zeros((0, dim), dtype=np.float32)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._row

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, item_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add (or replace) items' vectors, float32 (n, dim)."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(item_ids), self.dim)
        fresh: list[int] = []
        for j, item_id in enumerate(item_ids):
            row = self._row.get(item_id)
            if row is None:
                self._row[item_id] = len(self._ids)
                self._ids.append(item_id)
                fresh.append(j)
            else:
                self._vectors[row] = vectors[j]
        if fresh:
            self._vectors = np.vstack([self._vectors, vectors[fresh]])

    def search(self, query: np.ndarray, n: int, skip: str | None = None) -> list[Hit]:
        if not self._ids or n <= 0:
            return []
        scores = self._vectors @ np.asarray(query, dtype=np.float32)
        if skip is not None and skip in self._row:
            scores[self._row[skip]] = -np.inf
        n = min(n, len(self._ids))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self._ids[j], float(scores[j])) for j in top if np.isfinite(scores[j])]

    def similar(self, item_id: str, n: int) -> list[Hit]:
        row = self._row.get(item_id)
        if row is None:
            return []
        return self.search(self._vectors[row], n, skip=item_id)
