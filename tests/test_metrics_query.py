"""scripts.metrics (the terminal query helper) over whisper files this test writes."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest
import whisper

from scripts import metrics, metrics_servers


def write_series(whisper_dir: Path, series: str, points: list[tuple[int, float]]) -> None:
    path = metrics.whisper_file(whisper_dir, series)
    path.parent.mkdir(parents=True, exist_ok=True)
    whisper.create(str(path), [(1, 3600)])
    whisper.update_many(str(path), points)


@pytest.fixture
def whisper_dir(tmp_path: Path) -> Path:
    now = int(time.time())
    root = tmp_path / "whisper"
    write_series(root, "stats_counts.recsys.trainer.events", [(now - 30, 4), (now - 10, 2)])
    write_series(root, "stats.recsys.trainer.events", [(now - 30, 4.0), (now - 10, 2.0)])
    write_series(root, "stats_counts.recsys.trainer.events_old", [(now - 3000, 9)])
    for endpoint, p99 in (("recommend", 12.5), ("events", 3.0)):
        write_series(root, f"stats.timers.recsys.api.{endpoint}.ms.upper_99", [(now - 5, p99)])
    return root


def test_show_totals_a_counter_within_the_window(whisper_dir: Path, capsys) -> None:
    assert metrics.main(["show", "trainer.events", "--since", "1m",
                         "--data-dir", str(whisper_dir.parent)]) == 0
    out = capsys.readouterr().out
    assert "stats_counts.recsys.trainer.events " in out and "total 6" in out
    assert "stats.recsys.trainer.events " in out and "last 2" in out


def test_show_expands_a_placeholder_to_every_stored_value(whisper_dir: Path) -> None:
    lines = metrics.show(whisper_dir, "recsys", "api.*.ms", since_s=60)
    assert any("api.recommend.ms.upper_99" in line and "last 12.5" in line for line in lines)
    assert any("api.events.ms.upper_99" in line and "last 3" in line for line in lines)


def test_points_outside_the_window_are_left_out(whisper_dir: Path) -> None:
    assert metrics.fetch(whisper_dir, "stats_counts.recsys.trainer.events", 20).values == [2.0]
    lines = metrics.show(whisper_dir, "recsys", "trainer.dlq", since_s=60)
    assert lines[-1].strip() == "no points stored in that window"


def test_unknown_names_and_bad_durations_are_refused(whisper_dir: Path) -> None:
    with pytest.raises(SystemExit, match="not in the catalogue"):
        metrics.show(whisper_dir, "recsys", "trainer.nonsense", since_s=60)
    assert metrics.parse_duration("10m") == 600 and metrics.parse_duration("2h") == 7200
    with pytest.raises(argparse.ArgumentTypeError):
        metrics.parse_duration("ten minutes")


def test_graphite_names_follow_statsds_legacy_namespace() -> None:
    assert metrics.graphite_series("p", "trainer.events", "counter") == {
        "rate": "stats.p.trainer.events", "count": "stats_counts.p.trainer.events"}
    assert metrics.graphite_series("p", "trainer.lag", "gauge") == {
        "value": "stats.gauges.p.trainer.lag"}
    assert metrics.graphite_series("p", "faiss.search_ms", "timer")["upper_99"] == (
        "stats.timers.p.faiss.search_ms.upper_99")


def test_the_stack_says_why_it_runs_without_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_servers.shutil, "which", lambda name: None)
    reason = metrics_servers.unavailable_reason()
    assert reason is not None and "node is not installed" in reason
