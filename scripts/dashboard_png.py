"""A PNG of the panels ops look at first, drawn from the local stack's whisper files.

The demo writes it at Ctrl-C (and every ``--dashboard-every`` seconds); by hand:

    python -m scripts.dashboard_png --data-dir .stack/demo/servers --out dashboard.png

Each panel names catalogued metrics and reads them through :mod:`scripts.metrics`, so the
picture shows exactly what statsd stored, under the names the Grafana dashboard queries.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scripts import metrics
from shared.atomic import write_bytes_atomic
from shared.metrics import spec_for


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    # (catalogued name, field of its Graphite series, legend); "*" in a name = every value
    lines: tuple[tuple[str, str, str], ...]


PANELS = (
    Panel("Requests/s by endpoint", "req/s", (("api.*.requests", "rate", "{0}"),)),
    Panel("Latency p99 by endpoint", "ms", (("api.*.ms", "upper_99", "{0} p99"),)),
    Panel("Degraded answers/s by dependency", "answers/s", (("api.degraded.*", "rate", "{0}"),)),
    Panel("Trainer: events learned/s", "events/s", (("trainer.events", "rate", "learned"),
                                                    ("trainer.dlq", "rate", "dead-lettered"))),
    Panel("Trainer: consumer lag", "messages", (("trainer.lag.*", "value", "lag {0}"),)),
    Panel("Freshness: event → vectors published", "ms",
          (("trainer.freshness_ms", "median", "p50"), ("trainer.freshness_ms", "upper_99", "p99"))),
    Panel("Prequential recall@10", "recall",
          (("trainer.prequential.recall_at_10.*", "value", "model {0}"),
           ("trainer.prequential.popularity_recall_at_10.*", "value", "popularity {0}"))),
)


def panel_series(whisper_dir: Path, prefix: str, panel: Panel) -> list[tuple[str, str]]:
    """(legend, stored series) for every line of ``panel`` that has data."""
    found = []
    for name, field, legend in panel.lines:
        pattern = metrics.graphite_series(prefix, name, spec_for(name.replace("*", "x")).kind)[field]
        segments = pattern.split(".")
        wildcard = segments.index("*") if "*" in segments else None
        for series in metrics.expand(whisper_dir, pattern):
            value = series.split(".")[wildcard] if wildcard is not None else ""
            found.append((legend.format(value), series))
    return found


def render(whisper_dir: Path, prefix: str, out: Path, since_s: float = 3600.0) -> Path:
    """Draw every panel over the last ``since_s`` seconds into ``out`` (written atomically)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    now = time.time()
    columns = 2
    rows = (len(PANELS) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(14, 3.2 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, PANELS, strict=False):
        drawn = 0
        for legend, series in panel_series(whisper_dir, prefix, panel):
            points = metrics.fetch(whisper_dir, series, since_s, until=now)
            if points.values:
                ax.plot([(t - now) / 60.0 for t in points.times], points.values, label=legend,
                        linewidth=1.2)
                drawn += 1
        ax.set_title(panel.title, fontsize=10)
        ax.set_ylabel(panel.unit, fontsize=8)
        ax.set_xlabel("minutes ago", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes,
                    color="grey")
    for ax in list(axes.flat)[len(PANELS):]:
        ax.axis("off")
    figure.suptitle(f"recsys on the local stack, {time.strftime('%Y-%m-%d %H:%M:%S')}",
                    fontsize=12)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    write_bytes_atomic(out, buffer.getvalue())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.dashboard_png", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(".stack"),
                        help="the local stack's data folder (default: .stack)")
    parser.add_argument("--prefix", default="recsys",
                        help="the services' RECSYS_STATSD_PREFIX (default: recsys)")
    parser.add_argument("--since", type=metrics.parse_duration, default=3600.0,
                        help="window to draw, e.g. 10m, 2h (default: 1h)")
    parser.add_argument("--out", type=Path, default=Path("dashboard.png"),
                        help="PNG to write (default: dashboard.png)")
    args = parser.parse_args(argv)
    whisper_dir = metrics.default_whisper_dir(args.data_dir)
    if not whisper_dir.is_dir():
        print(f"dashboard_png: no whisper files in {whisper_dir}", file=sys.stderr)
        return 1
    print(render(whisper_dir, args.prefix, args.out, args.since))
    return 0


if __name__ == "__main__":
    sys.exit(main())
