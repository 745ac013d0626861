"""New catalogue items in answers before anyone has interacted with them.

Items PUT for the first time within ``new_item_window_s`` (Redis ``items:new``) take up to
``new_item_slots`` places at the tail of every answer, replacing the lowest-ranked items, so a
new item can collect the interactions the model needs. Each worker re-reads the newest items at
most every ``new_item_refresh_s``; a Redis failure keeps the last list.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from shared.config import CatalogueSettings
from shared.storage.catalogue import newest_items

log = logging.getLogger(__name__)

NEW_ITEM_SCORE = 0.0  # not a model score: the item is shown to learn about it


class NewItems:
    def __init__(self, r: redis.Redis, settings: CatalogueSettings,
                 clock: Callable[[], float] = time.monotonic,
                 now_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self._redis = r
        self._settings = settings
        self._clock = clock
        self._now_ms = now_ms
        self._lock = threading.Lock()
        self._items: list[str] = []
        self._checked = float("-inf")

    @property
    def slots(self) -> int:
        return self._settings.new_item_slots

    def current(self) -> list[str]:
        """Newest first; enough candidates to fill the slots after exclusions."""
        if self.slots and self._clock() - self._checked >= self._settings.new_item_refresh_s:
            with self._lock:
                if self._clock() - self._checked >= self._settings.new_item_refresh_s:
                    self._refresh()
        return self._items

    def _refresh(self) -> None:
        self._checked = self._clock()
        since = self._now_ms() - int(self._settings.new_item_window_s * 1000)
        try:
            self._items = newest_items(self._redis, 8 * self.slots + 32, since)
        except (redis.RedisError, OSError) as exc:
            log.warning("new items not refreshed: %s", exc)


def with_new_items(chosen: list[tuple[str, float]], k: int, fresh: list[str], slots: int,
                   excluded: set[str] | frozenset[str]) -> list[tuple[str, float]]:
    """``chosen`` with up to ``slots`` new items (not excluded, not already in it) at its tail."""
    present = {item_id for item_id, _ in chosen}
    picks = [i for i in fresh if i not in excluded and i not in present][: min(slots, k)]
    if not picks:
        return chosen
    kept = chosen[: k - len(picks)]
    return kept + [(item_id, NEW_ITEM_SCORE) for item_id in picks]
