"""Cold-start slices and the two-tower ranker for the event-by-event stream replay.

:class:`SliceScores` counts every ranker's hits on the tested events that fall in the
cold-start slices of :mod:`shared.evaluation.cold_start` (the event's item, or user, had
fewer than 5 earlier interactions, the warm prefix included), in the same shape as the
replay's ``"rankers"``. :class:`TwoTowerRanker` ranks an event's user against every item
seen so far with the two-tower model trained on the prefix: items new to the stream get
their candidate vector from their features the moment they are first seen (age 0), as
``PUT /items`` does for the served space.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from shared.evaluation.cold_start import COLD_ITEMS, COLD_THRESHOLD, COLD_USERS
from shared.events import Interaction
from shared.model.two_tower_snapshot import TwoTowerEncoder
from shared.ranking.candidates import UserContext
from shared.ranking.space_sources import TWO_TOWER, TwoTowerSpaceCandidates

K = 10


class SliceScores:
    """Hits per slice and ranker; :meth:`observe` every event after it was tested."""

    def __init__(self, threshold: int = COLD_THRESHOLD) -> None:
        self.threshold = threshold
        self.item_events: Counter[str] = Counter()
        self.user_events: Counter[str] = Counter()
        self._hits: dict[str, dict[str, list[float]]] = {COLD_ITEMS: {}, COLD_USERS: {}}

    def slices_of(self, event: Interaction) -> list[str]:
        out = []
        if self.item_events[event.item_id] < self.threshold:
            out.append(COLD_ITEMS)
        if self.user_events[event.user_id] < self.threshold:
            out.append(COLD_USERS)
        return out

    def record(self, ranker: str, ranked: Sequence[str], event: Interaction) -> None:
        """Score ``ranked`` (best first) for ``event`` in each slice the event falls in."""
        ranked = list(ranked[:K])
        position = ranked.index(event.item_id) if event.item_id in ranked else None
        for name in self.slices_of(event):
            tally = self._hits[name].setdefault(ranker, [0.0, 0.0, 0.0])
            tally[2] += 1
            if position is not None:
                tally[0] += 1
                tally[1] += 1.0 / math.log2(position + 2)

    def observe(self, event: Interaction) -> None:
        self.item_events[event.item_id] += 1
        self.user_events[event.user_id] += 1

    def report(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{"cold_items": {ranker: {"recall_at_10", "ndcg_at_10", "tested"}}, ...}``."""
        return {
            name: {
                ranker: {
                    "recall_at_10": round(h / max(t, 1), 5),
                    "ndcg_at_10": round(d / max(t, 1), 5),
                    "tested": int(t),
                }
                for ranker, (h, d, t) in part.items()
            }
            for name, part in self._hits.items()
        }


class TwoTowerRanker:
    """Top-k of the two-tower space for a user at an event, over the items seen so far."""

    name = TWO_TOWER

    def __init__(
        self,
        encoder: TwoTowerEncoder,
        metadata: Mapping[str, Mapping[str, Any]],
        prefix_items: Sequence[str] = (),
        prefix_ages_ms: Sequence[int] = (),
    ) -> None:
        self._encoder = encoder
        self._metadata = metadata
        self._ids: list[str] = []
        self._position: dict[str, int] = {}
        self._vectors = np.zeros((0, encoder.dim), dtype=np.float32)
        self.add(list(prefix_items), np.asarray(prefix_ages_ms, dtype=np.int64))

    def add(self, item_ids: list[str], ages_ms: np.ndarray | None = None) -> None:
        """Embed items not in the catalogue yet (age 0 unless given)."""
        fresh = [i for i in dict.fromkeys(item_ids) if i not in self._position]
        if not fresh:
            return
        ages = (
            np.zeros(len(fresh), dtype=np.int64)
            if ages_ms is None or not len(ages_ms)
            else np.asarray(ages_ms, dtype=np.int64)[[item_ids.index(i) for i in fresh]]
        )
        table = self._encoder.item_table(fresh, self._metadata)
        vectors = self._encoder.candidate_vectors(table, ages)
        for item_id in fresh:
            self._position[item_id] = len(self._ids)
            self._ids.append(item_id)
        self._vectors = np.vstack([self._vectors, vectors])

    def source(self, now_ms: Callable[[], int]) -> TwoTowerSpaceCandidates:
        """This space as a source of the ranking pipeline: the user's query vector at
        ``now_ms()`` against every item embedded so far (the pipeline leaves seen items out)."""

        def query(user: UserContext) -> np.ndarray:
            return self._encoder.query_vectors([user.user_id or ""], [list(user.recent)],
                                               [now_ms()])[0]  # fmt: skip

        def search(vector: np.ndarray, n: int) -> list[tuple[str, float]]:
            if not self._ids:
                return []
            scores = self._vectors @ vector
            top = np.argsort(-scores, kind="stable")[:n]
            return [(self._ids[j], float(scores[j])) for j in top]

        return TwoTowerSpaceCandidates(query, search)

    def rank(
        self,
        user_id: str,
        recent: Sequence[str],
        seen: set[str] | frozenset[str],
        ts_ms: int,
        k: int = K,
    ) -> list[str]:
        """The ``k`` best items the user has not engaged with, best first."""
        if not self._ids:
            return []
        query = self._encoder.query_vectors([user_id], [list(recent)], [ts_ms])[0]
        scores = self._vectors @ query
        for item_id in seen:
            j = self._position.get(item_id)
            if j is not None:
                scores[j] = -np.inf
        top = np.argsort(-scores)[:k]
        return [self._ids[j] for j in top if np.isfinite(scores[j])]
