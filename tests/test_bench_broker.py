"""scripts.bench_broker: the load it produces reaches a follower, and each window is reported."""

from __future__ import annotations

from scripts import bench_broker, localstack


def test_a_short_run_reports_each_window_of_a_followed_topic(
    stack: localstack.StackInfo,
) -> None:
    run = bench_broker.measure(
        stack.kafka_bootstrap,
        stack.pids["kafka"],
        rate=500,
        linger_ms=20,
        seconds=2.0,
        window_s=1.0,
        partitions=2,
    )

    assert [round(w.end_s) for w in run.windows] == [1, 2]
    produced = run.windows[-1].produced
    assert 900 <= produced <= 1100  # the rate was kept
    assert run.windows[-1].consumed > 0  # the follower reads what was produced
    assert all(w.broker_cores >= 0 for w in run.windows)
    table = bench_broker.markdown([run], "python -m scripts.bench_broker")
    assert f"| 20 | 500 | 2 | yes | {run.windows[-1].end_s} |" in table


def test_without_a_follower_nothing_is_consumed(stack: localstack.StackInfo) -> None:
    run = bench_broker.measure(
        stack.kafka_bootstrap,
        stack.pids["kafka"],
        rate=500,
        linger_ms=20,
        seconds=1.0,
        window_s=1.0,
        partitions=2,
        followed=False,
    )

    assert len(run.windows) == 1 and run.windows[0].produced >= 450
    assert run.windows[0].consumed == 0
    assert "| no |" in bench_broker.markdown([run], "python -m scripts.bench_broker")
