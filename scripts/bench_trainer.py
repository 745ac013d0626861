"""Benchmark the incremental trainer: learner alone, one trainer and two trainers end to end.

    python -m scripts.bench_trainer                        # 250k events, 20k users, 5k items
    python -m scripts.bench_trainer --events 60000 --users 4000 --items 2000 --skip-two

1. Starts a local stack (Tansu, nx-27017, Valkey: scripts.localstack) in a temporary folder,
   generates a synthetic catalogue and stream (shared.data.synthetic), batch-trains GMF on the
   first --train-fraction, writes the snapshot, seeds Redis ``popular``, starts faiss_app.
2. Learner alone: the service's Learner replays the stream in micro-batches, no I/O
   (evaluation sampled at --eval-sample-rate); the sequential reference learner on the same
   stream (--sequential-events).
3. One trainer end to end: the stream is produced to ``interactions`` first, then one trainer
   process (``python -m services.incremental_trainer``) drains it with MongoDB (write-behind),
   Redis and item-vector publishing on; events/s from its status file, lag back to 0, the share
   of each stage, and a py-spy profile of the trainer process while it drains.
4. Freshness at half the target rate: a producer sends --half-rate events/s (batching up to
   --load-linger-ms, see ``scripts.bench_broker`` for why it matters on the local broker) while
   probes each introduce a new user and a new item; time from produce to the user's query
   vector in Redis (what the recommender serves) and in MongoDB, and to the item in faiss_app,
   p50 and p95.
5. Two trainers: the same stream on fresh topics, two trainer processes in one group
   (RECSYS_TRAINER_SHARE_ITEMS); total events/s and prequential recall@10 against one trainer.

Writes reports/bench_trainer.md and .json. The MongoDB here is nx-27017 over SQLite; the
machine is shared: the load average is reported beside every figure.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests
from pymongo.errors import PyMongoError
from tqdm import tqdm

from scripts import localstack, process_cpu
from scripts.processes import ProcessGroup
from services.incremental_trainer.learner import Learner, ModelState
from services.incremental_trainer.offline import interactions, warm_start
from services.incremental_trainer.sequential import SequentialLearner
from shared.config import Settings
from shared.data.split import chronological_split
from shared.data.synthetic import SyntheticConfig, generate
from shared.events import Interaction
from shared.gc_tuning import freeze_startup_heap
from shared.kafka import (
    ensure_topics,
    flush_or_raise,
    make_producer,
    produce_blocking,
    wait_for_topics,
)
from shared.logs import setup_logging
from shared.model.checkpoint import save_snapshot
from shared.model.offline import train, unique_pairs
from shared.model.training import TrainConfig
from shared.storage import mongo, redis_store
from shared.threads import one_math_thread

log = logging.getLogger("bench_trainer")
ROOT = Path(__file__).resolve().parents[1]
TARGET_LEARNER = 50_000
TARGET_TRAINER = 20_000
REDIS_DB = {"one": 1, "two": 2}
PROBE_TIMEOUT_S = 10.0  # a probe not visible by then counts as missing


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scripts.bench_trainer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--users", type=int, default=20000, help="synthetic users (default: 20000)")
    p.add_argument("--items", type=int, default=5000, help="synthetic items (default: 5000)")
    p.add_argument(
        "--events", type=int, default=250000, help="events in total, prefix + stream (250000)"
    )
    p.add_argument(
        "--train-fraction",
        type=float,
        default=0.2,
        help="share of the events the batch model is trained on (default: 0.2)",
    )
    p.add_argument("--epochs", type=int, default=5, help="batch-training epochs (default: 5)")
    p.add_argument("--embedding-dim", type=int, default=32, help="embedding width (default: 32)")
    p.add_argument("--batch-max-events", type=int, default=512, help="micro-batch bound (512)")
    p.add_argument("--batch-max-ms", type=int, default=200, help="micro-batch time bound (200)")
    p.add_argument(
        "--eval-sample-rate", type=float, default=0.2, help="prequential sample rate (0.2)"
    )
    p.add_argument(
        "--half-rate",
        type=float,
        default=TARGET_TRAINER / 2,
        help="events/s produced during the freshness probes (default: 10000)",
    )
    p.add_argument(
        "--load-linger-ms",
        type=int,
        default=100,
        help="linger of the producer of --half-rate (default: 100; the local broker's fetches "
        "cost in proportion to the batches a partition holds: scripts.bench_broker)",
    )
    p.add_argument("--probes", type=int, default=40, help="freshness probes (default: 40)")
    p.add_argument("--skip-two", action="store_true", help="skip the two-trainer run")
    p.add_argument(
        "--sequential-events",
        type=int,
        default=0,
        help="events the sequential reference learner replays (0 = the whole stream, the "
        "default: on a 20,000-event prefix the ~2,900 tested events leave about ±4%% of noise "
        "on recall, more than the 3%% the comparison is about)",
    )
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    p.add_argument("--out", type=Path, default=Path("reports"), help="report folder (reports)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--logs", type=Path, default=None, help="copy the trainer and faiss_app logs here"
    )
    return p


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _load() -> float:
    return os.getloadavg()[0]


# ------------------------------------------------------------------ data and the batch model
def prepare(args: argparse.Namespace, settings: Settings) -> tuple[pd.DataFrame, list[Interaction]]:
    """Data, batch-trained snapshot, Redis popularity; returns the prefix and the stream."""
    frame, _ = generate(
        SyntheticConfig(
            n_users=args.users, n_items=args.items, n_events=args.events, seed=args.seed
        )
    )
    prefix, stream = chronological_split(frame, args.train_fraction)
    pairs = unique_pairs(prefix)
    log.warning("batch training on %d events (%d pairs)", len(prefix), len(pairs))
    trained = train(
        pairs,
        np.arange(len(pairs)),
        settings.model,
        TrainConfig(epochs=args.epochs, seed=args.seed, progress=not args.no_progress),
    )
    save_snapshot(
        settings.model.models_dir, trained.model, trained.user_map, trained.item_map, offsets={}
    )
    from scripts.initial_training import seed_popularity

    seed_popularity(
        redis_store.connect(settings.redis), prefix, settings.redis.popularity_half_life_s
    )
    return prefix, interactions(stream)


# ------------------------------------------------------------------ 2. learner alone
def learner_alone(
    args: argparse.Namespace, settings: Settings, prefix: pd.DataFrame, events: list[Interaction]
) -> dict[str, Any]:
    """The service's Learner over the stream, no I/O; the sequential reference on the
    first ``--sequential-events`` (all by default)."""
    out: dict[str, Any] = {}
    base = ModelState.load_or_create(settings.model)
    n_sequential = min(len(events), args.sequential_events or len(events))
    runs: list[tuple[str, Any, list[Interaction]]] = [("vectorized", Learner, events)]
    if n_sequential < len(events):  # the vectorized recall on the same events as sequential's
        runs.append(("vectorized_prefix", Learner, events[:n_sequential]))
    runs.append(("sequential", SequentialLearner, events[:n_sequential]))
    for name, kind, stream in runs:
        state = copy.deepcopy(base)
        learner = kind(state, settings.trainer, settings.redis.popularity_half_life_s, 0)
        warm_start(learner, prefix)
        load = _load()
        wall, cpu = time.perf_counter(), time.process_time()
        step = args.batch_max_events
        for start in range(0, len(stream), step):
            learner.learn(stream[start : start + step])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        figures = learner.evaluator
        out[name] = {
            "events": len(stream),
            "seconds": wall,
            "cpu_seconds": cpu,
            "events_per_s": len(stream) / wall,
            "events_per_cpu_s": len(stream) / cpu,
            "tested": figures.tested,
            "recall": figures.model_hits / max(1, figures.tested),
            "popularity_recall": figures.popularity_hits / max(1, figures.tested),
            "load_avg": load,
        }
        log.warning("learner %s: %s", name, out[name])
    out.setdefault("vectorized_prefix", out["vectorized"])
    return out


# ------------------------------------------------------------------ Kafka helpers
def produce_all(settings: Settings, events: list[Interaction], progress: bool) -> None:
    producer = make_producer(settings.kafka, **{"linger.ms": 20})
    topic = settings.kafka.interactions_topic
    for event in tqdm(events, desc="produce", unit="ev", disable=not progress):
        produce_blocking(producer, topic, event.user_id.encode(), event.to_bytes())
        producer.poll(0)
    flush_or_raise(producer, 60.0)


def _status(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def start_trainer(env: dict[str, str], status: Path, log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "services.incremental_trainer"],
            cwd=ROOT,
            env={**env, "RECSYS_TRAINER_STATUS_FILE": str(status)},
            stdout=subprocess.DEVNULL,
            stderr=handle,
        )


def stop_trainer(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def drain(
    statuses: list[Path],
    total: int,
    procs: list[subprocess.Popen],
    progress: bool,
    cpu_roots: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Wait until the trainers' positions cover ``total`` events; events/s from first to last,
    and the CPU seconds of ``cpu_roots`` (name → pid, with descendants) over the same span."""
    bar = tqdm(total=total, desc="train", unit="ev", disable=not progress)
    roots = cpu_roots or {}
    cpu_before = process_cpu.sample(roots)
    first_at: float | None = None
    first_events = 0
    done = 0
    loads = []
    while True:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError("a trainer stopped early; see its log")
        now = time.perf_counter()
        states = [_status(s) for s in statuses]
        events = sum(int(s.get("events", 0)) for s in states)
        # A partition that moved appears in both statuses: count it once, at its furthest.
        furthest: dict[str, int] = {}
        for s in states:
            for part, offset in s.get("positions", {}).items():
                furthest[part] = max(furthest.get(part, 0), int(offset))
        positions = sum(furthest.values())
        if events and first_at is None:
            first_at, first_events = now, events
            cpu_before = process_cpu.sample(roots)
        bar.update(events - done)
        done = events
        loads.append(_load())
        if positions >= total and events >= total:
            break
        time.sleep(0.1)
    cpu = process_cpu.used(cpu_before, process_cpu.sample(roots))
    bar.close()
    seconds = time.perf_counter() - (first_at or time.perf_counter())
    return {
        "events": total,
        "seconds": seconds,
        # the first status sample already held first_events: time them from there
        "events_per_s": (total - first_events) / max(seconds, 1e-9),
        "load_avg": float(np.mean(loads)),
        "statuses": [_status(s) for s in statuses],
        "cpu_s": cpu,
    }


def redis_command_costs(r: Any, top: int = 8) -> list[dict[str, Any]]:
    """The Redis server's own time by command since the last ``CONFIG RESETSTAT``, costliest
    first (``INFO commandstats``; a script's inner calls count under their own names too)."""
    stats = r.info("commandstats")
    rows = [
        {"command": name.removeprefix("cmdstat_"), "calls": int(s["calls"]),
         "usec": int(s["usec"]), "usec_per_call": float(s["usec_per_call"])}
        for name, s in stats.items()
    ]  # fmt: skip
    return sorted(rows, key=lambda row: -row["usec"])[:top]


def py_spy(pid: int, seconds: float, out: Path) -> dict[str, Any]:
    """Sample ``pid`` with py-spy; returns the top functions by own time and per stage."""
    raw = out.with_suffix(".txt")
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "50"]
    # --gil: only the thread holding the GIL is sampled, so the shares are of the process's
    # Python work (a thread waiting for Redis or MongoDB is not counted as busy).
    command += ["--format", "raw", "--output", str(raw), "--nonblocking", "--threads", "--gil"]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=seconds + 30)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": str(exc)}
    own: Counter[str] = Counter()
    stage: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1].split(" (")[0]] += count
        stage[_stage_of(frames)] += count
    return {
        "samples": total,
        "top_own": [(name, round(100 * n / total, 1)) for name, n in own.most_common(15)],
        "stages": {k: round(100 * n / max(total, 1), 1) for k, n in stage.most_common()},
    }


_STAGE_MARKERS = (  # first match wins; frames read "function (file:line)"
    ("user_writer.py", "mongo write-behind (own thread)"),
    ("before_learning", "rank_train: the online ranker's sampled training"),
    ("queue_signals", "ranking_signals: co-engagement, trending, new items"),
    ("redis_writer.py", "redis: pipeline thread (packing, replies)"),
    ("_test_batch", "evaluate"),
    ("update_batch", "learn: ISGD arithmetic"),
    ("_learn_chunk", "learn: bookkeeping"),
    ("_load_seen", "redis: seen lists of new users"),
    ("publisher.py", "redis/kafka: publishing"),
    ("publish_items", "kafka: item vectors out"),
    ("shared_items.py", "kafka: item vectors in"),
    ("snapshot", "snapshot"),
    ("consume", "kafka: consume"),
    ("parse", "parse"),
    ("process (", "trainer: batch bookkeeping"),
)


def _stage_of(frames: list[str]) -> str:
    for marker, name in _STAGE_MARKERS:
        if any(marker in frame for frame in frames):
            return name
    return "other (idle threads, librdkafka, status)"


# ------------------------------------------------------------------ 4. freshness
def _mongo_has(db: Any, user_id: str) -> bool:
    """Whether ``users`` holds the user; a store too busy to answer in time counts as no."""
    try:
        return db[mongo.USERS].find_one({"_id": user_id}, {"_id": 1}) is not None
    except PyMongoError:
        return False


def freshness(
    settings: Settings,
    faiss_url: str,
    background: list[Interaction],
    rate: float,
    linger_ms: int,
    probes: int,
    item_for_user: str,
    progress: bool,
    status: Path,
    cpu_roots: dict[str, int] | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    """Produce ``rate`` events/s in the background (batched up to ``linger_ms``); per probe,
    produce → visible (ms).

    Also how fast the trainer learned meanwhile and the lag it had at the end (its status),
    the CPU seconds of ``cpu_roots`` over the probes (``bench`` is this process: the background
    producer and the probes), and with ``profile`` a py-spy profile of the trainer meanwhile.
    """
    stop = threading.Event()
    sent = [0]
    # The load generator shares the cores with what it measures: each event is a template
    # encoded once (the bytes Interaction.to_bytes writes, the timestamp filled in per send),
    # so producing costs a few µs per event instead of building and encoding an Interaction.
    stamp = 9_999_999_999_999
    templates = [
        (e.user_id.encode(), Interaction(e.user_id, e.item_id, e.event, stamp).to_bytes())
        for e in background
    ]
    marker = str(stamp).encode()
    assert all(t.count(marker) == 1 for _, t in templates)
    templates = [(k, t.replace(marker, b"%d")) for k, t in templates]

    def stream() -> None:
        producer = make_producer(settings.kafka, **{"linger.ms": linger_ms})
        produce, topic = producer.produce, settings.kafka.interactions_topic
        started = time.perf_counter()
        n = 0
        while not stop.is_set():
            due = int((time.perf_counter() - started) * rate)
            now_ms = int(time.time() * 1000)
            while n < due and not stop.is_set():
                key, template = templates[n % len(templates)]
                try:
                    produce(topic, key=key, value=template % now_ms)
                except BufferError:  # local queue full: serve delivery reports, then retry
                    producer.poll(0.05)
                    continue
                n += 1
            producer.poll(0)
            time.sleep(0.005)
        sent[0] = n
        producer.flush(10)

    thread = threading.Thread(target=stream, daemon=True)
    started, began = time.perf_counter(), time.time()
    learned_before = int(_status(status).get("events", 0))
    status_before = _status(status)
    positions_before = sum(int(o) for o in status_before.get("positions", {}).values())
    thread.start()
    time.sleep(3.0)  # let the rate settle before probing
    roots = {**(cpu_roots or {}), "bench": os.getpid()}
    cpu_before = process_cpu.sample(roots)
    profiled: dict[str, Any] = {}
    profiler = None
    if profile is not None and "trainer" in roots:
        profiler = threading.Thread(
            target=lambda: profiled.update(py_spy(roots["trainer"], 8, profile)), daemon=True
        )
        profiler.start()
    r = redis_store.connect(settings.redis)
    db = mongo.connect(settings.mongo)
    producer = make_producer(settings.kafka, **{"linger.ms": 0})
    session = requests.Session()
    out: dict[str, list[float]] = {"redis_ms": [], "mongo_ms": [], "faiss_ms": []}
    # When each probe was sent (s since the probes began) and what it saw: a slow probe can
    # be set beside the trainer's snapshots (their start and duration) on one time line.
    timeline: list[dict[str, Any]] = []
    snapshots: dict[str, dict[str, Any]] = {}
    try:
        for n in tqdm(range(probes), desc="freshness", unit="probe", disable=not progress):
            user_id, item_id = f"probe-user-{n}", f"probe-item-{n}"
            events = [
                Interaction(user_id, item_for_user, "click", int(time.time() * 1000)),
                Interaction(f"probe-buyer-{n}", item_id, "view", int(time.time() * 1000)),
            ]
            t0 = time.perf_counter()
            for event in events:
                producer.produce(
                    settings.kafka.interactions_topic,
                    key=event.user_id.encode(),
                    value=event.to_bytes(),
                )
            producer.flush(5)
            seen: dict[str, float] = {}
            deadline = t0 + PROBE_TIMEOUT_S
            turn = 0
            while len(seen) < 3 and time.perf_counter() < deadline:
                # Every 10 ms (±10 ms on a figure of ~1 s); MongoDB, not a target, every 100 ms:
                # the probes share the cores with the trainer they measure.
                time.sleep(0.01)
                turn += 1
                now = time.perf_counter()
                if "redis_ms" not in seen and r.exists(redis_store.query_key(user_id)):
                    seen["redis_ms"] = now
                if "mongo_ms" not in seen and turn % 10 == 0 and _mongo_has(db, user_id):
                    seen["mongo_ms"] = now
                if "faiss_ms" not in seen:
                    params: dict[str, str | int] = {"item_id": item_id, "k": 1}
                    try:
                        answer = session.get(f"{faiss_url}/v1/similar", params=params, timeout=1)
                    except requests.RequestException:
                        continue
                    if answer.status_code == 200:
                        seen["faiss_ms"] = now
            for key, at in seen.items():
                out[key].append((at - t0) * 1000)
            timeline.append(
                {"sent_s": round(t0 - started, 2),
                 **{k: round((at - t0) * 1000) for k, at in seen.items()}}
            )  # fmt: skip
            last = _status(status).get("last_snapshot") or {}
            if last.get("at"):
                snapshots[str(last.get("version"))] = last
            time.sleep(0.2)
    finally:
        cpu = process_cpu.used(cpu_before, process_cpu.sample(roots))
        stop.set()
        thread.join(15)
        if profiler is not None:
            profiler.join(60)
    elapsed = time.perf_counter() - started
    end = _status(status)
    return {
        "trainer_events_per_s": (int(end.get("events", 0)) - learned_before) / elapsed,
        # events produced meanwhile and not learned when the probes ended
        "lag_end": positions_before + sent[0] + 2 * probes
        - sum(int(o) for o in end.get("positions", {}).values()),
        "seconds": elapsed,
        **{k: v for k, v in out.items()},
        "rate_target": rate,
        "load_linger_ms": linger_ms,
        "rate_produced": sent[0] / elapsed,
        "probes": probes,
        "timeline": timeline,
        # the trainer's stage seconds over the probes (where its loop's time went meanwhile)
        "stages": {
            k: round(float(v) - float(status_before.get("stage_s", {}).get(k, 0.0)), 2)
            for k, v in end.get("stage_s", {}).items()
        },
        "cpu_s": cpu,
        "profile": profiled,
        # start (s since the probes began) and duration of each snapshot taken meanwhile
        "snapshots": [
            {"at_s": round(float(s["at"]) - float(s.get("ms") or 0) / 1000 - began, 2),
             "ms": s.get("ms"), "reason": s.get("reason")}
            for s in snapshots.values() if float(s["at"]) >= began
        ],
    }


# ------------------------------------------------------------------ report
def _stage_shares(status: dict[str, Any]) -> dict[str, float]:
    stages = dict(status.get("stage_s", {}))
    return {k: float(v) for k, v in stages.items()}


def _per_cpu_s(run: dict[str, Any], names: tuple[str, ...]) -> str:
    """Events per CPU-second of the named processes (what the code needs, whatever else ran)."""
    cpu = sum(float(run.get("cpu_s", {}).get(n, 0.0)) for n in names)
    return f"{run['events'] / cpu:.0f} ev/s ({cpu:.1f} CPU-s)" if cpu else "n/a"


def report(args: argparse.Namespace, f: dict[str, Any]) -> str:
    one, alone = f["one"], f["learner"]
    vec, seq = alone["vectorized"], alone["sequential"]
    lines = [
        "# Incremental trainer benchmark",
        "",
        f"Command: `python -m scripts.bench_trainer {' '.join(f['argv'])}`".rstrip(),
        "",
        f"Local stack (Tansu Kafka, nx-27017 MongoDB over SQLite, Valkey), faiss_app under "
        f"gunicorn, {f['cpus']} CPU cores **shared with other work** (1-min load average beside "
        f"each figure). Stream: {f['stream_events']} synthetic events over {args.users} users "
        f"and {args.items} items after batch training on {f['prefix_events']}; micro-batches "
        f"of {args.batch_max_events}, evaluation sampled at {args.eval_sample_rate}.",
        "",
        "| figure | value | target | load avg |",
        "|---|---|---|---|",
        f"| learner alone (vectorized), wall | {vec['events_per_s']:.0f} ev/s | ≥ "
        f"{TARGET_LEARNER} | {vec['load_avg']:.1f} |",
        f"| learner alone (vectorized), per CPU-second | {vec['events_per_cpu_s']:.0f} ev/s | | |",
        f"| learner alone (sequential reference, first {seq['events']} events) | "
        f"{seq['events_per_s']:.0f} ev/s | | {seq['load_avg']:.1f} |",
        f"| one trainer end to end from Kafka, all stores on | {one['events_per_s']:.0f} ev/s "
        f"({one['events']} events in {one['seconds']:.1f} s) | ≥ {TARGET_TRAINER} | "
        f"{one['load_avg']:.1f} |",
        f"| one trainer end to end, per CPU-second of the trainer process (all its threads) | "
        f"{_per_cpu_s(one, ('trainer',))} | | |",
        f"| lag at the end / MongoDB users owed at the end | {one['lag_end']} / "
        f"{one['users_backlog_end']} (drained {one['users_drain_s']:.1f} s later) | 0 | |",
    ]
    if "two" in f:
        two = f["two"]
        lines.append(
            f"| two trainers in one group, total | {two['events_per_s']:.0f} ev/s "
            f"({two['seconds']:.1f} s) | reported | {two['load_avg']:.1f} |"
        )
        lines.append(
            f"| two trainers, per CPU-second of the two trainer processes | "
            f"{_per_cpu_s(two, ('trainer a', 'trainer b'))} | | |"
        )
        lines.append(
            f"| prequential recall@10: one trainer / two trainers | {one['recall']:.4f} / "
            f"{two['recall']:.4f} ({100 * (two['recall'] / one['recall'] - 1):+.1f}%) | "
            f"within 5% | |"
        )
    fr = f["freshness"]
    lines += [
        f"| freshness p50 / p95, user query vector in Redis (served) | "
        f"{_percentile(fr['redis_ms'], 50):.0f} / {_percentile(fr['redis_ms'], 95):.0f} ms "
        f"({len(fr['redis_ms'])}/{fr['probes']} probes) | p95 ≤ 1000 | {fr['load_avg']:.1f} |",
        f"| freshness p50 / p95, new item searchable in faiss_app | "
        f"{_percentile(fr['faiss_ms'], 50):.0f} / {_percentile(fr['faiss_ms'], 95):.0f} ms "
        f"({len(fr['faiss_ms'])}/{fr['probes']} probes) | p95 ≤ 1000 | |",
        f"| freshness p50 / p95, user vector in MongoDB (write-behind) | "
        f"{_percentile(fr['mongo_ms'], 50):.0f} / {_percentile(fr['mongo_ms'], 95):.0f} ms "
        f"({len(fr['mongo_ms'])}/{fr['probes']} probes) | | |",
        f"| background rate during the probes / learned by the trainer meanwhile | "
        f"{fr['rate_produced']:.0f} / {fr['trainer_events_per_s']:.0f} ev/s (target "
        f"{fr['rate_target']:.0f}, {fr['seconds']:.0f} s, producer linger "
        f"{fr['load_linger_ms']} ms) | | |",
        f"| prequential recall@10, learner alone, first {seq['events']} events: vectorized / "
        f"sequential | {alone['vectorized_prefix']['recall']:.4f} / {seq['recall']:.4f} "
        f"({100 * (alone['vectorized_prefix']['recall'] / seq['recall'] - 1):+.1f}%; "
        f"{alone['vectorized_prefix']['tested']} / {seq['tested']} tests) | "
        f"within 3% or better | |",
        f"| prequential recall@10, learner alone, whole stream: vectorized | "
        f"{vec['recall']:.4f} ({vec['tested']} tests) | | |",
        f"| prequential recall@10, streaming popularity (learner alone) | "
        f"{vec['popularity_recall']:.4f} | | |",
        "",
        "## Where one trainer's time goes",
        "",
        "Seconds per stage over the drain, from the trainer's status (wall time of the consume "
        "loop: under load it includes waiting for a core). `consume`: Kafka; `evaluate`, "
        "`learn`: the learner; `rank_train`: the online ranker's time-bounded sample; "
        "`ranking_signals`: co-engagement, trending and new items queued on the batch's "
        "pipeline; `redis`: queueing the batch's Redis writes (and waiting when the writer "
        "thread is two batches behind: `redis_wait`); `item_vectors`: Kafka item-vectors out. "
        "Threads beside the loop, overlapping it: `redis_writer` (executing the pipelines), "
        "`mongo` (the write-behind). The rest of the drain is parsing and batch bookkeeping.",
        "",
        "| stage | seconds | share of the drain |",
        "|---|---|---|",
    ]
    for stage, seconds in one["stages"].items():
        lines.append(f"| {stage} | {seconds:.2f} | {100 * seconds / one['seconds']:.0f}% |")
    lines += _cpu_table(one.get("cpu_s", {}), f["cpus"], "the same")
    lines += _redis_lines(one.get("redis_commands", []))
    lines += _profile_lines(one.get("profile", {}), "while it drained")
    lines += [
        "",
        f"## While {fr['rate_target']:.0f} events/s were produced (the freshness probes)",
        "",
        f"The trainer learned {fr['trainer_events_per_s']:.0f} ev/s over {fr['seconds']:.0f} s; "
        f"{fr.get('lag_end', 'n/a')} events produced meanwhile were not learned yet when the "
        "probes ended. Snapshots taken "
        "meanwhile (start in s since the background producer started, duration): "
        + (", ".join(f"{x['at_s']:.0f} s: {x['ms']} ms" for x in fr.get("snapshots", []))
           or "none"),
    ]
    slow = sorted(fr.get("timeline", []), key=lambda t: -max(
        [t.get("redis_ms", PROBE_TIMEOUT_S * 1000), t.get("faiss_ms", PROBE_TIMEOUT_S * 1000)]
    ))[:5]
    if slow:
        lines += ["", "Slowest probes (sent at s; ms until visible, missing = not within "
                  f"{PROBE_TIMEOUT_S:.0f} s): " + "; ".join(
                      f"{t['sent_s']:.0f} s: redis {t.get('redis_ms', 'missing')}, "
                      f"faiss {t.get('faiss_ms', 'missing')}" for t in slow)]
    if fr.get("stages"):
        lines += ["", "The trainer's stage seconds over the probes: " + ", ".join(
            f"{k} {v:.1f}" for k, v in fr["stages"].items())]
    lines += _cpu_table(fr.get("cpu_s", {}), f["cpus"], "the probes'")
    lines += _profile_lines(fr.get("profile", {}), "during the probes")
    lines.append("")
    return "\n".join(lines)


def _cpu_table(cpu_s: dict[str, float], cpus: int, span: str) -> list[str]:
    cpu = dict(cpu_s)
    wall = cpu.pop("wall_s", 0.0)
    if not wall:
        return []
    return [
        "",
        f"CPU seconds of each process over {span} {wall:.1f} s ({cpus} cores = "
        f"{cpus * wall:.1f} CPU-seconds available; `other` is the rest of the machine: "
        "other work on the shared cores):",
        "",
        "| process | CPU seconds | cores busy |",
        "|---|---|---|",
        *[
            f"| {name} | {seconds:.2f} | {seconds / wall:.2f} |"
            for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1])
        ],
    ]


def _redis_lines(commands: list[dict[str, Any]]) -> list[str]:
    if not commands:
        return []
    return [
        "",
        "The Redis server's time by command over the drain (`INFO commandstats`; the calls "
        "inside the trainer's scripts are counted under their own names and again in the "
        "script's total):",
        "",
        "| command | calls | server seconds | µs per call |",
        "|---|---|---|---|",
        *[
            f"| {c['command']} | {c['calls']} | {c['usec'] / 1e6:.2f} | {c['usec_per_call']:.1f} |"
            for c in commands
        ],
    ]


def _profile_lines(prof: dict[str, Any], when: str) -> list[str]:
    if not prof:
        return []
    if not prof.get("stages"):
        return ["", f"py-spy failed: {prof.get('error')}"]
    return [
        "",
        f"py-spy ({prof['samples']} samples of whichever trainer thread held the GIL {when}: "
        "where its Python work goes), share by stage:",
        "",
        "| stage | share of samples |",
        "|---|---|",
        *[f"| {k} | {v}% |" for k, v in prof["stages"].items()],
        "",
        "Top functions by own time: "
        + ", ".join(f"`{name}` {share}%" for name, share in prof["top_own"][:10]),
    ]


# ------------------------------------------------------------------ main
def _settings_env(
    args: argparse.Namespace, info: localstack.StackInfo, tmp: Path, tag: str, faiss_port: int
) -> dict[str, str]:
    return {
        **os.environ,
        **info.env(),
        "RECSYS_MODELS_DIR": str(tmp / f"models-{tag}"),
        "RECSYS_STATSD_ENABLED": "false",
        "RECSYS_EMBEDDING_DIM": str(args.embedding_dim),
        "RECSYS_TRAINER_BATCH_MAX_EVENTS": str(args.batch_max_events),
        "RECSYS_TRAINER_BATCH_MAX_MS": str(args.batch_max_ms),
        "RECSYS_TRAINER_EVAL_SAMPLE_RATE": str(args.eval_sample_rate),
        "RECSYS_TRAINER_EVAL_WINDOW": "1000000",
        "RECSYS_TRAINER_SNAPSHOT_INTERVAL_S": "30",
        "RECSYS_KAFKA_INTERACTIONS_TOPIC": f"interactions-{tag}",
        "RECSYS_KAFKA_DLQ_TOPIC": f"interactions-{tag}.dlq",
        "RECSYS_KAFKA_ITEM_VECTORS_TOPIC": f"item-vectors-{tag}",
        "RECSYS_KAFKA_TRAINER_GROUP": f"trainer-{tag}",
        "RECSYS_MONGO_DATABASE": f"bench_{tag}",
        # Each run its own Redis database: seen lists and popularity left by an earlier run
        # (which also replayed the stream during the freshness probes) would hold the future.
        "RECSYS_REDIS_URL": f"{info.redis_url.rsplit('/', 1)[0]}/{REDIS_DB[tag]}",
        "RECSYS_FAISS_PORT": str(faiss_port),
        "RECSYS_FAISS_URL": f"http://127.0.0.1:{faiss_port}",
        "RECSYS_LOG_LEVEL": "warning",
    }


def _save_partial(out: Path, figures: dict[str, Any]) -> None:
    (out / "bench_trainer.json").write_text(json.dumps(figures, indent=1, default=str))


def _recall(statuses: list[dict[str, Any]]) -> float:
    hits = sum(s["prequential"]["model_hits"] for s in statuses)
    tested = sum(s["prequential"]["tested"] for s in statuses)
    return hits / max(1, tested)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("bench_trainer", "WARNING")
    one_math_thread()
    progress = not args.no_progress
    args.out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "cpus": len(os.sched_getaffinity(0)),
    }
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        tmp_dir = Path(tmp)
        info = localstack.start(tmp_dir / "stack", metrics=False)
        try:
            env = _settings_env(args, info, tmp_dir, "one", localstack.free_port())
            settings = Settings.from_env(env)
            ensure_topics(settings.kafka)
            wait_for_topics(
                settings.kafka,
                [settings.kafka.interactions_topic, settings.kafka.item_vectors_topic],
            )
            prefix, events = prepare(args, settings)
            freeze_startup_heap()  # as the trainer does once its model is loaded
            figures["prefix_events"] = len(prefix)
            figures["stream_events"] = len(events)
            figures["learner"] = learner_alone(args, settings, prefix, events)
            _save_partial(args.out, figures)  # kept if a later phase fails
            batch_snapshot = tmp_dir / "models-batch"
            shutil.copytree(settings.model.models_dir, batch_snapshot)
            with ProcessGroup(env, tmp_dir / "logs") as group:
                faiss = group.gunicorn(
                    "faiss_app",
                    "services.faiss_app.wsgi:app",
                    settings.faiss.port,
                    workers=1,
                    config=ROOT / "services/faiss_app/gunicorn.conf.py",
                )
                faiss_url = f"http://127.0.0.1:{settings.faiss.port}"
                faiss.wait_http(f"{faiss_url}/readyz", timeout_s=120)
                produce_all(settings, events, progress)
                server_redis = redis_store.connect(settings.redis)
                server_redis.config_resetstat()  # its command statistics cover the drain only
                status = tmp_dir / "one.json"
                trainer = start_trainer(env, status, tmp_dir / "one.log")
                try:
                    profile: dict[str, Any] = {}
                    if not args.no_profile:
                        # Profile the middle of the drain (started once the trainer learns).
                        def profile_it() -> None:
                            while _status(status).get("events", 0) == 0 and trainer.poll() is None:
                                time.sleep(0.1)
                            profile.update(py_spy(trainer.pid, 8, tmp_dir / "profile"))

                        profiler = threading.Thread(target=profile_it, daemon=True)
                        profiler.start()
                    roots = {"trainer": trainer.pid, "faiss_app": faiss.pid, **info.pids}
                    one = drain([status], len(events), [trainer], progress, roots)
                    one["redis_commands"] = redis_command_costs(server_redis)
                    if not args.no_profile:
                        profiler.join(60)
                    time.sleep(1.5)  # one status period: lag and backlog as of the end
                    end = _status(status)
                    drained_at = time.perf_counter()
                    while (
                        _status(status).get("users_backlog", 0)
                        and time.perf_counter() - drained_at < 300
                    ):
                        time.sleep(0.5)
                    positions = sum(int(o) for o in end.get("positions", {}).values())
                    one.update(
                        lag_end=len(events) - positions,  # the status's own lag is sampled
                        users_backlog_end=end.get("users_backlog"),
                        users_drain_s=time.perf_counter() - drained_at,
                        stages=_stage_shares(one["statuses"][0]),
                        recall=_recall([end]),
                        profile=profile,
                    )
                    one.pop("statuses")
                    figures["one"] = one
                    _save_partial(args.out, figures)  # kept if a later phase fails
                    fr = freshness(
                        settings,
                        faiss_url,
                        events,
                        args.half_rate,
                        args.load_linger_ms,
                        args.probes,
                        events[-1].item_id,
                        progress,
                        status,
                        roots,
                        None if args.no_profile else tmp_dir / "profile-freshness",
                    )
                    fr["load_avg"] = _load()
                    figures["freshness"] = fr
                finally:
                    stop_trainer(trainer)
                    if args.logs is not None:
                        args.logs.mkdir(parents=True, exist_ok=True)
                        for log_file in [tmp_dir / "one.log", *(tmp_dir / "logs").glob("*")]:
                            if log_file.is_file():
                                shutil.copy(log_file, args.logs / log_file.name)
            if not args.skip_two:
                env2 = _settings_env(args, info, tmp_dir, "two", localstack.free_port())
                settings2 = Settings.from_env({**env2, "RECSYS_TRAINER_SHARE_ITEMS": "true"})
                env2["RECSYS_TRAINER_SHARE_ITEMS"] = "true"
                shutil.copytree(batch_snapshot, settings2.model.models_dir)
                from scripts.initial_training import seed_popularity

                seed_popularity(
                    redis_store.connect(settings2.redis),
                    prefix,
                    settings2.redis.popularity_half_life_s,
                )
                ensure_topics(settings2.kafka)
                wait_for_topics(settings2.kafka, [settings2.kafka.interactions_topic])
                produce_all(settings2, events, progress)
                statuses = [tmp_dir / "two-a.json", tmp_dir / "two-b.json"]
                procs = [start_trainer(env2, s, tmp_dir / f"{s.stem}.log") for s in statuses]
                try:
                    roots = {f"trainer {n}": p.pid for n, p in zip("ab", procs, strict=True)}
                    two = drain(statuses, len(events), procs, progress, {**roots, **info.pids})
                    two["recall"] = _recall(two.pop("statuses"))
                    figures["two"] = two
                finally:
                    for proc in procs:
                        stop_trainer(proc)
        finally:
            localstack.stop(tmp_dir / "stack")
    (args.out / "bench_trainer.json").write_text(json.dumps(figures, indent=1, default=str))
    text = report(args, figures)
    (args.out / "bench_trainer.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
