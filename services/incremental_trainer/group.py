"""One trainer process among several in a consumer group (``RECSYS_TRAINER_SHARE_ITEMS``).

What a member does beyond a lone trainer (docs/CONTRACTS.md, "Several trainers"):

- item rows: its published item vectors carry its id and their change since its last
  publication; it adds the others' changes to its rows between batches (:mod:`shared_items`);
- users: it remembers which partition each user's events came from, writes every owned
  partition's users at each snapshot and on revocation (:mod:`partition_state`), and on
  assignment loads a partition's users when the file is ahead of its own position;
- its snapshot's ``item-vectors`` offsets are how far its tail of the topic got.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path

import numpy as np

from services.incremental_trainer import partition_state
from services.incremental_trainer.learner import Learner
from services.incremental_trainer.shared_items import DELTA_HEADER, PRODUCER_HEADER, SharedItems
from shared.config import KafkaSettings

log = logging.getLogger(__name__)


def member_id() -> str:
    """Unique per process start: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class GroupMember:
    def __init__(
        self,
        kafka: KafkaSettings,
        learner: Learner,
        models_dir: Path,
        vector_offsets: dict[str, int],
    ) -> None:
        self.id = member_id()
        self.learner = learner
        self.models_dir = Path(models_dir)
        self.user_partition: dict[str, int] = {}
        # Each item row as this member last published or applied it: what deltas are taken from.
        self._base = self._current(np.arange(learner.tables.item_embedding.shape[0]))
        self.items = SharedItems(
            kafka,
            self.id,
            {int(p): int(o) for p, o in vector_offsets.items()},
            self._apply_items,
        )
        self.handed_over = 0  # users loaded from partition files

    @property
    def headers(self) -> dict[str, str | bytes | None]:
        return {PRODUCER_HEADER: self.id.encode("utf-8")}

    def _current(self, rows: np.ndarray) -> np.ndarray:
        tables = self.learner.tables
        return np.concatenate(
            [tables.item_embedding[rows], tables.item_bias[rows][:, None]], axis=1
        ).astype(np.float32)

    def _grow_base(self) -> None:
        capacity = self.learner.tables.item_embedding.shape[0]
        old = self._base.shape[0]
        if capacity > old:  # new rows: their own initial values
            self._base = np.concatenate([self._base, self._current(np.arange(old, capacity))])

    def outgoing(
        self, rows: np.ndarray, vectors: np.ndarray
    ) -> list[dict[str, str | bytes | None]]:
        """Per-message headers for publishing ``vectors`` of ``rows``: id and delta since base."""
        self._grow_base()
        deltas = vectors - self._base[rows]
        self._base[rows] = vectors
        producer = self.id.encode("utf-8")
        little = np.ascontiguousarray(deltas, dtype="<f4")
        return [{PRODUCER_HEADER: producer, DELTA_HEADER: row.tobytes()} for row in little]

    def _apply_items(self, item_ids: list[str], deltas: np.ndarray, vectors: np.ndarray) -> int:
        learner = self.learner
        known = learner.state.item_map.rows(item_ids, create=False)
        fresh = known < 0
        if fresh.any():  # new here: take the sender's vector as it is
            ids = [i for i, f in zip(item_ids, fresh.tolist(), strict=True) if f]
            learner.set_item_vectors(ids, vectors[fresh], set())
            self._grow_base()
            new_rows = learner.state.item_map.rows(ids, create=False)
            self._base[new_rows] = vectors[fresh]
        rows = known[~fresh]
        if rows.size:
            added = deltas[~fresh]
            d = learner.tables.item_embedding.shape[1]
            learner.tables.item_embedding[rows] += added[:, :d]
            learner.tables.item_bias[rows] += added[:, d]
            self._grow_base()
            self._base[rows] += added
        return len(item_ids)

    def before_batch(self) -> int:
        """Apply the other members' item vectors that arrived meanwhile."""
        return self.items.poll(0)

    def note(self, user_ids: list[str], partitions: list[int]) -> None:
        self.user_partition.update(zip(user_ids, partitions, strict=True))

    def take_over(self, partition: int, position: int | None) -> int | None:
        """Load ``partition``'s users if its file is ahead of ``position``; returns its offset."""
        state = partition_state.load(self.models_dir, partition)
        if state is None or (position is not None and state.next_offset <= position):
            return None
        if state.user_ids:
            self.learner.set_user_rows(state.user_ids, state.user_embedding)
        for user_id in state.user_ids:
            self.user_partition[user_id] = partition
        self.handed_over += len(state.user_ids)
        log.info(
            "partition %d: %d users handed over at offset %d",
            partition,
            len(state.user_ids),
            state.next_offset,
        )
        return state.next_offset

    def users_of(self, partition: int) -> list[str]:
        return [u for u, p in self.user_partition.items() if p == partition]

    def save_partitions(self, positions: dict[int, int], owned: set[int]) -> None:
        """Write each owned partition's users with the position they reflect."""
        user_map = self.learner.state.user_map
        table = self.learner.tables.user_embedding
        by_partition: dict[int, list[str]] = {p: [] for p in owned}
        for user_id, part in self.user_partition.items():
            if part in by_partition:
                by_partition[part].append(user_id)
        for part, user_ids in by_partition.items():
            if part not in positions:
                continue
            rows = user_map.rows(user_ids, create=False)
            partition_state.save(
                self.models_dir,
                partition_state.PartitionUsers(part, positions[part], user_ids, table[rows]),
            )

    def vector_offsets(self) -> dict[str, int]:
        self.items.poll(0)
        return {str(p): o for p, o in sorted(self.items.positions.items())}

    def close(self) -> None:
        self.items.close()
