"""CPU seconds used by named processes (with their descendants) and by the whole machine.

Benchmarks on a machine whose cores the servers share (Kafka, MongoDB, Redis, faiss_app and
the process under test) say where the cores went during a run: take a :func:`sample` before
and after, and :func:`used` gives each process's CPU seconds in between, the rest of the
machine's busy time as ``other`` (other work on a shared machine) and the wall time. Linux
``/proc`` only; elsewhere the figures are empty.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
PROC = Path("/proc")


@dataclass(frozen=True)
class CpuSample:
    at: float  # monotonic seconds
    by_name: dict[str, float] = field(default_factory=dict)  # CPU seconds so far
    machine_busy_s: float = 0.0  # every core's non-idle seconds so far


def _process_table() -> dict[int, tuple[int, float]]:
    """pid → (parent pid, CPU seconds so far) of every live process."""
    table: dict[int, tuple[int, float]] = {}
    for entry in PROC.glob("[0-9]*/stat"):
        try:
            raw = entry.read_text()
        except OSError:  # gone meanwhile
            continue
        # The command name is in parentheses and may contain spaces: split after it.
        fields = raw[raw.rfind(")") + 2 :].split()
        pid = int(entry.parent.name)
        table[pid] = (int(fields[1]), (int(fields[11]) + int(fields[12])) * _TICK_S)
    return table


def _machine_busy_s() -> float:
    try:
        first = (PROC / "stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0
    ticks = [int(v) for v in first[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) * _TICK_S


def sample(roots: Mapping[str, int]) -> CpuSample:
    """CPU seconds so far of each ``name → pid`` including its descendants, except those under
    another of the roots (a benchmark that started the trainer: each is counted once, under its
    own name)."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    by_name: dict[str, float] = {}
    others = set(roots.values())
    for name, root in roots.items():
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            if pid in table:
                total += table[pid][1]
            todo.extend(c for c in children.get(pid, ()) if c not in others)
        by_name[name] = total
    return CpuSample(time.monotonic(), by_name, _machine_busy_s())


def used(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """CPU seconds between two samples per name, ``other`` (the rest of the machine's busy
    time) and ``wall_s``. A process that exited meanwhile loses its last CPU seconds: sample
    while the processes run."""
    out = {
        name: max(0.0, after.by_name.get(name, 0.0) - before.by_name.get(name, 0.0))
        for name in after.by_name
    }
    out["other"] = max(0.0, after.machine_busy_s - before.machine_busy_s - sum(out.values()))
    out["wall_s"] = after.at - before.at
    return out
