"""Cyclic garbage collection tuned for a long-running process with a large, stable heap.

The trainer holds millions of long-lived objects (id maps, seen sets, recent items) and
allocates many short-lived ones per event. With CPython's default thresholds it ran a young
collection every 700 net allocations and, every so often, a full one over the whole heap: about
a tenth of its time in a replay of 60k events (measured with ``gc.callbacks``). Objects alive
after start-up (the loaded snapshot) are frozen out of collections, and young collections wait
for more allocations; reference counting still frees everything not in a cycle at once.
"""

from __future__ import annotations

import gc

# Net allocations of container objects between two young collections (CPython's default: 700).
YOUNG_THRESHOLD = 50_000


def freeze_startup_heap(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Exclude every object alive now from future collections; collect the young less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
