"""The metrics path of the local stack: the statsd daemon and Graphite's carbon-cache.

The same servers as production's graphite-statsd image: the Etsy ``statsd`` daemon (npm,
pinned by ``grafana/statsd/package.json``) aggregates what the services send over UDP and
flushes it to ``carbon-cache`` (PyPI ``carbon``), which writes whisper files under
``<data>/whisper`` with the same names Grafana queries (``stats.*``, ``stats_counts.*``,
``stats.timers.*``, ``stats.gauges.*``: statsd's legacy namespace, as in ``udp.js``).

Both are optional: without node, or without the installed statsd package, the stack runs
without metrics and says why (:func:`unavailable_reason`).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATSD_PACKAGE = REPO / "grafana" / "statsd"
STATSD_ENTRY = STATSD_PACKAGE / "node_modules" / "statsd" / "stats.js"
# Locally statsd flushes every second into 1-second whisper slots, so a test or the demo sees a
# metric within about two seconds and every flush keeps its own point (production: 10 s).
FLUSH_INTERVAL_MS = 1000
RETENTIONS = "1s:6h,10s:7d"


def install_statsd(timeout_s: float = 120.0) -> None:
    """``npm ci`` the pinned statsd package into ``grafana/statsd/node_modules``."""
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm")
    subprocess.run([npm, "ci", "--omit=optional", "--no-audit", "--no-fund"],
                   cwd=STATSD_PACKAGE, check=True, timeout=timeout_s,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def unavailable_reason() -> str | None:
    """Why the metrics servers cannot start here, or None when they can."""
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm)"
    if not STATSD_ENTRY.exists():
        return f"statsd is not installed (npm ci in {STATSD_PACKAGE.relative_to(REPO)})"
    if not _carbon_script().exists():
        return "carbon is not installed (pip install -r requirements-dev.txt)"
    return None


def _carbon_script() -> Path:
    return Path(sys.executable).with_name("carbon-cache.py")


def carbon_argv(data_dir: Path, line_port: int, pickle_port: int, query_port: int) -> list[str]:
    """Write carbon's configuration into ``data_dir`` and return the command that runs it."""
    conf = data_dir / "carbon"
    storage = data_dir / "carbon-storage"
    for folder in (conf, storage / "log", storage / "lists"):
        folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "STORAGE_DIR": f"{storage}/",
        "LOCAL_DATA_DIR": f"{whisper_dir(data_dir)}/",
        "WHITELISTS_DIR": f"{storage / 'lists'}/",
        "CONF_DIR": f"{conf}/",
        "LOG_DIR": f"{storage / 'log'}/",
        "PID_DIR": f"{storage}/",
        "ENABLE_LOGROTATION": "False",
        "USER": "",
        "MAX_CACHE_SIZE": "inf",
        "MAX_UPDATES_PER_SECOND": "inf",
        "MAX_CREATES_PER_MINUTE": "inf",
        "LINE_RECEIVER_INTERFACE": "127.0.0.1",
        "LINE_RECEIVER_PORT": str(line_port),
        "PICKLE_RECEIVER_INTERFACE": "127.0.0.1",
        "PICKLE_RECEIVER_PORT": str(pickle_port),
        "CACHE_QUERY_INTERFACE": "127.0.0.1",
        "CACHE_QUERY_PORT": str(query_port),
        "ENABLE_UDP_LISTENER": "False",
        "LOG_LISTENER_CONNECTIONS": "False",
        # carbon's own self-metrics would only clutter the local whisper tree.
        "CARBON_METRIC_INTERVAL": "0",
    }
    lines = ["[cache]", *(f"{key} = {value}" for key, value in settings.items())]
    (conf / "carbon.conf").write_text("\n".join(lines) + "\n")
    (conf / "storage-schemas.conf").write_text(
        f"[everything]\npattern = .*\nretentions = {RETENTIONS}\n"
    )
    # statsd sends sums for counters and a last value for gauges; averaging them into coarser
    # slots is right for rates and timers, but counts must add up.
    (conf / "storage-aggregation.conf").write_text(
        "[counts]\npattern = ^stats_counts\\.\nxFilesFactor = 0\naggregationMethod = sum\n\n"
        "[timer_counts]\npattern = \\.count$\nxFilesFactor = 0\naggregationMethod = sum\n\n"
        "[default]\npattern = .*\nxFilesFactor = 0\naggregationMethod = average\n"
    )
    (storage / "carbon-cache-a.pid").unlink(missing_ok=True)  # a stale one blocks the start
    # --debug keeps carbon in the foreground, so the stack's process group owns it.
    return [sys.executable, str(_carbon_script()), f"--config={conf / 'carbon.conf'}",
            "--debug", "start"]


def statsd_argv(data_dir: Path, port: int, admin_port: int, carbon_line_port: int) -> list[str]:
    """Write statsd's configuration into ``data_dir`` and return the command that runs it."""
    config = {
        "address": "127.0.0.1",
        "port": port,
        "mgmt_address": "127.0.0.1",
        "mgmt_port": admin_port,
        "graphiteHost": "127.0.0.1",
        "graphitePort": carbon_line_port,
        "flushInterval": FLUSH_INTERVAL_MS,
        # As production's udp.js: legacy namespace, p90/p95/p99 for timers, idle counters and
        # timers kept, gauges dropped when not re-sent (a dead instance's value must vanish).
        "percentThreshold": [90, 95, 99],
        "deleteIdleStats": False,
        "deleteGauges": True,
        "graphite": {"legacyNamespace": True},
        "backends": ["./backends/graphite"],
    }
    path = data_dir / "statsd.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    node = shutil.which("node") or "node"
    return [node, str(STATSD_ENTRY), str(path)]


def whisper_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "whisper"


def ping_carbon(line_port: int) -> None:
    with socket.create_connection(("127.0.0.1", line_port), timeout=1.0):
        pass


def admin_command(admin_port: int, command: str, timeout_s: float = 2.0) -> str:
    """One command on statsd's management port; returns its answer without the END marker.

    ``counters``, ``timers`` and ``gauges`` answer a JSON object of everything statsd has
    received since it started (idle stats are kept), each followed by a line ``END``.
    """
    with socket.create_connection(("127.0.0.1", admin_port), timeout=timeout_s) as sock:
        sock.sendall(command.encode() + b"\n")
        answer = b""
        while not answer.rstrip().endswith(b"END"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer.decode(errors="replace").rstrip().removesuffix("END").strip()


def received_names(admin_port: int, kind: str) -> set[str]:
    """Every name statsd has received of ``kind`` (``counters``, ``timers`` or ``gauges``).

    statsd prints these with node's util.inspect (single-quoted keys, long arrays cut short),
    not JSON, so only the keys are read.
    """
    return set(re.findall(r"'([^']+)':", admin_command(admin_port, kind)))


def ping_statsd(admin_port: int) -> None:
    answer = admin_command(admin_port, "stats", timeout_s=1.0)
    if "uptime" not in answer:
        raise ConnectionError(f"statsd answered {answer!r}")
