"""Reloads reach every worker of one gunicorn master, not only the one that got the request.

The master creates a :class:`ReloadBroadcast` in shared memory before it forks (gunicorn.conf.py
``on_starting``), so every worker inherits it. The worker that answers ``POST /v1/reload``
publishes the version it loaded with a new generation number; a :class:`ReloadWatcher` thread
in every other worker sees the generation change and loads the same version of the same vector
space (the exact version, not LATEST, so workers cannot diverge if LATEST moves meanwhile). A worker that
restarts later also catches up to the last broadcast version. Other replicas (other hosts) are
reloaded by calling each of them, as a deploy script does.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the gunicorn master imports this module: keep FAISS out of it
    from services.faiss_app.catalog import Catalog
    from services.faiss_app.spaces import SpaceRegistry

log = logging.getLogger(__name__)

MAX_VERSION_BYTES = 256
WATCH_INTERVAL_S = 0.25


class ReloadBroadcast:
    """A (generation, "space/version") pair in shared memory, written by one worker, read by
    all (space names and versions never contain "/")."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        self._lock = context.Lock()
        self._generation = context.RawValue("q", 0)
        self._version = context.RawArray("c", MAX_VERSION_BYTES)

    def publish(self, version: str) -> int:
        encoded = version.encode("utf-8")[:MAX_VERSION_BYTES]
        with self._lock:
            self._version.value = encoded
            self._generation.value += 1
            return int(self._generation.value)

    def read(self) -> tuple[int, str]:
        with self._lock:
            return int(self._generation.value), self._version.value.decode("utf-8")


SHARED: ReloadBroadcast | None = None


def install() -> ReloadBroadcast:
    """Create the process-wide broadcast (call in the gunicorn master, before forking)."""
    global SHARED
    SHARED = ReloadBroadcast()
    return SHARED


class ReloadWatcher:
    """Per-worker thread that loads whatever version a sibling worker broadcast."""

    def __init__(self, spaces: SpaceRegistry, broadcast: ReloadBroadcast):
        self._spaces = spaces
        self._broadcast = broadcast
        self._stop = threading.Event()
        self._seen_lock = threading.Lock()
        self._seen = 0
        self._thread: threading.Thread | None = None

    def reload(self, version: str | None, space: str | None = None) -> Catalog:
        """Load ``version`` of ``space`` here, then tell the siblings (POST /v1/reload)."""
        service = self._spaces.get(space)
        catalog = service.load(version)
        with self._seen_lock:
            self._seen = self._broadcast.publish(f"{service.name}/{catalog.version}")
        return catalog

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="reload-watch", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL_S):
            generation, published = self._broadcast.read()
            with self._seen_lock:
                if generation <= self._seen:
                    continue
                self._seen = generation
            space, _, version = published.rpartition("/")
            try:
                service = self._spaces.get(space or None)
                current = service.catalog
                if current is not None and current.version == version:
                    continue
                service.load(version)
                log.info("reloaded %s as broadcast by a sibling worker", published)
            except Exception:
                log.exception("could not load broadcast version %s", published)
