"""Vector spaces faiss_app said it does not serve, or has not loaded yet, each left alone for a
moment before it is asked again.

Without this, a configured space with no snapshot (a fresh deployment, a space trainer not run
yet) cost every request one faiss_app round trip that could only answer "not here": about
0.7 ms of a personalized answer's unloaded 4.9 ms at 1M items (reports/bench_api.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Long enough that a request-rate worker asks at most once a second; short enough that a
# space loaded by faiss_app is used within a second.
SPACE_RETRY_S = 1.0


class UnservedSpaces:
    """Space name → the time before which it is not asked again. Thread-safe."""

    def __init__(
        self, retry_s: float = SPACE_RETRY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._retry_s = retry_s
        self._clock = clock
        self._retry_at: dict[str | None, float] = {}
        self._lock = threading.Lock()

    def skipped(self, space: str | None) -> bool:
        """Whether ``space`` answered "not served" less than ``retry_s`` ago."""
        retry_at = self._retry_at.get(space)  # a dict read needs no lock
        return retry_at is not None and retry_at > self._clock()

    def mark(self, space: str | None) -> None:
        """``space`` just answered "not served" (or "not loaded")."""
        with self._lock:
            self._retry_at[space] = self._clock() + self._retry_s
