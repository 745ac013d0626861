"""Evaluate "similar items": next-item HR@10 / NDCG@10 given the previous item of the same user.

    python -m scripts.evaluate_similar --input ml-100k/u.data --report reports/similar.json
    python -m scripts.evaluate_similar --data-dir data --report reports/similar-synthetic.json

Compares popularity, co-occurrence counts, GMF cosine (what the gmf space's /v1/similar
serves) and the triplet embedding (the triplet space) on the same tested pairs; the protocol
is in shared/model/similar_eval.py. Interactions are read by the same loaders as every other
script (--input/--format, or --data-dir from scripts.generate_data with its items.csv, whose
categories and titles feed the triplet model's item features). Writes the JSON report
``{"methods": {"cooccurrence": {"hr_at_10", "ndcg_at_10"}, "gmf_cosine": {...}, "triplet":
{...}, "popularity": {...}}, "tested": n, ...}``. Ctrl-C or SIGTERM stops cleanly (no report).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from pathlib import Path

from shared.atomic import write_text_atomic
from shared.config import Settings
from shared.logs import setup_logging
from shared.model.cli import add_source_arguments, load_source
from shared.model.similar_eval import evaluate_similar
from shared.model.training import TrainConfig
from shared.model.triplet_cli import add_triplet_arguments, triplet_config


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.evaluate_similar", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(p)
    g = TrainConfig()
    p.add_argument("--report", type=Path, required=True, help="JSON report to write")
    p.add_argument("--max-tested", type=int, default=20_000,
                   help="at most this many tested pairs, a seeded sample (default: 20000)")
    p.add_argument("--no-features", action="store_true",
                   help="train the triplet model on ids only, ignoring item metadata "
                        "(default: use --items / <data-dir>/items.csv when present)")
    add_triplet_arguments(p)
    gm = p.add_argument_group("GMF baseline")
    gm.add_argument("--gmf-dim", type=int, default=settings.model.embedding_dim,
                    help=f"GMF dimension (default: RECSYS_EMBEDDING_DIM = "
                         f"{settings.model.embedding_dim})")
    gm.add_argument("--gmf-epochs", type=int, default=g.epochs,
                    help=f"GMF maximum epochs (default: {g.epochs})")
    return p


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    args = build_parser(settings).parse_args(argv)
    setup_logging("evaluate_similar")
    stop = threading.Event()

    def interrupt(*_: object) -> None:
        stop.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    triplet = triplet_config(args)
    gmf = TrainConfig(epochs=args.gmf_epochs, seed=args.seed, num_threads=args.threads,
                      progress=not args.no_progress)
    model = dataclasses.replace(settings.model, embedding_dim=args.gmf_dim, seed=args.seed)
    try:
        frame, items = load_source(args)
        report = evaluate_similar(frame, args.train_fraction, model, gmf, triplet,
                                  items=None if args.no_features else items,
                                  max_tested=args.max_tested, stop=stop)
    except KeyboardInterrupt:
        print("evaluate_similar: interrupted, no report written", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as exc:
        print(f"evaluate_similar: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    report["source"] = {"input": str(args.input or args.data_dir), "format": args.format,
                        "features": report["training"]["triplet"]["features"]}
    report["command"] = "python -m scripts.evaluate_similar " + " ".join(
        sys.argv[1:] if argv is None else argv)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.report, json.dumps(report, indent=2))
    width = max(map(len, report["methods"]))
    print(f"{'method':<{width}}  HR@10   NDCG@10   ({report['tested']} tested pairs)")
    for name, m in report["methods"].items():
        print(f"{name:<{width}}  {m['hr_at_10']:.4f}  {m['ndcg_at_10']:.4f}")
    print(f"report written to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
