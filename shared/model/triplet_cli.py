"""Command-line options of the triplet model (scripts.train_triplet, scripts.evaluate_similar)."""

from __future__ import annotations

import argparse

from shared.model.triplet import LOSSES, TripletConfig


def add_triplet_arguments(parser: argparse.ArgumentParser) -> None:
    t = TripletConfig()
    group = parser.add_argument_group("triplet model")
    group.add_argument("--dim", type=int, default=t.dim,
                       help=f"embedding dimension (default: {t.dim})")
    group.add_argument("--epochs", type=int, default=t.epochs,
                       help=f"maximum epochs (default: {t.epochs})")
    group.add_argument("--negatives", type=int, default=t.negatives,
                       help=f"negatives per triplet (default: {t.negatives})")
    group.add_argument("--popularity-alpha", type=float, default=t.popularity_alpha,
                       help=f"negatives drawn with probability ∝ count^alpha (0 = uniform) "
                            f"(default: {t.popularity_alpha})")
    group.add_argument("--loss", choices=LOSSES, default=t.loss,
                       help=f"margin: the triplet hinge over each anchor's negatives; softmax: "
                            f"its many-negative form (the positive against those negatives "
                            f"plus --shared-negatives uniform items, cos / --temperature) "
                            f"(default: {t.loss})")
    group.add_argument("--temperature", type=float, default=t.temperature,
                       help=f"softmax loss: cosine divided by this (default: {t.temperature})")
    group.add_argument("--shared-negatives", type=int, default=t.shared_negatives,
                       help=f"softmax loss: uniform negatives shared by a batch; the whole "
                            f"catalogue when it is no larger (default: {t.shared_negatives})")
    group.add_argument("--margin", type=float, default=t.margin,
                       help=f"triplet margin on cosine (default: {t.margin})")
    group.add_argument("--window-items", type=int, default=t.window_items,
                       help=f"positives: a user's next N items (default: {t.window_items})")
    group.add_argument("--window-hours", type=float, default=t.window_s / 3600,
                       help=f"positives: within this many hours (default: {t.window_s / 3600:g})")
    group.add_argument("--hard-after", type=int, default=t.hard_after_epoch,
                       help=f"first epoch with hard-negative mining (default: "
                            f"{t.hard_after_epoch})")
    group.add_argument("--learning-rate", type=float, default=t.learning_rate,
                       help=f"Adam learning rate (default: {t.learning_rate})")
    group.add_argument("--feature-dropout", type=float, default=t.feature_dropout,
                       help=f"share of items in a batch placed by their features alone, "
                            f"without their id row (default: {t.feature_dropout})")
    group.add_argument("--patience", type=int, default=t.patience,
                       help=f"epochs without a better validation HR@10 before stopping "
                            f"(default: {t.patience})")
    group.add_argument("--seed", type=int, default=t.seed, help=f"random seed (default: {t.seed})")
    group.add_argument("--threads", type=int, default=None,
                       help="torch threads (default: torch's own choice)")
    group.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def triplet_config(args: argparse.Namespace) -> TripletConfig:
    return TripletConfig(dim=args.dim, epochs=args.epochs, negatives=args.negatives,
                         margin=args.margin, popularity_alpha=args.popularity_alpha,
                         loss=args.loss, temperature=args.temperature,
                         shared_negatives=args.shared_negatives,
                         window_items=args.window_items,
                         window_s=args.window_hours * 3600, patience=args.patience,
                         learning_rate=args.learning_rate,
                         feature_dropout=args.feature_dropout,
                         hard_after_epoch=args.hard_after, seed=args.seed,
                         num_threads=args.threads, progress=not args.no_progress)
