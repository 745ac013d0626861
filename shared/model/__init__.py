"""GMF model, id maps, snapshots, batch training and offline evaluation.

Trainer-facing surface:

- :class:`GMF` — ``query_vectors(user_rows)``, ``item_vectors(item_rows)``,
  ``ensure_user_capacity(n_rows)``, ``ensure_item_capacity(n_rows)``.
- :func:`extend_optimizer_state` — pad optimizer state after growth (not needed for plain SGD).
- :func:`id_map_from_settings`, :class:`VocabIdMap`, :class:`HashIdMap`.
- :func:`save_snapshot`, :func:`load_snapshot`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.model.checkpoint import Snapshot, load_snapshot, save_snapshot
    from shared.model.errors import ModelFitError, SnapshotFormatError
    from shared.model.gmf import GMF, grown_capacity
    from shared.model.ids import HashIdMap, IdMap, VocabIdMap, id_map_from_settings, make_id_map
    from shared.model.optim import extend_optimizer_state

# Imported on first use (PEP 562), not with the package: a torch-free module of this package
# (errors, two_tower_snapshot) must not pull torch into the API image, which has none.
_HOMES = {
    "Snapshot": "checkpoint",
    "load_snapshot": "checkpoint",
    "save_snapshot": "checkpoint",
    "ModelFitError": "errors",
    "SnapshotFormatError": "errors",
    "GMF": "gmf",
    "grown_capacity": "gmf",
    "HashIdMap": "ids",
    "IdMap": "ids",
    "VocabIdMap": "ids",
    "id_map_from_settings": "ids",
    "make_id_map": "ids",
    "extend_optimizer_state": "optim",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "GMF",
    "HashIdMap",
    "IdMap",
    "ModelFitError",
    "Snapshot",
    "SnapshotFormatError",
    "VocabIdMap",
    "extend_optimizer_state",
    "grown_capacity",
    "id_map_from_settings",
    "load_snapshot",
    "make_id_map",
    "save_snapshot",
]
