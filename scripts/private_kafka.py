"""A Tansu broker of the caller's own, to stop (SIGSTOP), resume, kill and restart at will.

For tests and benchmarks that stall or restart Kafka: the stack's broker is shared, stalling it
would disturb everything else. It keeps topics in memory, so a restart starts empty (the caller
creates its topics again) and whatever it held is gone.
"""

from __future__ import annotations

import subprocess
import time

from scripts import localstack
from scripts.private_server import PrivateServer


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
