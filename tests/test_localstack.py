import socket

import pytest

from scripts import localstack


def test_a_taken_port_is_reported_not_waited_on(tmp_path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(localstack.StackError, match=f"port {taken} for redis is taken"):
            localstack.start(tmp_path, redis_port=taken, timeout_s=5)
    assert localstack.read_state(tmp_path) is None


def servers(info: localstack.StackInfo) -> list[str]:
    """The servers a stack runs: the three stores, and the metrics path where node is present."""
    return sorted(["kafka", "mongo", "redis"] + (["carbon", "statsd"] if info.statsd_port else []))


def test_stack_records_and_stops_exactly_its_processes(stack: localstack.StackInfo) -> None:
    recorded = localstack.read_state(stack.data_dir)
    assert recorded is not None
    assert recorded.pids == stack.pids
    assert localstack.status(stack.data_dir) == dict.fromkeys(servers(stack), True)


def test_two_stacks_run_side_by_side(stack: localstack.StackInfo, tmp_path) -> None:
    # Regression: nx-27017's default global PID file made a second stack's MongoDB refuse to
    # start ("already running"), so parallel test runs failed to come up.
    second = localstack.start(tmp_path, timeout_s=30)
    try:
        assert second.mongo_port != stack.mongo_port
        assert all(localstack.status(tmp_path).values())
    finally:
        assert sorted(localstack.stop(tmp_path)) == servers(second)
    assert localstack.status(stack.data_dir) == dict.fromkeys(servers(stack), True)
