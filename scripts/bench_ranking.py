"""What the ranking stage costs one /recommend request, stage by stage.

    python -m scripts.bench_ranking
    python -m scripts.bench_ranking --requests 5000 --no-redis

Feeds the synthetic stream (scripts.generate_data defaults) through the trainer's signal code
into an in-memory store and, unless --no-redis, into the Redis of a private local stack (as the
trainer does), then ranks for users picked from the stream the way the recommender does: a
GMF answer of RECSYS_RANKING_GMF_CANDIDATES items (faiss_app's part, not timed here), the other
sources, features, the linear ranker and the rerank. Times, per request: the whole ranking stage
with the in-memory store (pure CPU), its parts, and the whole stage on Redis (one co-engagement
round trip; the global lists come from the in-process cache as in the service). Writes
reports/bench_ranking.json and .md with the machine's load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from scripts import localstack
from services.incremental_trainer.offline import interactions
from shared.config import Settings
from shared.data.synthetic import SyntheticConfig, generate
from shared.events import Interaction
from shared.ranking.candidates import (
    CandidateSource,
    UserContext,
    stream_sources,
)
from shared.ranking.pipeline import RankingPipeline, candidates_per_source
from shared.ranking.ranker import LinearRanker
from shared.ranking.rerank import RerankRules, rerank
from shared.ranking.signals import RecentItems, signal_batch
from shared.ranking.stores import MemoryRankingStore, RankingStore, store_limits
from shared.storage import ranking_store, redis_store

REPO = Path(__file__).resolve().parents[1]
BATCH = 256
Hit = tuple[str, float]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.bench_ranking", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=2000,
                   help="ranked requests timed per variant (default: 2000)")
    p.add_argument("--no-redis", action="store_true",
                   help="skip the Redis variant (no local stack started)")
    p.add_argument("--report-dir", type=Path, default=REPO / "reports",
                   help="where bench_ranking.json/.md go (default: reports/)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    return p


def sources_for(store: RankingStore, gmf: dict[str, list[Hit]]) -> list[CandidateSource]:
    return stream_sources(lambda user, n: gmf[user.user_id or ""][:n], store)


def percentiles(values_ms: list[float]) -> dict[str, float]:
    data = np.asarray(values_ms)
    return {"p50_ms": round(float(np.percentile(data, 50)), 4),
            "p99_ms": round(float(np.percentile(data, 99)), 4),
            "mean_ms": round(float(data.mean()), 4)}


def time_pipeline(pipeline: RankingPipeline, users: list[UserContext], now_ms: int,
                  label: str) -> list[float]:
    timings = []
    for user in tqdm(users, desc=label, unit="req", mininterval=1.0):
        started = time.perf_counter()
        pipeline.rank(user, 10, now_ms)
        timings.append((time.perf_counter() - started) * 1000.0)
    return timings


def time_parts(pipeline: RankingPipeline, ranker: LinearRanker, users: list[UserContext],
               now_ms: int) -> dict[str, list[float]]:
    parts: dict[str, list[float]] = {"gather": [], "features": [], "score": [], "rerank": []}
    candidates = []
    for user in users:
        t0 = time.perf_counter()
        gathered = pipeline.gather(user)
        t1 = time.perf_counter()
        pool = pipeline.pool(user, gathered, now_ms)
        t2 = time.perf_counter()
        scores = ranker.scores(pool.features)
        t3 = time.perf_counter()
        rerank(pool.item_ids, scores, user.seen, {}, RerankRules(10))
        t4 = time.perf_counter()
        for name, (a, b) in zip(parts, ((t0, t1), (t1, t2), (t2, t3), (t3, t4)), strict=True):
            parts[name].append((b - a) * 1000.0)
        candidates.append(len(pool.item_ids))
    parts["candidates"] = [float(c) for c in candidates]
    return parts


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    limits = store_limits(settings.ranking, settings.redis.popularity_half_life_s)
    frame, _ = generate(SyntheticConfig())
    events = interactions(frame)
    rng = np.random.default_rng(args.seed)
    memory = MemoryRankingStore(limits)
    recent = RecentItems()
    history: dict[str, deque[str]] = {}
    seen_items: set[str] = set()
    batches = []
    for start in range(0, len(events), BATCH):
        chunk: list[Interaction] = events[start:start + BATCH]
        fresh = {e.item_id for e in chunk} - seen_items
        seen_items |= fresh
        batch = signal_batch(chunk, recent, fresh.__contains__)
        memory.apply(batch)
        batches.append(batch)
        for e in chunk:
            history.setdefault(e.user_id, deque(maxlen=settings.redis.seen_list_length)
                               ).appendleft(e.item_id)
    catalogue = sorted(seen_items)
    user_ids = [str(u) for u in rng.choice(sorted(history), args.requests)]
    users = [UserContext.of(u, list(history[u])) for u in user_ids]
    n_gmf = settings.ranking.gmf_candidates
    gmf = {u: [(str(i), float(s)) for i, s in zip(
        rng.choice(catalogue, n_gmf, replace=False), np.sort(rng.random(n_gmf))[::-1],
        strict=True)] for u in set(user_ids)}
    now_ms = events[-1].ts
    per_source = candidates_per_source(settings.ranking)

    pipeline = RankingPipeline(sources_for(memory, gmf), memory, lambda: ranker, per_source)
    ranker = LinearRanker(pipeline.names)
    time_pipeline(pipeline, users[:200], now_ms, "warm-up")
    results: dict[str, Any] = {"memory_total": percentiles(
        time_pipeline(pipeline, users, now_ms, "in-memory"))}
    parts = time_parts(pipeline, ranker, users, now_ms)
    results["memory_parts"] = {name: percentiles(v) for name, v in parts.items()
                               if name != "candidates"}
    results["candidates_per_request"] = round(float(np.mean(parts["candidates"])), 1)

    if not args.no_redis:
        with tempfile.TemporaryDirectory() as folder:
            info = localstack.start(Path(folder), metrics=False)
            try:
                r = redis_store.connect(
                    Settings.from_env({**os.environ, **info.env()}).redis)
                for batch in tqdm(batches, desc="to Redis", unit="batch", mininterval=1.0):
                    ranking_store.write_signals(r, batch, limits)
                    redis_store.bump_popularity(r, batch.engagement, batch.ts_ms,
                                                limits.popular_half_life_s)
                served = ranking_store.RedisRankingStore(r, limits.list_length,
                                                         settings.ranking.lists_cache_s)
                on_redis = RankingPipeline(sources_for(served, gmf), served, lambda: ranker,
                                           per_source)
                time_pipeline(on_redis, users[:200], now_ms, "warm-up")
                results["redis_total"] = percentiles(
                    time_pipeline(on_redis, users, now_ms, "on Redis"))
                started = time.perf_counter()
                for user in users:
                    served.neighbours(user.recent[:3], per_source["co_engagement"])
                results["redis_co_engagement_round_trip_mean_ms"] = round(
                    (time.perf_counter() - started) * 1000.0 / len(users), 4)
                r.close()
            finally:
                localstack.stop(Path(folder))
    report = {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "requests": args.requests,
        "gmf_candidates": n_gmf,
        "results": results,
    }
    args.report_dir.mkdir(parents=True, exist_ok=True)
    (args.report_dir / "bench_ranking.json").write_text(json.dumps(report, indent=2))
    (args.report_dir / "bench_ranking.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def markdown(report: dict[str, Any]) -> str:
    res = report["results"]
    lines = [
        "# Ranking stage cost per /recommend request (scripts.bench_ranking)",
        "",
        f"{report['at']}, {report['cpus']} CPUs, load average {report['load_average']} "
        f"(other work on the machine), {report['requests']} requests, "
        f"{res['candidates_per_request']} candidates per request on average.",
        "",
        "| what | p50 ms | p99 ms | mean ms |",
        "|---|---:|---:|---:|",
    ]
    rows = [("whole stage, in-memory store (CPU only)", res["memory_total"])]
    rows += [(f"  {name}", v) for name, v in res["memory_parts"].items()]
    if "redis_total" in res:
        rows.append(("whole stage on Redis (co-engagement round trip, cached lists)",
                     res["redis_total"]))
    for name, v in rows:
        lines.append(f"| {name} | {v['p50_ms']} | {v['p99_ms']} | {v['mean_ms']} |")
    if "redis_co_engagement_round_trip_mean_ms" in res:
        lines += ["", "Co-engagement read alone (one pipelined round trip): mean "
                  f"{res['redis_co_engagement_round_trip_mean_ms']} ms."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
