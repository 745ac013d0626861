"""GMF model, id maps, snapshots, batch training and offline evaluation.

Trainer-facing surface:

- :class:`GMF` — ``query_vectors(user_rows)``, ``item_vectors(item_rows)``,
  ``ensure_user_capacity(n_rows)``, ``ensure_item_capacity(n_rows)``.
- :func:`extend_optimizer_state` — pad optimizer state after growth (not needed for plain SGD).
- :func:`id_map_from_settings`, :class:`VocabIdMap`, :class:`HashIdMap`.
- :func:`save_snapshot`, :func:`load_snapshot`.
"""

from shared.model.checkpoint import Snapshot, load_snapshot, save_snapshot
from shared.model.errors import ModelFitError, SnapshotFormatError
from shared.model.gmf import GMF, grown_capacity
from shared.model.ids import HashIdMap, IdMap, VocabIdMap, id_map_from_settings, make_id_map
from shared.model.optim import extend_optimizer_state

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
