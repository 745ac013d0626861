"""Options and steps the two-tower scripts share (training, evaluation)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.data.options import items_from_args
from shared.model.cli import ITEMS_FILE, load_source
from shared.model.two_tower import TwoTowerConfig, TwoTowerFit, fit_two_tower, prepare
from shared.model.two_tower_features import FeatureSpace
from shared.model.two_tower_snapshot import TwoTowerEncoder, encoder_of

MOVIELENS_ITEM_FILES = ("u.item", "movies.dat", "movies.csv")


def add_two_tower_arguments(parser: argparse.ArgumentParser) -> None:
    d = TwoTowerConfig()
    group = parser.add_argument_group("two-tower model")
    group.add_argument("--tt-dim", type=int, default=d.dim,
                       help=f"width of the shared vector space (default: {d.dim})")
    group.add_argument("--tt-epochs", type=int, default=d.epochs,
                       help=f"maximum epochs (default: {d.epochs})")
    group.add_argument("--tt-batch-size", type=int, default=d.batch_size,
                       help="events per batch; the batch's other items are the negatives "
                            f"(default: {d.batch_size})")
    group.add_argument("--tt-lr", type=float, default=d.learning_rate,
                       help=f"Adam learning rate (default: {d.learning_rate})")
    group.add_argument("--tt-temperature", type=float, default=d.temperature,
                       help=f"softmax temperature (default: {d.temperature})")
    group.add_argument("--tt-id-dropout", type=float, default=d.id_dropout,
                       help="share of ids hidden in each batch so features learn to stand "
                            f"alone (default: {d.id_dropout})")
    group.add_argument("--tt-patience", type=int, default=d.patience,
                       help=f"epochs without a better validation recall before stopping "
                            f"(default: {d.patience})")


def two_tower_config(args: argparse.Namespace) -> TwoTowerConfig:
    return TwoTowerConfig(dim=args.tt_dim, epochs=args.tt_epochs, batch_size=args.tt_batch_size,
                          learning_rate=args.tt_lr, temperature=args.tt_temperature,
                          id_dropout=args.tt_id_dropout, patience=args.tt_patience,
                          seed=args.seed, num_threads=args.threads,
                          progress=not args.no_progress)


def movielens_item_file(ratings: Path) -> Path | None:
    """MovieLens's own item file in the folder of the ratings file, if there is one."""
    for name in MOVIELENS_ITEM_FILES:
        candidate = Path(ratings).parent / name
        if candidate.is_file():
            return candidate
    return None


def load_with_items(args: argparse.Namespace
                    ) -> tuple[pd.DataFrame, pd.DataFrame | None, str | None]:
    """``(interactions, items or None, the items file used)`` as the source options ask.

    Items come from ``--items``, else the data folder's items file (generated data), else
    MovieLens's own item file beside ``--input`` (u.item, movies.dat, movies.csv).
    """
    frame, items = load_source(args)
    if args.items is not None:
        return frame, items, str(args.items)
    if items is not None:
        return frame, items, str(args.data_dir / ITEMS_FILE)
    found = movielens_item_file(args.input) if args.input is not None else None
    if found is None:
        return frame, None, None
    return frame, items_from_args(args, found), str(found)


def train_two_tower(events: pd.DataFrame, metadata: Mapping[str, Mapping[str, Any]],
                    config: TwoTowerConfig, space: FeatureSpace | None = None
                    ) -> tuple[TwoTowerEncoder, TwoTowerFit, dict[str, int]]:
    """Fit on ``events`` (``user_id, item_id, ts``); the numpy encoder, the fit and its size."""
    space = space or FeatureSpace()
    data = prepare(events, metadata, space, config.min_id_count)
    model, fit = fit_two_tower(data, space, config)
    encoder = encoder_of(model, data.known_items, data.known_users)
    size = {"parameters": model.parameter_count(),
            "bytes_float32": int(sum(w.nbytes for w in encoder.weights.values()))}
    return encoder, fit, size


def catalogue_vectors(encoder: TwoTowerEncoder, events: pd.DataFrame,
                      metadata: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], np.ndarray]:
    """Every item of ``events`` and of ``metadata`` with its candidate vector as of the last
    event (age from each item's first event; items without one count as new)."""
    first = events.groupby(events["item_id"].astype(str))["ts"].min()
    ids = list(dict.fromkeys([*first.index.tolist(), *metadata.keys()]))
    now = int(events["ts"].max())
    ages = np.array([now - int(first.get(i, now)) for i in ids], dtype=np.int64)
    return ids, encoder.candidate_vectors(encoder.item_table(ids, metadata), ages)
