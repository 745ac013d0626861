"""The one catalogue of statsd metric names, and a thin client over it.

Every service emits through :class:`Metrics`, which refuses names that are not in
:data:`CATALOGUE`; the Grafana dashboard is tested against the same catalogue, so a panel can
never point at a metric nobody sends. Names are relative to the configured prefix
(``recsys.`` by default); ``{placeholders}`` stand for one path segment.

Gauges are per instance: statsd keeps one value per name, so replicas and workers sending the
same gauge would overwrite each other. Every gauge is catalogued as ``<name>.{instance}`` and
:meth:`Metrics.gauge` is called with ``<name>``; it appends ``<host>-<pid>`` (Graphite then
sums or maxes over ``<name>.*``). Counters and timers are aggregated by statsd across senders
and need no instance. Liveness is a counter (``trainer.heartbeat``), never a gauge: statsd
re-sends a gauge's last value, a counter nobody increments reads 0.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import statsd

from shared.config import StatsdSettings
from shared.logs import instance_name


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # "counter" | "timer" | "gauge"
    help: str


_SPECS = [
    # incremental_trainer
    MetricSpec("trainer.events", "counter", "valid interactions learned"),
    MetricSpec("trainer.batch_ms", "timer", "time to evaluate, learn and publish one micro-batch"),
    MetricSpec("trainer.batch_size.{instance}", "gauge", "events in the last micro-batch"),
    MetricSpec(
        "trainer.lag.{instance}", "gauge", "consumer lag on interactions, summed over partitions"
    ),
    MetricSpec(
        "trainer.prequential.recall_at_10.{instance}",
        "gauge",
        "moving-window prequential recall@10",
    ),
    MetricSpec(
        "trainer.prequential.precision_at_10.{instance}",
        "gauge",
        "moving-window prequential precision@10",
    ),
    MetricSpec(
        "trainer.prequential.popularity_recall_at_10.{instance}",
        "gauge",
        "moving-window recall@10 of the streaming-popularity baseline",
    ),
    MetricSpec("trainer.growth.{table}", "counter", "embedding table growths (users or items)"),
    MetricSpec(
        "trainer.capacity.{table}.{instance}", "gauge", "rows allocated in the embedding table"
    ),
    MetricSpec("trainer.dlq", "counter", "malformed records sent to the dead-letter topic"),
    MetricSpec("trainer.publish_ms", "timer", "time to publish one batch's vectors and state"),
    MetricSpec("trainer.snapshot_ms", "timer", "time to write one snapshot"),
    MetricSpec(
        "trainer.stage_ms.{stage}",
        "timer",
        "one batch's time in a stage (evaluate, learn, redis, item_vectors, rank_train, "
        "ranking_signals)",
    ),
    MetricSpec(
        "trainer.users_backlog.{instance}", "gauge", "user vectors not yet written to MongoDB"
    ),
    MetricSpec("trainer.freshness_ms", "timer", "event timestamp to its vectors being published"),
    MetricSpec(
        "trainer.heartbeat", "counter", "poll-loop turns, about one a second also while idle"
    ),
    MetricSpec(
        "trainer.snapshot_age_s.{instance}",
        "gauge",
        "seconds since this trainer last wrote a snapshot (since its start before the first)",
    ),
    # faiss_app
    MetricSpec("faiss.search_ms", "timer", "time to answer one /v1/search batch"),
    MetricSpec("faiss.similar_ms", "timer", "time to answer one /v1/similar"),
    MetricSpec("faiss.queries", "counter", "query vectors searched"),
    MetricSpec("faiss.index_size.{instance}", "gauge", "items in the live index"),
    MetricSpec("faiss.updates_applied", "counter", "item-vector upserts and deletes applied"),
    MetricSpec("faiss.reloads", "counter", "snapshot loads"),
    MetricSpec(
        "faiss.update_lag_ms",
        "timer",
        "item-vector message produced to applied in this worker's index (oldest of each batch)",
    ),
    MetricSpec(
        "faiss.model_age_s.{instance}",
        "gauge",
        "seconds since the model version this worker serves was written by the trainer",
    ),
    MetricSpec("faiss.updates_malformed", "counter", "item-vector messages skipped as malformed"),
    MetricSpec("faiss.errors.{code}", "counter", "client errors answered, by HTTP status"),
    # recommender_app
    MetricSpec("api.{endpoint}.ms", "timer", "request latency per endpoint"),
    MetricSpec("api.{endpoint}.requests", "counter", "requests per endpoint"),
    MetricSpec("api.recommend.source.{source}", "counter", "answers per source"),
    MetricSpec("api.recommend.source_ms.{source}", "timer", "/recommend latency per source"),
    MetricSpec("api.degraded.{dependency}", "counter", "degraded answers, by failed dependency"),
    MetricSpec("api.errors.{code}", "counter", "error answers, by HTTP status"),
    MetricSpec("api.server_errors", "counter", "5xx answers (numerator of the error ratio)"),
    MetricSpec(
        "api.recommend.degraded",
        "counter",
        "/recommend answers with degraded=true (numerator of the degraded ratio)",
    ),
    MetricSpec("api.dependency.{dependency}.ms", "timer", "latency of one dependency call"),
    MetricSpec("api.events.accepted", "counter", "events accepted by POST /events"),
    MetricSpec("api.events.rejected", "counter", "events rejected by POST /events"),
    MetricSpec("api.events.spooled", "counter", "accepted events spooled locally (Kafka away)"),
    MetricSpec("api.spool.delivered", "counter", "spooled events delivered to Kafka later"),
    MetricSpec(
        "api.spool.depth.{instance}", "gauge", "events in this worker's spool, not yet in Kafka"
    ),
]

CATALOGUE: dict[str, MetricSpec] = {spec.name: spec for spec in _SPECS}

_SEGMENT = r"[A-Za-z0-9_\-]+"
_PATTERNS = [
    (re.compile("^" + re.sub(r"\\\{[a-z_]+\\\}", _SEGMENT, re.escape(s.name)) + "$"), s)
    for s in _SPECS
]


class UnknownMetricError(KeyError):
    """A metric name that is not in the catalogue."""


def spec_for(name: str) -> MetricSpec:
    """Return the catalogue entry a concrete name (placeholders filled in) belongs to."""
    for pattern, spec in _PATTERNS:
        if pattern.match(name):
            return spec
    raise UnknownMetricError(name)


class Metrics:
    """A statsd client that only sends catalogued names; sends nothing when disabled.

    statsd is UDP: a send never blocks on the collector and never raises if it is down.
    ``sent`` keeps the last value per name for /stats endpoints and tests (gauges under the
    name given, without the instance).

    Build it in the process that sends (after a fork): the instance names its pid.
    """

    def __init__(
        self,
        settings: StatsdSettings,
        client: statsd.StatsClient | None = None,
        instance: str | None = None,
    ):
        self.instance = instance or instance_name()
        self._client = client
        if client is None and settings.enabled:
            self._client = statsd.StatsClient(settings.host, settings.port, prefix=settings.prefix)
        self.sent: dict[str, float] = {}
        self._checked: dict[str, str] = {}  # name → kind: the catalogue is searched once a name

    def _check(self, name: str, kind: str) -> None:
        if self._checked.get(name) == kind:
            return
        spec = spec_for(name)
        if spec.kind != kind:
            raise UnknownMetricError(f"{name} is a {spec.kind}, not a {kind}")
        self._checked[name] = kind

    def incr(self, name: str, count: int = 1) -> None:
        self._check(name, "counter")
        self.sent[name] = self.sent.get(name, 0) + count
        if self._client is not None:
            self._client.incr(name, count)

    def gauge(self, name: str, value: float) -> None:
        """Send ``<name>.<instance>`` (the catalogue lists it as ``<name>.{instance}``)."""
        full = f"{name}.{self.instance}"
        self._check(full, "gauge")
        self.sent[name] = value
        if self._client is not None:
            self._client.gauge(full, value)

    def timing(self, name: str, ms: float) -> None:
        self._check(name, "timer")
        self.sent[name] = ms
        if self._client is not None:
            self._client.timing(name, ms)

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timing(name, (time.perf_counter() - started) * 1000.0)
