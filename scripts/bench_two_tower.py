"""Benchmark of the two-tower cold-start path: encoder speed and new-item freshness.

    python -m scripts.bench_two_tower --probes 200

1. Starts a local stack (scripts.localstack) in a temporary folder, trains GMF and the
   two-tower model on a synthetic stream (--events) and writes both snapshots.
2. Times the numpy encoder as the recommender runs it: one new item's candidate vector and
   one user's query vector (median of many calls, one thread).
3. Starts faiss_app (gunicorn, one worker) serving the ``two_tower`` space beside ``gmf``,
   then for each probe does ``PUT /items/{id}`` on the recommender app (in process, real
   MongoDB, Redis and Kafka) and polls faiss_app's ``/v1/similar?space=two_tower`` until the
   new item is there: PUT → searchable, in ms. Also records how long the PUT itself took
   (the candidate vector is computed and its Kafka delivery confirmed inside it).
4. Writes <out>/bench_two_tower.json and .md with the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests
import torch
from falcon import testing

from scripts import localstack
from scripts.processes import ProcessGroup
from services.recommender_app.app import create_app
from services.recommender_app.deps import Deps
from services.recommender_app.two_tower import TwoTowerModel
from shared.config import Settings
from shared.data.synthetic import SyntheticConfig, generate
from shared.kafka import ensure_topics
from shared.logs import setup_logging
from shared.model.checkpoint import save_snapshot
from shared.model.offline import train, unique_pairs
from shared.model.training import TrainConfig
from shared.model.two_tower import TwoTowerConfig
from shared.model.two_tower_cli import catalogue_vectors, train_two_tower
from shared.model.two_tower_snapshot import save_two_tower

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-two-tower-key-0123456789abcdef"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.bench_two_tower", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=20_000,
                   help="synthetic events both models train on (default: 20000)")
    p.add_argument("--probes", type=int, default=200,
                   help="new items PUT and timed until searchable (default: 200)")
    p.add_argument("--out", type=Path, default=Path("reports"),
                   help="folder for bench_two_tower.json/.md (default: reports)")
    return p


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def write_models(models_dir: Path, n_events: int) -> dict[str, Any]:
    frame, items = generate(SyntheticConfig(n_users=1000, n_items=500, n_events=n_events))
    metadata = {str(r["item_id"]): r for r in items.to_dict("records")}
    pairs = unique_pairs(frame)
    gmf = train(pairs, np.arange(len(pairs)), Settings.from_env({}).model, TrainConfig(epochs=3))
    save_snapshot(models_dir, gmf.model, gmf.user_map, gmf.item_map, offsets={})
    encoder, fit, size = train_two_tower(frame, metadata, TwoTowerConfig(epochs=3))
    ids, vectors = catalogue_vectors(encoder, frame, metadata)
    save_two_tower(models_dir, encoder.weights, encoder.space, encoder.known_items,
                   encoder.known_users, ids, vectors)
    return {"train_seconds": round(fit.seconds, 2), **size}


def encoder_speed(models_dir: Path, repeats: int = 300) -> dict[str, float]:
    model = TwoTowerModel(models_dir)
    fields = {"title": "Compact garden kit", "category": "garden", "price": 19.0}
    recent = [f"i{j:06d}" for j in range(20)]
    item_us, query_us = [], []
    for n in range(repeats):
        started = time.perf_counter()
        model.item_vector(f"speed-{n}", fields)
        item_us.append((time.perf_counter() - started) * 1e6)
        started = time.perf_counter()
        model.query_vector(f"user-{n}", recent, 1_704_067_200_000)
        query_us.append((time.perf_counter() - started) * 1e6)
    return {"item_vector_us_p50": _percentile(item_us, 50),
            "query_vector_us_p50": _percentile(query_us, 50)}


def freshness(settings: Settings, faiss_url: str, probes: int) -> dict[str, list[float]]:
    deps = Deps.from_settings(settings)
    client = testing.TestClient(create_app(settings, deps))
    session = requests.Session()
    out: dict[str, list[float]] = {"put_ms": [], "searchable_ms": []}
    try:
        for n in range(probes):
            item_id = f"bench-new-{n}"
            started = time.perf_counter()
            answer = client.simulate_put(
                f"/items/{item_id}", json={"title": f"Deluxe books set {n}",
                                           "category": "books", "price": 12.0},
                headers={"Authorization": f"Bearer {API_KEY}"})
            out["put_ms"].append((time.perf_counter() - started) * 1000)
            if answer.status_code not in (200, 201):
                raise RuntimeError(f"PUT failed: {answer.status_code} {answer.text}")
            deadline = started + 10.0
            while time.perf_counter() < deadline:
                params: dict[str, str | int] = {"item_id": item_id, "k": 1,
                                                "space": "two_tower"}
                found = session.get(f"{faiss_url}/v1/similar", timeout=1.0, params=params)
                if found.status_code == 200:
                    out["searchable_ms"].append((time.perf_counter() - started) * 1000)
                    break
                time.sleep(0.002)
            time.sleep(0.05)
    finally:
        deps.close()
    return out


def report(figures: dict[str, Any]) -> str:
    f = figures
    return "\n".join([
        "# Two-tower cold start: encoder speed and new-item freshness",
        "",
        f"`python -m scripts.bench_two_tower {' '.join(f['argv'])}` on {f['cpus']} cores, "
        f"load average before/after {f['load_before']} / {f['load_after']}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| two-tower model: parameters / float32 size | {f['model']['parameters']:,} / "
        f"{f['model']['bytes_float32'] / 2**20:.1f} MiB |",
        f"| one new item's candidate vector (numpy, p50) | {f['item_vector_us_p50']:.0f} µs |",
        f"| one user's query vector over 20 recent items (p50) | "
        f"{f['query_vector_us_p50']:.0f} µs |",
        f"| PUT /items/{{id}} incl. vector and Kafka confirm, p50 / p95 | "
        f"{f['put_p50']:.0f} / {f['put_p95']:.0f} ms |",
        f"| PUT → searchable in faiss_app's two_tower space, p50 / p95 / p99 / max | "
        f"{f['searchable_p50']:.0f} / {f['searchable_p95']:.0f} / {f['searchable_p99']:.0f} / "
        f"{f['searchable_max']:.0f} ms |",
        f"| probes searchable within 1 s / within 10 s / PUT | {f['within_1s']} / "
        f"{f['probes_found']} / {f['probes']} |",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("bench_two_tower", "WARNING")
    torch.set_num_threads(1)
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-two-tower-") as tmp:
        tmp_dir = Path(tmp)
        info = localstack.start(tmp_dir / "stack")
        try:
            env = {**info.env(), "RECSYS_MODELS_DIR": str(tmp_dir / "models"),
                   "RECSYS_STATSD_ENABLED": "false", "RECSYS_FAISS_SPACES": "two_tower",
                   "RECSYS_FAISS_PORT": str(localstack.free_port()),
                   "RECSYS_API_KEYS": API_KEY}
            settings = Settings.from_env(env)
            ensure_topics(settings.kafka)
            model = write_models(tmp_dir / "models", args.events)
            speed = encoder_speed(tmp_dir / "models")
            with ProcessGroup({**os.environ, **env}, tmp_dir / "logs") as group:
                faiss = group.gunicorn("faiss_app", "services.faiss_app.wsgi:app",
                                       settings.faiss.port, workers=1,
                                       config=ROOT / "services/faiss_app/gunicorn.conf.py")
                faiss_url = f"http://127.0.0.1:{settings.faiss.port}"
                faiss.wait_http(f"{faiss_url}/readyz", timeout_s=60)
                probes = freshness(settings, faiss_url, args.probes)
        finally:
            localstack.stop(tmp_dir / "stack")
    found = probes["searchable_ms"]
    figures: dict[str, Any] = {
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "cpus": len(os.sched_getaffinity(0)), "load_before": load_before,
        "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "model": model, **speed,
        "put_p50": _percentile(probes["put_ms"], 50), "put_p95": _percentile(probes["put_ms"], 95),
        "searchable_p50": _percentile(found, 50), "searchable_p95": _percentile(found, 95),
        "searchable_p99": _percentile(found, 99),
        "within_1s": sum(ms <= 1000.0 for ms in found),
        "searchable_max": max(found) if found else float("nan"),
        "probes": args.probes, "probes_found": len(found),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_two_tower.json").write_text(json.dumps(figures, indent=2))
    text = report(figures)
    (args.out / "bench_two_tower.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
