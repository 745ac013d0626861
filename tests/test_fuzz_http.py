"""Fuzzing both HTTP services with generated input: no request may answer 5xx.

Hypothesis generates query strings, JSON bodies (nested, huge numbers, odd strings) and raw
bytes for every endpoint of recommender_app and faiss_app, in process against the real local
Kafka/MongoDB/Redis. Bounded: a fixed number of examples per endpoint, no shrinking deadline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import falcon.testing
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.faiss_app.app import Deps as FaissDeps
from services.faiss_app.app import create_app as create_faiss_app
from services.recommender_app.app import create_app
from services.recommender_app.deps import Deps
from shared.config import Settings
from shared.kafka import ensure_topics
from shared.metrics import Metrics
from tests.conftest import replace
from tests.faiss_helpers import write_snapshot

EXAMPLES = 150
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TOKEN = "fuzz-token"

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=40))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
ids = st.one_of(st.text(max_size=20), st.sampled_from(["u0", "i1", "u1\n", "", "a" * 200]))
event_like = st.fixed_dictionaries(
    {},
    optional={
        "user_id": st.one_of(ids, json_values),
        "item_id": st.one_of(ids, json_values),
        "event": st.one_of(st.sampled_from(["view", "click", "buy"]), json_values),
        "ts": st.one_of(st.integers(min_value=0, max_value=2 * 10**12), json_values),
        "item": json_values,
    },
)
raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"[" * 3000, b"[NaN]", b'{"a": 1e400}', b"\xff\xfe", b""]),
)
params = st.dictionaries(
    st.sampled_from(["user_id", "item_id", "k", "x", "user_id[$ne]"]),
    st.one_of(ids, st.integers().map(str), st.sampled_from(["0", "-1", "1e9", "10" * 50])),
    max_size=3,
)


def body_of(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


@pytest.fixture
def api(settings: Settings) -> Iterator[falcon.testing.TestClient]:
    s = replace(settings, "faiss", url="http://127.0.0.1:1", timeout_s=0.05)
    s = replace(s, "recommender", publish_timeout_s=1.0)
    ensure_topics(s.kafka)
    deps = Deps.from_settings(s)
    try:
        yield falcon.testing.TestClient(create_app(s, deps))
    finally:
        deps.close()


@pytest.fixture
def faiss(settings: Settings) -> Iterator[falcon.testing.TestClient]:
    s = replace(settings, "faiss", admin_token=TOKEN, max_k=50, follow_updates=False)
    vectors = np.random.default_rng(1).normal(size=(50, 8)).astype(np.float32)
    write_snapshot(s.model.models_dir, [f"i{j}" for j in range(50)], vectors)
    app = create_faiss_app(s, FaissDeps(metrics=Metrics(s.statsd), follow_updates=False))
    yield falcon.testing.TestClient(app)
    app.runtime.stop()


def assert_no_5xx(answer: falcon.testing.Result, what: object) -> None:
    assert answer.status_code < 500, (what, answer.status_code, answer.text[:300])
    if answer.status_code >= 400:
        assert answer.json["title"]  # a JSON error, never an HTML page


def test_recommender_never_answers_5xx(api: falcon.testing.TestClient) -> None:
    @FUZZ
    @given(params)
    def recommend(query: dict[str, str]) -> None:
        assert_no_5xx(api.simulate_get("/recommend", params=query), query)

    @FUZZ
    @given(st.one_of(event_like, st.lists(event_like, max_size=3), json_values, raw_bodies))
    def events(body: Any) -> None:
        answer = api.simulate_post("/events", body=body_of(body))
        assert_no_5xx(answer, body)

    recommend()
    events()
    for path in ("/healthz", "/readyz", "/openapi.json", "/nowhere"):
        assert_no_5xx(api.simulate_get(path), path)


def test_faiss_app_never_answers_5xx(faiss: falcon.testing.TestClient) -> None:
    vectors = st.lists(st.one_of(numbers, json_values), min_size=0, max_size=9)
    search_bodies = st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "queries": st.one_of(st.lists(vectors, max_size=3), json_values),
                "k": st.one_of(st.integers(), json_values),
                "exclude": json_values,
            },
        ),
        json_values,
        raw_bodies,
    )

    @FUZZ
    @given(search_bodies)
    def search(body: Any) -> None:
        assert_no_5xx(faiss.simulate_post("/v1/search", body=body_of(body)), body)

    @FUZZ
    @given(params)
    def similar(query: dict[str, str]) -> None:
        assert_no_5xx(faiss.simulate_get("/v1/similar", params=query), query)

    @FUZZ
    @given(st.one_of(st.fixed_dictionaries({"version": json_values}), json_values, raw_bodies))
    def reload(body: Any) -> None:
        answer = faiss.simulate_post(
            "/v1/reload", body=body_of(body), headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert_no_5xx(answer, body)

    search()
    similar()
    reload()
    for path in ("/healthz", "/readyz", "/v1/stats", "/nowhere"):
        assert_no_5xx(faiss.simulate_get(path), path)
