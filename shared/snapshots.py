"""Snapshot folders on disk: naming, the LATEST pointer, manifests and item vectors.

Only numpy and json here (no torch), so faiss_app workers can load snapshots cheaply. The
layout is in docs/CONTRACTS.md; ``shared.model.checkpoint`` writes the model's side of it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shared.atomic import fsync_dir, write_text_atomic

LATEST = "LATEST"
MANIFEST = "manifest.json"
ITEM_IDS = "item_ids.json"
USER_IDS = "user_ids.json"
ITEM_VECTORS = "item_vectors.npy"
WEIGHTS = "weights.npz"


class SnapshotNotFound(FileNotFoundError):
    """No snapshot exists (no LATEST), or the named version is missing."""


def why_no_snapshot(models_dir: Path, error: SnapshotNotFound) -> tuple[int, str]:
    """(log level, message) for a service starting empty: WARNING when the folder is missing.

    A missing folder is usually a wrong RECSYS_MODELS_DIR or an unmounted volume; an empty
    folder is a first start.
    """
    folder = Path(models_dir)
    if not folder.is_dir():
        return logging.WARNING, (
            f"models folder {folder} does not exist (check RECSYS_MODELS_DIR and the volume): "
            "starting from an empty model"
        )
    return logging.INFO, f"no snapshot to load ({error}): starting from an empty model"


def new_version(now: dt.datetime | None = None) -> str:
    """``YYYYmmddTHHMMSSZ-<6 hex>``: sorts by creation time, unique across writers."""
    moment = now or dt.datetime.now(dt.UTC)
    return moment.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def version_time(version: str) -> float | None:
    """Unix seconds a :func:`new_version` name was made at; None for other names."""
    try:
        moment = dt.datetime.strptime(version[:16], "%Y%m%dT%H%M%SZ")
    except ValueError:
        return None
    return moment.replace(tzinfo=dt.UTC).timestamp()


def write_snapshot_dir(
    models_dir: Path, version: str, write_files: Callable[[Path], None], keep: int | None = None
) -> Path:
    """Create ``models_dir/<version>`` atomically and point LATEST at it.

    ``write_files(tmp_dir)`` writes the snapshot's files into a temporary folder; they are
    fsynced, the folder is renamed into place, and only then is LATEST switched. With ``keep``,
    older versions beyond the newest ``keep`` are removed afterwards.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp_dir = models_dir / f".tmp-{version}"
    final_dir = models_dir / version
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir()
    try:
        write_files(tmp_dir)
        for child in tmp_dir.iterdir():
            with open(child, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(tmp_dir)
        os.replace(tmp_dir, final_dir)
        fsync_dir(models_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    write_text_atomic(models_dir / LATEST, version + "\n")
    if keep is not None:
        prune(models_dir, keep)
    return final_dir


def prune(models_dir: Path, keep: int) -> None:
    """Remove all but the newest ``keep`` versions; never the one LATEST names."""
    latest = read_latest(models_dir)
    versions = sorted(p for p in list_versions(models_dir))
    for version in versions[:-keep] if keep else versions:
        if version != latest:
            shutil.rmtree(Path(models_dir) / version, ignore_errors=True)


def list_versions(models_dir: Path) -> list[str]:
    root = Path(models_dir)
    if not root.is_dir():
        return []
    # Not ".tmp-*": another writer's folder in progress (several trainers share models_dir)
    # already holds its manifest while its files are fsynced, and must not be pruned.
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()
    )


def read_latest(models_dir: Path) -> str | None:
    """The version LATEST names, or None when no snapshot was ever written."""
    try:
        return (Path(models_dir) / LATEST).read_text().strip() or None
    except FileNotFoundError:
        return None


def resolve(models_dir: Path, version: str | None = None) -> Path:
    """The folder of ``version`` (default: LATEST); raises SnapshotNotFound."""
    chosen = version or read_latest(models_dir)
    if chosen is None:
        raise SnapshotNotFound(f"no {LATEST} snapshot yet")
    if "/" in chosen or chosen.startswith("."):
        raise SnapshotNotFound(f"invalid version {chosen!r}")
    folder = Path(models_dir) / chosen
    if not (folder / MANIFEST).is_file():
        # No folder in the message: it reaches HTTP clients (faiss_app's 404).
        raise SnapshotNotFound(f"no snapshot {chosen!r}")
    return folder


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, separators=(",", ":")))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_manifest(folder: Path) -> dict[str, Any]:
    return read_json(Path(folder) / MANIFEST)


def read_item_vectors(folder: Path) -> tuple[list[str], np.ndarray]:
    """Item ids and their serving vectors, float32 of shape (n_items, serving_dim)."""
    ids = read_json(Path(folder) / ITEM_IDS)
    vectors = np.load(Path(folder) / ITEM_VECTORS, allow_pickle=False)
    if vectors.shape[0] != len(ids):
        raise ValueError(f"{folder}: {len(ids)} ids but {vectors.shape[0]} vectors")
    return ids, np.ascontiguousarray(vectors, dtype=np.float32)


def write_space_snapshot(
    models_dir: Path,
    space: str,
    item_ids: list[str],
    vectors: np.ndarray,
    *,
    version: str | None = None,
    normalized: bool = False,
    offsets: dict[str, int] | None = None,
    extra: dict[str, Any] | None = None,
    write_more: Callable[[Path], None] | None = None,
    keep: int | None = 3,
) -> str:
    """Write the faiss_app side of a snapshot of vector space ``space`` and point its LATEST
    at it (docs/CONTRACTS.md, "Vector spaces"); returns the version.

    ``vectors`` is float32 (n_items, dim), row j the vector of ``item_ids[j]``. ``normalized``
    says the vectors are unit length and compared whole (cosine); otherwise faiss_app uses all
    components for search and for similar. ``offsets`` are the next offsets on the space's
    topic already folded into ``vectors``; ``extra`` is merged into the manifest;
    ``write_more(folder)`` adds the model's own files (weights, feature vocabularies...).
    """
    from shared.spaces import space_models_dir, space_topic

    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(item_ids):
        raise ValueError(f"{len(item_ids)} ids for vectors of shape {matrix.shape}")
    chosen = version or new_version()

    def write(folder: Path) -> None:
        manifest = {
            "version": chosen,
            "space": space,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "serving_dim": int(matrix.shape[1]),
            "similarity_dims": int(matrix.shape[1]),
            "normalized": normalized,
            "n_items": len(item_ids),
            "offsets": {space_topic("item-vectors", space): offsets or {}},
            **(extra or {}),
        }
        write_json(folder / MANIFEST, manifest)
        write_json(folder / ITEM_IDS, list(item_ids))
        np.save(folder / ITEM_VECTORS, matrix)
        if write_more is not None:
            write_more(folder)

    write_snapshot_dir(space_models_dir(models_dir, space), chosen, write, keep=keep)
    return chosen
