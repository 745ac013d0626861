"""Snapshots: contract files, identical scores after loading, atomic LATEST switch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from shared import snapshots
from shared.model.checkpoint import load_snapshot, save_snapshot
from shared.model.gmf import GMF
from shared.model.ids import HashIdMap, VocabIdMap

MANIFEST_FIELDS = {
    "version", "created_at", "embedding_dim", "serving_dim", "similarity_dims", "n_users",
    "n_items", "user_capacity", "item_capacity", "id_mode", "hash_buckets", "h", "global_bias",
    "offsets",
}


def _trained_like(seed: int, users: int = 12, items: int = 15) -> tuple[GMF, VocabIdMap, VocabIdMap]:
    model = GMF(16, 16, 6, init_std=0.3, seed=seed)
    with torch.no_grad():
        model.item_bias.uniform_(-1, 1, generator=torch.Generator().manual_seed(seed))
        model.h.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(seed + 1))
        model.global_bias.fill_(0.25)
    return model, VocabIdMap([f"u{i}" for i in range(users)]), VocabIdMap(
        [f"i{i}" for i in range(items)])


def test_round_trip_gives_identical_scores_and_contract_files(tmp_path: Path) -> None:
    model, users, items = _trained_like(1)
    offsets = {"interactions": {0: 5, 1: 7}, "item-vectors": {}}
    version = save_snapshot(tmp_path, model, users, items, offsets=offsets,
                            metrics={"hr@10": 0.5})
    folder = tmp_path / version
    assert snapshots.read_latest(tmp_path) == version
    assert {p.name for p in folder.iterdir()} == {
        "manifest.json", "weights.npz", "user_ids.json", "item_ids.json", "item_vectors.npy"}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert MANIFEST_FIELDS <= set(manifest)
    assert manifest["serving_dim"] == 7 and manifest["similarity_dims"] == 6
    assert manifest["offsets"] == {"interactions": {"0": 5, "1": 7}, "item-vectors": {}}
    assert manifest["metrics"] == {"hr@10": 0.5}
    ids, vectors = snapshots.read_item_vectors(folder)
    assert ids == items.ids and vectors.shape == (15, 7)
    np.testing.assert_array_equal(vectors, model.item_vectors(np.arange(15)))

    loaded = load_snapshot(tmp_path)
    u, i = np.repeat(np.arange(12), 15), np.tile(np.arange(15), 12)
    np.testing.assert_array_equal(loaded.model.score(u, i), model.score(u, i))
    np.testing.assert_array_equal(loaded.model.query_vectors(np.arange(12)),
                                  model.query_vectors(np.arange(12)))
    assert loaded.user_map.ids == users.ids and loaded.item_map.ids == items.ids
    assert loaded.offsets["interactions"] == {"0": 5, "1": 7}


def test_latest_switches_and_old_version_stays_readable(tmp_path: Path) -> None:
    first_model, users, items = _trained_like(1)
    first = save_snapshot(tmp_path, first_model, users, items)
    second_model, _, _ = _trained_like(2)
    second_model.ensure_item_capacity(40)
    items.rows([f"new{i}" for i in range(20)])
    second = save_snapshot(tmp_path, second_model, users, items)
    assert second != first
    assert snapshots.read_latest(tmp_path) == second
    assert not list(tmp_path.glob(".tmp-*"))
    old = load_snapshot(tmp_path, first)
    assert len(old.item_map) == 15 and old.model.item_capacity == 16
    new = load_snapshot(tmp_path)
    assert new.version == second and len(new.item_map) == 35
    assert new.model.item_capacity == second_model.item_capacity
    rows = np.arange(16)
    np.testing.assert_array_equal(old.model.score(rows % 12, rows),
                                  first_model.score(rows % 12, rows))


def test_hash_mode_round_trip(tmp_path: Path) -> None:
    users, items = HashIdMap(32, ["a", "b", "c"]), HashIdMap(32, ["x", "y"])
    model = GMF(32, 32, 4, init_std=0.2, seed=3)
    version = save_snapshot(tmp_path, model, users, items)
    manifest = snapshots.read_manifest(tmp_path / version)
    assert manifest["id_mode"] == "hash" and manifest["hash_buckets"] == 32
    loaded = load_snapshot(tmp_path)
    assert isinstance(loaded.item_map, HashIdMap)
    assert loaded.item_map.rows(["x", "y"], create=False).tolist() == items.rows(["x", "y"]).tolist()
    _, vectors = snapshots.read_item_vectors(tmp_path / version)
    np.testing.assert_array_equal(vectors, model.item_vectors(items.rows(["x", "y"])))


def test_rows_beyond_capacity_are_refused(tmp_path: Path) -> None:
    model, users, items = _trained_like(1, items=15)
    items.rows(["extra1", "extra2"])  # 17 ids, capacity 16
    with pytest.raises(ValueError):
        save_snapshot(tmp_path, model, users, items)
    assert snapshots.read_latest(tmp_path) is None
