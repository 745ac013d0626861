"""Benchmark faiss_app's index layer: latency, throughput, recall@10 and memory.

For each size × dimension × index type it builds :class:`services.faiss_app.index.VectorIndex`
(the code the service runs) over clustered synthetic vectors, then measures

- single-query latency (p50, p99) and batched latency (p50, p99 per batch) and queries/s;
- recall@10 against the exact index (IndexFlatIP) on the same queries;
- memory: index bytes per vector (faiss' own size of the structure) and the process RSS delta.

The exact index is always measured first at each size and dimension (its answers are the
ground truth). Builds run in chunks with a progress bar; one that passes --max-build-seconds
is abandoned and reported as such (with the rate it reached), never silently dropped.

``--space triplet`` measures the item-to-item space instead of the GMF one, through the code
faiss_app serves it with: a :class:`services.faiss_app.catalog.Catalog` built from unit-length
vectors with the space's index type (``ivf``: IndexParams.for_size, nlist 4·√n by default),
queried with ``Catalog.search`` (read lock, FAISS search with one OpenMP thread, dead rows
filtered, ids mapped) one query at a time. Each row reports that serving call and the bare
FAISS search beside it (where the time goes), and again after ``--dead-fraction`` of the items
were deleted (the post-search filter). The exact answers come from ``faiss.knn`` (cached with
the data in ``--cache-dir``: at 10M they take minutes). ``--nprobes`` measures one build at
several nprobe values (a search-time knob), to find the smallest that keeps recall@10 ≥ 0.95.
HTTP is not included (bench_api measures faiss_app's HTTP layer against a bare Falcon app).

Example: python -m scripts.bench_faiss --sizes 1000000 --dims 32,64
         python -m scripts.bench_faiss --space triplet --sizes 10000000 --dims 32 \
             --types ivf --nprobes 8,16,32,64
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm import tqdm

from services.faiss_app.catalog import Catalog
from services.faiss_app.index import FLAT, IVF, IndexParams, VectorIndex
from shared.config import FaissSettings
from shared.item_vectors import ItemVectorUpdate

ADD_CHUNK = 50_000


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def clustered(n: int, dim: int, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """float32 (n, dim) around ``n_clusters`` Gaussian centres of varied spread, plus a
    bias-like last component (popularity), generated in chunks to bound peak memory."""
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    spread = rng.uniform(0.2, 0.7, size=n_clusters).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 1_000_000):
        stop = min(n, start + 1_000_000)
        which = rng.integers(0, n_clusters, stop - start)
        noise = rng.standard_normal(size=(stop - start, dim), dtype=np.float32)
        out[start:stop] = centres[which] + spread[which, None] * noise
    out[:, -1] = rng.normal(0.0, 0.5, size=n).astype(np.float32)
    return out


def queries_like(items: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Queries near random items (users near the clusters they engage with), with the last
    component 1.0 as in the serving contract."""
    rows = rng.integers(0, len(items), count)
    q = items[rows] + 0.3 * rng.standard_normal(size=(count, items.shape[1]), dtype=np.float32)
    q[:, -1] = 1.0
    return np.ascontiguousarray(q, dtype=np.float32)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in place (chunked: 10M rows fit twice in memory at most)."""
    for start in range(0, len(vectors), 1_000_000):
        chunk = vectors[start : start + 1_000_000]
        chunk /= np.maximum(np.linalg.norm(chunk, axis=1, keepdims=True), 1e-12)
    return vectors


def space_data(
    space: str, n: int, dim: int, clusters: int, queries: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(items, queries) of the GMF space (bias component, query last component 1.0) or of the
    triplet space (both unit length: cosine)."""
    items = clustered(n, dim, clusters, rng)
    if space == "gmf":
        return items, queries_like(items, queries, rng)
    items = unit_rows(items)
    return items, unit_rows(queries_like(items, queries, rng))


def percentiles_ms(samples: list[float]) -> tuple[float, float]:
    arr = np.asarray(samples) * 1000.0
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def build(
    params: IndexParams, items: np.ndarray, max_build_s: float, label: str
) -> tuple[VectorIndex | None, float, float, int]:
    """(index or None if abandoned, train seconds, add seconds, vectors added)."""
    started = time.perf_counter()
    index = VectorIndex.create(params, items)
    trained = time.perf_counter() - started
    added_at = time.perf_counter()
    with tqdm(total=len(items), desc=f"add {label}", unit="vec", unit_scale=True) as bar:
        for start in range(0, len(items), ADD_CHUNK):
            index.add(items[start : start + ADD_CHUNK])
            bar.update(min(ADD_CHUNK, len(items) - start))
            if time.perf_counter() - started > max_build_s and start + ADD_CHUNK < len(items):
                return None, trained, time.perf_counter() - added_at, index.ntotal
    return index, trained, time.perf_counter() - added_at, index.ntotal


def measure(
    index: VectorIndex,
    queries: np.ndarray,
    k: int,
    batch: int,
    single: int,
    max_latency_s: float,
) -> dict[str, Any]:
    single_times: list[float] = []
    budget_end = time.perf_counter() + max_latency_s
    for row in range(min(single, len(queries))):
        t0 = time.perf_counter()
        index.search(queries[row : row + 1], k)
        single_times.append(time.perf_counter() - t0)
        if time.perf_counter() > budget_end and len(single_times) >= 20:
            break
    batch_times: list[float] = []
    labels = []
    for start in range(0, len(queries), batch):
        t0 = time.perf_counter()
        _, found = index.search(queries[start : start + batch], k)
        batch_times.append(time.perf_counter() - t0)
        labels.append(found)
    s50, s99 = percentiles_ms(single_times)
    b50, b99 = percentiles_ms(batch_times)
    return {
        "single_p50_ms": s50,
        "single_p99_ms": s99,
        "single_queries": len(single_times),
        "single_qps": len(single_times) / sum(single_times),
        "batch_p50_ms": b50,
        "batch_p99_ms": b99,
        "batch_qps": len(queries) / sum(batch_times),
        "labels": np.vstack(labels),
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    faiss.omp_set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    for n in args.sizes:
        for dim in args.dims:
            if args.space == "triplet":
                rows.extend(run_triplet_catalog(args, n, dim))
                continue
            rng = np.random.default_rng(args.seed)
            t0 = time.perf_counter()
            items, queries = space_data(args.space, n, dim, args.clusters, args.queries, rng)
            tqdm.write(f"data n={n:,} dim={dim}: {time.perf_counter() - t0:.1f}s")
            truth: np.ndarray | None = None
            for kind in [FLAT] + [t for t in args.types if t != FLAT]:
                label = f"{kind} n={n:,} d={dim}"
                params = IndexParams(
                    kind,
                    nlist=args.nlist,
                    nprobe=args.nprobe,
                    hnsw_m=args.hnsw_m,
                    ef_search=args.ef_search,
                    ef_construction=args.ef_construction,
                )
                gc.collect()
                rss_before = rss_bytes()
                index, train_s, add_s, added = build(params, items, args.max_build_seconds, label)
                row: dict[str, Any] = {"n": n, "dim": dim, "type": kind, "train_s": train_s}
                if index is None:
                    row.update(
                        status="abandoned",
                        add_s=add_s,
                        added=added,
                        note=f"build passed --max-build-seconds={args.max_build_seconds} "
                        f"after {added:,} vectors ({added / max(add_s, 1e-9):,.0f} vectors/s)",
                    )
                    tqdm.write(f"{label}: abandoned after {train_s + add_s:.0f}s")
                    rows.append(row)
                    gc.collect()
                    continue
                rss_after = rss_bytes()
                index_bytes = faiss.serialize_index(index._index).nbytes if args.exact_bytes else 0
                probes = args.nprobes if kind == IVF and args.nprobes else [index.params.nprobe]
                faiss.omp_set_num_threads(args.search_threads or args.threads)
                for nprobe in probes:
                    index.params = dataclasses.replace(index.params, nprobe=nprobe)
                    stats = measure(
                        index, queries, args.k, args.batch, args.single_queries,
                        args.latency_seconds,
                    )  # fmt: skip
                    found = stats.pop("labels")
                    if kind == FLAT:
                        truth = found
                    probed = dict(row)
                    probed.update(
                        status="ok",
                        space=args.space,
                        params=index.describe(),
                        nprobe=nprobe if kind == IVF else None,
                        add_s=add_s,
                        build_s=train_s + add_s,
                        recall_at_10=_recall(found, truth) if truth is not None else None,
                        rss_delta_bytes=rss_after - rss_before,
                        rss_bytes_per_vector=(rss_after - rss_before) / n,
                        index_bytes_per_vector=index_bytes / n if index_bytes else None,
                        **stats,
                    )
                    rows.append(probed)
                    tqdm.write(_line(probed))
                faiss.omp_set_num_threads(args.threads)
                del index
                gc.collect()
            del items, queries
            gc.collect()
    return [r for r in rows if r["type"] in args.types]


def cached_space_data(
    args: argparse.Namespace, n: int, dim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(items, queries, exact top-k labels of the queries) for the triplet space, from
    ``--cache-dir`` when a run with the same data arguments wrote them there."""
    key = f"{args.space}-n{n}-d{dim}-c{args.clusters}-q{args.queries}-k{args.k}-s{args.seed}"
    folder = args.cache_dir / key if args.cache_dir else None
    if folder is not None and (folder / "truth.npy").exists():
        tqdm.write(f"data and exact answers from {folder}")
        return (np.load(folder / "items.npy"), np.load(folder / "queries.npy"),
                np.load(folder / "truth.npy"))  # fmt: skip
    rng = np.random.default_rng(args.seed)
    items, queries = space_data(args.space, n, dim, args.clusters, args.queries, rng)
    t0 = time.perf_counter()
    truth = np.empty((len(queries), args.k), dtype=np.int64)
    for start in tqdm(range(0, len(queries), 100), desc="exact answers", unit="100q"):
        truth[start : start + 100] = faiss.knn(
            queries[start : start + 100], items, args.k, faiss.METRIC_INNER_PRODUCT
        )[1]
    tqdm.write(f"exact answers for {len(queries)} queries: {time.perf_counter() - t0:.1f}s")
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in (("items", items), ("queries", queries), ("truth", truth)):
            np.save(folder / f"{name}.npy", array)
    return items, queries, truth


def single_query_ms(search: Any, queries: np.ndarray, count: int) -> tuple[float, float, list]:
    """p50 and p99 (ms) of ``search(one query row)`` over the first ``count`` queries, and the
    answers."""
    times, answers = [], []
    for row in range(min(count, len(queries))):
        t0 = time.perf_counter()
        answers.append(search(queries[row : row + 1]))
        times.append(time.perf_counter() - t0)
    p50, p99 = percentiles_ms(times)
    return p50, p99, answers


def run_triplet_catalog(args: argparse.Namespace, n: int, dim: int) -> list[dict[str, Any]]:
    """Build the triplet space as faiss_app does and measure its serving call (module doc)."""
    items, queries, truth = cached_space_data(args, n, dim)
    ids = [str(j) for j in range(n)]
    settings = FaissSettings(ivf_nlist=args.nlist, ivf_nprobe=args.nprobe)
    caps = args.max_codes or [settings.ivf_max_codes]
    rows: list[dict[str, Any]] = []
    for kind in args.types:
        gc.collect()
        rss_before = rss_bytes()
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        catalog = Catalog("bench", ids, items, dim, settings, index_type=kind, normalized=True)
        build_s = time.perf_counter() - started
        rss_after = rss_bytes()
        index = catalog._search
        index_bytes = faiss.serialize_index(index._index).nbytes if args.exact_bytes else 0
        tqdm.write(f"{kind} n={n:,}: built in {build_s:.1f}s ({index.describe()})")
        faiss.omp_set_num_threads(args.search_threads or 1)  # what faiss_app's threads use
        ivf = index.params.kind == IVF
        nprobes = args.nprobes or [index.params.nprobe]  # the build resolved a default (0)
        knobs = [(p, c) for p in nprobes for c in caps] if ivf else [None]
        live = np.ones(n, dtype=bool)
        for dead_fraction in sorted({0.0, args.dead_fraction}):
            if dead_fraction:
                rng = np.random.default_rng(args.seed + 1)
                doomed = rng.choice(n, int(dead_fraction * n), replace=False)
                catalog.apply([ItemVectorUpdate(ids[j], "bench", None) for j in doomed], {})
                live[doomed] = False
            for knob in knobs:
                if knob is not None:
                    index.params = dataclasses.replace(
                        index.params, nprobe=knob[0], max_codes=knob[1]
                    )
                c50, c99, answers = single_query_ms(
                    lambda q, served=catalog.search: served(q, args.k)[0][0],
                    queries,
                    args.single_queries,
                )
                i50, i99, _ = single_query_ms(
                    lambda q, bare=index.search: bare(q, args.k), queries, args.single_queries
                )
                found = [[int(i) for i in answer] for answer in answers]
                row = {
                    "n": n, "dim": dim, "type": index.params.kind, "status": "ok",
                    "space": args.space, "params": index.describe(),
                    "nprobe": index.params.nprobe if ivf else None,
                    "max_codes": index.params.max_codes if ivf else None,
                    "dead_fraction": dead_fraction,
                    "build_s": build_s, "catalog_recall_at_10_sampled": catalog.recall_at_10,
                    "single_p50_ms": c50, "single_p99_ms": c99,
                    "faiss_p50_ms": i50, "faiss_p99_ms": i99,
                    "single_queries": len(found),
                    "recall_at_10": _recall_live(found, truth[: len(found)], live, args.k),
                    "rss_delta_bytes": rss_after - rss_before,
                    "rss_bytes_per_vector": (rss_after - rss_before) / n,
                    "index_bytes_per_vector": index_bytes / n if index_bytes else None,
                    "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                }  # fmt: skip
                rows.append(row)
                tqdm.write(_line(row))
        faiss.omp_set_num_threads(args.threads)
        del catalog, index
        gc.collect()
    return rows


def _recall_live(found: list[list[int]], truth: np.ndarray, live: np.ndarray, k: int) -> float:
    """recall@k against the exact answers among the live items. The cached exact answers hold
    k per query; deleted ones leave the truth shorter than k, so each query's recall is over
    the live part of its exact top k (the IVF answer may rank others in their place)."""
    hits = []
    for answer, exact in zip(found, truth, strict=True):
        kept = [j for j in exact.tolist() if live[j]]
        if kept:
            hits.append(len(set(answer[:k]) & set(kept)) / len(kept))
    return float(np.mean(hits))


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    hits = [len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


COLUMNS = [
    ("n", "items", 0),
    ("dim", "dim", 0),
    ("type", "index", 0),
    ("nprobe", "nprobe", 0),
    ("max_codes", "max codes", 0),
    ("build_s", "build s", 1),
    ("single_p50_ms", "1q p50 ms", 3),
    ("single_p99_ms", "1q p99 ms", 3),
    ("faiss_p50_ms", "faiss p50 ms", 3),
    ("faiss_p99_ms", "faiss p99 ms", 3),
    ("dead_fraction", "dead", 2),
    ("batch_p50_ms", "batch p50 ms", 2),
    ("batch_p99_ms", "batch p99 ms", 2),
    ("batch_qps", "batch q/s", 0),
    ("recall_at_10", "recall@10", 3),
    ("index_bytes_per_vector", "index B/vec", 1),
    ("rss_bytes_per_vector", "RSS B/vec", 1),
]


def _line(row: dict[str, Any]) -> str:
    return " | ".join(f"{title}={_fmt(row.get(key), d)}" for key, title, d in COLUMNS)


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    load = ""
    if "load_avg_1m" in meta:
        start, end = meta["load_avg_1m"]
        load = f" Machine load average (1 min) {start} at start, {end} at end."
    head = "| " + " | ".join(title for _, title, _ in COLUMNS) + " | status |"
    rule = "|" + "---|" * (len(COLUMNS) + 1)
    body = []
    for row in rows:
        cells = [_fmt(row.get(key), d) for key, _, d in COLUMNS]
        status = row["status"] if row["status"] == "ok" else f"{row['status']}: {row['note']}"
        body.append("| " + " | ".join(cells) + f" | {status} |")
    notes = [
        "",
        f"Command: `{meta['command']}`",
        f"Machine: {meta['machine']}, {meta['cpus']} CPUs, faiss {meta['faiss']}, "
        f"{meta['threads']} OpenMP threads ({meta.get('search_threads', meta['threads'])} "
        f"while searching); batch = {meta['batch']} queries; k = {meta['k']}; "
        f"{meta['queries']} queries; clustered data ({meta['clusters']} clusters); "
        f"space {meta.get('space', 'gmf')}." + load,
        "Recall@10 is against the exact IndexFlatIP answers on the same queries. "
        "index B/vec = size of faiss' serialized structure / n; RSS B/vec = process RSS "
        "growth while building / n (includes allocator slack and IVF training buffers).",
    ]
    return "\n".join([head, rule, *body, *notes]) + "\n"


def _int_list(raw: str) -> list[int]:
    return [int(float(x)) for x in raw.split(",") if x]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=_int_list,
        default=[1_000_000, 10_000_000],
        help="comma-separated item counts",
    )
    parser.add_argument(
        "--dims", type=_int_list, default=[32, 64], help="comma-separated vector dimensions"
    )
    parser.add_argument(
        "--types",
        type=lambda s: s.split(","),
        default=["flat", "ivf", "hnsw"],
        help="index types to measure (flat always runs: it is the ground truth)",
    )
    parser.add_argument("--k", type=int, default=10, help="results per query")
    parser.add_argument(
        "--queries", type=int, default=1000, help="queries for batched latency and recall"
    )
    parser.add_argument(
        "--single-queries",
        type=int,
        default=300,
        help="queries for single-query latency (capped by --latency-seconds)",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=20.0,
        help="time budget of the single-query loop per index",
    )
    parser.add_argument("--batch", type=int, default=64, help="queries per batched search")
    parser.add_argument("--clusters", type=int, default=1024, help="clusters in the data")
    parser.add_argument("--nlist", type=int, default=0, help="IVF cells (0: 4*sqrt(n))")
    parser.add_argument(
        "--nprobe",
        type=int,
        default=FaissSettings().ivf_nprobe,
        help="IVF cells probed per query; 0 = 1%% of the cells, at least 32 (default: "
        "RECSYS_FAISS_IVF_NPROBE)",
    )
    parser.add_argument(
        "--nprobes",
        type=_int_list,
        default=[],
        help="comma-separated nprobe values measured on one IVF build (default: --nprobe)",
    )
    parser.add_argument(
        "--max-codes",
        type=_int_list,
        default=[],
        help="triplet space: comma-separated caps on the rows one IVF query scans, each measured "
        "with every --nprobes value (0: no cap; default: RECSYS_FAISS_IVF_MAX_CODES)",
    )
    parser.add_argument(
        "--space",
        choices=("gmf", "triplet"),
        default="gmf",
        help="vectors of the GMF space (bias component) or of the triplet space (unit length)",
    )
    parser.add_argument("--hnsw-m", type=int, default=32, help="HNSW links per node")
    parser.add_argument("--ef-search", type=int, default=128, help="HNSW efSearch")
    parser.add_argument("--ef-construction", type=int, default=80, help="HNSW efConstruction")
    parser.add_argument(
        "--max-build-seconds",
        type=float,
        default=900.0,
        help="abandon (and report) a build that takes longer than this",
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="FAISS OpenMP threads"
    )
    parser.add_argument(
        "--search-threads",
        type=int,
        default=0,
        help="FAISS OpenMP threads while searching (0: --threads); faiss_app searches with one "
        "thread per request thread",
    )
    parser.add_argument(
        "--no-exact-bytes",
        dest="exact_bytes",
        action="store_false",
        help="skip serializing each index to measure its size",
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="triplet space: keep the generated data and exact answers here for later runs",
    )
    parser.add_argument(
        "--dead-fraction",
        type=float,
        default=0.1,
        help="triplet space: also measure after deleting this share of the items",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("reports/bench_faiss.json"),
        help="JSON output; a .md table is written beside it",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="add these rows to an existing --out instead of replacing it",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.time()
    load_before = os.getloadavg()[0]
    rows = run(args)
    meta = {
        "command": "python -m scripts.bench_faiss "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "faiss": faiss.__version__,
        "threads": args.threads,
        "search_threads": args.search_threads or (1 if args.space == "triplet" else args.threads),
        "batch": args.batch,
        "k": args.k,
        "queries": args.queries,
        "clusters": args.clusters,
        "space": args.space,
        "seconds": round(time.time() - started, 1),
        # Other work on the machine skews latencies: say how busy it was.
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    runs: list[dict[str, Any]] = [{"meta": meta, "rows": rows}]
    if args.append and args.out.exists():
        runs = json.loads(args.out.read_text())["runs"] + runs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs}, indent=2))
    table = "\n".join(markdown(r["rows"], r["meta"]) for r in runs)
    args.out.with_suffix(".md").write_text("# faiss_app index benchmark\n\n" + table)
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
