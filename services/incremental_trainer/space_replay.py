"""The learned vector spaces as candidate sources of the stream replay (scripts.evaluate_stream).

Both spaces are trained at initial training, so the replay trains them on the warm prefix and
then keeps them as the services do between re-trains: an item first seen on the stream enters
the space from its features alone (the two-tower candidate tower at age 0, as ``PUT /items``
does; the triplet model's feature-only vector, as ``train_triplet --follow`` does), and no
vector learns from the stream. Each space is then one more source of the ranking pipeline
(:mod:`shared.ranking.space_sources`), measured alone and inside the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from shared.events import Interaction
from shared.model.triplet import TripletConfig
from shared.model.triplet_offline import train_triplet_on
from shared.model.triplet_space import TripletSpace, metadata_records
from shared.ranking.candidates import CandidateSource
from shared.ranking.space_sources import TRIPLET, InMemorySpace, TripletSpaceCandidates


class ReplaySpace(Protocol):
    name: str

    def add(self, item_ids: list[str], ts_ms: int) -> None:
        """Items seen on the stream at ``ts_ms``: those the space does not hold enter it from
        their features."""
        ...

    def learn(self, events: Sequence[Interaction]) -> None:
        """Events after they were tested: a space kept fresh by re-training logs them."""
        ...

    def source(self, now_ms: Callable[[], int]) -> CandidateSource:
        """The space as a candidate source; ``now_ms`` is the replay's current event time."""
        ...


class TripletReplaySpace:
    """The triplet space trained on the prefix, grown with feature-only vectors of new items."""

    name = TRIPLET

    def __init__(self, space: TripletSpace, metadata: Mapping[str, Mapping[str, Any]]) -> None:
        self._space = space
        self._metadata = metadata
        vectors = space.model.item_vectors()
        self.vectors = InMemorySpace(vectors.shape[1])
        self.vectors.add(space.item_ids, vectors)

    def add(self, item_ids: list[str], ts_ms: int = 0) -> None:
        fresh = {i: self._metadata[i] for i in item_ids
                 if i not in self.vectors and i in self._metadata}  # fmt: skip
        embedded = self._space.embed_new(fresh)
        if embedded:
            ids = list(embedded)
            self.vectors.add(ids, np.stack([embedded[i] for i in ids]))

    def learn(self, events: Sequence[Interaction]) -> None:
        """Not re-trained in the replay (its served re-train is issue 15's ``--every``)."""

    def source(self, now_ms: Callable[[], int]) -> CandidateSource:
        return TripletSpaceCandidates(self.vectors.similar)


def train_triplet_space(
    prefix: pd.DataFrame, items: pd.DataFrame | None, seed: int, progress: bool
) -> tuple[TripletReplaySpace, dict[str, Any]]:
    """The triplet space trained on ``prefix`` (as ``scripts.train_triplet`` trains it) and a
    summary of the fit."""
    catalogue = pd.Index(pd.unique(prefix["item_id"].astype(str)))
    model, info, vocabulary = train_triplet_on(
        prefix, catalogue, TripletConfig(seed=seed, progress=progress), items
    )
    space = TripletSpace(model, list(catalogue), vocabulary)
    metadata = metadata_records(items)
    summary = {k: info[k] for k in ("epochs_run", "best_epoch", "best_hit_rate", "seconds",
                                    "n_pairs", "features")}  # fmt: skip
    return TripletReplaySpace(space, metadata), summary
