"""A server process owned by one test or benchmark, to hang (SIGSTOP), resume and kill at will.

The stack's servers are shared by everything else; stalling one would disturb them.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from scripts import localstack


class PrivateServer:
    """Subclasses start ``proc`` listening on ``port`` and keep their logs in ``data_dir``."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = localstack.free_port()
        self.proc: subprocess.Popen | None = None

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
