"""The live item index of one model version: item ids, two FAISS indexes, live updates.

A :class:`Catalog` holds

- ``search``: inner product over the full serving vectors (``/v1/search``);
- ``similar``: inner product over the L2-normalised first ``similarity_dims`` components, i.e.
  cosine (``/v1/similar``; the bias component is not a direction);
- the map between FAISS labels and item ids, and a bitmap of live labels.

How updates work (the same for exact, IVF and HNSW): FAISS labels are append-only. An upsert
appends the new vector under a fresh label to both indexes and marks the item's old label
dead; a delete marks it dead. Dead rows are dropped after the search: it over-fetches by the
dead fraction (plus a few) and searches again, wider, the rare rows left short. That costs
less than handing FAISS a per-row ``IDSelector`` (a check on every scanned vector: measured
+10–15% on an IVF scan, reports/bench_faiss_triplet_10m.md). When dead labels pass
``REBUILD_DEAD_FRACTION`` of all labels, a background thread builds a fresh catalog from the
live rows (:meth:`Catalog.rebuilt`, re-training IVF cells, re-linking the HNSW graph) while
searches and updates keep using this one; the updates applied meanwhile are replayed into it
and the service swaps it in (services/faiss_app/follower.py).

Atomicity: one readers-writer lock per catalog. A whole update batch (both indexes, the id
maps, the bitmap, the Kafka offsets) is applied under the write lock; searches hold the read
lock, so no search ever sees half a batch. Reloads build a new catalog and swap the reference.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from services.faiss_app.errors import BadQuery, UnknownItemError
from services.faiss_app.index import FLAT, IVF, IndexParams, VectorIndex
from services.faiss_app.rwlock import RWLock
from shared.config import FaissSettings
from shared.item_vectors import ItemVectorUpdate

REBUILD_DEAD_FRACTION = 0.25
REBUILD_MIN_DEAD = 1024
# IVF cells are re-trained when the rows added since training reach FaissSettings'
# recluster_growth of the rows trained on, or when the added rows sit this much farther from
# their cell centres than the training rows did (items in a region no cell covers).
RECLUSTER_RESIDUAL_RATIO = 1.5
RECLUSTER_MIN_ADDED = 256
DEAD_MARGIN = 8  # extra results fetched when some labels are dead
RECALL_QUERIES = 64  # item vectors used as queries to measure an ANN index's recall@10
RECALL_K = 10

Hits = tuple[list[str], list[float]]


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero); float32 (n, d) → float32 (n, d)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


@dataclass
class UpdateInfo:
    """Where the catalog stands on the item-vectors topic."""

    offsets: dict[int, int] = field(default_factory=dict)  # partition → next offset
    applied: int = 0
    malformed: int = 0
    last_offset: int | None = None
    last_partition: int | None = None
    last_item_id: str | None = None
    last_model_version: str | None = None
    last_applied_at: float | None = None
    # Newest trainer version among applied upserts (tombstones carry none): what is served.
    newest_model_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "offsets": {str(p): o for p, o in sorted(self.offsets.items())},
            "applied": self.applied,
            "malformed": self.malformed,
            "last": {
                "partition": self.last_partition,
                "offset": self.last_offset,
                "item_id": self.last_item_id,
                "model_version": self.last_model_version,
                "applied_at": self.last_applied_at,
            },
        }


class Catalog:
    """Item ids ↔ FAISS labels plus the search and similarity indexes of one model version.

    Parameters
    ----------
    version : str
        Model version (snapshot folder name).
    item_ids : sequence of str
        Ids of the rows of ``vectors``; later duplicates replace earlier ones.
    vectors : np.ndarray
        float32 (n_items, serving_dim) item serving vectors.
    similarity_dims : int
        Leading components used for cosine similarity.
    settings : FaissSettings
        Chooses the index type and its parameters from the item count.
    offsets : dict
        ``{partition: next_offset}`` on item-vectors already folded into ``vectors``.
    index_type : str
        What the space asks for: "auto" (exact up to ``exact_max_items``), "flat", "ivf",
        "hnsw" (see :meth:`IndexParams.for_size`).
    normalized : bool
        The space's vectors are unit length and ``similarity_dims`` is the whole vector
        (an item-to-item embedding): one index then serves both search and similar, and
        every vector is normalised on the way in.
    """

    def __init__(
        self,
        version: str,
        item_ids: Sequence[str],
        vectors: np.ndarray,
        similarity_dims: int,
        settings: FaissSettings,
        offsets: dict[int, int] | None = None,
        updates: UpdateInfo | None = None,
        index_type: str = "auto",
        normalized: bool = False,
    ):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(item_ids):
            raise ValueError(f"{len(item_ids)} ids for vectors of shape {vectors.shape}")
        if not 0 < similarity_dims <= vectors.shape[1]:
            raise ValueError(f"similarity_dims {similarity_dims} for dim {vectors.shape[1]}")
        if normalized and similarity_dims != vectors.shape[1]:
            raise ValueError("a normalized space uses the whole vector for similarity")
        started = time.perf_counter()
        self.version = version
        self.dim = int(vectors.shape[1])
        self.similarity_dims = similarity_dims
        self.settings = settings
        self.index_type_asked = index_type
        self.normalized = normalized
        params = IndexParams.for_size(settings, len(item_ids), index_type)
        if normalized:
            vectors = normalize_rows(vectors)
            self._search = VectorIndex.build(params, vectors)
            self._similar = self._search
        else:
            self._search = VectorIndex.build(params, vectors)
            self._similar = VectorIndex.build(params, normalize_rows(vectors[:, :similarity_dims]))
        self.recall_at_10 = self._measure_recall(self._similar, vectors, similarity_dims)
        self._item_of: list[str] = []
        self._label_of: dict[str, int] = {}
        self._bitmap = np.zeros(max(1, (len(item_ids) + 7) // 8 * 2), dtype=np.uint8)
        self._dead = 0
        self._lock = RWLock()
        self.updates = updates or UpdateInfo()
        if offsets is not None:
            self.updates.offsets = dict(offsets)
        self._register(list(item_ids))
        self.build_seconds = time.perf_counter() - started
        self.created_at = time.time()

    # -- reads (read lock) -------------------------------------------------------------------

    @property
    def index_type(self) -> str:
        return self._search.params.kind

    @property
    def count(self) -> int:
        """Live items."""
        return len(self._label_of)

    @property
    def serving_version(self) -> str:
        """The model version answers name: the snapshot's, or the trainer version of the newest
        vectors applied from item-vectors since it was loaded."""
        return self.updates.newest_model_version or self.version

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[Sequence[str]] | None = None
    ) -> list[Hits]:
        """Top-``k`` items by inner product for each row of ``queries`` (float32 (n, dim)).

        ``exclude`` holds one list of item ids per query; they are over-fetched and filtered.
        Returns one ``(ids, scores)`` pair per query, best first.
        """
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise BadQuery(f"query vectors must have dimension {self.dim}, got {queries.shape[1]}")
        if exclude is not None and len(exclude) != len(queries):
            raise BadQuery(f"exclude has {len(exclude)} lists for {len(queries)} queries")
        with self._lock.read():
            excluded = [
                {self._label_of[i] for i in ids if i in self._label_of} for ids in exclude or []
            ]
            extra = max((len(labels) for labels in excluded), default=0)
            return self._top(self._search, queries, k, extra, excluded)

    def similar(self, item_id: str, k: int) -> Hits:
        """The ``k`` items of highest cosine similarity to ``item_id`` (itself excluded)."""
        with self._lock.read():
            label = self._label_of.get(item_id)
            if label is None:
                raise UnknownItemError(item_id)
            query = self._similar.reconstruct(np.array([label]))
            return self._top(self._similar, query, k, 1, [{label}])[0]

    def _top(
        self,
        index: VectorIndex,
        queries: np.ndarray,
        k: int,
        extra: int,
        excluded: list[set[int]],
    ) -> list[Hits]:
        wanted = k + extra
        total = index.ntotal
        # Dead labels are spread like the live ones: over-fetch by their share, plus a margin.
        dead_share = self._dead / max(1, total)
        margin = DEAD_MARGIN if self._dead else 0
        fetch = max(1, min(total, math.ceil(wanted / (1.0 - dead_share)) + margin))
        scores, labels = index.search(queries, fetch)
        item_of = self._item_of
        results: list[Hits] = []
        for row in range(len(queries)):
            skip = excluded[row] if row < len(excluded) else set()
            row_scores, row_labels, row_fetch = scores[row], labels[row], fetch
            while True:
                live = self._live(row_labels)
                found = row_labels.tolist()
                # One comprehension, then one lookup per kept label: with the ranking stage a
                # search asks for hundreds of items and this is on every personalized request.
                kept = [j for j, label in enumerate(found) if live[j] and label not in skip][:k]
                # Short only because dead rows took places (not because the probed cells ran
                # out, which a label -1 says): search this row again, twice as wide.
                if len(kept) >= k or row_fetch >= total or found[-1] < 0:
                    break
                row_fetch = min(total, 2 * row_fetch)
                wider = index.search(queries[row : row + 1], row_fetch)
                row_scores, row_labels = wider[0][0], wider[1][0]
            results.append(([item_of[found[j]] for j in kept], row_scores[kept].tolist()))
        return results

    def _live(self, labels: np.ndarray) -> np.ndarray:
        """Whether each label (int64 array, -1 = no result) is a live row: bool array."""
        safe = np.maximum(labels, 0)
        bits = (self._bitmap[safe >> 3] >> (safe & 7)) & 1
        return (bits == 1) & (labels >= 0)

    # -- writes (write lock) -----------------------------------------------------------------

    def apply(
        self,
        updates: Sequence[ItemVectorUpdate],
        offsets: dict[int, int],
        last: tuple[int, int] | None = None,
    ) -> int:
        """Apply one batch of upserts and deletes atomically; returns how many were applied.

        ``updates`` must already have the right dimension (the follower checks); within the
        batch the last update of an item wins, as compaction of the topic would have it.
        ``offsets`` (partition → next offset) and ``last`` (partition, offset) are recorded
        with the batch, under the same lock.
        """
        latest: dict[str, ItemVectorUpdate] = {}
        for update in updates:
            latest.pop(update.item_id, None)
            latest[update.item_id] = update
        upserts = {u.item_id: u.vector for u in latest.values() if u.vector is not None}
        deletes = [u.item_id for u in latest.values() if u.vector is None]
        matrix = (
            np.stack(list(upserts.values())).astype(np.float32, copy=False)
            if upserts
            else np.zeros((0, self.dim), dtype=np.float32)
        )
        normalized = normalize_rows(matrix[:, : self.similarity_dims])
        with self._lock.write():
            for item_id in deletes:
                self._retire(item_id)
            for item_id in upserts:
                self._retire(item_id)
            if self._similar is self._search:
                self._search.add(normalized)
            else:
                self._search.add(matrix)
                self._similar.add(normalized)
            self._register(list(upserts))
            info = self.updates
            for partition, offset in offsets.items():
                info.offsets[partition] = max(info.offsets.get(partition, 0), offset)
            info.applied += len(latest)
            if updates and last is not None:
                info.last_partition, info.last_offset = last
                info.last_item_id = updates[-1].item_id
                info.last_model_version = updates[-1].model_version or None
                info.last_applied_at = time.time()
            versions = [u.model_version for u in updates if u.model_version]
            if versions:
                info.newest_model_version = versions[-1]
        return len(latest)

    def _retire(self, item_id: str) -> None:
        label = self._label_of.pop(item_id, None)
        if label is not None:
            self._bitmap[label >> 3] &= np.uint8(~(1 << (label & 7)) & 0xFF)
            self._dead += 1

    def _register(self, item_ids: list[str]) -> None:
        """Give ``item_ids`` the labels just appended to both indexes and mark them live."""
        first = len(self._item_of)
        needed = (first + len(item_ids) + 7) // 8
        if needed > len(self._bitmap):
            grown = np.zeros(max(needed, 2 * len(self._bitmap)), dtype=np.uint8)
            grown[: len(self._bitmap)] = self._bitmap
            self._bitmap = grown
        for offset, item_id in enumerate(item_ids):
            label = first + offset
            self._retire(item_id)  # a duplicate id in one snapshot: the later row wins
            self._label_of[item_id] = label
            self._bitmap[label >> 3] |= np.uint8(1 << (label & 7))
        self._item_of.extend(item_ids)

    # -- compaction --------------------------------------------------------------------------

    def needs_rebuild(self) -> bool:
        """Too many dead labels, or IVF cells that no longer fit the catalogue."""
        total = len(self._item_of)
        if self._dead >= REBUILD_MIN_DEAD and self._dead > REBUILD_DEAD_FRACTION * total:
            return True
        return self.cells_drifted()

    def cells_drifted(self) -> bool:
        drift = self._similar.drift if self._similar.params.kind == IVF else None
        if drift is None or drift.added < RECLUSTER_MIN_ADDED:
            return False
        return (
            drift.growth() >= self.settings.recluster_growth
            or drift.residual_ratio() >= RECLUSTER_RESIDUAL_RATIO
        )

    @staticmethod
    def _measure_recall(
        index: VectorIndex, vectors: np.ndarray, similarity_dims: int
    ) -> float | None:
        """recall@10 of an ANN ``index`` against exact search, with sampled item vectors as
        queries (what /v1/similar asks); None for the exact index."""
        if index.params.kind == FLAT or len(vectors) <= RECALL_K:
            return None
        base = normalize_rows(vectors[:, :similarity_dims])
        rng = np.random.default_rng(0)
        rows = rng.choice(len(base), min(RECALL_QUERIES, len(base)), replace=False)
        queries = np.ascontiguousarray(base[rows])
        _, truth = faiss.knn(queries, base, RECALL_K, faiss.METRIC_INNER_PRODUCT)
        _, found = index.search(queries, RECALL_K)
        hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
        return float(np.sum(hits) / (RECALL_K * len(rows)))

    def rebuilt(self) -> Catalog:
        """A new catalog of the live rows only (call from the one writer thread)."""
        with self._lock.read():
            labels = np.array(sorted(self._label_of.values()), dtype=np.int64)
            ids = [self._item_of[label] for label in labels.tolist()]
            vectors = self._search.reconstruct_all()[labels]
            updates = dataclasses.replace(self.updates, offsets=dict(self.updates.offsets))
        return Catalog(
            self.version,
            ids,
            vectors,
            self.similarity_dims,
            self.settings,
            None,
            updates,
            self.index_type_asked,
            self.normalized,
        )

    # -- description -------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        with self._lock.read():
            return {
                "model_version": self.version,  # the snapshot loaded
                "serving_model_version": self.serving_version,
                "count": self.count,
                "dimension": self.dim,
                "similarity_dims": self.similarity_dims,
                "index": self._search.describe(),
                "recall_at_10": self.recall_at_10,
                "normalized": self.normalized,
                "labels": len(self._item_of),
                "dead_labels": self._dead,
                "build_seconds": round(self.build_seconds, 3),
                "updates": self.updates.as_dict(),
            }
