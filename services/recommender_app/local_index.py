"""The gmf space searched inside this worker: the model's candidates without a faiss_app hop.

With ``RECSYS_RECOMMENDER_LOCAL_SEARCH`` each recommender worker holds the same catalog a
faiss_app worker holds, built by faiss_app's own code (:class:`IndexService`,
:class:`UpdateFollower`): the snapshot faiss_app has loaded, then every ``item-vectors`` update
from Kafka. A personalized answer then costs one in-process FAISS search instead of an HTTP
round trip to a second Python service (on two cores that hop cost more CPU than the search).

faiss_app stays the source of truth and the fallback. Which snapshot: the version faiss_app's
``/healthz`` names, re-read every :data:`CHECK_S` (LATEST while faiss_app cannot be asked), so
an operator's ``/v1/reload`` there is followed here. :meth:`LocalIndex.catalog` gives the copy
only while it is current:

- the catalog of that version is loaded,
- the follower has applied everything the topic held when it was assigned for this catalog,
- its poll loop turned within :data:`FRESH_S` (a new vector reaches the copy as fast as it
  reaches faiss_app: both follow the same topic in batches of at most 50 ms);

otherwise it returns None and the caller asks faiss_app, as without this module. A worker
therefore starts on faiss_app and switches to its copy once it is built and caught up.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence

import numpy as np

from services.faiss_app.catalog import Catalog, Hits
from services.faiss_app.follower import UpdateFollower
from services.faiss_app.openmp import limit_threads
from services.faiss_app.service import IndexService
from shared.config import Settings
from shared.faiss_client import FaissClient, FaissError
from shared.metrics import Metrics
from shared.snapshots import SnapshotNotFound, read_latest

log = logging.getLogger(__name__)

CHECK_S = 1.0  # how often faiss_app's snapshot version is compared with the copy's
FRESH_S = 1.0  # the follower's poll loop must have turned this recently
VERSION_TIMEOUT_S = 1.0


class LocalIndex:
    """This worker's copy of faiss_app's gmf catalog; ``start`` builds it in the background."""

    def __init__(self, settings: Settings, faiss: FaissClient) -> None:
        # faiss_app's gauges and counters describe faiss_app: the copy sends none of them.
        quiet = Metrics(dataclasses.replace(settings.statsd, enabled=False))
        self._service = IndexService(settings, quiet)
        self._follower = UpdateFollower(self._service, settings.kafka, quiet)
        self._faiss = faiss
        self._omp_threads = settings.faiss.omp_threads
        self._wanted: str | None = None  # the snapshot version faiss_app serves
        self._unreadable: str | None = None  # a version not loadable here (logged once)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="local-index", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._follower.stop()
        if self._thread.is_alive():
            self._thread.join(5.0)

    # -- reads -----------------------------------------------------------------------------------

    def catalog(self) -> Catalog | None:
        """The copy when it is current (see the module docstring), else None."""
        catalog = self._service.catalog
        follower = self._follower
        if catalog is None or catalog.version != self._wanted:
            return None
        if follower.following is not catalog or not follower.caught_up:
            return None
        turned = follower.last_turn_at
        if turned is None or time.monotonic() - turned > FRESH_S:
            return None
        return catalog

    def search(self, catalog: Catalog, query: np.ndarray, k: int, seen: Sequence[str]) -> Hits:
        """Top ``k`` by inner product with ``query`` float32 (dim,), ``seen`` left out."""
        limit_threads(self._omp_threads)  # one search must not fight another for the cores
        return catalog.search(query[None, :], k, [seen])[0]

    def similar(self, catalog: Catalog, item_id: str, k: int) -> Hits:
        """Top ``k`` by cosine to ``item_id``; raises UnknownItemError."""
        limit_threads(self._omp_threads)
        return catalog.similar(item_id, k)

    def describe(self) -> dict[str, object]:
        catalog = self._service.catalog
        return {
            "current": self.catalog() is not None,
            "version": catalog.version if catalog is not None else None,
            "faiss_app_version": self._wanted,
            "follower": self._follower.describe(),
        }

    # -- the background thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._sync()
            except Exception:  # never end the thread: the copy is only an optimisation
                log.exception("local index: could not follow faiss_app's snapshot")
            self._stopping.wait(CHECK_S)

    def _sync(self) -> None:
        """Load the snapshot faiss_app serves when the copy holds another one."""
        try:
            wanted = self._faiss.healthz(VERSION_TIMEOUT_S).get("model_version")
        except FaissError:
            wanted = None
        current = self._service.catalog
        if wanted is None:  # faiss_app away or still loading: keep the copy, else take LATEST
            wanted = current.version if current is not None else read_latest(
                self._service.models_dir
            )
        if wanted is None:
            return
        if current is None or current.version != wanted:
            try:
                loaded = self._service.load(wanted)  # wakes the follower: it re-positions
            except SnapshotNotFound as exc:
                if self._unreadable != wanted:
                    log.warning("local index: snapshot %s not readable here: %s", wanted, exc)
                    self._unreadable = wanted
                return
            log.info("local index: %s loaded (%d items)", loaded.version, loaded.count)
        self._wanted = wanted
        self._follower.start()  # idempotent; after the first load, so it never loads LATEST
