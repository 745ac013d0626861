"""Helpers of the faiss_app tests: clustered synthetic vectors, snapshot files, publishing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from shared.config import KafkaSettings
from shared.item_vectors import encode_value
from shared.kafka import flush_or_raise, make_producer
from shared.snapshots import (
    ITEM_IDS,
    ITEM_VECTORS,
    MANIFEST,
    new_version,
    write_json,
    write_snapshot_dir,
)
from shared.spaces import DEFAULT_SPACE, space_models_dir, space_topic

T = TypeVar("T")


def clustered(
    n: int, dim: int, n_clusters: int = 64, n_queries: int = 200, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Items and queries drawn around shared Gaussian centres: float32 (n, dim), (nq, dim)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    scales = rng.uniform(0.2, 0.6, size=(n_clusters, 1)).astype(np.float32)

    def draw(count: int) -> np.ndarray:
        which = rng.integers(0, n_clusters, count)
        noise = rng.normal(size=(count, dim)).astype(np.float32)
        return (centres[which] + scales[which] * noise).astype(np.float32)

    return draw(n), draw(n_queries)


def exact_top_k(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Brute-force inner-product top-k row indices, best first: int (nq, k)."""
    scores = queries.astype(np.float64) @ items.astype(np.float64).T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def recall(found: Sequence[Sequence[int]], truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(
        np.mean([len(set(f) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)])
    )


def write_snapshot(
    models_dir: Path,
    item_ids: list[str],
    vectors: np.ndarray,
    similarity_dims: int | None = None,
    offsets: dict[str, int] | None = None,
    version: str | None = None,
    space: str = DEFAULT_SPACE,
) -> str:
    """Write the faiss-relevant files of a GMF-like snapshot (docs/CONTRACTS.md) into the
    folder of ``space`` and point its LATEST at it."""
    chosen = version or new_version()
    dim = int(vectors.shape[1])

    def write(folder: Path) -> None:
        manifest = {
            "version": chosen,
            "created_at": "2024-01-01T00:00:00Z",
            "embedding_dim": dim - 1,
            "serving_dim": dim,
            "similarity_dims": similarity_dims or dim - 1,
            "n_users": 0,
            "n_items": len(item_ids),
            "offsets": {"interactions": {}, "item-vectors": offsets or {}},
        }
        write_json(folder / MANIFEST, manifest)
        write_json(folder / ITEM_IDS, item_ids)
        np.save(folder / ITEM_VECTORS, np.ascontiguousarray(vectors, dtype=np.float32))

    write_snapshot_dir(space_models_dir(Path(models_dir), space), chosen, write)
    return chosen


def publish(
    kafka: KafkaSettings,
    updates: Sequence[tuple[str, np.ndarray | None]] | Sequence[tuple[bytes, bytes | None]],
    version: str = "test",
    space: str = DEFAULT_SPACE,
) -> None:
    """Send upserts (vector) and deletes (None) to the topic of ``space``; raw bytes are sent
    as is."""
    producer = make_producer(kafka)
    topic = space_topic(kafka.item_vectors_topic, space)
    for key, value in updates:
        if isinstance(key, bytes):
            producer.produce(topic, key=key, value=value)
        else:
            encoded = None if value is None else encode_value(np.asarray(value), version)
            producer.produce(topic, key=key.encode(), value=encoded)
    flush_or_raise(producer, 10.0)
