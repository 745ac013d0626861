"""The triplet model as a faiss_app vector space: snapshot writing and reading, new-item vectors.

A snapshot of the ``triplet`` space (``<models_dir>/spaces/triplet/<version>/``, written by
:func:`shared.snapshots.write_space_snapshot`) holds the unit item vectors faiss_app serves
(``normalized``: one IVF index answers similar-item queries by cosine) plus, for the items
that arrive later, what it takes to embed them from features alone:

- ``triplet_weights.npz``: the model's tables (np.savez, no pickle);
- ``triplet_features.json``: the feature vocabulary (categories, token buckets) and the item
  id of every id row.

Items that have metadata but no interactions yet get a feature-only vector in the snapshot
already; items that appear on the stream later get one from :meth:`TripletSpace.embed_new`,
published on ``item-vectors.triplet`` at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.model.item_features import FeatureVocabulary
from shared.model.triplet import TripletModel
from shared.snapshots import read_json, read_manifest, resolve, write_json, write_space_snapshot
from shared.spaces import space_models_dir

TRIPLET_SPACE = "triplet"
WEIGHTS_FILE = "triplet_weights.npz"
FEATURES_FILE = "triplet_features.json"


@dataclass
class TripletSpace:
    """A trained triplet model with the ids of its rows and its feature vocabulary."""

    model: TripletModel
    item_ids: list[str]
    vocabulary: FeatureVocabulary | None
    version: str = ""

    def embed_new(self, metadata: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Feature-only unit vectors (float32 (dim,)) of items that have no id row, keyed by
        item id; items without a known category or title token are left out."""
        if self.vocabulary is None or not metadata:
            return {}
        ids = list(metadata)
        category, tokens = self.vocabulary.encode([metadata[i] for i in ids])
        vectors = self.model.embed_features(category, tokens)
        return {i: vectors[j] for j, i in enumerate(ids) if np.any(vectors[j])}

    def write(
        self,
        models_dir: Path,
        new_items: Mapping[str, Mapping[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
        keep: int | None = 3,
    ) -> str:
        """Write a snapshot of the space (and point its LATEST at it); returns the version.

        ``new_items`` (item id → metadata) adds feature-only vectors for catalogue items
        that no interaction has reached yet.
        """
        ids = list(self.item_ids)
        vectors = [self.model.item_vectors()]
        known = set(ids)
        fresh = self.embed_new({i: m for i, m in (new_items or {}).items() if i not in known})
        if fresh:
            ids.extend(fresh)
            vectors.append(np.stack(list(fresh.values())))

        def write_more(folder: Path) -> None:
            np.savez(folder / WEIGHTS_FILE, allow_pickle=False, **self.model.to_arrays())
            write_json(folder / FEATURES_FILE, {
                "vocabulary": self.vocabulary.as_dict() if self.vocabulary else None,
                "row_item_ids": self.item_ids,
            })  # fmt: skip

        info = {"model": "triplet", "dim": self.model.dim, "feature_only_items": len(fresh),
                **(extra or {})}  # fmt: skip
        self.version = write_space_snapshot(
            models_dir, TRIPLET_SPACE, ids, np.concatenate(vectors), normalized=True,
            extra=info, write_more=write_more, keep=keep,
        )  # fmt: skip
        return self.version


def load_triplet_space(models_dir: Path, version: str | None = None) -> TripletSpace:
    """The model of the triplet space's LATEST snapshot (or ``version``); SnapshotNotFound."""
    folder = resolve(space_models_dir(Path(models_dir), TRIPLET_SPACE), version)
    with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as arrays:
        model = TripletModel.from_arrays({name: arrays[name] for name in arrays.files})
    features = read_json(folder / FEATURES_FILE)
    raw = features.get("vocabulary")
    vocabulary = FeatureVocabulary.from_dict(raw) if raw else None
    manifest = read_manifest(folder)
    return TripletSpace(model.eval(), list(features["row_item_ids"]), vocabulary,
                        str(manifest["version"]))  # fmt: skip


def metadata_records(items: Any, item_ids: Sequence[str] | None = None) -> dict[str, dict]:
    """Item metadata frame (``item_id`` + any of ``title, category``) → {item_id: metadata},
    missing values dropped; limited to ``item_ids`` when given."""
    if items is None or not len(items):
        return {}
    records: dict[str, dict] = {}
    for row in items.to_dict("records"):
        item_id = str(row.get("item_id"))
        meta = {k: v for k, v in row.items()
                if k in ("title", "category") and isinstance(v, str) and v}  # fmt: skip
        if meta:
            records[item_id] = meta
    if item_ids is not None:
        wanted = set(item_ids)
        records = {i: m for i, m in records.items() if i in wanted}
    return records
