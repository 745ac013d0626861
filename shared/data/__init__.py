"""Interaction data: loaders for MovieLens and CSV files, and a synthetic generator.

Every loader returns the same frame (:data:`COLUMNS`): ``user_id`` (str), ``item_id`` (str),
``event`` (str, a key of ``shared.events.EVENT_WEIGHTS``) and ``ts`` (int64, Unix ms), sorted by
``ts`` (stable). Nothing here downloads: paths come from the user.
"""

from shared.data.loaders import (
    COLUMNS,
    FORMATS,
    load_csv,
    load_interactions,
    load_items_csv,
    load_movielens_1m,
    load_movielens_100k,
    rating_to_event,
    write_interactions_csv,
)
from shared.data.synthetic import SyntheticConfig, generate

__all__ = [
    "COLUMNS",
    "FORMATS",
    "SyntheticConfig",
    "generate",
    "load_csv",
    "load_interactions",
    "load_items_csv",
    "load_movielens_1m",
    "load_movielens_100k",
    "rating_to_event",
    "write_interactions_csv",
]
