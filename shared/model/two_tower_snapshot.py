"""Two-tower snapshots on disk and the numpy encoder that serves them (no torch here).

Layout: the vector space ``two_tower`` of docs/CONTRACTS.md ("Vector spaces"):
``<models_dir>/spaces/two_tower/<version>/`` beside the GMF snapshots, written and switched
atomically like them (:func:`shared.snapshots.write_snapshot_dir`, its own ``LATEST``):

| file | holds |
|---|---|
| ``manifest.json`` | ``version, created_at, space: "two_tower", normalized: true, embedding_dim, serving_dim, similarity_dims, n_items, offsets {"item-vectors.two_tower": {}}, feature_space {...}, config {...}, parameters, metrics`` |
| ``weights.npz`` | every tensor of :class:`shared.model.two_tower.TwoTower` by its state-dict name, float32 (np.savez, loaded without pickle) |
| ``known_ids.json`` | ``{"items": [...], "users": [...]}``: ids that have a trained id row |
| ``item_ids.json``, ``item_vectors.npy`` | the catalogue's candidate vectors ``(n_items, dim)`` f32, unit length |

The encoder reproduces the towers' forward pass with numpy so the trainer and the
recommender compute vectors for new items and new users without torch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared import snapshots
from shared.model.errors import SnapshotFormatError
from shared.model.two_tower_features import (
    FeatureSpace,
    ItemTable,
    age_buckets,
    id_bucket,
    item_table,
    time_features,
    user_bucket,
)

SPACE = "two_tower"
SPACES_FOLDER = "spaces"
UPDATE_TOPIC = "item-vectors.two_tower"
KNOWN_IDS = "known_ids.json"
_WEIGHTS = ("item_id.weight", "category.weight", "price.weight", "token.weight", "age.weight",
            "candidate_mlp.0.weight", "candidate_mlp.0.bias", "candidate_mlp.2.weight",
            "candidate_mlp.2.bias", "user_id.weight", "query_mlp.0.weight", "query_mlp.0.bias",
            "query_mlp.2.weight", "query_mlp.2.bias")


def space_dir(models_dir: Path) -> Path:
    """Root of the two-tower snapshots (its own versions and LATEST)."""
    return Path(models_dir) / SPACES_FOLDER / SPACE


def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def _masked_mean(vectors: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    weight = (buckets > 0).astype(np.float32)[..., None]
    return (vectors * weight).sum(1) / np.maximum(weight.sum(1), 1.0)


def _mlp(x: np.ndarray, w: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    hidden = np.maximum(x @ w[f"{name}.0.weight"].T + w[f"{name}.0.bias"], 0.0)
    return hidden @ w[f"{name}.2.weight"].T + w[f"{name}.2.bias"]


@dataclass
class TwoTowerEncoder:
    """The towers as numpy functions over :mod:`shared.model.two_tower_features` buckets."""

    weights: dict[str, np.ndarray]
    space: FeatureSpace
    known_items: set[str]
    known_users: set[str]

    @property
    def dim(self) -> int:
        return int(self.weights["item_id.weight"].shape[1])

    def item_table(self, item_ids: Sequence[str],
                   metadata: Mapping[str, Mapping[str, Any]]) -> ItemTable:
        return item_table(item_ids, metadata, self.space, self.known_items)

    def candidate_vectors(self, table: ItemTable, age_ms: np.ndarray) -> np.ndarray:
        """float32 (n, dim) unit vectors of ``table``'s items at the given ages (ms, (n,))."""
        w = self.weights
        x = np.concatenate([
            w["item_id.weight"][table.ids], w["category.weight"][table.category],
            w["price.weight"][table.price],
            _masked_mean(w["token.weight"][table.tokens], table.tokens),
            w["age.weight"][age_buckets(age_ms)]], axis=1)
        return _normalise(_mlp(x, w, "candidate_mlp"))

    def user_buckets(self, user_ids: Iterable[str]) -> np.ndarray:
        return np.array([user_bucket(u, self.space) if u in self.known_users else 0
                         for u in user_ids], dtype=np.int64)

    def history_buckets(self, recent: Sequence[Sequence[str]]) -> np.ndarray:
        """(n, history) id buckets of each user's recent item ids (newest first)."""
        out = np.zeros((len(recent), self.space.history), dtype=np.int64)
        for r, ids in enumerate(recent):
            for c, item_id in enumerate(list(ids)[: self.space.history]):
                if item_id in self.known_items:
                    out[r, c] = id_bucket(item_id, self.space)
        return out

    def query_vectors_from_buckets(self, users: np.ndarray, history: np.ndarray,
                                   ts_ms: np.ndarray) -> np.ndarray:
        """float32 (n, dim) from user buckets (n,), history buckets (n, h) and times (n,)."""
        w = self.weights
        x = np.concatenate([w["user_id.weight"][users],
                            _masked_mean(w["item_id.weight"][history], history),
                            time_features(ts_ms)], axis=1)
        return _normalise(_mlp(x, w, "query_mlp"))

    def query_vectors(self, user_ids: Sequence[str], recent: Sequence[Sequence[str]],
                      ts_ms: Sequence[int] | np.ndarray) -> np.ndarray:
        """Query vectors of users from their ids, recent item ids and the moment (Unix ms)."""
        return self.query_vectors_from_buckets(self.user_buckets(user_ids),
                                               self.history_buckets(recent),
                                               np.asarray(ts_ms, dtype=np.int64))


def save_two_tower(models_dir: Path, weights: Mapping[str, np.ndarray], space: FeatureSpace,
                   known_items: Iterable[str], known_users: Iterable[str],
                   item_ids: Sequence[str], item_vectors: np.ndarray,
                   config: Mapping[str, Any] | None = None,
                   metrics: Mapping[str, Any] | None = None, keep: int | None = None,
                   version: str | None = None, offsets: Mapping[str, int] | None = None) -> str:
    """Write a two-tower snapshot under :func:`space_dir` and switch its LATEST; its version.

    ``offsets``: ``{partition: offset}`` of ``item-vectors.two_tower`` the snapshot already
    holds; faiss_app applies the topic from there on (empty: from the beginning).
    """
    missing = [n for n in _WEIGHTS if n not in weights]
    if missing:
        raise ValueError(f"weights lack {', '.join(missing)}")
    vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
    if vectors.shape[0] != len(item_ids):
        raise ValueError(f"{len(item_ids)} item ids but {vectors.shape[0]} vectors")
    chosen = version or snapshots.new_version()
    dim = int(weights["item_id.weight"].shape[1])
    arrays = {n: np.ascontiguousarray(weights[n], dtype=np.float32) for n in _WEIGHTS}
    manifest: dict[str, Any] = {
        "version": chosen,
        "created_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "space": SPACE, "normalized": True, "embedding_dim": dim, "serving_dim": dim,
        "similarity_dims": dim, "n_items": len(item_ids),
        "feature_space": dataclasses.asdict(space), "config": dict(config or {}),
        "parameters": int(sum(a.size for a in arrays.values())),
        "offsets": {UPDATE_TOPIC: {str(p): int(o) for p, o in (offsets or {}).items()}},
    }
    if metrics is not None:
        manifest["metrics"] = dict(metrics)
    known = {"items": sorted(known_items), "users": sorted(known_users)}

    def write_files(folder: Path) -> None:
        with open(folder / snapshots.WEIGHTS, "wb") as handle:
            np.savez(handle, allow_pickle=False, **arrays)
        snapshots.write_json(folder / KNOWN_IDS, known)
        snapshots.write_json(folder / snapshots.ITEM_IDS, list(item_ids))
        with open(folder / snapshots.ITEM_VECTORS, "wb") as handle:
            np.save(handle, vectors, allow_pickle=False)
        snapshots.write_json(folder / snapshots.MANIFEST, manifest)

    snapshots.write_snapshot_dir(space_dir(models_dir), chosen, write_files, keep=keep)
    return chosen


def load_two_tower(models_dir: Path, version: str | None = None
                   ) -> tuple[TwoTowerEncoder, dict[str, Any]]:
    """``(encoder, manifest)`` of ``version`` (default: the two-tower LATEST).

    Raises shared.snapshots.SnapshotNotFound or SnapshotFormatError.
    """
    folder = snapshots.resolve(space_dir(models_dir), version)
    manifest = snapshots.read_manifest(folder)
    try:
        space = FeatureSpace(**manifest["feature_space"])
        with np.load(folder / snapshots.WEIGHTS, allow_pickle=False) as npz:
            weights = {n: npz[n] for n in _WEIGHTS}
        known = snapshots.read_json(folder / KNOWN_IDS)
        encoder = TwoTowerEncoder(weights, space, set(known["items"]), set(known["users"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotFormatError(f"{folder}: not a two-tower snapshot ({exc})") from None
    return encoder, manifest


def encoder_of(model: Any, known_items: Iterable[str], known_users: Iterable[str]
               ) -> TwoTowerEncoder:
    """The numpy encoder of a trained :class:`shared.model.two_tower.TwoTower`."""
    weights = {n: t.detach().cpu().numpy().astype(np.float32)
               for n, t in model.state_dict().items()}
    return TwoTowerEncoder(weights, model.space, set(known_items), set(known_users))
