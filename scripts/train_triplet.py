"""Train the triplet item-to-item embedding and write the faiss_app ``triplet`` space.

    python -m scripts.train_triplet --data-dir data                  # once (initial training)
    python -m scripts.train_triplet --data-dir data --every 3600 --follow --reload

Once: read the interactions (the same loaders as every script) and item metadata, train with
early stopping on each user's held-out last item, and write ``<models-dir>/spaces/triplet/``
(its LATEST switches atomically); catalogue items with metadata but no events get
feature-only vectors. ``--reload`` then tells faiss_app to load it (RECSYS_FAISS_URL,
RECSYS_FAISS_ADMIN_TOKEN); a running faiss_app also picks it up at its next start.

Kept fresh (shared/model/triplet_refresh.py says why re-training rather than incremental):
``--follow`` tails the ``interactions`` topic: an item the space does not hold that arrives
with metadata gets a feature-only vector on ``item-vectors.triplet`` at once, and every event
joins the log of the next re-train; ``--every S`` re-trains every S seconds and swaps the
space (snapshot, then reload). Ctrl-C or SIGTERM stops cleanly between batches; a training
cut short writes nothing. docker-compose runs it as the ``triplet-trainer`` service
(``--follow --from-start --every S --reload --heartbeat-file F``; docs/deploy.md).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import uuid
from pathlib import Path

from confluent_kafka import Consumer

from shared.config import Settings
from shared.events import InvalidEvent, parse
from shared.faiss_client import FaissClient, FaissError
from shared.kafka import ensure_topics, make_consumer, make_producer, poll_batches
from shared.logs import setup_logging
from shared.model.cli import add_source_arguments, load_source
from shared.model.triplet_cli import add_triplet_arguments, triplet_config
from shared.model.triplet_refresh import (
    NewItemPublisher,
    StreamLog,
    TrainingStopped,
    run_periodically,
    train_space,
)
from shared.model.triplet_space import TRIPLET_SPACE, TripletSpace
from shared.startup import settings_for_parser

log = logging.getLogger("train_triplet")
FOLLOW_BATCH = 500
FOLLOW_WAIT_S = 0.5
HEARTBEAT_S = 5.0


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.train_triplet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(p)
    add_triplet_arguments(p)
    out = p.add_argument_group("output and freshness")
    out.add_argument("--models-dir", type=Path, default=settings.model.models_dir,
                     help=f"snapshot root; the space goes to <models-dir>/spaces/triplet "
                          f"(default: RECSYS_MODELS_DIR = {settings.model.models_dir})")
    out.add_argument("--keep", type=int, default=settings.trainer.snapshots_kept,
                     help=f"versions of the space kept (default: "
                          f"{settings.trainer.snapshots_kept})")
    out.add_argument("--reload", action="store_true",
                     help="ask faiss_app (RECSYS_FAISS_URL) to load each new snapshot")
    out.add_argument("--follow", action="store_true",
                     help="tail the interactions topic: vectors for new items at once, their "
                          "events into the next re-train (default: off)")
    out.add_argument("--every", type=float, default=0.0,
                     help="re-train every this many seconds (default: 0 = train once; with "
                          "--follow and 0, follow without re-training)")
    out.add_argument("--from-start", action="store_true",
                     help="with --follow: read the interactions topic from the oldest event "
                          "it retains, not only new ones, so a restarted service re-trains on "
                          "the same log as before (Kafka's retention bounds it)")
    out.add_argument("--heartbeat-file", type=Path, default=None,
                     help="touched every few seconds while the service and its threads run "
                          "(a container healthcheck reads its age; default: none)")
    return p


def keep_heartbeat(path: Path, threads: list[threading.Thread], stop: threading.Event) -> None:
    """Touch ``path`` every HEARTBEAT_S until ``stop`` or until one of ``threads`` has died
    (then the file ages and the healthcheck reports the service unhealthy)."""
    while not stop.is_set() and all(t.is_alive() for t in threads):
        try:
            path.touch()
        except OSError as exc:
            log.warning("cannot touch the heartbeat file %s: %s", path, exc)
        stop.wait(HEARTBEAT_S)


def follow_stream(
    consumer: Consumer, publisher: NewItemPublisher, stream: StreamLog, stop: threading.Event
) -> None:
    """Apply the interactions topic to ``stream`` and ``publisher`` until ``stop``."""
    for batch in poll_batches(consumer, FOLLOW_BATCH, FOLLOW_WAIT_S, stop):
        events = []
        for msg in batch:
            try:
                events.append(parse(msg.value()))
            except InvalidEvent:
                continue  # the trainer dead-letters these; nothing to learn here
        carried = stream.add(events)
        if carried:
            publisher.publish_new(carried)


def main(argv: list[str] | None = None) -> int:
    settings = settings_for_parser("train_triplet", argv)
    args = build_parser(settings).parse_args(argv)
    setup_logging("train_triplet")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    config = triplet_config(args)
    faiss = FaissClient(settings.faiss.url, max(settings.faiss.timeout_s, 30.0),
                        admin_token=settings.faiss.admin_token, space=TRIPLET_SPACE)
    stream = StreamLog()

    def train_and_swap() -> TripletSpace:
        frame, items = load_source(args)
        frame, items = stream.merged(frame, items)
        space, summary = train_space(frame, items, config, args.models_dir, args.keep, stop)
        print(f"triplet space {space.version}: {len(space.item_ids)} items, "
              f"{summary['epochs_run']} epochs (best {summary['best_epoch']}, validation "
              f"HR@10 {summary['best_hit_rate']}) in {summary['seconds']:.1f}s", flush=True)
        if args.reload:
            try:
                faiss.reload(space.version)
            except FaissError as exc:
                log.warning("faiss_app did not reload the triplet space: %s", exc)
        return space

    workers: list[threading.Thread] = []
    if args.heartbeat_file is not None:
        # Started before the first training, which can take minutes: the process is alive
        # while it trains; afterwards the beat also needs the follow / re-train threads.
        threading.Thread(target=keep_heartbeat, args=(args.heartbeat_file, workers, stop),
                         daemon=True).start()  # fmt: skip
    try:
        space = train_and_swap()
        if not args.follow and not args.every:
            return 0
        publisher = NewItemPublisher(space, settings.kafka, make_producer(settings.kafka))
        threads = []
        if args.follow:
            ensure_topics(settings.kafka, spaces=[TRIPLET_SPACE])
            start = "earliest" if args.from_start else "latest"
            consumer = make_consumer(settings.kafka, f"triplet-refresh-{uuid.uuid4().hex[:8]}",
                                     **{"auto.offset.reset": start})  # fmt: skip
            consumer.subscribe([settings.kafka.interactions_topic])
            threads.append(threading.Thread(
                target=follow_stream, args=(consumer, publisher, stream, stop), daemon=True))  # fmt: skip
        if args.every:
            threads.append(threading.Thread(
                target=run_periodically,
                args=(lambda: publisher.use(train_and_swap()), args.every, stop), daemon=True))  # fmt: skip
        for thread in threads:
            thread.start()
        workers.extend(threads)
        while not stop.wait(0.5):
            if not all(t.is_alive() for t in threads):
                log.error("a follow / re-train thread ended; stopping so the service restarts")
                stop.set()
                return 1
        for thread in threads:
            thread.join(timeout=30)
        return 0
    except (KeyboardInterrupt, TrainingStopped):
        stop.set()
        print("train_triplet: interrupted; the space's LATEST is unchanged unless a snapshot "
              "was reported above", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as exc:
        print(f"train_triplet: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
