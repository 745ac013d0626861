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
    """Top-k of the two-tower space for a user at an event, over the items seen so far.

    Kept fresh as the served space is (``scripts.train_two_tower --every``): with ``retrain``
    and ``retrain_every_ms``, the events of the stream join the training log, and once that
    much event time has passed since the last training the model is re-trained on the whole
    log and every item re-embedded at its current age. Between re-trainings an item first seen
    on the stream enters from its features at age 0 (as ``PUT /items`` does).
    """

    name = TWO_TOWER

    def __init__(
        self,
        encoder: TwoTowerEncoder,
        metadata: Mapping[str, Mapping[str, Any]],
        prefix_items: Sequence[str] = (),
        prefix_first_seen_ms: Sequence[int] = (),
        retrain: Callable[[list[Interaction]], TwoTowerEncoder] | None = None,
        retrain_every_ms: int | None = None,
        log: Sequence[Interaction] = (),
    ) -> None:
        self._encoder = encoder
        self._metadata = metadata
        self._ids: list[str] = []
        self._position: dict[str, int] = {}
        self._first_seen = np.zeros(0, dtype=np.int64)
        self._vectors = np.zeros((0, encoder.dim), dtype=np.float32)
        self._retrain = retrain
        self._retrain_every_ms = retrain_every_ms
        self._log = list(log)
        self.retrained = 0
        first = np.asarray(prefix_first_seen_ms, dtype=np.int64)
        trained_at = max((e.ts for e in self._log), default=int(first.max(initial=0)))
        self._due_at = trained_at + (retrain_every_ms or 0)
        self._embed(list(prefix_items), first, trained_at)

    def _embed(self, fresh: list[str], first_seen: np.ndarray, now_ms: int) -> None:
        if not fresh:
            return
        table = self._encoder.item_table(fresh, self._metadata)
        vectors = self._encoder.candidate_vectors(table, np.maximum(now_ms - first_seen, 0))
        for item_id in fresh:
            self._position[item_id] = len(self._ids)
            self._ids.append(item_id)
        self._first_seen = np.concatenate([self._first_seen, first_seen])
        self._vectors = np.vstack([self._vectors, vectors])

    def add(self, item_ids: list[str], ts_ms: int = 0) -> None:
        """Embed items not in the catalogue yet, first seen at ``ts_ms`` (age 0)."""
        fresh = [i for i in dict.fromkeys(item_ids) if i not in self._position]
        self._embed(fresh, np.full(len(fresh), ts_ms, dtype=np.int64), ts_ms)

    def learn(self, events: Sequence[Interaction]) -> None:
        """Events the stream has shown (after they were tested): the next training's log."""
        if self._retrain is None or self._retrain_every_ms is None or not events:
            return
        self._log.extend(events)
        now = events[-1].ts
        if now < self._due_at:
            return
        self._encoder = self._retrain(self._log)
        while self._due_at <= now:  # on a fixed schedule, as a periodic job runs
            self._due_at += self._retrain_every_ms
        self.retrained += 1
        table = self._encoder.item_table(self._ids, self._metadata)
        self._vectors = self._encoder.candidate_vectors(
            table, np.maximum(now - self._first_seen, 0))

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
