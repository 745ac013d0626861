"""Command-line options shared by scripts/initial_training.py and scripts/evaluate_offline.py."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pandas as pd

from shared.config import ModelSettings, Settings
from shared.data.options import add_data_arguments, interactions_from_args, items_from_args
from shared.model.training import TrainConfig

INTERACTIONS_FILE = "interactions.csv"
ITEMS_FILE = "items.csv"
STREAM_FILE = "stream.csv"


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data-dir", type=Path, default=Path("data"),
                       help="folder written by scripts/generate_data.py, holding "
                            f"{INTERACTIONS_FILE} and {ITEMS_FILE} (default: data)")
    group.add_argument("--input", type=Path, default=None,
                       help="read interactions from this file instead (any format --format "
                            "names; without --items, no item metadata) (default: none)")
    group.add_argument("--train-fraction", type=float, default=0.8,
                       help="earliest share of events used for training; the rest is the "
                            "stream kept for replay (default: 0.8)")
    add_data_arguments(parser)


def load_source(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """``(interactions, items or None)`` as the options ask; load reports go to stderr."""
    frame = interactions_from_args(args.input or args.data_dir / INTERACTIONS_FILE, args)
    items_path = args.items
    if items_path is None and args.input is None and (args.data_dir / ITEMS_FILE).is_file():
        items_path = args.data_dir / ITEMS_FILE
    return frame, items_from_args(args, items_path)


def add_training_arguments(parser: argparse.ArgumentParser, settings: Settings) -> None:
    defaults = TrainConfig()
    model = settings.model
    group = parser.add_argument_group("training")
    group.add_argument("--dim", type=int, default=model.embedding_dim,
                       help=f"embedding dimension (default: RECSYS_EMBEDDING_DIM = "
                            f"{model.embedding_dim})")
    group.add_argument("--epochs", type=int, default=defaults.epochs,
                       help=f"maximum epochs (default: {defaults.epochs})")
    group.add_argument("--batch-size", type=int, default=defaults.batch_size,
                       help=f"positives per batch (default: {defaults.batch_size})")
    group.add_argument("--lr", type=float, default=defaults.learning_rate,
                       help=f"Adam learning rate (default: {defaults.learning_rate})")
    group.add_argument("--l2", type=float, default=defaults.l2,
                       help=f"L2 on the embedding rows of each batch (default: {defaults.l2})")
    group.add_argument("--negatives", type=int, default=defaults.negatives,
                       help=f"sampled negatives per positive (default: {defaults.negatives})")
    group.add_argument("--patience", type=int, default=defaults.patience,
                       help="epochs without a better validation HR@10 before stopping "
                            f"(default: {defaults.patience})")
    group.add_argument("--seed", type=int, default=model.seed,
                       help=f"random seed (default: RECSYS_SEED = {model.seed})")
    group.add_argument("--threads", type=int, default=None,
                       help="torch threads (default: torch's own choice)")
    group.add_argument("--no-progress", action="store_true",
                       help="hide the progress bars (default: shown)")


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                       l2=args.l2, negatives=args.negatives, patience=args.patience,
                       seed=args.seed, num_threads=args.threads, progress=not args.no_progress)


def model_settings(args: argparse.Namespace, settings: Settings) -> ModelSettings:
    return dataclasses.replace(settings.model, embedding_dim=args.dim, seed=args.seed)
