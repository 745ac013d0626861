"""scripts.bench_api's rounds: each path's share is paired with the baseline of its own round."""

from __future__ import annotations

import time
from typing import Any

from scripts.bench_api import combine_rounds, machine_report, share


def _row(rps: float, p50: float, requests: int, cpu: float, errors: int = 0) -> dict[str, Any]:
    return {"rps": rps, "p50_ms": p50, "p99_ms": 2 * p50, "errors": errors, "degraded": 0,
            "requests": requests, "cpu_ms": {"servers": cpu}}  # fmt: skip


def test_share_is_the_median_of_each_rounds_own_ratio() -> None:
    # The ceiling doubles in round 2: a share against the median baseline (1000) would say 30%.
    baselines = [_row(1000, 1.0, 1000, 0.4), _row(2000, 0.5, 2000, 0.4), _row(1000, 1.0, 1000, 0.4)]
    paths = [_row(100, 9.0, 100, 3.0), _row(400, 5.0, 400, 2.0), _row(300, 7.0, 300, 4.0, errors=2)]

    row = combine_rounds(paths, baselines)

    assert row["share"] == 0.2  # ratios 0.1, 0.2, 0.3
    assert row["rps"] == 300.0 and row["p50_ms"] == 7.0 and row["p99_ms"] == 14.0
    assert row["errors"] == 2 and row["requests"] == 800 and row["rounds"] == 3
    # CPU per answer over every answer of the rounds, not the mean of the rounds' figures
    assert row["cpu_ms"]["servers"] == round((3.0 * 100 + 2.0 * 400 + 4.0 * 300) / 800, 3)
    assert share(row, combine_rounds(baselines, baselines)) == "20%"


def test_a_run_without_rounds_keeps_the_plain_ratio() -> None:
    assert share({"rps": 50.0}, {"rps": 200.0}) == "25%"


def test_machine_report_gives_paths_their_share_and_the_schema_keys() -> None:
    baselines = [_row(1000, 1.0, 1000, 0.4)]
    run = {
        "load_generator": "wrk",
        "setup": {"items": 10},
        "baseline": {"c4": combine_rounds(baselines, baselines)},
        "paths": {"popular": {"c4": combine_rounds([_row(500, 2.0, 500, 1.0)], baselines)}},
        "parts": {},
    }
    report = machine_report(run)
    assert set(report["baseline"]["c4"]) == {"rps", "p50_ms", "p99_ms", "errors", "degraded"}
    assert report["paths"]["popular"]["c4"]["share"] == 0.5


class _Stage:
    def work(self, seconds: float) -> str:
        time.sleep(seconds)
        return "done"


def test_stage_timers_time_each_call_and_put_the_methods_back(monkeypatch: Any) -> None:
    import scripts.bench_api as bench_api

    monkeypatch.setattr(bench_api, "REQUEST_STAGES", (("work", __name__, "_Stage", "work"),))
    original = _Stage.work
    with bench_api.stage_timers() as spent:
        assert _Stage().work(0.02) == "done" and _Stage().work(0.01) == "done"
    assert 30.0 <= spent["work"] < 1000.0  # both calls, in milliseconds
    assert _Stage.work is original
