"""Which of a batch's events the stores have counted already (a replay after a crash).

The model learns every event of a batch again after a restart (it was reloaded from an older
snapshot), but the counters in the stores must not: :class:`ReplayGuard` holds the marks of
``shared.storage.applied_offsets`` for the partitions this process owns and splits each batch
into what each store still has to count. Right after a restart that is the events past the
store's mark; from then on it is the whole batch, and the split costs one list comprehension.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import redis

from shared.events import Interaction
from shared.storage import applied_offsets
from shared.storage.applied_offsets import EventOffsets

log = logging.getLogger(__name__)
# Popularity weights older than this many half-lives are floored, as in StreamingPopularity.
MIN_HALF_LIVES = -32.0


@dataclass
class CountedBatch:
    """What the stores' counters count of one batch."""

    next_offsets: dict[int, int]  # the marks after this batch
    user_offsets: dict[str, EventOffsets]  # MongoDB filters these per document itself
    popularity: dict[str, float] | None  # None: the learner's, every event counted
    events: list[Interaction] = field(default_factory=list)  # for the ranking signals


class ReplayGuard:
    def __init__(self, r: redis.Redis, topic: str, half_life_s: float) -> None:
        self._redis = r
        self.topic = topic
        self._half_life_s = half_life_s
        self.marks: dict[int, int] = {}
        self.left_out = 0  # replayed events the Redis counters did not count again

    def load(self, partitions: Iterable[int]) -> None:
        """Read the marks of ``partitions`` (on assignment: another process may have counted
        further than this one's snapshot)."""
        wanted = set(partitions)
        try:
            marks = applied_offsets.load_marks(self._redis, self.topic)
        except redis.RedisError as exc:  # counting a replay twice beats not starting
            log.warning("could not read the replay marks (a replay may count twice): %s", exc)
            return
        self.marks.update({p: o for p, o in marks.items() if p in wanted})
        log.info("replay marks: %s", self.marks)

    def split(
        self,
        events: Sequence[Interaction],
        partitions: Sequence[int],
        offsets: Sequence[int],
        next_offsets: dict[int, int],
        ts_ms: int,
    ) -> CountedBatch:
        user_offsets: dict[str, EventOffsets] = {}
        for event, part, offset in zip(events, partitions, offsets, strict=True):
            user_offsets.setdefault(event.user_id, {}).setdefault(part, []).append(offset)
        counted = CountedBatch(next_offsets, user_offsets, None, list(events))
        if not self.marks:
            return counted
        keep = applied_offsets.counted_mask(partitions, offsets, self.marks)
        if not all(keep):
            self.left_out += keep.count(False)
            counted.events = [e for e, k in zip(events, keep, strict=True) if k]
            counted.popularity = self._popularity(counted.events, ts_ms)
        for part, next_offset in next_offsets.items():  # past a mark: nothing left to skip
            if self.marks.get(part, next_offset + 1) <= next_offset:
                del self.marks[part]
        return counted
    def _popularity(self, events: Sequence[Interaction], ts_ms: int) -> dict[str, float]:
        """Each item's decayed weight at ``ts_ms`` (what the learner reports for a batch)."""
        weights: dict[str, float] = {}
        if not events:
            return weights
        ages = np.array([(e.ts - ts_ms) / 1000.0 for e in events]) / self._half_life_s
        decay = np.exp2(np.maximum(ages, MIN_HALF_LIVES))
        for event, factor in zip(events, decay.tolist(), strict=True):
            weights[event.item_id] = weights.get(event.item_id, 0.0) + event.weight * factor
        return weights
