"""A catalog re-built from its live rows on a thread of its own, while the old one keeps serving.

Re-building (re-training IVF cells on the drifted catalogue, dropping dead rows) takes minutes at
10M items. During that time the follower keeps applying item-vectors updates to the live
catalog, so new items stay searchable at once, and journals each applied batch here. When the
build is done, the follower (the only writer) replays the journal into the new catalog and the
service swaps it in: the swap loses nothing that was applied during the build.

The journal starts before the build thread reads the live rows, so a batch may be both in the
rows read and in the journal. Replaying it again is harmless: an upsert replaces the item's row
with the same vector, a delete of a deleted item does nothing, offsets only move forward.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from services.faiss_app.catalog import Catalog
from shared.item_vectors import ItemVectorUpdate

log = logging.getLogger(__name__)

Batch = tuple[Sequence[ItemVectorUpdate], dict[int, int], tuple[int, int] | None]


class BackgroundRebuild:
    """Builds ``build()`` (default ``source.rebuilt``) on a daemon thread; ``record`` the batches
    applied to ``source`` meanwhile, then ``finish`` once ``done``."""

    def __init__(self, source: Catalog, build: Callable[[], Catalog] | None = None):
        self.source = source
        self.started_at = time.monotonic()
        self._build = build or source.rebuilt
        self._journal: list[Batch] = []
        self._result: Catalog | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"rebuild-{source.version}", daemon=True
        )
        self._thread.start()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        return self._done.wait(timeout_s)

    def record(
        self,
        updates: Sequence[ItemVectorUpdate],
        offsets: dict[int, int],
        last: tuple[int, int] | None,
    ) -> None:
        """A batch just applied to ``source`` (call from the writer thread)."""
        self._journal.append((list(updates), dict(offsets), last))

    def finish(self) -> Catalog | None:
        """The new catalog with the journal replayed (call from the writer thread once
        ``done``); None if the build failed."""
        fresh = self._result
        if fresh is None:
            return None
        for updates, offsets, last in self._journal:
            fresh.apply(updates, offsets, last)
        log.info(
            "rebuilt %s in %.1fs: %d items, %d batches applied during the build replayed",
            self.source.version,
            time.monotonic() - self.started_at,
            fresh.count,
            len(self._journal),
        )
        self._journal.clear()
        return fresh

    def _run(self) -> None:
        try:
            self._result = self._build()
        except Exception:
            log.exception("rebuild of %s failed; keeping the current index", self.source.version)
        finally:
            self._done.set()
