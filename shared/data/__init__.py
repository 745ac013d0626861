"""Interaction data: loaders for real logs and item metadata, and a synthetic generator.

Every interaction loader returns the same frame (:data:`COLUMNS`): ``user_id`` (str),
``item_id`` (str), ``event`` (str, a key of ``shared.events.EVENT_WEIGHTS``) and ``ts`` (int64,
Unix ms), sorted by ``ts`` (stable), with a :class:`LoadReport`. Nothing here downloads: paths
come from the user.
"""

from shared.data.items import ITEM_COLUMNS, ITEM_FORMATS, load_items
from shared.data.loaders import (
    COLUMNS,
    FORMATS,
    detect_format,
    load_interactions,
    rating_to_event,
    write_interactions_csv,
)
from shared.data.report import LoadReport
from shared.data.synthetic import SyntheticConfig, generate

__all__ = [
    "COLUMNS",
    "FORMATS",
    "ITEM_COLUMNS",
    "ITEM_FORMATS",
    "LoadReport",
    "SyntheticConfig",
    "detect_format",
    "generate",
    "load_interactions",
    "load_items",
    "rating_to_event",
    "write_interactions_csv",
]
