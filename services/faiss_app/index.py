"""One FAISS inner-product index over labels ``0..ntotal-1``: exact, IVF or HNSW.

The index is append-only: vectors get consecutive labels in the order they are added, and
nothing is ever removed from the FAISS structure (HNSW cannot remove at all). Deleted or
replaced rows are filtered out of the answers by the caller (:mod:`services.faiss_app.catalog`),
which owns the map of live labels, and the whole index is rebuilt from the live rows once too
many are dead. Nothing here knows about item ids or threads.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import faiss
import numpy as np

from shared.config import FaissSettings

log = logging.getLogger(__name__)

FLAT, IVF, HNSW = "flat", "ivf", "hnsw"
IVF_TRAIN_POINTS_PER_CELL = 64  # k-means sample: 64 points per cell (faiss warns below 39)
IVF_KMEANS_ITERATIONS = 10
# A space that asks for an ANN index still gets the exact one below this size: k-means cells
# over a few hundred items cost more than scanning them.
ANN_MIN_ITEMS = 1000
ADD_CHUNK = 100_000  # rows per add: bounds FAISS' temporary buffers, paces the progress bar
# Builds this large take minutes on 2 cores: they log their progress (a service's log, not a
# terminal: lines, not a tqdm bar) about every PROGRESS_EVERY_S.
PROGRESS_MIN_ITEMS = 1_000_000
PROGRESS_EVERY_S = 10.0
# From this many IVF cells on, the cell lookup (for every added row and every query) goes
# through an HNSW graph over the cell centres instead of scanning them all: at 10M items
# (4·√n ≈ 12.6k cells) that makes assigning the rows several times cheaper. k-means itself
# still runs against the exact centres (``clustering_index``).
HNSW_QUANTIZER_MIN_NLIST = 8192
QUANTIZER_HNSW_M = 32
QUANTIZER_EF_CONSTRUCTION = 64
QUANTIZER_MIN_EF_SEARCH = 64  # and at least 2·nprobe, so the nprobe nearest cells are found
# The default share of an IVF space's cells probed per query, and its floor for small spaces.
NPROBE_SHARE = 0.01
MIN_NPROBE = 32  # at 100k triplet vectors (1,265 cells): recall@10 0.950 with 16, 0.976 with 32


@dataclass(frozen=True)
class IndexParams:
    """Which index to build and its knobs (see FaissSettings for their meaning)."""

    kind: str = FLAT
    nlist: int = 0  # IVF cells; 0 → 4·√n
    nprobe: int = 16  # 0 → default_nprobe(nlist), resolved when the index is built
    max_codes: int = 0  # IVF: stop probing cells once this many rows were scanned; 0 → no cap
    hnsw_m: int = 32
    ef_search: int = 128
    ef_construction: int = 80

    @classmethod
    def for_size(
        cls, settings: FaissSettings, n_items: int, index_type: str = "auto"
    ) -> IndexParams:
        """The index for ``n_items``: ``index_type`` "auto" is exact up to
        ``exact_max_items`` and the configured ANN type above; "flat", "ivf" and "hnsw" are
        what a space asks for (an ANN type only from ``ANN_MIN_ITEMS`` items on)."""
        if index_type == "auto":
            kind = FLAT if n_items <= settings.exact_max_items else settings.ann_type
        elif index_type == FLAT or n_items < ANN_MIN_ITEMS:
            kind = FLAT
        else:
            kind = index_type
        return cls(
            kind=kind,
            nlist=settings.ivf_nlist,
            nprobe=settings.ivf_nprobe,
            max_codes=settings.ivf_max_codes,
            hnsw_m=settings.hnsw_m,
            ef_search=settings.hnsw_ef_search,
            ef_construction=settings.hnsw_ef_construction,
        )


def default_nlist(n_items: int) -> int:
    return max(1, int(round(4 * math.sqrt(max(n_items, 1)))))


def default_nprobe(nlist: int) -> int:
    """Cells probed when RECSYS_FAISS_IVF_NPROBE is 0: 1% of ``nlist``, at least
    :data:`MIN_NPROBE` (and never more than there are)."""
    return min(nlist, max(MIN_NPROBE, int(round(nlist * NPROBE_SHARE))))


class VectorIndex:
    """Inner-product search over float32 vectors of one dimension.

    Build with :meth:`build`; ``search`` and ``reconstruct`` may run from many threads at
    once, ``add`` must not run concurrently with anything (the catalog's lock sees to it).
    """

    def __init__(self, params: IndexParams, dim: int, index: faiss.Index, extra: dict[str, Any]):
        self.params = params
        self.dim = dim
        self._index = index
        self._extra = extra
        self.drift = CellDrift()

    @classmethod
    def build(cls, params: IndexParams, vectors: np.ndarray, seed: int = 1234) -> VectorIndex:
        """Build and fill an index from ``vectors``, float32 of shape (n, dim)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        built = cls.create(params, vectors, seed)
        n = len(vectors)
        started = reported = time.monotonic()
        for start in range(0, n, ADD_CHUNK):
            built.add(vectors[start : start + ADD_CHUNK], track_drift=False)
            now = time.monotonic()
            if n >= PROGRESS_MIN_ITEMS and now - reported >= PROGRESS_EVERY_S:
                reported = now
                done = min(n, start + ADD_CHUNK)
                log.info("%s index: %d of %d rows added (%.0f rows/s)", built.params.kind,
                         done, n, done / (now - started))  # fmt: skip
        built.drift.trained_on = n
        return built

    @classmethod
    def create(cls, params: IndexParams, training: np.ndarray, seed: int = 1234) -> VectorIndex:
        """An empty index for vectors like ``training`` (float32 (n, dim)).

        IVF trains its k-means cells on a sample of ``training`` (at most 64 points per cell;
        nlist 0 means 4·√n), so an empty ``training`` can only make the exact index.
        """
        n, dim = training.shape
        extra: dict[str, Any] = {}
        index: faiss.Index
        if params.kind == FLAT or n == 0:
            params = IndexParams(FLAT)
            index = faiss.IndexFlatIP(dim)
        elif params.kind == IVF:
            nlist = min(params.nlist or default_nlist(n), n)
            quantizer: faiss.Index
            if nlist >= HNSW_QUANTIZER_MIN_NLIST:
                quantizer = faiss.IndexHNSWFlat(dim, QUANTIZER_HNSW_M, faiss.METRIC_INNER_PRODUCT)
                quantizer.hnsw.efConstruction = QUANTIZER_EF_CONSTRUCTION
                quantizer.hnsw.efSearch = QUANTIZER_MIN_EF_SEARCH
            else:
                quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            if nlist >= HNSW_QUANTIZER_MIN_NLIST:
                extra["clustering_index"] = faiss.IndexFlatIP(dim)  # exact k-means steps
                index.clustering_index = extra["clustering_index"]
            index.cp.niter = IVF_KMEANS_ITERATIONS
            index.cp.seed = seed
            index.cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_CELL
            index.cp.min_points_per_centroid = max(1, min(39, n // nlist))  # small catalogs
            sample_size = min(n, IVF_TRAIN_POINTS_PER_CELL * nlist)
            rng = np.random.default_rng(seed)
            rows = np.sort(rng.choice(n, sample_size, replace=False))
            sample = np.ascontiguousarray(training[rows], dtype=np.float32)
            index.train(sample)
            extra["centroid_norms"] = np.square(quantizer.reconstruct_n(0, nlist)).sum(axis=1)
            index.make_direct_map(True)  # reconstruct() for rebuilds and /v1/similar
            nprobe = params.nprobe or default_nprobe(nlist)
            index.nprobe = nprobe
            extra["quantizer"] = quantizer  # the IVF index does not own it: keep it alive
            params = IndexParams(IVF, nlist=nlist, nprobe=nprobe, max_codes=params.max_codes)
        elif params.kind == HNSW:
            index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params.ef_construction
            index.hnsw.efSearch = params.ef_search
            params = IndexParams(
                HNSW,
                hnsw_m=params.hnsw_m,
                ef_search=params.ef_search,
                ef_construction=params.ef_construction,
            )
        else:
            raise ValueError(f"unknown index kind {params.kind!r}")
        built = cls(params, dim, index, extra)
        if params.kind == IVF:
            built.drift.trained_residual = float(built._residuals(sample).mean())
        return built

    @property
    def ntotal(self) -> int:
        """Labels handed out so far (live and dead)."""
        return int(self._index.ntotal)

    def add(self, vectors: np.ndarray, track_drift: bool = True) -> None:
        """Append float32 rows of shape (m, dim); they get labels ntotal..ntotal+m-1.

        IVF puts each row into its nearest trained cell at once; with ``track_drift`` the
        distance to that cell is recorded, so :attr:`drift` says when the cells went stale.
        """
        if not len(vectors):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if track_drift and self.params.kind == IVF:
            self.drift.record(self._residuals(vectors))
        self._index.add(vectors)

    def _residuals(self, vectors: np.ndarray) -> np.ndarray:
        """Squared L2 distance of each row to its nearest IVF cell centre: float (m,)."""
        scores, cells = self._extra["quantizer"].search(vectors, 1)
        norms = np.square(vectors).sum(axis=1)
        return np.maximum(
            0.0, norms - 2 * scores[:, 0] + self._extra["centroid_norms"][cells[:, 0]]
        )

    def nearest_cells(self, vectors: np.ndarray) -> np.ndarray:
        """The IVF cell whose centre has the highest inner product with each row: int64 (m,)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        return self._extra["quantizer"].search(vectors, 1)[1][:, 0]

    def cells_of(self, labels: np.ndarray) -> np.ndarray:
        """The IVF cell each stored label sits in: int64 (m,)."""
        direct_map = self._index.direct_map
        return np.array([faiss.lo_listno(direct_map.get(int(label))) for label in labels])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` labels by inner product: (scores (nq, k) f32, labels (nq, k) int64).

        Missing results (fewer than k candidates) have label -1. Dead labels are included:
        the caller filters them.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        kind = self.params.kind
        if kind == IVF:
            nprobe = self.params.nprobe
            search_params: faiss.SearchParameters = faiss.SearchParametersIVF(
                nprobe=nprobe, max_codes=self.params.max_codes
            )
            if isinstance(self._extra["quantizer"], faiss.IndexHNSWFlat):
                # kept in a local: FAISS holds a bare pointer to it during the search
                ef = max(QUANTIZER_MIN_EF_SEARCH, 2 * nprobe)
                cells = faiss.SearchParametersHNSW(efSearch=ef)
                search_params.quantizer_params = cells
        elif kind == HNSW:
            search_params = faiss.SearchParametersHNSW(efSearch=max(self.params.ef_search, k))
        else:
            return self._index.search(queries, k)
        return self._index.search(queries, k, params=search_params)

    def reconstruct(self, labels: np.ndarray) -> np.ndarray:
        """The stored vectors of ``labels`` (int64 array): float32 of shape (m, dim)."""
        labels = np.asarray(labels, dtype=np.int64)
        if not len(labels):
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_batch(labels)

    def reconstruct_all(self) -> np.ndarray:
        """Every stored vector in label order: float32 of shape (ntotal, dim)."""
        if self.ntotal == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_n(0, self.ntotal)

    def describe(self) -> dict[str, Any]:
        """Index type and parameters (and cell drift for IVF), for /v1/stats and reports."""
        fields = {
            FLAT: (),
            IVF: ("nlist", "nprobe", "max_codes"),
            HNSW: ("hnsw_m", "ef_search", "ef_construction"),
        }[self.params.kind]
        values = asdict(self.params)
        described: dict[str, Any] = {"type": self.params.kind, "metric": "inner_product"}
        described.update({name: values[name] for name in fields})
        if self.params.kind == IVF:
            described["cell_lookup"] = type(self._extra["quantizer"]).__name__
            described["drift"] = self.drift.as_dict()
        return described


@dataclass
class CellDrift:
    """How far the catalogue moved from the IVF cells since they were trained.

    ``added`` rows went into cells trained on ``trained_on`` rows; ``trained_residual`` and
    ``added_residual`` are the mean squared distances of the training sample and of the added
    rows to their nearest cell centre. Many additions, or additions far from every centre (a
    new region of the space), mean the cells should be re-trained.
    """

    trained_on: int = 0
    trained_residual: float = 0.0
    added: int = 0
    added_residual_sum: float = 0.0

    def record(self, residuals: np.ndarray) -> None:
        self.added += len(residuals)
        self.added_residual_sum += float(residuals.sum())

    @property
    def added_residual(self) -> float:
        return self.added_residual_sum / self.added if self.added else 0.0

    def growth(self) -> float:
        """Rows added since training, as a fraction of the rows trained on."""
        return self.added / max(1, self.trained_on)

    def residual_ratio(self) -> float:
        """Mean residual of added rows over that of the training sample (1.0 = no drift)."""
        if not self.added or self.trained_residual <= 0:
            return 1.0
        return self.added_residual / self.trained_residual

    def as_dict(self) -> dict[str, Any]:
        return {
            "trained_on": self.trained_on,
            "added_since_training": self.added,
            "growth": round(self.growth(), 4),
            "residual_ratio": round(self.residual_ratio(), 4),
        }
