"""RECSYS_RECOMMENDER_LOCAL_SEARCH: the worker's own copy of the gmf index answers /recommend
like faiss_app does, follows item-vectors updates, and faiss_app answers while the copy is not
current. Real faiss_app, Kafka, MongoDB and Redis."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from services.recommender_app.deps import Deps
from shared.config import Settings
from shared.faiss_client import FaissClient
from shared.item_vectors import encode_value
from shared.kafka import flush_or_raise, make_producer
from tests.conftest import replace
from tests.test_recommender_support import World, api_settings, client_for, seed

WAIT_S = 30.0  # generous: the machine is shared


class SearchesCounted(FaissClient):
    """The real client, counting the /v1/search calls that reach faiss_app."""

    def __init__(self, url: str) -> None:
        super().__init__(url, 2.0)
        self.searches = 0

    def search_full(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.searches += 1
        return super().search_full(*args, **kwargs)


def local_settings(settings: Settings, faiss_url: str, models_dir: str) -> Settings:
    configured = api_settings(settings, faiss_url, local_search=True)
    return replace(configured, "model", models_dir=models_dir)


def publish(settings: Settings, item_id: str, vector: np.ndarray, version: str) -> None:
    producer = make_producer(settings.kafka)
    producer.produce(
        settings.kafka.item_vectors_topic, key=item_id.encode(), value=encode_value(vector, version)
    )
    flush_or_raise(producer, 10.0)


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT_S}s: {what}"
        time.sleep(0.05)


def top_ids(client: Any, user: str, k: int = 5) -> tuple[list[str], dict]:
    body = client.simulate_get("/recommend", params={"user_id": user, "k": k}).json
    return [item["item_id"] for item in body["items"]], body


def test_the_copy_answers_as_faiss_app_does_and_follows_updates(
    settings: Settings, faiss_url: str, world: World
) -> None:
    configured = local_settings(settings, faiss_url, str(world.models_dir))
    seed(configured, world)
    # An unchanged vector of an existing item: the topic exists and has something to catch up.
    publish(configured, world.ids[3], world.vectors[3], world.version)
    faiss = SearchesCounted(faiss_url)
    client, deps = client_for(configured, faiss=faiss)
    try:
        local = deps.local_index
        assert local is not None
        wait_for(lambda: local.catalog() is not None, "the copy is current")
        before = faiss.searches
        expected = [i for i, _ in world.exact_top_k("u0", 5, set(world.seen["u0"]))]
        ids, body = top_ids(client, "u0")
        assert ids == expected
        assert body["source"] == "personalized" and body["degraded"] is False
        assert body["model_version"] == world.version
        assert faiss.searches == before  # answered in process

        # A new item pointing the way u0 looks: the copy serves it once the update arrives.
        newest = (10.0 * world.queries["u0"]).astype(np.float32)
        publish(configured, "fresh-1", newest, "v-update")
        wait_for(lambda: top_ids(client, "u0")[0][:1] == ["fresh-1"], "fresh-1 served")
        ids, body = top_ids(client, "u0")
        assert ids == ["fresh-1", *expected[:4]] and body["model_version"] == "v-update"
        assert faiss.searches == before
        assert local.describe()["follower"]["caught_up"] is True
    finally:
        deps.close()


def test_faiss_app_answers_while_the_copy_is_not_current(
    settings: Settings, faiss_url: str, world: World, tmp_path: Any
) -> None:
    # The copy cannot be built here (no snapshot in its folder): every answer is faiss_app's.
    configured = local_settings(settings, faiss_url, str(tmp_path / "empty"))
    seed(configured, world)
    faiss = SearchesCounted(faiss_url)
    client, deps = client_for(configured, faiss=faiss)
    try:
        assert isinstance(deps, Deps) and deps.local_index is not None
        ids, body = top_ids(client, "u0")
        assert ids == [i for i, _ in world.exact_top_k("u0", 5, set(world.seen["u0"]))]
        assert body["model_version"] == world.version and body["degraded"] is False
        assert faiss.searches == 1
        assert deps.local_index.catalog() is None
    finally:
        deps.close()
