"""Offline evaluation of "similar items": co-occurrence, GMF cosine and the triplet embedding.

Protocol (the same for every method, so the figures compare):

- the log is split in time (:func:`shared.data.split.chronological_split`): methods learn
  from the prefix only; the items of the prefix are the catalogue;
- a tested pair is (previous item → next item) of one user where the next event lies after
  the split (the previous one may lie before it), the two differ and both are in the
  catalogue; at most ``max_tested`` pairs (a seeded sample) are scored;
- each method ranks the whole catalogue but the previous item by similarity to it; HR@k and
  NDCG@k of the next item (:func:`shared.model.next_item.next_item_metrics`).

Methods: ``popularity`` (the prefix's counts: the floor), ``cooccurrence`` (how often two
items were engaged by one user within the triplet's time window and item window, both
directions, ties broken by popularity), ``gmf_cosine`` (the cosine of GMF item embeddings,
what ``/v1/similar`` of the gmf space serves) and ``triplet``. GMF and the triplet model each
hold out every user's last prefix event for early stopping.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from shared.config import ModelSettings
from shared.data.split import chronological_split
from shared.model.evaluation import leave_last_out
from shared.model.next_item import next_item_metrics, next_item_pairs
from shared.model.offline import train, unique_pairs
from shared.model.training import TrainConfig
from shared.model.triplet import TripletConfig
from shared.model.triplet_offline import item_codes, train_triplet_on

log = logging.getLogger(__name__)

METHODS = ("popularity", "cooccurrence", "gmf_cosine", "triplet")


def tested_pairs(
    frame: pd.DataFrame, boundary_ts: int, catalogue: pd.Index, max_tested: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(previous, next) item codes of consecutive events of one user whose second event is
    after ``boundary_ts``; pairs with an unknown item or a repeat are left out."""
    ordered = frame.sort_values(["user_id", "ts"], kind="stable")
    same_user = ordered["user_id"].to_numpy()[1:] == ordered["user_id"].to_numpy()[:-1]
    after = ordered["ts"].to_numpy()[1:] > boundary_ts
    codes = item_codes(ordered, catalogue)
    prev, nxt = codes[:-1], codes[1:]
    keep = same_user & after & (prev >= 0) & (nxt >= 0) & (prev != nxt)
    prev, nxt = prev[keep], nxt[keep]
    if len(prev) > max_tested:
        rows = np.sort(np.random.default_rng(seed).choice(len(prev), max_tested, replace=False))
        prev, nxt = prev[rows], nxt[rows]
    return prev, nxt


class CooccurrenceScorer:
    """Counts of (a, b) co-engagements; scores a row of counts plus a popularity tie-break."""

    def __init__(self, n_items: int, anchors: np.ndarray, positives: np.ndarray,
                 popularity: np.ndarray):  # fmt: skip
        self.n_items = n_items
        keys = np.concatenate([anchors * n_items + positives, positives * n_items + anchors])
        self.keys, self.counts = np.unique(keys, return_counts=True)
        # below one count: popularity only orders items with equal co-occurrence
        self.tie_break = torch.as_tensor(0.5 * popularity / (popularity.max() + 1.0))

    def __call__(self, previous: torch.Tensor) -> torch.Tensor:
        scores = self.tie_break.repeat(len(previous), 1)
        for row, item in enumerate(previous.tolist()):
            lo, hi = np.searchsorted(self.keys, [item * self.n_items, (item + 1) * self.n_items])
            columns = torch.as_tensor(self.keys[lo:hi] - item * self.n_items)
            scores[row, columns] += torch.as_tensor(self.counts[lo:hi], dtype=torch.float64)
        return scores


def cosine_scorer(vectors: np.ndarray):  # noqa: ANN201 - a closure over the table
    table = torch.nn.functional.normalize(torch.as_tensor(vectors, dtype=torch.float32), dim=1)
    return lambda previous: table[previous] @ table.T


def gmf_item_vectors(
    prefix: pd.DataFrame, catalogue: pd.Index, settings: ModelSettings, config: TrainConfig
) -> tuple[np.ndarray, dict[str, Any]]:
    """GMF item embeddings (no bias: cosine as the gmf space serves it) in catalogue order,
    trained on the prefix with each user's last pair held out for early stopping."""
    pairs = unique_pairs(prefix)
    inner = leave_last_out(pairs.user_codes, pairs.ts)
    trained = train(pairs, inner.train, settings, config, validation=inner.test)
    serving = trained.model.item_vectors(trained.item_rows)  # (n_pair_items, dim + 1)
    order = pd.Index(pairs.item_ids).get_indexer(catalogue)
    vectors = np.zeros((len(catalogue), settings.embedding_dim), dtype=np.float32)
    known = order >= 0
    vectors[known] = serving[order[known], : settings.embedding_dim]
    info = {
        "epochs_run": trained.fit.epochs_run,
        "best_epoch": trained.fit.best_epoch,
        "seconds": round(trained.fit.seconds, 2),
        "embedding_dim": settings.embedding_dim,
    }
    return vectors, info


def evaluate_similar(
    frame: pd.DataFrame,
    train_fraction: float,
    model_settings: ModelSettings,
    gmf_config: TrainConfig,
    triplet_config: TripletConfig,
    items: pd.DataFrame | None = None,
    max_tested: int = 20_000,
    k: int = 10,
    stop: Any = None,
) -> dict[str, Any]:
    """The report of ``scripts.evaluate_similar``: ``{"methods": {name: {"hr_at_10",
    "ndcg_at_10"}}, "tested": n, ...}`` (see the module docstring for the protocol)."""
    prefix, stream = chronological_split(frame, train_fraction)
    if not len(stream):
        raise ValueError("nothing after the split: lower --train-fraction")
    catalogue = pd.Index(pd.unique(prefix["item_id"]))
    boundary = int(prefix["ts"].max())
    previous, following = tested_pairs(frame, boundary, catalogue, max_tested, triplet_config.seed)
    if not len(previous):
        raise ValueError("no (previous, next) pairs after the split with both items known")
    popularity = np.bincount(item_codes(prefix, catalogue), minlength=len(catalogue)).astype(float)
    timings: dict[str, float] = {}
    scorers: dict[str, Any] = {}
    started = time.perf_counter()
    pop = torch.as_tensor(popularity)
    scorers["popularity"] = lambda prev: pop.repeat(len(prev), 1)
    anchors, positives = next_item_pairs(
        prefix["user_id"].astype("category").cat.codes.to_numpy(np.int64),
        item_codes(prefix, catalogue), prefix["ts"].to_numpy(np.int64),
        triplet_config.window_items, triplet_config.window_s,
    )  # fmt: skip
    scorers["cooccurrence"] = CooccurrenceScorer(len(catalogue), anchors, positives, popularity)
    timings["cooccurrence"] = time.perf_counter() - started
    gmf_vectors, gmf_info = gmf_item_vectors(prefix, catalogue, model_settings, gmf_config)
    scorers["gmf_cosine"] = cosine_scorer(gmf_vectors)
    model, triplet_info, _ = train_triplet_on(prefix, catalogue, triplet_config, items, stop)
    scorers["triplet"] = cosine_scorer(model.item_vectors())
    methods: dict[str, dict[str, float]] = {}
    for name in METHODS:
        hr, ndcg = next_item_metrics(scorers[name], previous, following, k)
        methods[name] = {f"hr_at_{k}": round(hr, 5), f"ndcg_at_{k}": round(ndcg, 5)}
    ratio = (methods["triplet"][f"hr_at_{k}"] / methods["gmf_cosine"][f"hr_at_{k}"]
             if methods["gmf_cosine"][f"hr_at_{k}"] else None)  # fmt: skip
    return {
        "methods": methods,
        "tested": int(len(previous)),
        "k": k,
        "targets": {
            "triplet_over_gmf_cosine_hr": round(ratio, 3) if ratio is not None else None,
            "triplet_hr_at_least_1.2x_gmf_cosine": ratio is not None and ratio >= 1.2,
            "triplet_hr_at_least_cooccurrence": methods["triplet"][f"hr_at_{k}"]
            >= methods["cooccurrence"][f"hr_at_{k}"],
        },
        "data": {
            "events": int(len(frame)),
            "prefix_events": int(len(prefix)),
            "catalogue_items": int(len(catalogue)),
            "train_fraction": train_fraction,
            "cooccurrence_pairs": int(len(anchors)),
        },  # fmt: skip
        "training": {"gmf": gmf_info, "triplet": triplet_info},
    }
