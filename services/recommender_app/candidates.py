"""Candidate generation: where the items an answer is ranked from come from.

Today one source, the model: faiss_app ``/v1/search`` with the user's query vector (seen items
excluded inside faiss_app) or ``/v1/similar`` for an item, asked of the item-to-item space
first (``RecommenderSettings.similar_space``: the triplet embedding) and of the gmf space
(GMF cosine) when that space is not served, not loaded yet, or does not hold the item. This module is the seam for more
sources (co-engagement, trending, ...): each returns :class:`Candidates`, and the recommender
filters, fills and decorates whatever this step returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.faiss_app.errors import BadQuery, UnknownItemError
from services.recommender_app.resilience import Budget, DependencyDown, Guard
from services.recommender_app.unserved_spaces import UnservedSpaces
from services.recommender_app.user_state import UserState
from shared.faiss_client import FaissClient, SpaceNotReady, UnknownItem, UnknownSpace
from shared.spaces import DEFAULT_SPACE

if TYPE_CHECKING:  # FAISS is imported only by workers that hold a copy of the index
    from services.recommender_app.local_index import LocalIndex

Hit = tuple[str, float]


@dataclass(frozen=True)
class Candidates:
    """Scored items, best first, and the model version that scored them (None: no model)."""

    hits: list[Hit] = field(default_factory=list)
    model_version: str | None = None


class ModelCandidates:
    """The model's nearest items, from faiss_app, within the request budget."""

    def __init__(
        self,
        guard: Guard,
        faiss: FaissClient,
        reserve_s: float,
        similar_space: str = DEFAULT_SPACE,
        clock: Callable[[], float] = time.monotonic,
        local: LocalIndex | None = None,
        unserved: UnservedSpaces | None = None,
    ):
        self._guard = guard
        self._faiss = faiss
        self._local = local  # this worker's copy of the gmf index, used while it is current
        self._reserve_s = reserve_s  # kept free for the popular fill and the metadata
        # Spaces asked in turn for similar items; None = faiss_app's default space (gmf).
        self._similar_spaces: tuple[str | None, ...] = (
            (None,) if similar_space == DEFAULT_SPACE else (similar_space, None)
        )
        # A space faiss_app does not serve is not asked on every similar request.
        self._unserved = unserved or UnservedSpaces(clock=clock)

    def for_user(self, state: UserState, k: int, budget: Budget, degraded: set[str]) -> Candidates:
        """Top ``k`` by inner product with the user's query vector, seen items left out."""
        vector = state.query_vector
        if vector is None:
            return Candidates()
        local = self._local
        catalog = local.catalog() if local is not None else None
        if local is not None and catalog is not None:
            version = catalog.serving_version  # read first: the answer reflects at least this
            try:
                ids, scores = local.search(catalog, vector, k, state.seen)
            except BadQuery:
                pass  # a vector of another dimension: faiss_app answers as before
            else:
                return Candidates(list(zip(ids, scores, strict=True)), version)

        def search(timeout_s: float) -> Candidates:
            answer = self._faiss.search_full(vector[None, :], k, [state.seen], timeout_s)
            result = answer["results"][0]
            hits = list(zip(result["ids"], map(float, result["scores"]), strict=True))
            return Candidates(hits, answer.get("model_version"))

        try:
            return self._guard.call("faiss", budget, search, self._reserve_s)
        except DependencyDown:
            degraded.add("faiss")
            return Candidates()

    def similar_to(self, item_id: str, k: int, budget: Budget, degraded: set[str]) -> Candidates:
        """The ``k`` items most similar to ``item_id`` in the first space that holds it (none
        when no space does)."""

        def similar(timeout_s: float) -> Candidates:
            for space in self._similar_spaces:
                if self._unserved.skipped(space):
                    continue
                local = self._local_similar(item_id, k) if space is None else None
                if local is not None:
                    return local
                try:
                    answer = self._faiss.similar_full(item_id, k, timeout_s, space=space)
                except UnknownItem:
                    continue  # the next space (gmf last) may hold it
                except (UnknownSpace, SpaceNotReady):
                    if space is not None:  # the default space is always asked
                        self._unserved.mark(space)
                    continue
                hits = list(zip(answer["ids"], map(float, answer["scores"]), strict=True))
                return Candidates(hits, answer.get("model_version"))
            return Candidates()

        try:
            return self._guard.call("faiss", budget, similar, self._reserve_s)
        except DependencyDown:
            degraded.add("faiss")
            return Candidates()

    def _local_similar(self, item_id: str, k: int) -> Candidates | None:
        """From this worker's copy of the gmf space: hits (none when it does not hold the item),
        or None when the copy is not current."""
        local = self._local
        catalog = local.catalog() if local is not None else None
        if local is None or catalog is None:
            return None
        version = catalog.serving_version
        try:
            ids, scores = local.similar(catalog, item_id, k)
        except UnknownItemError:
            return Candidates()
        return Candidates(list(zip(ids, scores, strict=True)), version)
