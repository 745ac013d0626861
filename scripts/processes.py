"""Start the platform's services as child processes and stop every one of them, whatever happens.

Used by the demo and the benchmarks. Each child runs in its own process group, so stopping it
also stops what it forked (gunicorn workers); stop is SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent


class ServiceFailed(RuntimeError):
    """A child process exited, or did not become healthy in time."""


class ManagedProcess:
    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path,
                 cwd: Path = REPO):
        self.name = name
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def wait_http(self, url: str, timeout_s: float = 60.0) -> None:
        """Poll ``url`` until it answers 200; raise ServiceFailed if the process dies first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                raise ServiceFailed(f"{self.name} exited:\n{self.log_tail()}")
            try:
                if requests.get(url, timeout=1.0).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise ServiceFailed(f"{self.name} not healthy at {url} after {timeout_s}s")

    def signal(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass

    def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM the group, SIGKILL after ``grace_s``; returns the exit code."""
        if self.running():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(5)
        else:
            self.signal(signal.SIGKILL)  # reap anything the dead leader left in its group
        self._log.close()
        return self.proc.returncode


def gunicorn_argv(app: str, port: int, workers: int | None = 2, threads: int | None = 1,
                  config: Path | str | None = None) -> list[str]:
    """gunicorn serving ``app`` on 127.0.0.1:``port``; a ``config`` file comes first if given.

    ``workers`` / ``threads`` of None leave those to the config file (or gunicorn's default).
    """
    argv = [sys.executable, "-m", "gunicorn"]
    if config is not None and (REPO / config).exists():
        argv += ["--config", str(REPO / config)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    # A long worker timeout: faiss_app workers build large indexes before their first answer.
    return argv + [app, "--bind", f"127.0.0.1:{port}", "--timeout", "600",
                   "--graceful-timeout", "10"]


def start_gunicorn(app: str, port: int, env: Mapping[str, str], log_path: Path,
                   workers: int | None = 2, threads: int | None = 1,
                   config: Path | str | None = None,
                   timeout_s: float = 120.0) -> ManagedProcess:
    """Start gunicorn and return once ``/readyz`` answers 200 (stopping it if it never does)."""
    child = ManagedProcess(log_path.stem, gunicorn_argv(app, port, workers, threads, config),
                           env, log_path.parent)
    try:
        child.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s)
    except BaseException:
        child.stop()
        raise
    return child


class ProcessGroup:
    """Children started through it are stopped in reverse order on exit, even on Ctrl-C."""

    def __init__(self, env: Mapping[str, str], log_dir: Path):
        self.env = dict(env)
        self.log_dir = log_dir
        self.children: list[ManagedProcess] = []

    def start(self, name: str, argv: Sequence[str], **extra_env: str) -> ManagedProcess:
        child = ManagedProcess(name, argv, {**self.env, **extra_env}, self.log_dir)
        self.children.append(child)
        return child

    def python(self, name: str, module: str, *args: str, **extra_env: str) -> ManagedProcess:
        return self.start(name, [sys.executable, "-m", module, *args], **extra_env)

    def gunicorn(self, name: str, app: str, port: int, workers: int | None = 2,
                 threads: int | None = 1,
                 config: Path | None = None, **extra_env: str) -> ManagedProcess:
        return self.start(name, gunicorn_argv(app, port, workers, threads, config), **extra_env)

    def stop_all(self) -> None:
        while self.children:
            self.children.pop().stop()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
