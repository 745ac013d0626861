"""The two-tower and triplet spaces as candidate sources of the ranking stage at request time.

``RECSYS_RANKING_SPACE_SOURCES`` names the spaces to add (``two_tower``, ``triplet``). Each
asks faiss_app through the request's :class:`Guard` and budget (the ``faiss`` breaker):

- ``two_tower``: the query tower's vector of the user (id, seen list, time of the request)
  against faiss_app's ``two_tower`` space;
- ``triplet``: the items most similar to the user's newest item in the ``triplet`` space.

A space that faiss_app does not serve or has not loaded, a two-tower model not loaded yet, or
an item the triplet space does not hold is no answer: the other sources are ranked and the
request is not degraded; such a space is then not asked again for a second
(:mod:`~services.recommender_app.unserved_spaces`), so it costs no round trip per request. A faiss_app outage is a failed source (``degraded: faiss`` when GMF
failed too, as before).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.recommender_app.resilience import Budget, Guard
from services.recommender_app.two_tower import TwoTowerModel
from services.recommender_app.unserved_spaces import UnservedSpaces
from shared.faiss_client import FaissClient, SpaceNotReady, UnknownItem, UnknownSpace
from shared.ranking.candidates import CandidateSource, UserContext
from shared.ranking.space_sources import (
    TRIPLET,
    TWO_TOWER,
    TripletSpaceCandidates,
    TwoTowerSpaceCandidates,
)

Hit = tuple[str, float]
SPACE_SOURCES = (TWO_TOWER, TRIPLET)


class ServingSpaceSources:
    """Builds the request's space sources over faiss_app."""

    def __init__(self, names: Sequence[str], faiss: FaissClient, two_tower: TwoTowerModel,
                 unserved: UnservedSpaces | None = None) -> None:
        """``unserved``: the worker's one record of the spaces faiss_app said it does not
        serve, shared with the similar-items path so that each space is asked once a second."""
        unknown = sorted(set(names) - set(SPACE_SOURCES))
        if unknown:
            raise ValueError(f"unknown space sources {unknown}; known: {list(SPACE_SOURCES)}")
        self.names = list(names)
        self._faiss = faiss
        self._two_tower = two_tower
        self._unserved = unserved or UnservedSpaces()

    def sources(self, guard: Guard, budget: Budget, now_ms: int) -> list[CandidateSource]:
        built: list[CandidateSource] = []
        for name in self.names:
            if name == TWO_TOWER:
                built.append(TwoTowerSpaceCandidates(
                    lambda user: self._query(user, now_ms),
                    lambda query, n: [] if self._unserved.skipped(TWO_TOWER) else guard.call(
                        "faiss", budget, lambda t: self._search(query, n, t)),
                ))  # fmt: skip
            else:
                built.append(TripletSpaceCandidates(
                    lambda item_id, n: [] if self._unserved.skipped(TRIPLET) else guard.call(
                        "faiss", budget, lambda t: self._similar(item_id, n, t)),
                ))  # fmt: skip
        return built

    def _query(self, user: UserContext, now_ms: int) -> np.ndarray | None:
        if user.user_id is None:
            return None
        return self._two_tower.query_vector(user.user_id, user.recent, now_ms)

    def _search(self, query: np.ndarray, n: int, timeout_s: float) -> list[Hit]:
        try:
            return self._faiss.search(query, n, timeout_s=timeout_s, space=TWO_TOWER)[0]
        except (UnknownSpace, SpaceNotReady):
            self._unserved.mark(TWO_TOWER)
            return []

    def _similar(self, item_id: str, n: int, timeout_s: float) -> list[Hit]:
        try:
            return self._faiss.similar(item_id, n, timeout_s=timeout_s, space=TRIPLET)
        except (UnknownSpace, SpaceNotReady):
            self._unserved.mark(TRIPLET)
            return []
        except UnknownItem:  # the space is served: only this item is missing
            return []
