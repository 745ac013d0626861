"""The users of one ``interactions`` partition, handed from one trainer process to the next.

With several trainers in one consumer group, each owns the users of its partitions (the topic
is keyed by user id). When a partition moves (rebalance, or a crashed member's session times
out), its new owner needs the partition's users as the old owner left them and the offset they
reflect. Every owner writes ``<models_dir>/partitions/<p>.npz`` for each partition it owns at
every snapshot and when the partition is revoked (atomically, ``shared.atomic``):

- ``next_offset``: the next ``interactions`` offset of ``p`` not reflected in the rows;
- ``user_ids`` (unicode array) and ``user_embedding`` (float32 (n, d)): the rows of every user
  learned from ``p``.

The new owner loads the file on assignment when its offset is ahead of its own position, copies
the rows into its model and resumes ``p`` at ``next_offset``. After a crash that offset is the
old owner's last snapshot, so the events after it are learned again (at least once), by the one
live owner of the partition.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.atomic import write_bytes_atomic

FOLDER = "partitions"


@dataclass
class PartitionUsers:
    partition: int
    next_offset: int
    user_ids: list[str]
    user_embedding: np.ndarray  # float32 (len(user_ids), d)


def path(models_dir: Path, partition: int) -> Path:
    return Path(models_dir) / FOLDER / f"{int(partition)}.npz"


def save(models_dir: Path, state: PartitionUsers) -> None:
    target = path(models_dir, state.partition)
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        allow_pickle=False,
        next_offset=np.array(state.next_offset, dtype=np.int64),
        user_ids=np.array(state.user_ids, dtype=np.str_),
        user_embedding=np.ascontiguousarray(state.user_embedding, dtype=np.float32),
    )
    write_bytes_atomic(target, buffer.getvalue())


def load(models_dir: Path, partition: int) -> PartitionUsers | None:
    """The partition's last saved users, or None if no owner ever saved it."""
    source = path(models_dir, partition)
    if not source.exists():
        return None
    with np.load(source, allow_pickle=False) as npz:
        return PartitionUsers(
            partition=int(partition),
            next_offset=int(npz["next_offset"]),
            user_ids=[str(u) for u in npz["user_ids"].tolist()],
            user_embedding=np.asarray(npz["user_embedding"], dtype=np.float32),
        )
