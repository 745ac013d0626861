"""`make demo`: bring up the local stack and prove each server with a real round trip.

    python -m scripts.demo            # stack on free ports, three round trips, then stop
    python -m scripts.demo --keep     # leave the stack running (stop with `make stack-down`)
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from scripts import localstack
from shared.config import Settings
from shared.events import Interaction
from shared.kafka import ensure_topics, flush_or_raise, make_consumer, make_producer, poll_batches
from shared.storage import mongo, redis_store


def kafka_round_trip(settings: Settings) -> str:
    ensure_topics(settings.kafka)
    event = Interaction("demo-user", "demo-item", "click", int(time.time() * 1000))
    producer = make_producer(settings.kafka)
    started = time.perf_counter()
    producer.produce(settings.kafka.interactions_topic, key=event.user_id, value=event.to_bytes())
    flush_or_raise(producer, 10)
    consumer = make_consumer(settings.kafka, f"demo-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([settings.kafka.interactions_topic])
    stop = threading.Event()
    deadline = time.monotonic() + 30
    try:
        for batch in poll_batches(consumer, 100, 0.2, stop):
            for msg in batch:
                if msg.value() == event.to_bytes():
                    elapsed = time.perf_counter() - started
                    return f"produced and consumed {json.loads(msg.value())} in {elapsed:.2f}s"
            if time.monotonic() > deadline:
                stop.set()
    finally:
        consumer.close()
    raise RuntimeError("the demo event never came back from Kafka")


def mongo_round_trip(settings: Settings) -> str:
    db = mongo.connect(settings.mongo)
    mongo.ensure_indexes(db)
    mongo.upsert_user_vectors(db, [("demo-user", np.ones(4, np.float32), 1)], "demo")
    doc = mongo.get_user(db, "demo-user")
    return f"users.find_one -> query_vector={doc['query_vector']} n_events={doc['n_events']}"


def redis_round_trip(settings: Settings) -> str:
    r = redis_store.connect(settings.redis)
    redis_store.put_item_metadata(r, [{"item_id": "demo-item", "title": "Demo lamp"}])
    redis_store.bump_popularity(r, {"demo-item": 2.0}, int(time.time() * 1000), 3600)
    return (
        f"item:demo-item -> {redis_store.get_item_metadata(r, ['demo-item'])['demo-item']}, "
        f"popular -> {redis_store.top_popular(r, 1)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(".stack"),
                        help="stack data folder (default: .stack)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the stack running at the end (default: stop it)")
    args = parser.parse_args(argv)

    print("starting the local stack (Tansu Kafka, nx-27017 MongoDB, Valkey Redis) ...")
    try:
        info = localstack.start(args.data_dir)
    except localstack.StackError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    try:
        settings = Settings.from_env(info.env())
        print(f"  kafka {info.kafka_bootstrap}  mongo {info.mongo_uri}  redis {info.redis_url}")
        print("kafka:", kafka_round_trip(settings))
        print("mongo:", mongo_round_trip(settings))
        print("redis:", redis_round_trip(settings))
    except KeyboardInterrupt:
        print("interrupted")
    finally:
        if not args.keep:
            localstack.stop(args.data_dir)
            print("stack stopped")
        else:
            print(f"stack left running; stop it with: python -m scripts.stack down "
                  f"--data-dir {args.data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
