import socket

import pytest

from shared.config import StatsdSettings
from shared.metrics import CATALOGUE, Metrics, UnknownMetricError, spec_for


def test_placeholders_match_one_segment() -> None:
    assert spec_for("trainer.growth.items").name == "trainer.growth.{table}"
    assert spec_for("api.recommend.source.popular").kind == "counter"
    with pytest.raises(UnknownMetricError):
        spec_for("trainer.growth.items.extra")
    with pytest.raises(UnknownMetricError):
        spec_for("not.a.metric")


def test_metrics_reach_a_real_statsd_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(2)
        port = server.getsockname()[1]
        metrics = Metrics(StatsdSettings(host="127.0.0.1", port=port, prefix="t"), instance="h-1")
        metrics.incr("trainer.events", 3)
        assert server.recv(1024) == b"t.trainer.events:3|c"
        metrics.gauge("faiss.index_size", 10)
        assert server.recv(1024) == b"t.faiss.index_size.h-1:10|g"


def test_gauges_carry_the_instance_so_replicas_do_not_overwrite_each_other() -> None:
    one, two = (Metrics(StatsdSettings(enabled=False), instance=i) for i in ("a-1", "b-2"))
    for spec in CATALOGUE.values():
        assert (spec.kind == "gauge") == spec.name.endswith(".{instance}"), spec.name
    one.gauge("trainer.lag", 5)
    assert one.sent == {"trainer.lag": 5}  # tests and /stats read the name without instance
    assert spec_for("trainer.lag.a-1").name == "trainer.lag.{instance}"
    with pytest.raises(UnknownMetricError):
        two.gauge("trainer.lag.a-1", 1)  # the instance is added once, by the client


def test_wrong_kind_and_unknown_names_are_refused() -> None:
    metrics = Metrics(StatsdSettings(enabled=False))
    with pytest.raises(UnknownMetricError):
        metrics.gauge("trainer.events", 1)
    with pytest.raises(UnknownMetricError):
        metrics.incr("trainer.evnts")
    with metrics.timer("trainer.batch_ms"):
        pass
    assert metrics.sent["trainer.batch_ms"] >= 0
    assert all(spec.kind in {"counter", "gauge", "timer"} for spec in CATALOGUE.values())
