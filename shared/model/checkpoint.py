"""Save and load GMF snapshots in the layout of docs/CONTRACTS.md.

``models/<version>/`` holds ``manifest.json``, ``weights.npz`` (np.savez, loaded without
pickle), ``user_ids.json``, ``item_ids.json`` and ``item_vectors.npy``. The folder is written by
:func:`shared.snapshots.write_snapshot_dir`, which fsyncs, renames into place and only then
switches ``LATEST``, so readers never see a half-written snapshot.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared import snapshots
from shared.model.errors import SnapshotFormatError
from shared.model.gmf import DEFAULT_INIT_STD, GMF
from shared.model.ids import HASH, VOCAB, HashIdMap, IdMap, VocabIdMap, make_id_map

Offsets = Mapping[str, Mapping[str, int]]
_WEIGHT_NAMES = ("user_embedding", "item_embedding", "item_bias", "h", "global_bias")


@dataclass
class Snapshot:
    """A loaded snapshot: the model, both id maps and the manifest as written."""

    model: GMF
    user_map: VocabIdMap | HashIdMap
    item_map: VocabIdMap | HashIdMap
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def offsets(self) -> dict[str, dict[str, int]]:
        """``{"interactions": {"<partition>": next_offset}, "item-vectors": {...}}``."""
        return self.manifest.get("offsets") or {}


def _check_rows_fit(model: GMF, user_map: IdMap, item_map: IdMap) -> None:
    if user_map.required_rows > model.user_capacity:
        raise ValueError(f"user map needs {user_map.required_rows} rows, "
                         f"model has {model.user_capacity}")
    if item_map.required_rows > model.item_capacity:
        raise ValueError(f"item map needs {item_map.required_rows} rows, "
                         f"model has {model.item_capacity}")


def build_manifest(
    version: str,
    model: GMF,
    user_map: IdMap,
    item_map: IdMap,
    offsets: Offsets | None = None,
    metrics: Mapping[str, Any] | None = None,
    created_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """The ``manifest.json`` dict of docs/CONTRACTS.md.

    ``hash_buckets`` is the bucket count in hash mode and null in vocabulary mode.
    """
    moment = created_at or dt.datetime.now(dt.UTC)
    manifest: dict[str, Any] = {
        "version": version,
        "created_at": moment.isoformat().replace("+00:00", "Z"),
        "embedding_dim": model.embedding_dim,
        "serving_dim": model.serving_dim,
        "similarity_dims": model.embedding_dim,
        "n_users": len(user_map),
        "n_items": len(item_map),
        "user_capacity": model.user_capacity,
        "item_capacity": model.item_capacity,
        "id_mode": item_map.mode,
        "hash_buckets": item_map.hash_buckets if isinstance(item_map, HashIdMap) else None,
        "h": [float(x) for x in model.h.detach().numpy()],
        "global_bias": float(model.global_bias.item()),
        "offsets": {
            topic: {str(p): int(o) for p, o in parts.items()}
            for topic, parts in (offsets or {}).items()
        },
    }
    if metrics is not None:
        manifest["metrics"] = dict(metrics)
    return manifest


def save_snapshot(
    models_dir: Path,
    model: GMF,
    user_map: IdMap,
    item_map: IdMap,
    offsets: Offsets | None = None,
    metrics: Mapping[str, Any] | None = None,
    keep: int | None = None,
    version: str | None = None,
    extra_json: Mapping[str, Any] | None = None,
) -> str:
    """Write a new snapshot and point ``LATEST`` at it; returns its version.

    Parameters
    ----------
    models_dir : Path
        Root of the snapshots (``RECSYS_MODELS_DIR``).
    model : GMF
    user_map, item_map : IdMap
        Must use the same mode; every row they hand out must fit the model's tables.
    offsets : mapping, optional
        ``{"interactions": {partition: next_offset}, "item-vectors": {...}}``; empty = from
        the beginning.
    metrics : mapping, optional
        JSON-serialisable evaluation figures stored in the manifest.
    keep : int, optional
        Keep only the newest ``keep`` versions afterwards (LATEST is never removed).
    version : str, optional
        Defaults to :func:`shared.snapshots.new_version`.
    extra_json : mapping, optional
        ``{file name: JSON value}`` written into the same folder, as atomically as the rest
        (e.g. the trainer's ``users_owed.json``).
    """
    if user_map.mode != item_map.mode:
        raise ValueError("user and item maps must use the same id mode")
    _check_rows_fit(model, user_map, item_map)
    chosen = version or snapshots.new_version()
    manifest = build_manifest(chosen, model, user_map, item_map, offsets, metrics)
    arrays = model.to_arrays()
    item_ids = item_map.to_json()
    item_rows = item_map.rows(item_ids, create=False)
    vectors = model.item_vectors(item_rows).reshape(len(item_ids), model.serving_dim)

    def write_files(folder: Path) -> None:
        with open(folder / snapshots.WEIGHTS, "wb") as handle:
            # float32 only, read back with allow_pickle=False; naming the flag also shows mypy
            # that no key of ``arrays`` binds it.
            np.savez(handle, allow_pickle=False, **arrays)
        snapshots.write_json(folder / snapshots.USER_IDS, user_map.to_json())
        snapshots.write_json(folder / snapshots.ITEM_IDS, item_ids)
        for name, value in (extra_json or {}).items():
            snapshots.write_json(folder / name, value)
        with open(folder / snapshots.ITEM_VECTORS, "wb") as handle:
            np.save(handle, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
        snapshots.write_json(folder / snapshots.MANIFEST, manifest)

    snapshots.write_snapshot_dir(Path(models_dir), chosen, write_files, keep=keep)
    return chosen


def load_snapshot(
    models_dir: Path,
    version: str | None = None,
    growth_factor: float = 0.10,
    init_std: float = DEFAULT_INIT_STD,
    seed: int | None = None,
) -> Snapshot:
    """Load ``version`` (default: the one ``LATEST`` names).

    Raises
    ------
    shared.snapshots.SnapshotNotFound
        No LATEST, or no such version.
    SnapshotFormatError
        The folder's files disagree with each other or with the contract.
    """
    folder = snapshots.resolve(Path(models_dir), version)
    manifest = snapshots.read_manifest(folder)
    with np.load(folder / snapshots.WEIGHTS, allow_pickle=False) as npz:
        missing = [n for n in _WEIGHT_NAMES if n not in npz.files]
        if missing:
            raise SnapshotFormatError(f"{folder}: weights.npz lacks {', '.join(missing)}")
        arrays = {name: npz[name] for name in _WEIGHT_NAMES}
    try:
        model = GMF.from_arrays(arrays, growth_factor, init_std, seed)
    except ValueError as exc:
        raise SnapshotFormatError(f"{folder}: {exc}") from None
    mode = manifest.get("id_mode")
    buckets = manifest.get("hash_buckets")
    if not isinstance(mode, str):  # the message make_id_map gives for any unknown mode
        raise SnapshotFormatError(
            f"{folder}: unknown id mode {mode!r}; expected {VOCAB!r} or {HASH!r}"
        )
    try:
        user_map = make_id_map(mode, buckets, snapshots.read_json(folder / snapshots.USER_IDS))
        item_map = make_id_map(mode, buckets, snapshots.read_json(folder / snapshots.ITEM_IDS))
    except ValueError as exc:
        raise SnapshotFormatError(f"{folder}: {exc}") from None
    if mode == HASH and buckets is None:
        raise SnapshotFormatError(f"{folder}: hash mode without hash_buckets")
    if model.embedding_dim != manifest.get("embedding_dim"):
        raise SnapshotFormatError(f"{folder}: embedding_dim disagrees with weights.npz")
    try:
        _check_rows_fit(model, user_map, item_map)
    except ValueError as exc:
        raise SnapshotFormatError(f"{folder}: {exc}") from None
    return Snapshot(model=model, user_map=user_map, item_map=item_map, manifest=manifest)
