"""Read the platform's metrics from the local stack's whisper files.

    python -m scripts.metrics list                              # every series stored
    python -m scripts.metrics show trainer.events --since 10m   # one catalogued metric
    python -m scripts.metrics show 'api.*.ms' --since 1h --data-dir .stack/demo/servers

Names are the catalogue's (``shared/metrics.py``), without the prefix; ``*`` stands for one
name segment, as in Graphite. statsd stores each kind under its own Graphite names (its legacy
namespace, as in production): a counter as a rate (``stats.<prefix>.<name>``) and a count per
flush (``stats_counts.<prefix>.<name>``), a timer as percentiles and counts
(``stats.timers.<prefix>.<name>.<field>``), a gauge as its value
(``stats.gauges.<prefix>.<name>``). :func:`graphite_series` is that mapping, used by the
query helper, the demo's dashboard and the metrics test alike.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import whisper

from scripts import localstack
from shared.metrics import CATALOGUE, MetricSpec, UnknownMetricError, spec_for

TIMER_FIELDS = ("count", "median", "mean", "upper_90", "upper_99", "upper")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def graphite_series(prefix: str, name: str, kind: str) -> dict[str, str]:
    """The Graphite names under which statsd stores one metric, by field."""
    if kind == "counter":
        return {"rate": f"stats.{prefix}.{name}", "count": f"stats_counts.{prefix}.{name}"}
    if kind == "timer":
        return {field: f"stats.timers.{prefix}.{name}.{field}" for field in TIMER_FIELDS}
    if kind == "gauge":
        return {"value": f"stats.gauges.{prefix}.{name}"}
    raise ValueError(f"unknown metric kind {kind!r}")


def whisper_file(whisper_dir: Path, series: str) -> Path:
    return Path(whisper_dir).joinpath(*series.split(".")).with_suffix(".wsp")


def stored_series(whisper_dir: Path) -> list[str]:
    """Every series that has a whisper file, sorted."""
    root = Path(whisper_dir)
    return sorted(".".join(p.relative_to(root).with_suffix("").parts) for p in root.rglob("*.wsp"))


def expand(whisper_dir: Path, pattern: str) -> list[str]:
    """The stored series matching a Graphite pattern (``*`` = one segment), sorted."""
    return [series for series in stored_series(whisper_dir) if _matches(series, pattern)]


def _matches(series: str, pattern: str) -> bool:
    names, patterns = series.split("."), pattern.split(".")
    return len(names) == len(patterns) and all(
        fnmatch.fnmatchcase(n, p) for n, p in zip(names, patterns, strict=True)
    )


@dataclass(frozen=True)
class Points:
    """The stored, non-empty points of one series: seconds since the epoch and values."""

    series: str
    times: list[int]
    values: list[float]


def fetch(whisper_dir: Path, series: str, since_s: float, until: float | None = None) -> Points:
    """The points of ``series`` from ``since_s`` seconds ago (before ``until``) up to ``until``."""
    until = time.time() if until is None else until
    path = whisper_file(whisper_dir, series)
    if not path.exists():
        return Points(series, [], [])
    fetched = whisper.fetch(str(path), int(until - since_s), int(until) + 1)
    if fetched is None:
        return Points(series, [], [])
    (start, _end, step), values = fetched
    pairs = [(start + i * step, v) for i, v in enumerate(values) if v is not None]
    return Points(series, [t for t, _ in pairs], [float(v) for _, v in pairs])


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``10m``, ``2h``, ``1d`` → seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30s, 10m, 2h, 1d")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def _spec_of(name: str) -> MetricSpec:
    """The catalogue entry of a name that may hold ``*`` for placeholders."""
    try:
        return spec_for(name.replace("*", "x"))
    except UnknownMetricError:
        known = ", ".join(sorted(CATALOGUE))
        raise SystemExit(f"metrics: {name!r} is not in the catalogue; known: {known}") from None


def show(whisper_dir: Path, prefix: str, name: str, since_s: float) -> list[str]:
    """Lines describing every stored series of a catalogued metric over the window."""
    spec = _spec_of(name)
    kind = spec.kind
    lines = [f"{name} ({kind}: {spec.help}), last {since_s:.0f}s"]
    for field, pattern in graphite_series(prefix, name, kind).items():
        for series in expand(whisper_dir, pattern):
            points = fetch(whisper_dir, series, since_s)
            if not points.values:
                continue
            values = points.values
            summary = (f"total {sum(values):g}" if field == "count" and kind != "gauge"
                       else f"last {values[-1]:g}  min {min(values):g}  max {max(values):g}")
            lines.append(f"  {series:<60} {summary}  ({len(values)} points)  "
                         f"{sparkline(values)}")
    if len(lines) == 1:
        lines.append("  no points stored in that window")
    return lines


def sparkline(values: list[float], width: int = 40) -> str:
    bars = "▁▂▃▄▅▆▇█"
    tail = values[-width:]
    low, high = min(tail), max(tail)
    span = (high - low) or 1.0
    return "".join(bars[int((v - low) / span * (len(bars) - 1))] for v in tail)


def default_whisper_dir(data_dir: Path) -> Path:
    info = localstack.read_state(data_dir)
    if info is not None and info.whisper_dir is not None:
        return info.whisper_dir
    return data_dir / "whisper"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.metrics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["show", "list"])
    parser.add_argument("name", nargs="?", help="catalogued metric name, e.g. trainer.events")
    parser.add_argument("--since", type=parse_duration, default=600.0,
                        help="window to read, e.g. 30s, 10m, 2h (default: 10m)")
    parser.add_argument("--data-dir", type=Path, default=Path(".stack"),
                        help="the local stack's data folder (default: .stack; the demo's is "
                             ".stack/demo/servers)")
    parser.add_argument("--prefix", default="recsys",
                        help="the services' RECSYS_STATSD_PREFIX (default: recsys)")
    args = parser.parse_args(argv)
    whisper_dir = default_whisper_dir(args.data_dir)
    if not whisper_dir.is_dir():
        print(f"metrics: no whisper files in {whisper_dir}: is the stack running with "
              "metrics (python -m scripts.stack status)?", file=sys.stderr)
        return 1
    if args.command == "list":
        for series in stored_series(whisper_dir):
            print(series)
        return 0
    if not args.name:
        parser.error("show needs a metric name")
    print("\n".join(show(whisper_dir, args.prefix, args.name, args.since)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
