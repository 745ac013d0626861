"""The index service: owns the live catalog, loads snapshots and swaps them in.

Handlers and the update follower only talk to :class:`IndexService`. The live catalog is one
reference: a reload builds the new catalog completely (while searches keep using the old
one), then replaces the reference in a single assignment, so a search runs entirely on the old
or entirely on the new version and no request fails during a reload.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.faiss_app.catalog import Catalog
from services.faiss_app.errors import IndexNotReady
from services.faiss_app.openmp import limit_threads
from shared.config import Settings
from shared.metrics import Metrics
from shared.snapshots import (
    SnapshotNotFound,
    read_item_vectors,
    read_latest,
    read_manifest,
    resolve,
)
from shared.spaces import DEFAULT_SPACE, SpaceSpec, space_models_dir, space_topic

log = logging.getLogger(__name__)


class IndexService:
    """Search, similar and stats over the live catalog of one vector space; load and swap
    its snapshots (the space's folder and update topic come from :mod:`shared.spaces`)."""

    def __init__(self, settings: Settings, metrics: Metrics, space: SpaceSpec | None = None):
        self.settings = settings
        self.space = space or SpaceSpec(DEFAULT_SPACE)
        self.name = self.space.name
        self.models_dir = space_models_dir(Path(settings.model.models_dir), self.name)
        self.topic = space_topic(settings.kafka.item_vectors_topic, self.name)
        self.metrics = metrics
        self._catalog: Catalog | None = None
        self._load_lock = threading.Lock()
        self._on_swap: list[Callable[[], None]] = []

    # -- the live catalog --------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog | None:
        return self._catalog

    def require(self) -> Catalog:
        catalog = self._catalog
        if catalog is None:
            raise IndexNotReady(f"space {self.name!r}: no snapshot loaded yet")
        return catalog

    def on_swap(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every swap (the follower re-positions on the new catalog)."""
        self._on_swap.append(callback)

    def load(self, version: str | None = None) -> Catalog:
        """Build a catalog from ``models/<version>`` (default LATEST) and swap it in.

        Raises SnapshotNotFound when there is no such snapshot. Concurrent loads run one at a
        time; searches are never blocked by a load.
        """
        with self._load_lock:
            folder = resolve(self.models_dir, version)
            manifest = read_manifest(folder)
            item_ids, vectors = read_item_vectors(folder)
            # The contract keys offsets by the logical topic name; accept the configured one too.
            recorded = manifest.get("offsets") or {}
            logical = space_topic("item-vectors", self.name)
            offsets = recorded.get(logical, recorded.get(self.topic)) or {}
            catalog = Catalog(
                version=str(manifest.get("version") or folder.name),
                item_ids=item_ids,
                vectors=vectors,
                similarity_dims=int(manifest.get("similarity_dims") or vectors.shape[1]),
                settings=self.settings.faiss,
                offsets={int(p): int(o) for p, o in offsets.items()},
                index_type=self.space.index_type,
                normalized=bool(manifest.get("normalized", False)),
            )
            self._swap(catalog)
        log.info(
            "loaded %s snapshot %s: %d items, dim %d, %s in %.2fs",
            self.name,
            catalog.version,
            catalog.count,
            catalog.dim,
            catalog.index_type,
            catalog.build_seconds,
        )
        self.metrics.incr("faiss.reloads")
        return catalog

    def load_if_present(self) -> bool:
        """Load LATEST if there is one; False (and no error) when there is none yet."""
        if read_latest(self.models_dir) is None:
            return False
        try:
            self.load()
        except SnapshotNotFound:
            return False
        return True

    def replace_if_current(self, current: Catalog, new: Catalog) -> bool:
        """Swap in ``new`` (a compaction of ``current``) unless a reload replaced it already."""
        with self._load_lock:
            if self._catalog is not current:
                return False
            self._swap(new)
            return True

    def _swap(self, catalog: Catalog) -> None:
        self._catalog = catalog
        if self.name == DEFAULT_SPACE:
            self.metrics.gauge("faiss.index_size", catalog.count)
        for callback in self._on_swap:
            callback()

    # -- queries -----------------------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[Sequence[str]] | None
    ) -> dict[str, Any]:
        """Answer of ``POST /v1/search`` for float32 ``queries`` of shape (n, dim)."""
        catalog = self.require()
        limit_threads(self.settings.faiss.omp_threads)
        version = catalog.serving_version  # read first: the answer reflects at least this
        results = catalog.search(queries, k, exclude)
        self.metrics.incr("faiss.queries", len(queries))
        return {
            "results": [{"ids": ids, "scores": scores} for ids, scores in results],
            "model_version": version,
            "index_type": catalog.index_type,
            "space": self.name,
        }

    def similar(self, item_id: str, k: int) -> dict[str, Any]:
        """Answer of ``GET /v1/similar``; raises UnknownItemError."""
        catalog = self.require()
        limit_threads(self.settings.faiss.omp_threads)
        version = catalog.serving_version
        ids, scores = catalog.similar(item_id, k)
        return {
            "item_id": item_id,
            "ids": ids,
            "scores": scores,
            "model_version": version,
            "space": self.name,
        }

    def stats(self) -> dict[str, Any]:
        catalog = self.require()
        return {"space": self.name, "topic": self.topic, **catalog.describe()}

    def summary(self) -> dict[str, Any]:
        """One line per space for /v1/stats: loaded or not, version, size, index, recall."""
        catalog = self._catalog
        head: dict[str, Any] = {
            "topic": self.topic,
            "folder": str(space_models_dir(Path("."), self.name)),  # under RECSYS_MODELS_DIR
            "index_type_asked": self.space.index_type,
            "loaded": catalog is not None,
        }
        if catalog is None:
            return head
        described = catalog.describe()
        keys = ("model_version", "serving_model_version", "count", "dimension", "index")
        return {
            **head,
            **{key: described[key] for key in keys},
            "recall_at_10": catalog.recall_at_10,
        }
