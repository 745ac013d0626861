"""Offline evaluation: GMF against a popularity baseline, printed and written as JSON.

    python -m scripts.evaluate_offline --data-dir data
    python -m scripts.evaluate_offline --input ml-1m/ratings.dat --dim 16

Uses the same training prefix as scripts/initial_training.py (--train-fraction). Each user's
last interaction is held out and ranked (a) against the whole catalogue minus the user's
training items and (b) against 99 sampled items the user never engaged with (the NCF
protocol). The second-to-last interaction drives early stopping. Writes
<report-dir>/offline-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from shared.config import Settings
from shared.data.split import chronological_split
from shared.logs import setup_logging
from shared.model.cli import (
    add_source_arguments,
    add_training_arguments,
    model_settings,
    train_config,
)
from shared.model.offline import format_table, run_experiment, unique_pairs
from shared.model.two_tower_cli import add_two_tower_arguments, load_with_items, two_tower_config
from shared.model.two_tower_offline import add_two_tower
from shared.startup import settings_for_parser


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.evaluate_offline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(p)
    add_training_arguments(p, settings)
    out = p.add_argument_group("evaluation")
    out.add_argument("--ks", default="10",
                     help="comma-separated cut-offs k for HR/NDCG/recall/precision "
                          "(default: 10)")
    out.add_argument("--negatives-eval", type=int, default=99,
                     help="sampled negatives per held-out item (default: 99)")
    out.add_argument("--two-tower", action="store_true",
                     help="also train the two-tower cold-start model on the same pairs and "
                          "report it with cold-item and cold-user slices of every model "
                          "(item features from --items or MovieLens's item file beside --input)")
    add_two_tower_arguments(p)
    out.add_argument("--report-dir", type=Path, default=Path("reports"),
                     help="folder for the JSON report (default: reports)")
    return p


def main(argv: list[str] | None = None) -> int:
    settings = settings_for_parser("evaluate_offline", argv)
    args = build_parser(settings).parse_args(argv)
    setup_logging("evaluate_offline")
    try:
        ks = tuple(sorted({int(k) for k in args.ks.split(",") if k.strip()}))
        if not ks or min(ks) < 1:
            raise ValueError("--ks needs positive integers")
        frame, items, _ = load_with_items(args)
        prefix, _ = chronological_split(frame, args.train_fraction)
        pairs = unique_pairs(prefix)
        trained, report = run_experiment(pairs, model_settings(args, settings),
                                         train_config(args), ks=ks,
                                         n_negatives=args.negatives_eval)
        if args.two_tower:
            metadata = ({str(r["item_id"]): r for r in items.to_dict("records")}
                        if items is not None else {})
            add_two_tower(report, trained, pairs, metadata, two_tower_config(args), ks,
                          args.negatives_eval)
    except KeyboardInterrupt:
        print("evaluate_offline: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as exc:
        print(f"evaluate_offline: {exc}", file=sys.stderr)
        return 2
    report["source"] = str(args.input or args.data_dir)
    report["train_fraction"] = args.train_fraction
    for k in ks:
        print(format_table(report, k))
        for name, part in report.get("slices", {}).items():
            print(f"{name}: " + ", ".join(f"{ranker} recall@{k} {m[f'recall@{k}']:.4f} "
                                          f"(n={m['n']})" for ranker, m in part.items()))
    t = report["training"]
    print(f"GMF: {t['epochs_run']} epochs (best {t['best_epoch']}), training "
          f"{t['train_seconds']:.1f}s, evaluation {t['eval_seconds']:.2f}s")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    args.report_dir.mkdir(parents=True, exist_ok=True)
    path = args.report_dir / f"offline-{stamp}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
