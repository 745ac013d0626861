"""Session fixtures: one real local stack (Kafka, MongoDB, Redis) on free loopback ports.

Tests never mock these three servers. Isolation between tests comes from names, not restarts:
``settings`` gives every test its own topic names, MongoDB database and models folder, and an
empty Redis database.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from scripts import localstack
from shared.config import Settings

# world and faiss_url: the recommender tests' known catalogue and the faiss_app serving it;
# broker: a Tansu broker of the test's own, to stall and restart.
pytest_plugins = ["tests.recommender_world", "tests.private_kafka"]

# Two cores: torch's default intra-op pool fights the servers and the other test processes.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localstack.StackInfo]:
    data_dir = tmp_path_factory.mktemp("stack")
    info = localstack.start(data_dir)
    try:
        yield info
    finally:
        localstack.stop(data_dir)


@pytest.fixture
def stack_env(stack: localstack.StackInfo, tmp_path: Path) -> dict[str, str]:
    """RECSYS_* variables for a subprocess (a service under test): stack + unique names."""
    suffix = uuid.uuid4().hex[:8]
    env = dict(os.environ)
    env.update(stack.env())
    env.update(
        {
            "RECSYS_KAFKA_INTERACTIONS_TOPIC": f"interactions-{suffix}",
            "RECSYS_KAFKA_DLQ_TOPIC": f"interactions-{suffix}.dlq",
            "RECSYS_KAFKA_ITEM_VECTORS_TOPIC": f"item-vectors-{suffix}",
            "RECSYS_KAFKA_TRAINER_GROUP": f"trainer-{suffix}",
            "RECSYS_MONGO_DATABASE": f"recsys_{suffix}",
            "RECSYS_MODELS_DIR": str(tmp_path / "models"),
            "RECSYS_RECOMMENDER_SPOOL_DIR": str(tmp_path / "spool"),
            "RECSYS_STATSD_ENABLED": "false",
            "RECSYS_LOG_LEVEL": "INFO",
        }
    )
    return env


@pytest.fixture
def settings(stack_env: dict[str, str], stack: localstack.StackInfo) -> Settings:
    """Settings pointing at the stack, with this test's own topics, database and models dir."""
    import redis

    redis.Redis.from_url(stack.redis_url, socket_timeout=2).flushdb()
    return Settings.from_env(stack_env)


def replace(settings: Settings, section: str, **changes: object) -> Settings:
    """A copy of ``settings`` with fields of one section changed (settings are frozen)."""
    updated = dataclasses.replace(getattr(settings, section), **changes)
    return dataclasses.replace(settings, **{section: updated})
