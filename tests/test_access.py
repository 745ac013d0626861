"""API keys and per-key rate limits (the middleware on a minimal Falcon app; the real app's
/events is covered in test_recommender_api)."""

from __future__ import annotations

import falcon
import pytest
from falcon import testing

from services.recommender_app.access import ApiKeys, TokenBucket, key_id
from shared.config import AccessSettings

KEY_A, KEY_B = "a" * 20, "b" * 20


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Echo:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"ok": True}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.status = falcon.HTTP_202


def client(settings: AccessSettings, clock: Clock | None = None) -> testing.TestClient:
    app = falcon.App(middleware=[ApiKeys(settings, clock=clock or Clock())])
    app.add_route("/events", Echo())
    app.add_route("/recommend", Echo())
    return testing.TestClient(app)


def test_writes_need_a_key_reads_do_not_by_default() -> None:
    c = client(AccessSettings(api_keys=(KEY_A, KEY_B)))
    assert c.simulate_post("/events").status_code == 401
    assert c.simulate_post("/events", headers={"X-API-Key": "nope"}).status_code == 403
    assert c.simulate_post("/events", headers={"X-API-Key": KEY_B}).status_code == 202
    assert (
        c.simulate_post("/events", headers={"Authorization": f"bearer {KEY_A}"}).status_code == 202
    )
    assert c.simulate_get("/events").status_code == 200  # only POST is keyed
    assert c.simulate_get("/recommend").status_code == 200


def test_recommend_can_require_a_key() -> None:
    c = client(AccessSettings(api_keys=(KEY_A,), recommend_requires_key=True))
    assert c.simulate_get("/recommend").status_code == 401
    assert c.simulate_get("/recommend", headers={"X-API-Key": KEY_A}).status_code == 200


def test_no_keys_configured_lets_everything_through() -> None:
    assert client(AccessSettings()).simulate_post("/events").status_code == 202


def test_rate_limit_is_per_key_with_retry_after() -> None:
    clock = Clock()
    c = client(
        AccessSettings(api_keys=(KEY_A, KEY_B), events_rate_per_s=0.5, events_burst=2), clock
    )
    a = {"X-API-Key": KEY_A}
    assert [c.simulate_post("/events", headers=a).status_code for _ in range(2)] == [202, 202]
    limited = c.simulate_post("/events", headers=a)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"  # one token at 0.5/s
    assert c.simulate_post("/events", headers={"X-API-Key": KEY_B}).status_code == 202
    assert c.simulate_post("/events").status_code == 401  # no key: refused before counting
    clock.now += 2.0
    assert c.simulate_post("/events", headers=a).status_code == 202


def test_token_bucket_refills_up_to_its_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(10.0, 3, clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.1)
    clock.now += 100.0
    assert [bucket.take() for _ in range(4)][-1] == pytest.approx(0.1)


def test_key_ids_do_not_reveal_keys() -> None:
    assert len(key_id(KEY_A)) == 8 and KEY_A[:8] != key_id(KEY_A)
