"""The trainer's collector settings: what is alive at start-up is frozen out of collections,
young collections wait for more allocations."""

from __future__ import annotations

import gc

from shared.gc_tuning import YOUNG_THRESHOLD, freeze_startup_heap


def test_startup_heap_is_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()
    long_lived = [[n] for n in range(1000)]  # containers alive at "start-up"
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() >= len(long_lived)
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
