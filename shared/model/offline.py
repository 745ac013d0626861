"""The offline pipeline shared by the initial-training and evaluation scripts.

interactions frame → unique (user, item) pairs in time order → id maps and rows →
leave-last-out test split, and a second leave-last-out inside training for early stopping →
GMF fit → GMF vs popularity, full-catalogue and sampled protocols.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shared.config import ModelSettings
from shared.model.evaluation import (
    GMFScorer,
    PopularityScorer,
    Scorer,
    Split,
    evaluate,
    leave_last_out,
)
from shared.model.gmf import GMF
from shared.model.ids import HashIdMap, VocabIdMap, id_map_from_settings
from shared.model.training import FitResult, TrainConfig, fit

log = logging.getLogger(__name__)


@dataclass
class Pairs:
    """Unique positive pairs as codes, in time order of their first interaction.

    ``user_codes``/``item_codes`` (n,) int64 index ``user_ids``/``item_ids``; ``ts`` (n,) int64
    ms; ``n_events`` (n,) int64 counts how many raw events each pair had.
    """

    user_ids: np.ndarray  # object (n_users,)
    item_ids: np.ndarray  # object (n_items,)
    user_codes: np.ndarray
    item_codes: np.ndarray
    ts: np.ndarray
    n_events: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.user_codes)


def unique_pairs(frame: pd.DataFrame) -> Pairs:
    """Collapse repeated (user, item) events to their first occurrence; codes by first seen."""
    ordered = frame.sort_values("ts", kind="stable")
    grouped = ordered.groupby(["user_id", "item_id"], sort=False).agg(
        ts=("ts", "first"), n_events=("ts", "size")).reset_index()
    grouped = grouped.sort_values("ts", kind="stable").reset_index(drop=True)
    user_codes, user_ids = pd.factorize(grouped["user_id"])
    item_codes, item_ids = pd.factorize(grouped["item_id"])
    return Pairs(
        user_ids=np.asarray(user_ids, dtype=object),
        item_ids=np.asarray(item_ids, dtype=object),
        user_codes=user_codes.astype(np.int64),
        item_codes=item_codes.astype(np.int64),
        ts=grouped["ts"].to_numpy(np.int64),
        n_events=grouped["n_events"].to_numpy(np.int64),
    )


@dataclass
class Trained:
    """A fitted model with its id maps and the row of every user and item code."""

    model: GMF
    user_map: VocabIdMap | HashIdMap
    item_map: VocabIdMap | HashIdMap
    user_rows: np.ndarray  # int64 (n_users,)
    item_rows: np.ndarray  # int64 (n_items,)
    fit: FitResult


def build_model(pairs: Pairs, settings: ModelSettings) -> tuple[
        GMF, VocabIdMap | HashIdMap, VocabIdMap | HashIdMap, np.ndarray, np.ndarray]:
    """Id maps filled with every id of ``pairs`` and a fresh GMF whose tables hold them."""
    user_map = id_map_from_settings(settings, list(pairs.user_ids))
    item_map = id_map_from_settings(settings, list(pairs.item_ids))
    user_rows = user_map.rows(pairs.user_ids, create=False)
    item_rows = item_map.rows(pairs.item_ids, create=False)
    model = GMF(settings.initial_capacity, settings.initial_capacity, settings.embedding_dim,
                settings.growth_factor, seed=settings.seed)
    model.ensure_user_capacity(user_map.required_rows)
    model.ensure_item_capacity(item_map.required_rows)
    return model, user_map, item_map, user_rows, item_rows


def train(pairs: Pairs, index: np.ndarray, settings: ModelSettings, config: TrainConfig,
          validation: np.ndarray | None = None) -> Trained:
    """Fit GMF on ``pairs[index]``; ``validation`` indexes held-out pairs for early stopping."""
    model, user_map, item_map, user_rows, item_rows = build_model(pairs, settings)
    held = None
    if validation is not None and len(validation):
        held = (user_rows[pairs.user_codes[validation]], item_rows[pairs.item_codes[validation]])
    result = fit(model, user_rows[pairs.user_codes[index]], item_rows[pairs.item_codes[index]],
                 config, item_pool=np.unique(item_rows), validation=held)
    return Trained(model, user_map, item_map, user_rows, item_rows, result)


def split_for_evaluation(pairs: Pairs) -> tuple[Split, np.ndarray, np.ndarray]:
    """``(test split, fit index, validation index)``: last pair per user is the test; of the
    rest, each user's last pair validates early stopping and the others train."""
    split = leave_last_out(pairs.user_codes, pairs.ts)
    inner = leave_last_out(pairs.user_codes[split.train], pairs.ts[split.train])
    return split, split.train[inner.train], split.train[inner.test]


def run_experiment(pairs: Pairs, settings: ModelSettings, config: TrainConfig,
                   ks: tuple[int, ...] = (10,), n_negatives: int = 99) -> tuple[Trained, dict[str, Any]]:
    """Train on all but each user's last pair and evaluate GMF against popularity.

    Returns the trained model and a JSON-ready report: ``{"gmf": {"full": {...}, "sampled":
    {...}}, "popularity": {...}, "data": {...}, "training": {...}}``.
    """
    split, fit_index, val_index = split_for_evaluation(pairs)
    if len(split.test) == 0:
        raise ValueError("no user has two interactions: nothing to evaluate")
    started = time.perf_counter()
    trained = train(pairs, fit_index, settings, config, validation=val_index)
    counts = np.bincount(pairs.item_codes[split.train], minlength=pairs.n_items)
    scorers: dict[str, Scorer] = {
        "gmf": GMFScorer(trained.model, trained.user_rows, trained.item_rows),
        "popularity": PopularityScorer(counts),
    }
    eval_started = time.perf_counter()
    report: dict[str, Any] = evaluate(scorers, pairs.user_codes, pairs.item_codes, split,
                                      pairs.n_items, ks, n_negatives, seed=config.seed)
    report["data"] = {"n_users": pairs.n_users, "n_items": pairs.n_items, "n_pairs": len(pairs),
                      "n_train": int(len(fit_index)), "n_validation": int(len(val_index)),
                      "n_test": int(len(split.test))}
    report["training"] = {"epochs_run": trained.fit.epochs_run,
                          "best_epoch": trained.fit.best_epoch,
                          "stopped_early": trained.fit.stopped_early,
                          "best_val_hr": trained.fit.best_hit_rate,
                          "train_seconds": round(trained.fit.seconds, 3),
                          "eval_seconds": round(time.perf_counter() - eval_started, 3),
                          "total_seconds": round(time.perf_counter() - started, 3),
                          "embedding_dim": settings.embedding_dim,
                          "id_mode": settings.id_mode,
                          "config": {k: v for k, v in vars(config).items() if k != "progress"}}
    return trained, report


def format_table(report: dict[str, Any], k: int = 10) -> str:
    """A plain-text table of HR@k / NDCG@k / MRR per model and protocol."""
    lines = [f"{'model':<12}{'protocol':<10}{f'HR@{k}':>9}{f'NDCG@{k}':>9}{'MRR':>9}{'n':>8}"]
    for name in (n for n in ("gmf", "popularity", "two_tower") if n in report):
        for protocol in ("full", "sampled"):
            m = report[name][protocol]
            lines.append(f"{name:<12}{protocol:<10}{m[f'hr@{k}']:>9.4f}{m[f'ndcg@{k}']:>9.4f}"
                         f"{m['mrr']:>9.4f}{m['n']:>8d}")
    return "\n".join(lines)
