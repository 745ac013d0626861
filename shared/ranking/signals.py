"""What one micro-batch of the stream tells the ranking stage, computed once for every store.

The trainer computes a :class:`SignalBatch` per micro-batch and writes it to Redis; the offline
evaluator computes the same batches and applies them to in-memory stores. A batch's weights
count at its newest event time (a batch spans at most ``RECSYS_TRAINER_BATCH_MAX_MS``, far
below any half-life used here).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from shared.events import Interaction

# How far back "engaged right after" looks: the k-th previous item of the user gets 1/k.
FOLLOW_DEPTH = 3
# Users whose recent items are remembered in process (least recently active forgotten first).
MAX_TRACKED_USERS = 1_000_000


@dataclass
class SignalBatch:
    """Weights of one micro-batch.

    co_engagement : {(previous item, next item): weight}
    engagement : {item: weight}  (feeds the trending and popular lists)
    new_items : {item: first event time, Unix ms}  (items never seen before this batch)
    ts_ms : newest event time of the batch
    """

    co_engagement: dict[tuple[str, str], float] = field(default_factory=dict)
    engagement: dict[str, float] = field(default_factory=dict)
    new_items: dict[str, int] = field(default_factory=dict)
    ts_ms: int = 0


class RecentItems:
    """The last :data:`FOLLOW_DEPTH` items of each user, newest first, bounded in users."""

    def __init__(self, depth: int = FOLLOW_DEPTH, max_users: int = MAX_TRACKED_USERS) -> None:
        self.depth = depth
        self.max_users = max_users
        self._items: OrderedDict[str, deque[str]] = OrderedDict()

    def of(self, user_id: str) -> tuple[str, ...]:
        items = self._items.get(user_id)
        return tuple(items) if items else ()

    def known(self, user_id: str) -> bool:
        return user_id in self._items

    def seed(self, user_id: str, newest_first: Sequence[str]) -> None:
        """Fold items engaged before this process started (e.g. Redis ``seen:{user}``)."""
        if user_id not in self._items:
            self._items[user_id] = deque(newest_first[: self.depth], maxlen=self.depth)
            self._bound()

    def forget(self, user_id: str) -> None:
        """Drop a forgotten user's items (shared/forgotten_users.py)."""
        self._items.pop(user_id, None)

    def push(self, user_id: str, item_id: str) -> tuple[str, ...]:
        """Record ``item_id`` as the user's newest; returns the items before it, newest first."""
        items = self._items.get(user_id)
        if items is None:
            items = self._items[user_id] = deque(maxlen=self.depth)
            self._bound()
        else:
            self._items.move_to_end(user_id)
        before = tuple(items)
        items.appendleft(item_id)
        return before

    def _bound(self) -> None:
        while len(self._items) > self.max_users:
            self._items.popitem(last=False)


def signal_batch(
    events: Sequence[Interaction], recent: RecentItems, is_new_item: Callable[[str], bool]
) -> SignalBatch:
    """The weights of ``events`` (in stream order); updates ``recent`` as it goes.

    ``is_new_item(item_id)`` says whether the item was unknown before this batch.
    """
    batch = SignalBatch()
    for event in events:
        before = recent.push(event.user_id, event.item_id)
        for distance, previous in enumerate(before, start=1):
            if previous != event.item_id:
                pair = (previous, event.item_id)
                batch.co_engagement[pair] = batch.co_engagement.get(pair, 0.0) + 1.0 / distance
        batch.engagement[event.item_id] = batch.engagement.get(event.item_id, 0.0) + event.weight
        if event.item_id not in batch.new_items and is_new_item(event.item_id):
            batch.new_items[event.item_id] = event.ts
        batch.ts_ms = max(batch.ts_ms, event.ts)
    return batch
