"""An in-process cache of item metadata in front of Redis, bounded in size and age.

Invalidation rule: an entry is served for at most ``ttl_s`` seconds after it was read from
Redis or MongoDB, then read again; so a metadata change shows in answers within ``ttl_s``
(metadata changes are rare, a title a few seconds stale is acceptable). Entries are keyed by
item id and hold exactly what the stores returned for that id, so a stale entry can only be an
older version of the same item's metadata, never another item's. Items known to have no
metadata anywhere are cached as such (``None``), so they do not cost two store reads per
answer; an item is never cached as absent when a store could not be read. Past ``max_items``
the oldest entries are dropped first. ``ttl_s = 0`` turns the cache off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Metadata = dict[str, Any]


class MetadataCache:
    def __init__(self, max_items: int, ttl_s: float, clock: Callable[[], float] = time.monotonic):
        self._max_items = max_items
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Metadata | None]] = {}  # id → (expires, value)

    @property
    def enabled(self) -> bool:
        return self._ttl_s > 0 and self._max_items > 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, item_ids: Sequence[str]) -> tuple[dict[str, Metadata | None], list[str]]:
        """``(fresh entries by id, ids to read from the stores)``; a ``None`` entry means the
        item has no metadata."""
        if not self.enabled:
            return {}, list(item_ids)
        now = self._clock()
        found: dict[str, Metadata | None] = {}
        missing: list[str] = []
        entries = self._entries
        for item_id in item_ids:
            entry = entries.get(item_id)
            if entry is not None and entry[0] > now:
                found[item_id] = entry[1]
            else:
                missing.append(item_id)
        return found, missing

    def fresh_until(self, item_ids: Iterable[str]) -> float:
        """When the first of these entries expires (now when one is not cached): something
        built from them (a kept popular answer) must not be served longer."""
        now = self._clock()
        if not self.enabled:
            return now
        missing = (now, None)
        return min((self._entries.get(i, missing)[0] for i in item_ids), default=now)

    def store(self, values: Mapping[str, Metadata | None]) -> None:
        """Remember what the stores returned (``None``: the item has none) for ``ttl_s``."""
        if not self.enabled or not values:
            return
        expires = self._clock() + self._ttl_s
        with self._lock:
            entries = self._entries
            for item_id, value in values.items():
                entries.pop(item_id, None)  # re-inserted last: the eviction order is age
                entries[item_id] = (expires, value)
            overflow = len(entries) - self._max_items
            if overflow > 0:
                for item_id in list(_first(entries, overflow)):
                    del entries[item_id]

    def invalidate(self, item_ids: Iterable[str] | None = None) -> None:
        """Forget ``item_ids`` (all entries when None): the next answer reads the stores."""
        with self._lock:
            if item_ids is None:
                self._entries.clear()
            else:
                for item_id in item_ids:
                    self._entries.pop(item_id, None)


def _first(entries: dict[str, Any], n: int) -> Iterable[str]:
    for count, item_id in enumerate(entries):
        if count >= n:
            return
        yield item_id
