"""Shared pieces of the recommender_app tests (no tests here): a small known catalogue, a real
faiss_app under gunicorn serving its snapshot, seeding of the real stores, exact answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from falcon import testing

from scripts import localstack
from scripts.bench_api import metadata, write_snapshot
from scripts.processes import ManagedProcess, start_gunicorn
from services.recommender_app.app import create_app
from services.recommender_app.deps import Deps
from shared.config import Settings
from shared.storage import mongo, redis_store
from tests.conftest import replace

DIM = 8
N_ITEMS = 200
USERS = ("u0", "u1", "u2")
NEW_ITEM = "new-1"  # popular, with no vector in the index and no metadata anywhere


@dataclass
class World:
    """The catalogue every recommender test shares, with its exact answers."""

    models_dir: Path
    ids: list[str]
    vectors: np.ndarray  # (N_ITEMS, DIM + 1) float32 serving vectors
    queries: dict[str, np.ndarray]  # user → (DIM + 1,) float32 query vector
    version: str = ""
    seen: dict[str, list[str]] = field(default_factory=dict)
    popular: list[str] = field(default_factory=list)
    redis_missing: set[str] = field(default_factory=set)  # metadata only in MongoDB

    def exact_top_k(self, user: str, k: int, exclude: set[str]) -> list[tuple[str, float]]:
        scores = self.vectors @ self.queries[user]
        order = np.argsort(-scores, kind="stable")
        return [(self.ids[j], float(scores[j])) for j in order if self.ids[j] not in exclude][:k]

    def exact_similar(self, item_id: str, k: int) -> list[str]:
        unit = self.vectors[:, :DIM] / np.linalg.norm(self.vectors[:, :DIM], axis=1, keepdims=True)
        j = self.ids.index(item_id)
        order = np.argsort(-(unit @ unit[j]), kind="stable")
        return [self.ids[i] for i in order if i != j][:k]


def make_world(models_dir: Path) -> World:
    rng = np.random.default_rng(11)
    ids = [f"i{j}" for j in range(N_ITEMS)]
    vectors = rng.standard_normal((N_ITEMS, DIM + 1)).astype(np.float32)
    queries = {}
    for user in USERS:
        query = np.ones(DIM + 1, dtype=np.float32)
        query[:DIM] = rng.standard_normal(DIM)
        queries[user] = query
    world = World(models_dir, ids, vectors, queries)
    world.version = write_snapshot(models_dir, ids, vectors, list(USERS))
    ranked = [item for item, _ in world.exact_top_k("u0", N_ITEMS, set())]
    # u0 has seen three of its own top five and two others; the best unseen one has its
    # metadata only in MongoDB (a cache miss that must be filled from there).
    world.seen = {"u0": [ranked[0], ranked[2], ranked[4], ranked[50], ranked[120]]}
    world.redis_missing = {ranked[1]}
    world.popular = [ranked[0], NEW_ITEM, ranked[1], ranked[60], ranked[70], ranked[80]]
    return world


def start_faiss(
    world: World, env_base: dict[str, str], log_dir: Path, follow: bool = False
) -> tuple[ManagedProcess, str]:
    """faiss_app under gunicorn (1 worker × 2 threads) on a free loopback port; ``follow``
    lets it tail the item-vector topics."""
    port = localstack.free_port()
    env = dict(env_base)
    env.update(
        {
            "RECSYS_MODELS_DIR": str(world.models_dir),
            "RECSYS_FAISS_FOLLOW_UPDATES": "true" if follow else "false",
            "RECSYS_STATSD_ENABLED": "false",
        }
    )
    proc = start_gunicorn(
        "services.faiss_app.wsgi:app", port, env, log_dir / "faiss_app.log", workers=1, threads=2,
        timeout_s=60,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def seed(settings: Settings, world: World) -> None:
    """Users, seen lists, popular set and item metadata into the real MongoDB and Redis."""
    db = mongo.connect(settings.mongo)
    r = redis_store.connect(settings.redis)
    rows = [(user, world.queries[user], 1) for user in USERS]
    mongo.upsert_user_vectors(db, rows, world.version)
    items = [metadata(item_id, j) for j, item_id in enumerate(world.ids)]
    redis_store.put_item_metadata(r, [m for m in items if m["item_id"] not in world.redis_missing])
    mongo.upsert_items(db, [m for m in items if m["item_id"] in world.redis_missing])
    redis_store.push_seen(r, {u: list(reversed(s)) for u, s in world.seen.items()}, 200)
    n = len(world.popular)
    r.zadd(
        redis_store.POPULAR_KEY, {item: float(n - rank) for rank, item in enumerate(world.popular)}
    )
    db.client.close()
    r.close()


def api_settings(
    settings: Settings, faiss_url: str, ranking: bool = False, **recommender: object
) -> Settings:
    """Generous timeouts: the machine is shared, and a slow answer must not read as an outage.

    ``ranking`` switches the ranking stage on; off, ``/recommend?user_id=`` answers GMF's exact
    top k, which is what most API tests pin (tests/test_recommender_ranking.py covers it on).
    """
    settings = replace(settings, "faiss", url=faiss_url, timeout_s=2.0)
    settings = replace(settings, "ranking", enabled=ranking)
    return replace(settings, "recommender", **{"request_budget_s": 3.0, **recommender})


def client_for(settings: Settings, **overrides: object) -> tuple[testing.TestClient, Deps]:
    deps = Deps.from_settings(settings, **overrides)
    return testing.TestClient(create_app(settings, deps)), deps
