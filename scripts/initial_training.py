"""Initial (batch) training of GMF, snapshot, and seeding of MongoDB and Redis.

    python -m scripts.initial_training --data-dir data
    python -m scripts.initial_training --input ml-100k/u.data --no-seed

1. Load interactions (generated data, MovieLens or a CSV) and split them in time: the earliest
   --train-fraction trains the model, the rest is written to --stream-out for later replay.
2. Evaluate: leave the last interaction of each user out, train with early stopping on the
   second-to-last, compare GMF with popularity (full catalogue and 1-vs-99 sampled).
3. Refit on the whole training prefix for the best number of epochs (--no-refit keeps the
   evaluated model) and write the snapshot into RECSYS_MODELS_DIR (models/LATEST switches).
4. Seed MongoDB `users` (query vectors) and `items` (metadata), Redis item metadata and the
   `popular` set (skip with --no-seed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from shared.config import Settings
from shared.data.loaders import write_interactions_csv
from shared.data.split import chronological_split
from shared.deleted_items import load_deleted
from shared.events import EVENT_WEIGHTS
from shared.forgotten_users import forgotten_at_ms
from shared.logs import setup_logging
from shared.model.checkpoint import save_snapshot
from shared.model.cli import (
    STREAM_FILE,
    add_source_arguments,
    add_training_arguments,
    load_source,
    model_settings,
    train_config,
)
from shared.model.ids import HashIdMap, VocabIdMap
from shared.model.offline import Pairs, Trained, format_table, run_experiment, train, unique_pairs
from shared.startup import settings_for_parser
from shared.storage import mongo, redis_store

log = logging.getLogger("initial_training")
SEED_BATCH = 500
POPULARITY_BUCKETS_PER_HALF_LIFE = 24


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.initial_training", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(p)
    add_training_arguments(p, settings)
    out = p.add_argument_group("output")
    out.add_argument("--stream-out", type=Path, default=None,
                     help=f"where the stream part goes (default: <data-dir>/{STREAM_FILE})")
    out.add_argument("--models-dir", type=Path, default=settings.model.models_dir,
                     help=f"snapshot root (default: RECSYS_MODELS_DIR = "
                          f"{settings.model.models_dir})")
    out.add_argument("--keep", type=int, default=settings.trainer.snapshots_kept,
                     help=f"snapshots kept after writing (default: RECSYS_TRAINER_SNAPSHOTS_KEPT"
                          f" = {settings.trainer.snapshots_kept})")
    out.add_argument("--no-eval", action="store_true",
                     help="skip the held-out evaluation and train --epochs on everything")
    out.add_argument("--no-refit", action="store_true",
                     help="snapshot the evaluated model instead of refitting on all training "
                          "events (faster; the model then misses each user's last two items)")
    out.add_argument("--no-seed", action="store_true",
                     help="do not write MongoDB and Redis (default: seed them)")
    out.add_argument("--report", type=Path, default=None,
                     help="also write the evaluation as JSON here (default: none)")
    return p


def _batches(values: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def item_documents(item_map: VocabIdMap | HashIdMap, items: pd.DataFrame | None
                   ) -> list[dict[str, Any]]:
    """Metadata documents for every model item; without a metadata file the title is the id."""
    known = {}
    if items is not None:
        for row in items.to_dict("records"):
            known[str(row["item_id"])] = {k: v for k, v in row.items()
                                          if not (isinstance(v, float) and np.isnan(v))}
    docs = []
    for item_id in item_map.ids:
        docs.append(known.pop(item_id, {"item_id": item_id, "title": item_id}))
    docs.extend(known.values())  # catalogue items not yet engaged with
    return docs


def seed_stores(settings: Settings, trained: Trained, version: str, prefix: pd.DataFrame,
                items: pd.DataFrame | None, progress: bool) -> dict[str, int]:
    """Write user query vectors, item metadata and popularity; returns counts written."""
    db = mongo.connect(settings.mongo)
    mongo.ensure_indexes(db)
    r = redis_store.connect(settings.redis)
    user_ids = list(trained.user_map.ids)
    vectors = trained.model.query_vectors(trained.user_map.rows(user_ids, create=False))
    counts = prefix.groupby("user_id").size().to_dict()
    rows = [(u, vectors[j], int(counts.get(u, 0))) for j, u in enumerate(user_ids)]
    bar = tqdm(total=len(rows), desc="mongo users", unit="user", disable=not progress)
    for chunk in _batches(rows, SEED_BATCH):
        mongo.upsert_user_vectors(db, chunk, version)
        bar.update(len(chunk))
    bar.close()
    docs = item_documents(trained.item_map, items)
    for chunk in tqdm(list(_batches(docs, SEED_BATCH)), desc="items", unit="batch",
                      disable=not progress):
        mongo.upsert_items(db, chunk)
        redis_store.put_item_metadata(r, chunk)
    seed_popularity(r, prefix, settings.redis.popularity_half_life_s)
    return {"users": len(rows), "items": len(docs)}


def seed_popularity(r: Any, prefix: pd.DataFrame, half_life_s: float) -> None:
    """Replay the training events into the decayed ``popular`` set, in time buckets."""
    bucket_ms = max(1, int(half_life_s * 1000 / POPULARITY_BUCKETS_PER_HALF_LIFE))
    frame = prefix.assign(weight=prefix["event"].map(EVENT_WEIGHTS).astype(float),
                          bucket=prefix["ts"] // bucket_ms)
    sums = frame.groupby(["bucket", "item_id"], sort=True)["weight"].sum()
    for bucket, group in sums.groupby(level=0, sort=True):
        weights = {item: float(w) for (_, item), w in group.items()}
        redis_store.bump_popularity(r, weights, int(bucket) * bucket_ms, half_life_s)


def summary_metrics(report: dict[str, Any] | None) -> dict[str, Any] | None:
    if report is None:
        return None
    keep = ("hr@10", "ndcg@10")
    return {name: {protocol: {k: report[name][protocol][k] for k in keep if k in
                              report[name][protocol]} for protocol in ("full", "sampled")}
            for name in ("gmf", "popularity")}


def without_deleted(settings: Settings, frame: pd.DataFrame, items: pd.DataFrame | None
                    ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Leave out items deleted through the catalogue API (MongoDB ``deleted_items``), and
    forgotten users' events from before their deletion (MongoDB ``forgotten_users``; a file
    has no Kafka offsets, so its event times are compared with the deletion's)."""
    db = mongo.connect(settings.mongo)
    deleted = load_deleted(db)
    forgotten = forgotten_at_ms(db)
    gone = frame["item_id"].isin(deleted)
    if deleted:
        print(f"leaving out {int(gone.sum())} events of {len(deleted)} deleted items")
        if items is not None:
            items = items[~items["item_id"].isin(deleted)]
    if forgotten:
        deleted_at = frame["user_id"].map(forgotten)
        before = deleted_at.notna() & (frame["ts"] < deleted_at)
        print(f"leaving out {int(before.sum())} events of {len(forgotten)} forgotten users "
              "from before their deletion")
        gone |= before
    if not gone.any():
        return frame, items
    return frame[~gone].reset_index(drop=True), items


def run(args: argparse.Namespace, settings: Settings) -> int:
    frame, items = load_source(args)
    if not args.no_seed:
        frame, items = without_deleted(settings, frame, items)
    prefix, stream = chronological_split(frame, args.train_fraction)
    stream_out = args.stream_out or (args.data_dir if args.input is None
                                     else args.input.parent) / STREAM_FILE
    write_interactions_csv(stream, stream_out)
    print(f"{len(prefix)} events for training, {len(stream)} kept as the stream in {stream_out}")
    pairs: Pairs = unique_pairs(prefix)
    mset = model_settings(args, settings)
    config = train_config(args)
    report = None
    if args.no_eval:
        trained = train(pairs, np.arange(len(pairs)), mset, config)
    else:
        trained, report = run_experiment(pairs, mset, config)
        print(format_table(report))
        t = report["training"]
        print(f"trained {t['epochs_run']} epochs (best {t['best_epoch']}) in "
              f"{t['train_seconds']:.1f}s")
        if args.report:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(json.dumps(report, indent=2))
        if not args.no_refit:
            refit = dataclasses.replace(config, epochs=max(1, trained.fit.best_epoch))
            trained = train(pairs, np.arange(len(pairs)), mset, refit)
            print(f"refit on all {len(pairs)} pairs: {trained.fit.epochs_run} epochs in "
                  f"{trained.fit.seconds:.1f}s")
    version = save_snapshot(args.models_dir, trained.model, trained.user_map, trained.item_map,
                            offsets={}, metrics=summary_metrics(report), keep=args.keep)
    print(f"snapshot {version} written to {args.models_dir} ({len(trained.user_map)} users, "
          f"{len(trained.item_map)} items)")
    if not args.no_seed:
        written = seed_stores(settings, trained, version, prefix, items, not args.no_progress)
        print(f"seeded MongoDB ({written['users']} users, {written['items']} items) and Redis")
    return 0


def main(argv: list[str] | None = None) -> int:
    settings = settings_for_parser("initial_training", argv)
    args = build_parser(settings).parse_args(argv)
    setup_logging("initial_training")
    try:
        return run(args, settings)
    except KeyboardInterrupt:
        print("initial_training: interrupted; LATEST is unchanged unless a snapshot was "
              "reported above", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as exc:
        print(f"initial_training: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
