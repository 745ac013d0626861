"""Module-scoped fixtures for the recommender_app tests, registered in ``tests/conftest.py``:
the known catalogue (``world``), a real faiss_app under gunicorn serving it (``faiss_url``) and
a real recommender_app under gunicorn over both (``recommender_url``).
A test module that needs faiss_app started differently defines its own ``faiss_url``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import localstack
from scripts.processes import ManagedProcess, start_gunicorn
from shared.config import Settings
from shared.kafka import ensure_topics
from tests.test_recommender_support import World, make_world, seed, start_faiss


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def faiss_url(
    world: World, stack: localstack.StackInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    proc, url = start_faiss(world, {**os.environ, **stack.env()}, tmp_path_factory.mktemp("faiss"))
    try:
        yield url
    finally:
        proc.stop()


# The key the gunicorn recommender accepts (tests only; 16+ characters like any real one).
TEST_API_KEY = "test-key-0123456789abcdef"


def serve_recommender(world: World, faiss_url: str, stack: localstack.StackInfo,
                      folder: Path) -> tuple[ManagedProcess, str]:
    """recommender_app under real gunicorn (1 worker × 2 threads) over the seeded ``world``,
    with write routes keyed by :data:`TEST_API_KEY`; (process, base URL)."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        **os.environ, **stack.env(),
        "RECSYS_FAISS_URL": faiss_url,
        "RECSYS_MODELS_DIR": str(world.models_dir),
        "RECSYS_MONGO_DATABASE": f"served_{suffix}",
        "RECSYS_KAFKA_INTERACTIONS_TOPIC": f"interactions-{suffix}",
        "RECSYS_KAFKA_ITEM_VECTORS_TOPIC": f"item-vectors-{suffix}",
        "RECSYS_RECOMMENDER_SPOOL_DIR": str(folder / "spool"),
        "RECSYS_API_KEYS": TEST_API_KEY,
        "RECSYS_STATSD_ENABLED": "false",
        "RECSYS_RANKING_ENABLED": "false",
    }  # fmt: skip
    settings = Settings.from_env(env)
    seed(settings, world)
    ensure_topics(settings.kafka)
    port = localstack.free_port()
    proc = start_gunicorn("services.recommender_app.wsgi:app", port, env,
                          folder / "recommender_app.log", workers=1, threads=2, timeout_s=60)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def recommender_url(
    world: World, faiss_url: str, stack: localstack.StackInfo,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """:func:`serve_recommender` for a test module."""
    proc, url = serve_recommender(world, faiss_url, stack, tmp_path_factory.mktemp("recommender"))
    try:
        yield url
    finally:
        proc.stop()
