"""Benchmark the incremental trainer end to end on the local stack.

    python -m scripts.bench_trainer                       # everything in a temporary folder
    python -m scripts.bench_trainer --events 60000 --probes 60

1. Starts a local stack (Tansu, nx-27017, Valkey: scripts.localstack) in a temporary folder,
   generates a synthetic catalogue and stream (shared.data.synthetic), batch-trains GMF on the
   first --train-fraction of it (the start scripts.initial_training gives production), writes
   the snapshot, seeds Redis ``popular`` from that prefix, and starts faiss_app under gunicorn.
2. Throughput and prequential quality: the rest of the stream is produced to ``interactions``
   first, then the trainer (the service's own Trainer, in this process) consumes it with
   publishing on (MongoDB, Redis, item-vectors). Reports sustained events/s and the moving
   window recall@10 of the model against the streaming-popularity baseline, per batch.
3. Freshness: with the trainer caught up, --probes events each introduce a new user and a new
   item; the time from produce to the user's vector in MongoDB and to the item in faiss_app
   (GET /v1/similar answers 200) is measured, p50 and p95.

Writes reports/bench_trainer.md, .json and .png (matplotlib, Agg). The MongoDB here is
nx-27017 over SQLite (about 3 ms per upserted document), which bounds events/s: say so when
quoting the figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests
import torch
from tqdm import tqdm

from scripts import localstack
from scripts.processes import ProcessGroup
from services.incremental_trainer.service import Trainer
from shared.config import Settings
from shared.data.split import chronological_split
from shared.data.synthetic import SyntheticConfig, generate
from shared.events import EVENT_WEIGHTS, Interaction
from shared.kafka import (
    ensure_topics,
    flush_or_raise,
    make_producer,
    produce_blocking,
    wait_for_topics,
)
from shared.logs import setup_logging
from shared.metrics import Metrics
from shared.model.checkpoint import save_snapshot
from shared.model.offline import train, unique_pairs
from shared.model.training import TrainConfig
from shared.storage import mongo, redis_store

log = logging.getLogger("bench_trainer")
ROOT = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scripts.bench_trainer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--users", type=int, default=2000, help="synthetic users (default: 2000)")
    p.add_argument("--items", type=int, default=1000, help="synthetic items (default: 1000)")
    p.add_argument(
        "--events",
        type=int,
        default=60000,
        help="synthetic events in total, prefix + stream (default: 60000)",
    )
    p.add_argument(
        "--train-fraction",
        type=float,
        default=0.6,
        help="share of the events the batch model is trained on (default: 0.6)",
    )
    p.add_argument("--epochs", type=int, default=15, help="batch-training epochs (default: 15)")
    p.add_argument("--embedding-dim", type=int, default=32, help="embedding width (default: 32)")
    p.add_argument(
        "--batch-max-events",
        type=int,
        default=512,
        help="trainer micro-batch size bound (default: 512)",
    )
    p.add_argument(
        "--batch-max-ms",
        type=int,
        default=200,
        help="trainer micro-batch time bound in ms (default: 200)",
    )
    p.add_argument(
        "--eval-sample-rate",
        type=float,
        default=0.2,
        help="share of events evaluated prequentially (default: 0.2)",
    )
    p.add_argument(
        "--probes",
        type=int,
        default=40,
        help="freshness probes, one new user and item each (default: 40)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("reports"),
        help="folder for bench_trainer.md/.json/.png (default: reports)",
    )
    p.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def prepare(args: argparse.Namespace, settings: Settings) -> tuple[list[Interaction], int]:
    """Data, batch-trained snapshot, Redis popularity; returns the stream and its length."""
    frame, _ = generate(
        SyntheticConfig(
            n_users=args.users, n_items=args.items, n_events=args.events, seed=args.seed
        )
    )
    prefix, stream = chronological_split(frame, args.train_fraction)
    pairs = unique_pairs(prefix)
    model_settings = settings.model
    log.info("batch training on %d events (%d pairs)", len(prefix), len(pairs))
    trained = train(
        pairs,
        np.arange(len(pairs)),
        model_settings,
        TrainConfig(epochs=args.epochs, seed=args.seed, progress=not args.no_progress),
    )
    save_snapshot(
        model_settings.models_dir,
        trained.model,
        trained.user_map,
        trained.item_map,
        offsets={},
        keep=settings.trainer.snapshots_kept,
    )
    from scripts.initial_training import seed_popularity

    seed_popularity(
        redis_store.connect(settings.redis), prefix, settings.redis.popularity_half_life_s
    )
    events = [
        Interaction(str(u), str(i), str(e), int(t))
        for u, i, e, t in stream[["user_id", "item_id", "event", "ts"]].itertuples(index=False)
    ]
    return events, len(events)


def produce_all(settings: Settings, events: list[Interaction], progress: bool) -> None:
    producer = make_producer(settings.kafka, **{"linger.ms": 20})
    topic = settings.kafka.interactions_topic
    for event in tqdm(events, desc="produce", unit="ev", disable=not progress):
        produce_blocking(producer, topic, event.user_id.encode(), event.to_bytes())
        producer.poll(0)
    flush_or_raise(producer, 30.0)


def run_stream(trainer: Trainer, total: int, progress: bool) -> tuple[float, list[dict[str, Any]]]:
    """Run the trainer until it has learned ``total`` events; returns (seconds, curve)."""
    curve: list[dict[str, Any]] = []
    process = trainer.process
    bar = tqdm(total=total, desc="train", unit="ev", disable=not progress)
    first: list[float] = []

    def recorded(batch: list) -> Any:
        if not first:
            first.append(time.perf_counter())
        result = process(batch)
        bar.update(len(batch))
        figures = trainer.learner.evaluator.figures().as_dict()
        curve.append({"events": trainer.counters["events"], **figures})
        return result

    trainer.process = recorded  # type: ignore[method-assign]
    thread = threading.Thread(target=trainer.run, name="trainer", daemon=True)
    thread.start()
    while trainer.counters["events"] + trainer.counters["dlq"] < total:
        if not thread.is_alive():
            raise RuntimeError("the trainer stopped early; see the log")
        time.sleep(0.05)
    seconds = time.perf_counter() - first[0]
    bar.close()
    trainer.process = process  # type: ignore[method-assign]
    return seconds, curve


def freshness(
    settings: Settings,
    trainer: Trainer,
    faiss_url: str,
    probes: int,
    item_for_user: str,
    progress: bool,
) -> dict[str, list[float]]:
    """Produce → visible in MongoDB (user vector) and in faiss_app (new item), in ms."""
    db = mongo.connect(settings.mongo)
    producer = make_producer(settings.kafka, **{"linger.ms": 0})
    session = requests.Session()
    out: dict[str, list[float]] = {"mongo_ms": [], "faiss_ms": []}
    for n in tqdm(range(probes), desc="freshness", unit="probe", disable=not progress):
        user_id, item_id = f"probe-user-{n}", f"probe-item-{n}"
        events = [
            Interaction(user_id, item_for_user, "click", int(time.time() * 1000)),
            Interaction(f"probe-buyer-{n}", item_id, "view", int(time.time() * 1000)),
        ]
        started = time.perf_counter()
        for event in events:
            producer.produce(
                settings.kafka.interactions_topic,
                key=event.user_id.encode(),
                value=event.to_bytes(),
            )
        producer.flush(5)
        seen_mongo = seen_faiss = None
        deadline = started + 30
        while (seen_mongo is None or seen_faiss is None) and time.perf_counter() < deadline:
            now = time.perf_counter()
            if seen_mongo is None and db[mongo.USERS].find_one({"_id": user_id}, {"_id": 1}):
                seen_mongo = now
            if seen_faiss is None:
                params: dict[str, str | int] = {"item_id": item_id, "k": 1}
                answer = session.get(f"{faiss_url}/v1/similar", params=params, timeout=1)
                if answer.status_code == 200:
                    seen_faiss = now
            time.sleep(0.002)
        if seen_mongo is not None:
            out["mongo_ms"].append((seen_mongo - started) * 1000)
        if seen_faiss is not None:
            out["faiss_ms"].append((seen_faiss - started) * 1000)
        time.sleep(0.05)
    return out


def plot(curve: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [c["events"] for c in curve]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(xs, [c["recall_at_k"] for c in curve], label="GMF + ISGD (incremental)")
    ax.plot(xs, [c["popularity_recall_at_k"] for c in curve], label="streaming popularity")
    ax.set_xlabel("stream events learned")
    ax.set_ylabel("prequential recall@10 (cumulative)")
    ax.set_title("Prequential recall@10: incremental trainer vs streaming popularity")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(args: argparse.Namespace, figures: dict[str, Any], out: Path) -> str:
    f = figures
    lines = [
        "# Incremental trainer benchmark",
        "",
        f"Command: `python -m scripts.bench_trainer {' '.join(f['argv'])}`".rstrip(),
        "",
        f"Local stack (Tansu Kafka, nx-27017 MongoDB over SQLite, Valkey), faiss_app under "
        f"gunicorn; {f['cpus']} CPU cores shared with other work. Stream: {f['stream_events']} "
        f"synthetic events after batch training on {f['prefix_events']}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| sustained throughput, publishing on | {f['events_per_s']:.0f} events/s "
        f"({f['stream_events']} events in {f['stream_seconds']:.1f} s) |",
        f"| freshness to MongoDB (user vector), p50 / p95 | {f['mongo_p50']:.0f} / "
        f"{f['mongo_p95']:.0f} ms ({f['probes_mongo']} probes) |",
        f"| freshness to faiss_app (new item searchable), p50 / p95 | {f['faiss_p50']:.0f} / "
        f"{f['faiss_p95']:.0f} ms ({f['probes_faiss']} probes) |",
        f"| prequential recall@10, GMF + ISGD | {f['recall']:.4f} |",
        f"| prequential recall@10, streaming popularity | {f['popularity_recall']:.4f} |",
        f"| prequential precision@10, GMF + ISGD / popularity | {f['recall'] / 10:.4f} / "
        f"{f['popularity_recall'] / 10:.4f} |",
        f"| events tested (sample rate {args.eval_sample_rate}) | {f['tested']} |",
        "",
        "Recall figures are over all tested events of the stream (same events for both "
        "rankers; items the user already engaged with are excluded for both).",
        "",
        "![prequential recall](bench_trainer.png)",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("bench_trainer", "WARNING")
    torch.set_num_threads(1)
    progress = not args.no_progress
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        tmp_dir = Path(tmp)
        info = localstack.start(tmp_dir / "stack")
        try:
            env = {
                **info.env(),
                "RECSYS_MODELS_DIR": str(tmp_dir / "models"),
                "RECSYS_STATSD_ENABLED": "false",
                "RECSYS_EMBEDDING_DIM": str(args.embedding_dim),
                "RECSYS_TRAINER_BATCH_MAX_EVENTS": str(args.batch_max_events),
                "RECSYS_TRAINER_BATCH_MAX_MS": str(args.batch_max_ms),
                "RECSYS_TRAINER_EVAL_SAMPLE_RATE": str(args.eval_sample_rate),
                "RECSYS_TRAINER_EVAL_WINDOW": "1000000",
                "RECSYS_FAISS_PORT": str(localstack.free_port()),
            }
            settings = Settings.from_env(env)
            ensure_topics(settings.kafka)
            wait_for_topics(
                settings.kafka,
                [settings.kafka.interactions_topic, settings.kafka.item_vectors_topic],
            )
            events, total = prepare(args, settings)
            with ProcessGroup({**os.environ, **env}, tmp_dir / "logs") as group:
                faiss = group.gunicorn(
                    "faiss_app",
                    "services.faiss_app.wsgi:app",
                    settings.faiss.port,
                    workers=1,
                    config=ROOT / "services/faiss_app/gunicorn.conf.py",
                )
                faiss_url = f"http://127.0.0.1:{settings.faiss.port}"
                faiss.wait_http(f"{faiss_url}/readyz", timeout_s=60)
                produce_all(settings, events, progress)
                trainer = Trainer(settings, metrics=Metrics(settings.statsd))
                seconds, curve = run_stream(trainer, total, progress)
                probes = freshness(
                    settings, trainer, faiss_url, args.probes, events[-1].item_id, progress
                )
                trainer.stop.set()
                time.sleep(0.5)
        finally:
            localstack.stop(tmp_dir / "stack")
    last = curve[-1]
    tested = max(1, last["tested"])
    figures = {
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "cpus": len(os.sched_getaffinity(0)),
        "prefix_events": args.events - total,
        "stream_events": total,
        "stream_seconds": seconds,
        "events_per_s": total / seconds,
        "mongo_p50": _percentile(probes["mongo_ms"], 50),
        "mongo_p95": _percentile(probes["mongo_ms"], 95),
        "faiss_p50": _percentile(probes["faiss_ms"], 50),
        "faiss_p95": _percentile(probes["faiss_ms"], 95),
        "probes_mongo": len(probes["mongo_ms"]),
        "probes_faiss": len(probes["faiss_ms"]),
        "recall": last["model_hits"] / tested,
        "popularity_recall": last["popularity_hits"] / tested,
        "tested": last["tested"],
        "event_weights": dict(EVENT_WEIGHTS),
        "curve": curve,
    }
    (args.out / "bench_trainer.json").write_text(json.dumps(figures, indent=1))
    plot(curve, args.out / "bench_trainer.png")
    text = report(args, figures, args.out)
    (args.out / "bench_trainer.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
