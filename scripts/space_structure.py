"""How hard a vector space is for an ANN index: a trained space beside bench_faiss' generator.

bench_faiss measures the triplet space at 10M items on synthetic vectors; whether its figures
mean anything depends on the synthetic vectors being about as hard to index as trained ones.
This prints, for the unit-normalised item vectors of a snapshot (``--snapshot``, a folder with
``item_vectors.npy``) and for as many vectors drawn from bench_faiss' generator:

- participation ratio of the covariance spectrum (effective number of dimensions used);
- share of the variance in the top 4 principal directions;
- local intrinsic dimensionality at the 10 nearest neighbours (median of the Levina–Bickel
  maximum-likelihood estimate: high = neighbourhoods fill many dimensions = hard for ANN);
- relative contrast (median distance to a random item / distance to the 10th neighbour:
  low = neighbours barely closer than anything else = hard for ANN).

Both are measured at the snapshot's size, so the statistics compare like with like.

Example: python -m scripts.space_structure --snapshot models/spaces/triplet/<version>
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from scripts.bench_faiss import clustered, unit_rows
from shared.snapshots import ITEM_VECTORS

NEIGHBOURS = 10


def structure(vectors: np.ndarray) -> dict[str, float]:
    """The statistics of the module doc for float32 rows (normalised here)."""
    x = unit_rows(np.array(vectors, dtype=np.float32))
    eigen = np.linalg.eigvalsh(np.cov((x - x.mean(axis=0)).T))[::-1]
    distances, _ = faiss.knn(x, x, NEIGHBOURS + 1, faiss.METRIC_L2)
    nearest = np.sqrt(np.maximum(distances[:, 1:], 1e-12))  # column 0 is the row itself
    lid = -1.0 / np.mean(np.log(nearest[:, :-1] / nearest[:, -1:]), axis=1)
    shuffled = x[np.random.default_rng(0).permutation(len(x))]
    random_distance = np.linalg.norm(x - shuffled, axis=1)
    return {
        "participation_ratio": float(eigen.sum() ** 2 / np.square(eigen).sum()),
        "top4_variance_share": float(eigen[:4].sum() / eigen.sum()),
        "lid_at_10_median": float(np.median(lid)),
        "relative_contrast_median": float(np.median(random_distance / nearest[:, -1])),
    }


def compare(snapshot: Path, pool: int, clusters: int, seed: int) -> dict[str, Any]:
    trained = np.load(snapshot / ITEM_VECTORS)
    rng = np.random.default_rng(seed)
    generated = clustered(max(pool, len(trained)), trained.shape[1], clusters, rng)
    sample = generated[rng.choice(len(generated), len(trained), replace=False)]
    return {
        "items": len(trained),
        "dim": int(trained.shape[1]),
        "trained": structure(trained),
        "bench_faiss_generator": structure(sample),
        "generator": {"pool": pool, "clusters": clusters, "seed": seed},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--snapshot", type=Path, required=True, help="a space's snapshot folder")
    parser.add_argument(
        "--pool", type=int, default=200_000, help="generated vectors the sample is drawn from"
    )
    parser.add_argument("--clusters", type=int, default=1024, help="as bench_faiss --clusters")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    print(json.dumps(compare(args.snapshot, args.pool, args.clusters, args.seed), indent=2))


if __name__ == "__main__":
    main()
