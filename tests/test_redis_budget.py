"""Every Redis call of a ``/recommend`` request ends within the request budget (issue 17).

Against a real Valkey hung with SIGSTOP (tests/private_redis.py): connections still open (the
kernel accepts them) and commands are sent, but no answer ever comes, the case a socket
timeout per call handled worst (each call waited the whole timeout, and redis-py's retries
waited again). The answer must come within the budget plus scheduling slack, degraded, never
an error, and Redis must be used again as soon as it answers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shared.config import Settings
from shared.storage import redis_deadline
from tests.conftest import replace
from tests.private_redis import PrivateRedis
from tests.test_recommender_support import World, api_settings, client_for, seed

BUDGET_S = 0.4
# In-process app, one request at a time: what is left over the budget is Python and the
# scheduler of a shared two-core machine, not waiting.
SLACK_S = 0.15
REQUESTS = (
    {"user_id": "u0", "k": 3},
    {"item_id": "i1", "k": 3},
    {"k": 3},
    {"user_id": "u0", "k": 3, "category": "c1"},
)


@pytest.fixture
def hung_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.parametrize("ranking", [False, True], ids=["gmf", "ranking-stage"])
def test_recommend_answers_within_the_budget_while_redis_hangs(
    settings: Settings, faiss_url: str, world: World, hung_redis: PrivateRedis, ranking: bool
):
    configured = api_settings(settings, faiss_url, ranking=ranking, request_budget_s=BUDGET_S,
                              breaker_cooldown_s=0.05, popular_cache_s=0.0)
    configured = replace(configured, "redis", url=hung_redis.url, timeout_s=5.0)
    # Refreshed on the request path between requests: their Redis reads must be bounded too.
    configured = replace(configured, "catalogue", deleted_refresh_s=0.05, new_item_refresh_s=0.05)
    seed(configured, world)
    client, deps = client_for(configured)
    try:
        healthy = client.simulate_get("/recommend", params=REQUESTS[0])
        assert healthy.status_code == 200 and healthy.json["degraded"] is False, healthy.text
        hung_redis.pause()
        timings = []
        for params in REQUESTS * 3:
            time.sleep(0.06)  # past the breaker's cooldown: each request tries Redis again
            started = time.monotonic()
            result = client.simulate_get("/recommend", params=params)
            timings.append(time.monotonic() - started)
            assert result.status_code == 200, result.text
            assert "redis" in result.json["degraded_dependencies"], (params, result.json)
        assert max(timings) < BUDGET_S + SLACK_S, [round(t, 3) for t in timings]

        hung_redis.resume()
        deadline = time.monotonic() + 5.0
        while True:
            result = client.simulate_get("/recommend", params=REQUESTS[0])
            if result.json["degraded"] is False or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert result.json["degraded"] is False, result.json
    finally:
        hung_redis.resume()
        deps.close()


def test_a_call_past_its_deadline_fails_at_once_and_leaves_no_stale_answer(
    settings: Settings,
):
    r = redis_deadline.connect(settings.redis)
    try:
        r.set("answer", "42")
        # BLPOP on an empty list blocks server-side: a read that only the deadline can end.
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError), redis_deadline.within(0.2):
            r.blpop(["nothing-here"], timeout=5)
        assert 0.15 < time.monotonic() - started < 0.6
        with redis_deadline.within(1.0), redis_deadline.within(0.0):  # the earliest wins
            with pytest.raises(redis.TimeoutError, match="no time left"):
                r.get("answer")
        # The connection that sent BLPOP was dropped: its late answer is read by nobody.
        r.rpush("nothing-here", "late")
        assert r.get("answer") == "42"
        with redis_deadline.within(1.0):
            assert redis_deadline.time_left() is not None
            assert r.lpop("nothing-here") == "late"
        assert redis_deadline.time_left() is None
    finally:
        r.close()
