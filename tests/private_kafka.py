"""The ``broker`` fixture (registered in conftest): a Tansu broker of the test's own
(:class:`scripts.private_kafka.PrivateKafka`), killed after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.private_kafka import PrivateKafka


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateKafka]:
    kafka = PrivateKafka(tmp_path / "kafka")
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.kill()
