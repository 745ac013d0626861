"""A Valkey server owned by one test, to hang (SIGSTOP) and resume at will.

The session stack's Redis is shared by every test; stalling it would disturb them.
"""

from __future__ import annotations

import time

from scripts import localstack
from scripts.private_server import PrivateServer


class PrivateRedis(PrivateServer):
    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = localstack._spawn(
            "redis",
            [localstack._valkey_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.data_dir)],
            self.data_dir,
        )  # fmt: skip
        localstack._wait_until_answers(
            f"private Redis at {self.url}",
            lambda: localstack._ping_redis(self.url),
            time.monotonic() + 20.0,
            lambda: None,
        )
