"""Replay an interaction file as a stream through the services' code and compare rankers.

    python -m scripts.evaluate_stream --input data/interactions.csv
    python -m scripts.evaluate_stream --input ml-100k/u.data --report reports/ml100k.json

Test-then-train in micro-batches of --batch-size events, from an empty model (or after batch
training on the first --warm-fraction of the events): the trainer's learner (GMF + ISGD), the
stream signals the trainer writes (co-engagement, trending, popular, new items) and the
recommender's candidate sources, ranker (learned online, pairwise) and rerank. Every sampled
event whose user and item are already known, and that the user has not engaged with before, is
ranked by every ranker on the state as it stood before the event's batch (no tested event is
ever scored by a state that learned it; the user's own history is known event by event);
recall@10 and NDCG@10 are printed for streaming popularity, GMF alone, each candidate source
alone and the full pipeline. No Kafka, Redis or faiss_app needed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from services.incremental_trainer.learner import Learner, ModelState
from services.incremental_trainer.offline import interactions, warm_start
from services.incremental_trainer.ranking_replay import DEFAULT_BATCH_SIZE, RankingReplay
from services.incremental_trainer.space_replay import ReplaySpace, train_triplet_space
from services.incremental_trainer.stream_slices import TwoTowerRanker
from shared import snapshots
from shared.atomic import write_text_atomic
from shared.config import Settings
from shared.data.options import add_data_arguments, interactions_from_args, items_from_args
from shared.data.split import chronological_split
from shared.events import Interaction
from shared.logs import setup_logging
from shared.model.offline import train, unique_pairs
from shared.model.training import TrainConfig
from shared.model.two_tower import TwoTowerConfig
from shared.model.two_tower_cli import movielens_item_file, train_two_tower
from shared.model.two_tower_features import HOUR_MS
from shared.model.two_tower_snapshot import TwoTowerEncoder


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.evaluate_stream", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", type=Path, required=True, help="interaction file to replay")
    add_data_arguments(p)  # --format, --columns, --events, --items (categories feed a feature)
    p.add_argument("--warm-fraction", type=float, default=0.0,
                   help="batch-train GMF on this earliest share of events first, then stream "
                        "the rest (default: 0, an empty model)")
    p.add_argument("--sample-rate", type=float, default=1.0,
                   help="share of eligible events tested (default: 1, every one)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help="events per micro-batch: each tested event is scored on the state "
                        "before its batch, then the batch is learned (default: "
                        f"{DEFAULT_BATCH_SIZE}, the learner's update chunk; 1 = event by event)")
    p.add_argument("--max-events", type=int, default=0,
                   help="stop after this many streamed events (default: 0, all)")
    p.add_argument("--window", type=int, default=2000,
                   help="moving window of the plotted curves, in tested events (default: 2000)")
    p.add_argument("--report", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--plot", type=Path, default=None,
                   help="write a PNG of the moving-window recall@10 curves here")
    p.add_argument("--two-tower", action="store_true",
                   help="add the two-tower space, trained on the warm prefix, as a candidate "
                        "source (needs --warm-fraction; item features from --items or "
                        "MovieLens's item file beside --input)")
    p.add_argument("--two-tower-retrains", type=int, default=0,
                   help="re-train the two-tower space this many times, evenly over the "
                        "stream's event time, on everything seen so far (every item "
                        "re-embedded at its age), as scripts.train_two_tower --every keeps the "
                        "served space fresh (default: 0, trained once on the prefix)")
    p.add_argument("--triplet", action="store_true",
                   help="add the triplet item-to-item space, trained on the warm prefix, as a "
                        "candidate source (needs --warm-fraction; features as --two-tower)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _learner(settings: Settings, prefix_pairs: Any | None, seed: int) -> Learner:
    trainer = dataclasses.replace(settings.trainer, eval_sample_rate=0.0)  # the replay tests
    if prefix_pairs is None:
        with tempfile.TemporaryDirectory() as empty:  # no snapshot there: an empty model
            state = ModelState.load_or_create(dataclasses.replace(settings.model,
                                                                  models_dir=Path(empty)))
    else:
        trained = train(prefix_pairs, np.arange(len(prefix_pairs)), settings.model, TrainConfig())
        state = ModelState(trained.model, trained.user_map, trained.item_map,
                           snapshots.new_version(), {}, True)
    return Learner(state, trainer, settings.redis.popularity_half_life_s, seed)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    frame = interactions_from_args(args.input, args)
    categories: dict[str, str] = {}
    items = items_from_args(args)
    if items is not None and "category" in items.columns:
        known = items.dropna(subset=["category"])
        categories = dict(zip(known["item_id"].astype(str), known["category"].astype(str),
                              strict=True))
    prefix = frame.iloc[:0]
    stream = frame
    if args.warm_fraction > 0:
        prefix, stream = chronological_split(frame, args.warm_fraction)
    if args.max_events:
        stream = stream.iloc[: args.max_events]
    learner = _learner(settings, unique_pairs(prefix) if len(prefix) else None, args.seed)
    spaces: list[ReplaySpace] = []
    fits: dict[str, Any] = {}
    if (args.two_tower or args.triplet) and not len(prefix):
        raise ValueError("--two-tower and --triplet need --warm-fraction > 0 to train on")
    if args.two_tower or args.triplet:
        items = _space_items(args, items)
    if args.two_tower:
        two_tower, fits["two_tower"] = _two_tower(args, prefix, stream, items)
        spaces.append(two_tower)
    if args.triplet:
        triplet, fits["triplet"] = train_triplet_space(prefix, items, args.seed,
                                                       not args.no_progress)
        spaces.append(triplet)
    replay = RankingReplay(learner, settings.ranking, settings.redis.popularity_half_life_s,
                           sample_rate=args.sample_rate, categories=categories,
                           window=args.window, seed=args.seed,
                           seen_list_length=settings.redis.seen_list_length,
                           batch_size=args.batch_size, spaces=spaces)
    if len(prefix):
        warm_start(learner, prefix)
        replay.warm(interactions(prefix))
    events = interactions(stream)
    with tqdm(total=len(events), unit="ev", disable=args.no_progress, mininterval=1.0) as bar:
        replay.run(events, bar.update)
    report = replay.report()
    report.update(fits)  # "two_tower", "triplet": how each space was trained
    report.update({"input": str(args.input), "format": args.format,
                   "warm_fraction": args.warm_fraction, "sample_rate": args.sample_rate,
                   "streamed_events": len(events), "batch_size": args.batch_size,
                   "mmr_lambda": settings.ranking.mmr_lambda,
                   "max_per_category": settings.ranking.max_per_category})
    if args.plot is not None:
        plot(replay, args.plot)
    return report


def _space_items(args: argparse.Namespace, items: pd.DataFrame | None) -> pd.DataFrame | None:
    """Item features: --items, else MovieLens's item file beside --input when there is one."""
    if items is not None:
        return items
    found = movielens_item_file(args.input)
    return items_from_args(args, found) if found is not None else None


def _two_tower(args: argparse.Namespace, prefix: pd.DataFrame, stream: pd.DataFrame,
               items: pd.DataFrame | None) -> tuple[TwoTowerRanker, dict[str, Any]]:
    """The two-tower space trained on ``prefix``, its items embedded as of the prefix's end;
    re-trained on the log so far ``--two-tower-retrains`` times over ``stream``."""
    metadata = {str(r["item_id"]): r for r in items.to_dict("records")} if items is not None else {}
    config = TwoTowerConfig(seed=args.seed, progress=not args.no_progress)
    encoder, fit, size = train_two_tower(prefix, metadata, config)
    fits = [round(fit.seconds, 2)]

    def retrain(log: list[Interaction]) -> TwoTowerEncoder:
        frame = pd.DataFrame([(e.user_id, e.item_id, e.ts) for e in log],
                             columns=["user_id", "item_id", "ts"])
        retrained, refit, _ = train_two_tower(frame, metadata, config)
        fits.append(round(refit.seconds, 2))
        return retrained

    first = prefix.groupby(prefix["item_id"].astype(str))["ts"].min()
    span_ms = int(stream["ts"].max() - prefix["ts"].max()) if len(stream) else 0
    every_ms = span_ms // args.two_tower_retrains if args.two_tower_retrains > 0 else None
    ranker = TwoTowerRanker(encoder, metadata, [str(i) for i in first.index],
                            first.to_numpy(np.int64), retrain, every_ms, interactions(prefix))
    return ranker, {"epochs_run": fit.epochs_run, "best_epoch": fit.best_epoch,
                    "train_seconds": fits, "items_with_features": len(metadata),
                    "retrains": args.two_tower_retrains,
                    "retrain_every_hours": round(every_ms / HOUR_MS, 2) if every_ms else None,
                    **size}


def format_table(report: dict[str, Any]) -> str:
    rankers = report["rankers"]
    base = rankers["popularity"]["recall_at_10"] or float("nan")
    gmf = rankers["gmf"]["recall_at_10"] or float("nan")
    lines = [f"{'ranker':<16}{'recall@10':>11}{'ndcg@10':>10}{'tested':>9}"
             f"{'×popularity':>13}{'×gmf':>7}"]
    for name, figures in rankers.items():
        recall = figures["recall_at_10"]
        lines.append(f"{name:<16}{recall:>11.4f}{figures['ndcg_at_10']:>10.4f}"
                     f"{figures['tested']:>9}{recall / base:>13.2f}{recall / gmf:>7.2f}")
    return "\n".join(lines)


def plot(replay: RankingReplay, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, score in replay.scores.items():
        if score.curve:
            xs, ys = zip(*score.curve, strict=True)
            ax.plot(xs, ys, label=name, linewidth=2.0 if name == "pipeline" else 1.0)
    ax.set_xlabel("tested events")
    ax.set_ylabel(f"recall@10 (moving window of {replay.scores['pipeline'].window})")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("evaluate_stream")
    settings = Settings.from_env()
    try:
        if not 0.0 <= args.warm_fraction < 1.0:
            raise ValueError("--warm-fraction must be in [0, 1)")
        if not 0.0 < args.sample_rate <= 1.0:
            raise ValueError("--sample-rate must be in (0, 1]")
        if args.batch_size < 1:
            raise ValueError("--batch-size must be at least 1")
        report = run(args, settings)
    except KeyboardInterrupt:
        print("evaluate_stream: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as exc:
        print(f"evaluate_stream: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    if report["pipeline_distinct_categories_at_10"] is not None:
        print(f"pipeline: {report['pipeline_distinct_categories_at_10']} distinct categories "
              f"in a top 10 (MMR λ {report['mmr_lambda']}, at most "
              f"{report['max_per_category'] or 'any'} per category)")
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.report, json.dumps(report, indent=2))
        print(f"report written to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
