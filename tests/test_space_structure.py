"""scripts.space_structure: its statistics tell an easy space from a hard one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scripts.space_structure import compare, structure
from shared.snapshots import ITEM_VECTORS


def test_low_dimensional_clusters_look_easier_than_uniform_noise(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    basis = rng.normal(size=(3, 32))
    centres = rng.normal(size=(8, 3))
    easy = (centres[rng.integers(0, 8, 600)] + 0.05 * rng.normal(size=(600, 3))) @ basis
    hard = rng.normal(size=(600, 32))
    easy_stats, hard_stats = structure(easy), structure(hard)
    assert easy_stats["participation_ratio"] < 4 < hard_stats["participation_ratio"]
    assert easy_stats["lid_at_10_median"] < hard_stats["lid_at_10_median"]
    assert easy_stats["relative_contrast_median"] > hard_stats["relative_contrast_median"]

    np.save(tmp_path / ITEM_VECTORS, easy.astype(np.float32))
    report = compare(tmp_path, pool=2000, clusters=16, seed=1)
    assert report["items"] == 600 and report["dim"] == 32
    assert set(report["bench_faiss_generator"]) == set(report["trained"])
