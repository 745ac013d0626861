"""The two-tower model in the offline (leave-last-out) evaluation, with cold-start slices.

:class:`TwoTowerScorer` scores users (codes) against items (codes) the way the served space
does: the query tower sees the user's training items (newest first) and the time of the
held-out event; items are embedded from their features with the ids the model trained.
:func:`offline_slices` ranks the held-out events with every scorer (full catalogue protocol
of :mod:`shared.model.evaluation`) and reports them on the cold slices of
:mod:`shared.evaluation.cold_start`: held-out items with fewer than 5 training interactions,
and users with fewer than 5.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from shared.evaluation import cold_start
from shared.model.evaluation import (
    GMFScorer,
    PopularityScorer,
    Scorer,
    Split,
    evaluate,
    full_ranks,
)
from shared.model.offline import Pairs, Trained, split_for_evaluation
from shared.model.two_tower import TwoTowerConfig
from shared.model.two_tower_cli import train_two_tower
from shared.model.two_tower_snapshot import TwoTowerEncoder


class TwoTowerScorer:
    """Scores of user codes for item codes from the two towers (float32)."""

    def __init__(self, encoder: TwoTowerEncoder, pairs: Pairs, train: np.ndarray,
                 moments: np.ndarray, metadata: Mapping[str, Mapping[str, Any]]) -> None:
        history: list[list[str]] = [[] for _ in range(pairs.n_users)]
        for row in train[np.argsort(pairs.ts[train], kind="stable")]:
            history[pairs.user_codes[row]].insert(0, str(pairs.item_ids[pairs.item_codes[row]]))
        item_ids = [str(i) for i in pairs.item_ids]
        first = np.full(pairs.n_items, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, pairs.item_codes[train], pairs.ts[train])
        now = int(pairs.ts[train].max())
        ages = np.where(first <= now, now - first, 0)
        table = encoder.item_table(item_ids, metadata)
        self._items = torch.from_numpy(encoder.candidate_vectors(table, ages))
        self._queries = torch.from_numpy(encoder.query_vectors(
            [str(u) for u in pairs.user_ids], history, moments))

    def score_all(self, users: np.ndarray) -> torch.Tensor:
        return self._queries[torch.from_numpy(np.asarray(users, np.int64))] @ self._items.T

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> torch.Tensor:
        q = self._queries[torch.from_numpy(np.asarray(users, np.int64))]
        return torch.einsum("nd,ncd->nc", q, self._items[torch.from_numpy(np.asarray(items))])


def held_out_moments(pairs: Pairs, split: Split) -> np.ndarray:
    """Per user code, the time of their held-out pair (their last training pair if none)."""
    moments = np.zeros(pairs.n_users, dtype=np.int64)
    np.maximum.at(moments, pairs.user_codes, pairs.ts)
    moments[pairs.user_codes[split.test]] = pairs.ts[split.test]
    return moments


def offline_slices(scorers: Mapping[str, Scorer], pairs: Pairs, split: Split,
                   ks: tuple[int, ...] = (10,), seed: int = 0) -> dict[str, Any]:
    """``{"cold_items": {scorer: metrics}, "cold_users": {...}}`` of the held-out pairs."""
    users, items = pairs.user_codes, pairs.item_codes
    item_counts = np.bincount(items[split.train], minlength=pairs.n_items)
    user_counts = np.bincount(users[split.train], minlength=pairs.n_users)
    test_users, test_items = users[split.test], items[split.test]
    masks = cold_start.slice_masks(item_counts[test_items], user_counts[test_users])
    ranks = {name: full_ranks(scorer, users[split.train], items[split.train], test_users,
                              test_items, pairs.n_items, seed=seed)
             for name, scorer in scorers.items()}
    return cold_start.report(ranks, masks, ks)


def add_two_tower(report: dict[str, Any], trained: Trained, pairs: Pairs,
                  metadata: Mapping[str, Mapping[str, Any]], config: TwoTowerConfig,
                  ks: tuple[int, ...] = (10,), n_negatives: int = 99) -> None:
    """Train the two towers on the same training pairs as ``trained`` (GMF) and add their
    figures (``report["two_tower"]``, both protocols) and the cold slices of all three
    rankers (``report["slices"]``) to ``report``."""
    split, _, _ = split_for_evaluation(pairs)
    train = split.train
    events = pd.DataFrame({"user_id": pairs.user_ids[pairs.user_codes[train]],
                           "item_id": pairs.item_ids[pairs.item_codes[train]],
                           "ts": pairs.ts[train]})
    encoder, fit, size = train_two_tower(events, metadata, config)
    scorers: dict[str, Scorer] = {
        "gmf": GMFScorer(trained.model, trained.user_rows, trained.item_rows),
        "popularity": PopularityScorer(np.bincount(pairs.item_codes[train],
                                                   minlength=pairs.n_items)),
        "two_tower": TwoTowerScorer(encoder, pairs, train, held_out_moments(pairs, split),
                                    metadata),
    }
    report.update(evaluate({"two_tower": scorers["two_tower"]}, pairs.user_codes,
                           pairs.item_codes, split, pairs.n_items, ks, n_negatives))
    report["slices"] = offline_slices(scorers, pairs, split, ks)
    report["training"]["two_tower"] = {"epochs_run": fit.epochs_run,
                                       "best_epoch": fit.best_epoch,
                                       "seconds": round(fit.seconds, 2), **size}
