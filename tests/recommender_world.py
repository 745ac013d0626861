"""Module-scoped fixtures for the recommender_app tests, registered in ``tests/conftest.py``:
the known catalogue (``world``) and a real faiss_app under gunicorn serving it (``faiss_url``).
A test module that needs faiss_app started differently defines its own ``faiss_url``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from scripts import localstack
from tests.test_recommender_support import World, make_world, start_faiss


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
