"""Training the triplet model on an interaction frame (shared by the evaluation and the
training script, so what is measured offline is what is served)."""

from __future__ import annotations

from dataclasses import asdict, replace
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
    """Fit the triplet model on the prefix with each user's last event held out for early
    stopping, then (``config.refit``) again on the whole prefix for the epochs that scored
    best; item metadata (``item_id, title, category``) feeds its features if given."""
    fitting, held = holdout_last_event(prefix)
    anchors, positives = _pairs(fitting, catalogue, config)
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
    if config.refit and result.best_epoch and not (stop is not None and stop.is_set()):
        anchors, positives = _pairs(prefix, catalogue, config)
        model, refit = fit_triplet(len(catalogue), anchors, positives, popularity,
                                   replace(config, epochs=result.best_epoch), features=features,
                                   stop=stop)  # fmt: skip
        info["refit"] = {"epochs": refit.epochs_run, "n_pairs": refit.n_pairs,
                         "seconds": round(refit.seconds, 2)}  # fmt: skip
    return model, info, vocabulary


def _pairs(frame: pd.DataFrame, catalogue: pd.Index, config: TripletConfig
           ) -> tuple[np.ndarray, np.ndarray]:
    """(anchor, positive) codes of ``frame``'s next-item pairs with both items in the catalogue."""
    anchors, positives = next_item_pairs(
        frame["user_id"].astype("category").cat.codes.to_numpy(np.int64),
        item_codes(frame, catalogue), frame["ts"].to_numpy(np.int64), config.window_items,
        config.window_s,
    )  # fmt: skip
    known = (anchors >= 0) & (positives >= 0)
    return anchors[known], positives[known]
