"""Training the triplet model on an interaction frame (shared by the evaluation and the
training script, so what is measured offline is what is served)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from shared.model.item_features import FeatureVocabulary
from shared.model.next_item import next_item_pairs
from shared.model.triplet import TripletConfig, TripletModel, fit_triplet
from shared.model.triplet_space import metadata_records


def item_codes(frame: pd.DataFrame, catalogue: pd.Index, column: str = "item_id") -> np.ndarray:
    """Codes of ``frame[column]`` in ``catalogue`` (-1 where unknown): int64 (n,)."""
    return np.asarray(catalogue.get_indexer(frame[column]), dtype=np.int64)


def holdout_last_event(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frame without each user's last event, those last events with the one before each)."""
    ordered = frame.sort_values(["user_id", "ts"], kind="stable")
    is_last = ~ordered["user_id"].duplicated(keep="last")
    has_prev = ordered["user_id"].duplicated(keep="first")
    previous_item = ordered["item_id"].shift(1)
    held = ordered[is_last & has_prev].assign(previous_item=previous_item[is_last & has_prev])
    return ordered[~is_last], held


def train_triplet_on(
    prefix: pd.DataFrame,
    catalogue: pd.Index,
    config: TripletConfig,
    items: pd.DataFrame | None = None,
    stop: Any = None,
) -> tuple[TripletModel, dict[str, Any], FeatureVocabulary | None]:
    """Fit the triplet model on the prefix (each user's last event held out for early
    stopping); item metadata (``item_id, title, category``) feeds its features if given."""
    fitting, held = holdout_last_event(prefix)
    anchors, positives = next_item_pairs(
        fitting["user_id"].astype("category").cat.codes.to_numpy(np.int64),
        item_codes(fitting, catalogue), fitting["ts"].to_numpy(np.int64), config.window_items,
        config.window_s,
    )  # fmt: skip
    known = (anchors >= 0) & (positives >= 0)
    anchors, positives = anchors[known], positives[known]
    validation = (item_codes(held, catalogue, "previous_item"), item_codes(held, catalogue))
    valid = (validation[0] >= 0) & (validation[1] >= 0) & (validation[0] != validation[1])
    popularity = np.bincount(item_codes(prefix, catalogue), minlength=len(catalogue))
    vocabulary, features = None, None
    records = metadata_records(items)
    if records:
        vocabulary = FeatureVocabulary.fit(records)
        category, tokens = vocabulary.encode([records.get(str(i)) for i in catalogue])
        features = (category, tokens, vocabulary.n_categories, vocabulary.token_buckets)
    model, result = fit_triplet(len(catalogue), anchors, positives, popularity, config,
                                features=features,
                                validation=(validation[0][valid], validation[1][valid]),
                                stop=stop)  # fmt: skip
    info = {**result.as_dict(), "config": asdict(config), "features": features is not None}
    info.pop("history", None)
    info["history"] = result.history
    return model, info, vocabulary
