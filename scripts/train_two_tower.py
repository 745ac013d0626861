"""Initial training of the two-tower cold-start model and its snapshot beside GMF's.

    python -m scripts.train_two_tower --data-dir data
    python -m scripts.train_two_tower --input ml-100k/u.data      # u.item found beside it

Trains on the same earliest --train-fraction of events as scripts/initial_training.py (early
stopping on the latest tenth of them), embeds every item of the training events and of the
item file with the candidate tower, and writes <models-dir>/spaces/two_tower/<version>/ (weights as
np.savez without pickle, item ids and vectors, manifest with training time and model size),
then switches <models-dir>/spaces/two_tower/LATEST atomically.

Kept fresh (shared/model/two_tower_refresh.py says why a periodic re-train, in a process of
its own): ``--every S`` re-trains every S seconds on the log and the catalogue as they are
then, writes a new snapshot (with the offsets of ``item-vectors.two_tower`` it already holds)
and, with ``--reload``, has faiss_app swap the ``two_tower`` space (RECSYS_FAISS_URL,
RECSYS_FAISS_ADMIN_TOKEN). ``--follow`` tails the ``interactions`` topic so the events since
start join each re-train's log, and an item an event brings with metadata that the space does
not hold gets its vector on ``item-vectors.two_tower`` at once; ``--catalogue`` adds every item of MongoDB's catalogue (where
``PUT /items`` writes) to the items embedded. Ctrl-C or SIGTERM stops between re-trains.
docker-compose runs it as the ``two-tower-trainer`` service (``--follow --from-start --every S
--catalogue --reload --heartbeat-file F``; docs/deploy.md).

    python -m scripts.train_two_tower --data-dir data --every 3600 --follow --catalogue --reload
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from scripts.train_triplet import keep_heartbeat
from shared.config import Settings
from shared.data.split import chronological_split
from shared.events import InvalidEvent, parse
from shared.faiss_client import FaissClient
from shared.kafka import ensure_topics, make_consumer, make_producer, poll_batches
from shared.logs import setup_logging
from shared.model.cli import add_source_arguments, add_training_arguments
from shared.model.triplet_refresh import StreamLog, run_periodically
from shared.model.two_tower_cli import (
    add_two_tower_arguments,
    catalogue_vectors,
    load_with_items,
    train_two_tower,
    two_tower_config,
)
from shared.model.two_tower_refresh import (
    NewItemVectors,
    TwoTowerRefresh,
    end_offsets,
    merged_metadata,
)
from shared.model.two_tower_snapshot import SPACE, save_two_tower, space_dir
from shared.spaces import space_topic
from shared.startup import settings_for_parser
from shared.storage import mongo

FOLLOW_BATCH = 500
FOLLOW_WAIT_S = 0.5


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.train_two_tower", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(p)
    add_training_arguments(p, settings)
    add_two_tower_arguments(p)
    out = p.add_argument_group("output")
    out.add_argument("--models-dir", type=Path, default=settings.model.models_dir,
                     help=f"snapshot root; the two-tower snapshots go to its spaces/two_tower/ folder "
                          f"(default: RECSYS_MODELS_DIR = {settings.model.models_dir})")
    out.add_argument("--keep", type=int, default=settings.trainer.snapshots_kept,
                     help="two-tower snapshots kept after writing (default: "
                          f"RECSYS_TRAINER_SNAPSHOTS_KEPT = {settings.trainer.snapshots_kept})")
    fresh = p.add_argument_group("kept fresh")
    fresh.add_argument("--every", type=float, default=0.0,
                       help="re-train every this many seconds and swap the space (default: 0, "
                            "train once)")
    fresh.add_argument("--follow", action="store_true",
                       help="tail the interactions topic: its events join every re-train")
    fresh.add_argument("--from-start", action="store_true",
                       help="with --follow: read the topic from the oldest event it retains, so "
                            "a restarted service re-trains on the same log as before")
    fresh.add_argument("--heartbeat-file", type=Path, default=None,
                       help="touched every few seconds while the service and its follower run "
                            "(a container healthcheck reads its age; default: none)")
    fresh.add_argument("--catalogue", action="store_true",
                       help="embed every item of MongoDB's catalogue too (PUT /items)")
    fresh.add_argument("--reload", action="store_true",
                       help="ask faiss_app (RECSYS_FAISS_URL) to load each new snapshot")
    return p


def run(args: argparse.Namespace) -> int:
    frame, items, items_source = load_with_items(args)
    prefix, _ = chronological_split(frame, args.train_fraction)
    metadata = {str(r["item_id"]): r for r in items.to_dict("records")} if items is not None else {}
    config = two_tower_config(args)
    encoder, fit, size = train_two_tower(prefix, metadata, config)
    ids, vectors = catalogue_vectors(encoder, prefix, metadata)
    metrics = {"epochs_run": fit.epochs_run, "best_epoch": fit.best_epoch,
               "best_val_recall@10": fit.best_recall, "train_seconds": round(fit.seconds, 2),
               "train_events": len(prefix), "items_source": items_source, **size}
    version = save_two_tower(args.models_dir, encoder.weights, encoder.space,
                             encoder.known_items, encoder.known_users, ids, vectors,
                             config={k: v for k, v in vars(config).items() if k != "progress"},
                             metrics=metrics, keep=args.keep)
    print(f"two-tower: {fit.epochs_run} epochs (best {fit.best_epoch}, validation recall@10 "
          f"{fit.best_recall}) in {fit.seconds:.1f}s; {size['parameters']} parameters "
          f"({size['bytes_float32'] / 2**20:.1f} MiB float32)")
    print(f"snapshot {version} with {len(ids)} item vectors written to "
          f"{space_dir(args.models_dir)}")
    return 0


def follow(settings: Settings, stream: StreamLog, publisher: NewItemVectors,
           stop: threading.Event, from_start: bool = False) -> None:
    """Append the interactions topic's events to ``stream`` until ``stop``; items they carry
    with metadata that the space does not hold get their vector at once."""
    consumer = make_consumer(settings.kafka, f"two-tower-refresh-{uuid.uuid4().hex[:8]}",
                             **{"auto.offset.reset": "earliest" if from_start else "latest"})
    consumer.subscribe([settings.kafka.interactions_topic])
    try:
        for batch in poll_batches(consumer, FOLLOW_BATCH, FOLLOW_WAIT_S, stop):
            events = []
            for message in batch:
                try:
                    events.append(parse(message.value()))
                except InvalidEvent:
                    continue  # the trainer dead-letters these; nothing to learn here
            carried = stream.add(events)
            if carried:
                publisher.publish_new(carried)
    finally:
        consumer.close()


def catalogue_items(settings: Settings) -> dict[str, Mapping[str, Any]]:
    """Every item of MongoDB's catalogue with its fields (PUT /items writes there)."""
    db = mongo.connect(settings.mongo)
    try:
        return {str(doc.pop("_id")): doc for doc in db[mongo.ITEMS].find({})}
    finally:
        db.client.close()


def refresher(args: argparse.Namespace, settings: Settings, stream: StreamLog
              ) -> TwoTowerRefresh:
    """The periodic re-train over the file, the followed events and the catalogue."""
    topic = space_topic(settings.kafka.item_vectors_topic, SPACE)
    faiss = FaissClient(settings.faiss.url, max(settings.faiss.timeout_s, 30.0),
                        admin_token=settings.faiss.admin_token, space=SPACE)

    def inputs() -> tuple[pd.DataFrame, dict[str, Mapping[str, Any]]]:
        frame, items, _ = load_with_items(args)
        prefix, _ = chronological_split(frame, args.train_fraction)
        log, items = stream.merged(prefix, items)
        records = {str(r["item_id"]): r for r in items.to_dict("records")} if items is not None else {}
        return log, merged_metadata(records, catalogue_items(settings) if args.catalogue else {})

    return TwoTowerRefresh(
        inputs, lambda: end_offsets(settings.kafka, topic), two_tower_config(args),
        args.models_dir, args.keep,
        faiss.reload if args.reload else None)


def keep_fresh(args: argparse.Namespace, settings: Settings) -> int:
    """Train now, then every ``--every`` seconds until SIGTERM / Ctrl-C."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stream = StreamLog()
    refresh = refresher(args, settings, stream)
    workers: list[threading.Thread] = []
    if args.heartbeat_file is not None:
        # beats while the process (the re-trains run in it) and its follower are alive
        threading.Thread(target=keep_heartbeat, args=(args.heartbeat_file, workers, stop),
                         daemon=True).start()  # fmt: skip
    publisher: NewItemVectors | None = None

    def once() -> None:
        nonlocal publisher
        done = refresh.run_once()
        print(f"two-tower space {done.version}: {done.items} items, {done.epochs_run} epochs "
              f"in {done.train_seconds:.1f}s{', reloaded' if done.reloaded else ''}", flush=True)
        if publisher is None:
            topic = space_topic(settings.kafka.item_vectors_topic, SPACE)
            publisher = NewItemVectors(make_producer(settings.kafka), topic, done)
        else:
            publisher.use(done)

    try:
        once()
        if args.follow and publisher is not None:
            ensure_topics(settings.kafka, spaces=[SPACE])
            workers.append(threading.Thread(target=follow, daemon=True, args=(
                settings, stream, publisher, stop, args.from_start)))
            workers[0].start()
        run_periodically(once, args.every, stop)
    except KeyboardInterrupt:
        stop.set()
        print("train_two_tower: interrupted; the space is the last one reported above",
              file=sys.stderr)
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    settings = settings_for_parser("train_two_tower", argv)
    args = build_parser(settings).parse_args(argv)
    setup_logging("train_two_tower")
    try:
        if args.every > 0:
            return keep_fresh(args, settings)
        return run(args)
    except KeyboardInterrupt:
        print("train_two_tower: interrupted; the two-tower LATEST is unchanged", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as exc:
        print(f"train_two_tower: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
