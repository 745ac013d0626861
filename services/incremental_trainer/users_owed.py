"""MongoDB ``users`` writes owed when a snapshot was taken, stored in that snapshot.

A snapshot commits the ``interactions`` offsets it reflects, so after a crash nothing before
them is replayed: a user's ``n_events`` for events the write-behind had not counted yet would
be lost, and its document could keep an older vector. Waiting for the store before every
snapshot closed that gap but stopped the consume loop for seconds (the local MongoDB upserts
about 2,000 users/s; at 10k events/s a snapshot waited up to 10 s for it). Instead the snapshot
folder holds ``users_owed.json``: what :meth:`UserVectorWriter.owed` lists at that moment. A
trainer that starts from the snapshot hands it over again (:meth:`UserVectorWriter.restore`);
each document counts an offset once (``shared.storage.applied_offsets``), so whatever was
written after the snapshot and before the crash is not counted twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.incremental_trainer.user_writer import OwedUser
from shared import snapshots

FILE = "users_owed.json"


def to_json(owed: list[OwedUser]) -> list[list[Any]]:
    """Compact rows ``[user_id, forget, vector, {"<partition>": [offsets]}]``."""
    return [
        [o.user_id, o.forget, o.vector, {str(p): offs for p, offs in o.events.items()}]
        for o in owed
    ]


def load(folder: Path) -> list[OwedUser] | None:
    """The owed writes stored in a snapshot folder; None for a snapshot without the file
    (written before it existed, or not by the trainer)."""
    path = Path(folder) / FILE
    if not path.exists():
        return None
    return [
        OwedUser(str(u), bool(forget), bool(vector),
                 {int(p): [int(o) for o in offs] for p, offs in events.items()})
        for u, forget, vector, events in snapshots.read_json(path)
    ]  # fmt: skip
