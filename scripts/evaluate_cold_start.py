"""Cold-start evaluation: popularity, GMF, two-tower and the served blend on the same stream.

    python -m scripts.evaluate_cold_start --data-dir data
    python -m scripts.evaluate_cold_start --input ml-100k/u.data      # u.item found beside it

The earliest --train-fraction of events trains GMF (early stopping on each user's last pair)
and the two-tower model (early stopping on the latest events); the rest is replayed in time
order, test-then-train per micro-batch (services/incremental_trainer/cold_start_replay.py):
GMF keeps learning by ISGD as the trainer does, two-tower embeds items new to the stream from
their features. Reports recall@10 and NDCG@10 overall (``"rankers"``) and on the cold slices
(``"slices": {"cold_items": …, "cold_users": …}``: events whose item, or user, had fewer
than 5 earlier interactions), the training time and size of both models, and writes
<report-dir>/cold-start-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from services.incremental_trainer.cold_start_replay import RANKERS, replay
from services.incremental_trainer.learner import Learner, ModelState
from shared import snapshots
from shared.cold_start_blend import BlendRule
from shared.config import Settings
from shared.data.split import chronological_split
from shared.logs import setup_logging
from shared.model.cli import (
    add_source_arguments,
    add_training_arguments,
    model_settings,
    train_config,
)
from shared.model.offline import split_for_evaluation, train, unique_pairs
from shared.model.two_tower_cli import (
    add_two_tower_arguments,
    load_with_items,
    train_two_tower,
    two_tower_config,
)


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.evaluate_cold_start", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(p)
    add_training_arguments(p, settings)
    add_two_tower_arguments(p)
    out = p.add_argument_group("evaluation")
    out.add_argument("--stream-batch", type=int, default=256,
                     help="events per test-then-train micro-batch (default: 256)")
    out.add_argument("--max-stream-events", type=int, default=None,
                     help="replay only the first N stream events (default: all)")
    out.add_argument("--switch-events", type=int, default=BlendRule().switch_events,
                     help="events after which GMF fills all but --min-share of the served list "
                          f"(default: {BlendRule().switch_events})")
    out.add_argument("--start-share", type=float, default=BlendRule().start_share,
                     help="share of the served list two-tower fills for a user with no history "
                          f"(default: {BlendRule().start_share})")
    out.add_argument("--min-share", type=float, default=BlendRule().min_share,
                     help="share of the served list two-tower keeps for every user "
                          f"(default: {BlendRule().min_share})")
    out.add_argument("--report-dir", type=Path, default=Path("reports"),
                     help="folder for the JSON report (default: reports)")
    return p


def format_table(report: dict[str, Any], k: int = 10) -> str:
    sections = [("all", report["rankers"])] + list(report["slices"].items())
    lines = [f"{'ranker':<26}" + "".join(f"{s + f' R@{k}':>18}{'NDCG':>8}" for s, _ in sections)]
    for name in RANKERS:
        cells = "".join(f"{part[name][f'recall@{k}']:>18.4f}{part[name][f'ndcg@{k}']:>8.4f}"
                        for _, part in sections)
        lines.append(f"{name:<26}{cells}")
    lines.append(f"{'events':<26}" + "".join(f"{part[RANKERS[0]]['n']:>26d}"
                                              for _, part in sections))
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    frame, items, items_source = load_with_items(args)
    prefix, stream = chronological_split(frame, args.train_fraction)
    if args.max_stream_events is not None:
        stream = stream.iloc[: args.max_stream_events]
    if prefix.empty or stream.empty:
        raise ValueError("need events both before and after --train-fraction")
    metadata = {str(r["item_id"]): r for r in items.to_dict("records")} if items is not None else {}
    mset = model_settings(args, settings)
    pairs = unique_pairs(prefix)
    _, fit_index, val_index = split_for_evaluation(pairs)
    trained = train(pairs, fit_index, mset, train_config(args), validation=val_index)
    print(f"GMF: {trained.fit.epochs_run} epochs (best {trained.fit.best_epoch}) in "
          f"{trained.fit.seconds:.1f}s")
    encoder, tt_fit, tt_size = train_two_tower(prefix, metadata, two_tower_config(args))
    print(f"two-tower: {tt_fit.epochs_run} epochs (best {tt_fit.best_epoch}) in "
          f"{tt_fit.seconds:.1f}s, {tt_size['parameters']} parameters")
    state = ModelState(trained.model, trained.user_map, trained.item_map,
                       snapshots.new_version(), {}, True)
    trainer = dataclasses.replace(settings.trainer, eval_sample_rate=0.0)
    learner = Learner(state, trainer, settings.redis.popularity_half_life_s, args.seed)
    rule = BlendRule(args.switch_events, args.start_share, args.min_share)
    started = time.perf_counter()
    with tqdm(total=len(stream), desc="replay", unit="event",
              disable=args.no_progress) as bar:
        result = replay(learner, encoder, prefix, stream, metadata, rule,
                        batch_size=args.stream_batch, seed=args.seed, progress=bar.update)
    report = result.report()
    report["source"] = str(args.input or args.data_dir)
    report["items_source"] = items_source
    report["data"] = {"train_events": len(prefix), "stream_events": len(stream),
                      "tested": int(len(result.ranks["gmf"]))}
    report["blend"] = dataclasses.asdict(rule)
    report["training"] = {
        "gmf": {"epochs_run": trained.fit.epochs_run, "best_epoch": trained.fit.best_epoch,
                "seconds": round(trained.fit.seconds, 2),
                "parameters": int(sum(p.numel() for p in trained.model.parameters())),
                "embedding_dim": mset.embedding_dim},
        "two_tower": {"epochs_run": tt_fit.epochs_run, "best_epoch": tt_fit.best_epoch,
                      "best_val_recall": tt_fit.best_recall, "seconds": round(tt_fit.seconds, 2),
                      "history": tt_fit.history, **tt_size},
    }
    report["replay_seconds"] = round(time.perf_counter() - started, 2)
    return report


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    args = build_parser(settings).parse_args(argv)
    setup_logging("evaluate_cold_start")
    try:
        report = run(args, settings)
    except KeyboardInterrupt:
        print("evaluate_cold_start: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as exc:
        print(f"evaluate_cold_start: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    args.report_dir.mkdir(parents=True, exist_ok=True)
    path = args.report_dir / f"cold-start-{stamp}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
