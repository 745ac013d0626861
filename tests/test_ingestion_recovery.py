"""POST /events loses nothing while Kafka stalls or restarts, and returns to direct delivery.

Against a Tansu broker owned by the test (tests/private_kafka.py): stopped with SIGSTOP and
resumed, then killed and restarted. Regression (issue 17): after a stall every publish failed
with PRODUCER_FENCED until the API was restarted, and events sent meanwhile were 503s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from falcon import testing

from scripts.private_kafka import PrivateKafka
from services.recommender_app.app import create_app
from services.recommender_app.deps import Deps
from shared.config import Settings
from shared.kafka import ensure_topics, wait_for_topics
from tests.conftest import replace
from tests.polling import wait_for

PUBLISH_TIMEOUT_S = 1.0
# Direct delivery again within this long of the broker's return (the target is 5 s).
RECOVERY_S = 5.0


@pytest.fixture
def api_settings(settings: Settings, broker: PrivateKafka) -> Settings:
    s = replace(settings, "kafka", bootstrap_servers=broker.bootstrap, request_timeout_ms=2000)
    s = replace(s, "recommender", publish_timeout_s=PUBLISH_TIMEOUT_S)
    ensure_topics(s.kafka)
    wait_for_topics(s.kafka, [s.kafka.interactions_topic])
    return s


class Poster:
    """Posts one event per call, numbered per user, and records every answer."""

    def __init__(self, client: testing.TestClient, users: int = 5):
        self.client = client
        self.users = users
        self.sent: list[tuple[str, int]] = []  # (user, ts) of every 202
        self.statuses: list[int] = []
        self.spooled: list[int] = []
        self._n = 0

    def post(self) -> int:
        self._n += 1
        user = f"u{self._n % self.users}"
        ts = 1_700_000_000_000 + self._n
        answer = self.client.simulate_post(
            "/events", json={"user_id": user, "item_id": f"i{self._n}", "event": "view", "ts": ts}
        )
        self.statuses.append(answer.status_code)
        if answer.status_code == 202:
            self.sent.append((user, ts))
            self.spooled.append(answer.json["spooled"])
        return answer.status_code


def read_topic(settings: Settings, expected: int, timeout_s: float = 20.0) -> list[tuple[str, int]]:
    kafka = settings.kafka
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "probe"})
    consumer.assign(
        [
            TopicPartition(kafka.interactions_topic, p, OFFSET_BEGINNING)
            for p in range(kafka.interactions_partitions)
        ]
    )
    got: list[tuple[str, int]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is None:
                    body = json.loads(msg.value())
                    assert msg.key() == body["user_id"].encode()
                    got.append((body["user_id"], body["ts"]))
            if len(set(got)) >= expected:
                break
    finally:
        consumer.close()
    return got


def assert_all_delivered_in_order(sent: list[tuple[str, int]], got: list[tuple[str, int]]) -> None:
    assert set(sent) <= set(got), f"{len(set(sent) - set(got))} events lost"
    for user in {u for u, _ in sent}:
        first_seen = list(dict.fromkeys(ts for u, ts in got if u == user))  # at-least-once
        mine = [ts for u, ts in sent if u == user]
        assert [ts for ts in first_seen if ts in set(mine)] == mine, f"{user} out of order"


def run_outage(
    poster: Poster, outage: Callable[[], None], back: Callable[[], None], down_s: float
) -> float:
    """Post at ~20 events/s through an outage; returns seconds from the broker's return to the
    first directly delivered event."""

    def direct() -> bool:
        assert poster.post() == 202
        return poster.spooled[-1] == 0

    wait_for(direct, timeout_s=15, what="direct delivery")  # a fresh broker takes a moment
    outage()
    until = time.monotonic() + down_s
    while time.monotonic() < until:
        poster.post()
        time.sleep(0.05)
    back()
    returned = time.monotonic()

    wait_for(direct, timeout_s=RECOVERY_S + 10, every_s=0.05, what="direct delivery again")
    recovery = time.monotonic() - returned
    for _ in range(5):
        assert poster.post() == 202
    return recovery


def test_broker_stall_loses_nothing_and_direct_delivery_returns(
    api_settings: Settings, broker: PrivateKafka
) -> None:
    deps = Deps.from_settings(api_settings)
    client = testing.TestClient(create_app(api_settings, deps))
    poster = Poster(client)
    try:
        recovery = run_outage(poster, broker.pause, broker.resume, down_s=3.0)
        assert set(poster.statuses) == {202}  # no 503, no 500 while the spool has room
        assert sum(poster.spooled) > 0
        assert recovery < RECOVERY_S, recovery
        wait_for(lambda: deps.metrics.sent.get("api.spool.depth") == 0, timeout_s=10)
        assert deps.producer.replacements >= 1  # the fenced producer was replaced
    finally:
        deps.close()
    assert_all_delivered_in_order(poster.sent, read_topic(api_settings, len(poster.sent)))


def test_broker_restart_loses_nothing_spooled(api_settings: Settings, broker: PrivateKafka) -> None:
    deps = Deps.from_settings(api_settings)
    client = testing.TestClient(create_app(api_settings, deps))
    poster = Poster(client)

    def restart() -> None:
        broker.start()
        # Tansu keeps topics in memory (production Kafka does not): recreate them.
        ensure_topics(api_settings.kafka)
        wait_for_topics(api_settings.kafka, [api_settings.kafka.interactions_topic])

    try:
        recovery = run_outage(poster, broker.kill, restart, down_s=3.0)
        assert set(poster.statuses) == {202}
        assert recovery < RECOVERY_S, recovery
        wait_for(lambda: deps.metrics.sent.get("api.spool.depth") == 0, timeout_s=10)
    finally:
        deps.close()
    # What the broker held before the restart is gone with its memory; everything sent after
    # the first direct delivery was spooled or delivered after the restart.
    after = poster.sent[poster.spooled.index(0) + 1 :]
    assert_all_delivered_in_order(after, read_topic(api_settings, len(after)))


def test_an_event_acknowledged_after_its_post_stopped_waiting_is_delivered_once(
    api_settings: Settings, broker: PrivateKafka
) -> None:
    """The post spools its event after the direct wait; the original still reaches Kafka
    once the broker resumes within the publish timeout, so the spooled copy is skipped."""
    configured = replace(api_settings, "recommender", publish_timeout_s=4.0,
                         events_direct_wait_s=0.25)
    deps = Deps.from_settings(configured)
    poster = Poster(testing.TestClient(create_app(configured, deps)), users=1)
    try:
        wait_for(lambda: poster.post() == 202 and poster.spooled[-1] == 0, timeout_s=15,
                 what="direct delivery")
        broker.pause()
        started = time.monotonic()
        assert poster.post() == 202 and poster.spooled[-1] == 1
        assert time.monotonic() - started < 1.0  # the direct wait, not the publish timeout
        started = time.monotonic()
        assert poster.post() == 202 and poster.spooled[-1] == 1  # spool pending: no wait
        assert time.monotonic() - started < 0.2
        time.sleep(1.0)
        broker.resume()
        wait_for(lambda: deps.metrics.sent.get("api.spool.depth") == 0, timeout_s=15)
        assert deps.producer.replacements == 0  # a late acknowledgement is not a failure
    finally:
        broker.resume()
        deps.close()
    got = read_topic(configured, len(poster.sent))
    assert_all_delivered_in_order(poster.sent, got)
    assert len(got) == len(set(got)), "a spooled copy was delivered beside its original"
