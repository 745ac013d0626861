"""Where a trainer's start goes: seconds from the process's birth to each start-up milestone.

A restarted trainer should learn again within seconds (issue 17: restart to first learned batch
≤ 3 s). The milestones (imports done, snapshot loaded, partitions assigned, first batch
learned, ...) are measured from the moment the kernel created the process, not from the first
Python line, so interpreter start and imports count too. They go to the status file
(``startup``) and one log line, which is how ``scripts/bench_ingestion.py`` reads them.
"""

from __future__ import annotations

import os
import time


def process_started_at() -> float:
    """Wall-clock time (s) the kernel started this process; now if /proc cannot say (not Linux)."""
    try:
        with open(f"/proc/{os.getpid()}/stat", "rb") as stat:
            # Field 22 (after the parenthesised command, which may hold spaces): start ticks.
            fields = stat.read().rsplit(b")", 1)[1].split()
        start_s = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime", "rb") as uptime:  # centiseconds; /proc/stat's btime is whole s
            now_s = float(uptime.read().split()[0])
        return time.time() - max(0.0, now_s - start_s)
    except (OSError, ValueError, IndexError):
        return time.time()


class StartupTiming:
    """Milestones in seconds since the process started; each is recorded once."""

    def __init__(self, started_at: float | None = None) -> None:
        self.started_at = process_started_at() if started_at is None else started_at
        self.milestones: dict[str, float] = {}

    def mark(self, name: str) -> float:
        if name not in self.milestones:
            self.milestones[name] = round(time.time() - self.started_at, 3)
        return self.milestones[name]

    def as_dict(self) -> dict[str, float]:
        return dict(self.milestones)
