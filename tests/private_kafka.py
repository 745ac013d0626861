"""A Tansu broker owned by one test, to stop (SIGSTOP), resume and restart at will.

The session stack's broker is shared by every test; stalling it would disturb them. The
``broker`` fixture (registered in conftest) starts one per test and kills it afterwards.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import localstack
from tests.private_server import PrivateServer


class PrivateKafka(PrivateServer):
    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://{self.bootstrap}"
        self.proc = subprocess.Popen(
            [localstack._tansu_binary(), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=open(self.data_dir / "kafka.log", "ab"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        localstack._wait_until_answers(
            f"private Kafka at {self.bootstrap}",
            lambda: localstack._ping_kafka(self.bootstrap),
            time.monotonic() + 20.0,
            lambda: None,
        )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateKafka]:
    kafka = PrivateKafka(tmp_path / "kafka")
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.kill()
