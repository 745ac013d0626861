"""The vector spaces as candidate sources of the trainer's ranker training.

With ``RECSYS_RANKING_SPACE_SOURCES`` the recommender ranks candidates from the two-tower and
triplet spaces too, so the ranker it loads needs weights for ``rank:two_tower`` and
``rank:triplet`` learned on the same candidate pools. The trainer's ranker training
(:class:`~services.incremental_trainer.ranking_signals.OnlineRankerTraining`) therefore ranks
with the same sources, answered in process, as GMF is answered from the learner's own tables
(:class:`~services.incremental_trainer.ranker_training.LearnerSearch`): each space's newest
snapshot (``<models_dir>/spaces/<name>/``) is held in an exact
:class:`~shared.ranking.space_sources.InMemorySpace` and re-read when its LATEST changes (at
most every ``RELOAD_CHECK_S``). faiss_app serves the same vectors, through an approximate
index for the triplet space; vectors published after the snapshot (new items) are not in the
trainer's copy until the next snapshot, which only makes those items rarer among the
candidates the ranker learns from.

No snapshot of a space yet: the source answers nothing, as it does in the recommender.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from shared import snapshots
from shared.model.errors import SnapshotFormatError
from shared.model.two_tower_snapshot import TwoTowerEncoder, load_two_tower
from shared.ranking.candidates import CandidateSource, UserContext
from shared.ranking.space_sources import (
    TRIPLET,
    TWO_TOWER,
    InMemorySpace,
    TripletSpaceCandidates,
    TwoTowerSpaceCandidates,
)
from shared.spaces import space_models_dir

log = logging.getLogger(__name__)

RELOAD_CHECK_S = 30.0
Hit = tuple[str, float]


class SnapshotSpace:
    """A space's newest snapshot in memory: its item vectors (and the two-tower encoder)."""

    def __init__(self, models_dir: Path, name: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._models_dir = Path(models_dir)
        self._folder = space_models_dir(self._models_dir, name)
        self._clock = clock
        self._checked = float("-inf")
        self.version: str | None = None
        self.vectors: InMemorySpace | None = None
        self.encoder: TwoTowerEncoder | None = None

    def current(self) -> InMemorySpace | None:
        if self._clock() - self._checked >= RELOAD_CHECK_S:
            self._checked = self._clock()
            self._reload()
        return self.vectors

    def _reload(self) -> None:
        latest = snapshots.read_latest(self._folder)
        if latest is None or latest == self.version:
            return
        try:
            ids, vectors = snapshots.read_item_vectors(self._folder / latest)
            encoder = load_two_tower(self._models_dir, latest)[0] if self.name == TWO_TOWER else None
        except (snapshots.SnapshotNotFound, SnapshotFormatError, OSError, ValueError,
                KeyError) as exc:
            log.warning("%s snapshot %s not loaded for ranker training: %s", self.name, latest,
                        exc)
            return
        space = InMemorySpace(vectors.shape[1])
        space.add(ids, vectors)
        self.vectors, self.encoder, self.version = space, encoder, latest
        log.info("%s space %s loaded for ranker training: %d items", self.name, latest, len(ids))


class TrainerSpaceSources:
    """The space sources named by ``RECSYS_RANKING_SPACE_SOURCES``, in the recommender's
    order, over the spaces' snapshots. ``now_ms`` is the time of the event being ranked
    (the two-tower query's context, as the request time is in the recommender)."""

    def __init__(self, names: Sequence[str], models_dir: Path,
                 clock: Callable[[], float] = time.monotonic) -> None:
        unknown = sorted(set(names) - {TWO_TOWER, TRIPLET})
        if unknown:
            raise ValueError(f"unknown space sources {unknown}")
        self.spaces = {name: SnapshotSpace(models_dir, name, clock) for name in names}

    def sources(self, now_ms: Callable[[], int]) -> list[CandidateSource]:
        built: list[CandidateSource] = []
        for name, space in self.spaces.items():
            if name == TWO_TOWER:
                built.append(TwoTowerSpaceCandidates(
                    partial(self._query, space, now_ms), partial(self._search, space)))
            else:
                built.append(TripletSpaceCandidates(partial(self._similar, space)))
        return built

    @staticmethod
    def _query(space: SnapshotSpace, now_ms: Callable[[], int], user: UserContext
               ) -> np.ndarray | None:
        space.current()
        if space.encoder is None or user.user_id is None:
            return None
        return space.encoder.query_vectors([user.user_id], [list(user.recent)], [now_ms()])[0]

    @staticmethod
    def _search(space: SnapshotSpace, query: np.ndarray, n: int) -> list[Hit]:
        vectors = space.current()
        return vectors.search(query, n) if vectors is not None else []

    @staticmethod
    def _similar(space: SnapshotSpace, item_id: str, n: int) -> list[Hit]:
        vectors = space.current()
        return vectors.similar(item_id, n) if vectors is not None else []
