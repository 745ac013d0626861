"""The triplet space kept fresh: new items served at once from features, stream into re-train."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import falcon.testing
import pandas as pd
import pytest

from services.faiss_app.app import Deps, create_app
from shared.config import Settings
from shared.events import Interaction
from shared.kafka import ensure_topics, make_producer, wait_for_topics
from shared.metrics import Metrics
from shared.model.item_features import FeatureVocabulary
from shared.model.triplet import TripletConfig, TripletModel
from shared.model.triplet_refresh import (
    NewItemPublisher,
    StreamLog,
    TrainingStopped,
    run_periodically,
    train_space,
)
from shared.model.triplet_space import TRIPLET_SPACE, TripletSpace
from shared.spaces import space_topic
from tests.conftest import replace
from tests.polling import wait_for

CATEGORIES = ["books", "toys"]


def small_space() -> TripletSpace:
    """An (untrained) model over 1200 items with features: enough for the IVF index."""
    vocabulary = FeatureVocabulary(CATEGORIES, token_buckets=64)
    ids = [f"i{j}" for j in range(1200)]
    meta = [{"category": CATEGORIES[j % 2], "title": f"thing {j % 7}"} for j in range(1200)]
    model = TripletModel(len(ids), vocabulary.n_categories, vocabulary.token_buckets, 8, seed=1)
    model.set_features(*vocabulary.encode(meta))
    return TripletSpace(model.eval(), ids, vocabulary)


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[falcon.testing.TestClient, Settings, TripletSpace]]:
    ensure_topics(settings.kafka, spaces=[TRIPLET_SPACE])
    wait_for_topics(settings.kafka, [space_topic(settings.kafka.item_vectors_topic, "triplet")])
    configured = replace(settings, "faiss", spaces="triplet:ivf")
    space = small_space()
    space.write(configured.model.models_dir, new_items={"shelf-1": {"category": "books"}})
    app = create_app(configured, Deps(metrics=Metrics(configured.statsd)))
    app.runtime.start()
    try:
        yield falcon.testing.TestClient(app), configured, space
    finally:
        app.runtime.stop()


def similar(client: falcon.testing.TestClient, item: str) -> falcon.testing.Result:
    return client.simulate_get("/v1/similar", params={"item_id": item, "k": 5, "space": "triplet"})


def test_a_new_item_with_metadata_is_served_at_once(served) -> None:
    client, settings, space = served
    stats = client.simulate_get("/v1/stats", params={"space": "triplet"}).json
    assert stats["index"]["type"] == "ivf" and stats["count"] == 1201  # + the feature-only item
    assert similar(client, "shelf-1").status_code == 200
    assert similar(client, "brand-new").status_code == 404

    publisher = NewItemPublisher(space, settings.kafka, make_producer(settings.kafka))
    published = publisher.publish_new({
        "brand-new": {"category": "toys", "title": "thing 3"},
        "i5": {"category": "books"},  # known: not re-published
        "mystery": {"category": "unheard-of"},  # nothing to place it by: left for re-train
    })  # fmt: skip
    assert published == ["brand-new"]
    wait_for(lambda: similar(client, "brand-new").status_code == 200, timeout_s=20)
    stats = client.simulate_get("/v1/stats", params={"space": "triplet"}).json
    assert stats["index"]["drift"]["added_since_training"] == 1  # went into a trained cell
    assert publisher.publish_new({"brand-new": {"category": "toys"}}) == []


def test_stream_events_join_the_next_retrain() -> None:
    stream = StreamLog()
    carried = stream.add([
        Interaction("u1", "i1", "view", 1_700_000_000_000),
        Interaction("u1", "n1", "click", 1_700_000_100_000, {"title": "Red ball", "price": 3.0}),
    ])  # fmt: skip
    assert carried == {"n1": {"title": "Red ball"}}
    base = pd.DataFrame([("u0", "i0", "view", 1)], columns=["user_id", "item_id", "event", "ts"])
    frame, items = stream.merged(base, None)
    assert frame["item_id"].tolist() == ["i0", "i1", "n1"]
    assert items is not None and items.to_dict("records") == [{"item_id": "n1", "title": "Red ball"}]


def test_a_failed_retrain_keeps_the_loop_alive() -> None:
    stop = threading.Event()
    calls: list[int] = []

    def retrain() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk full")
        stop.set()

    run_periodically(retrain, 0.01, stop)
    assert len(calls) == 2


def test_a_retrain_cut_short_writes_no_snapshot_and_ends_the_loop(tmp_path) -> None:
    frame = pd.DataFrame({"user_id": ["u1"] * 3 + ["u2"] * 3, "item_id": list("abcabc"),
                          "event": "view", "ts": range(6)})  # fmt: skip
    stop = threading.Event()
    stop.set()  # SIGTERM arrived while training
    with pytest.raises(TrainingStopped):
        train_space(frame, None, TripletConfig(dim=4, epochs=2), tmp_path, stop=stop)
    assert not (tmp_path / "spaces").exists()  # the served space stays as it was

    calls: list[int] = []

    def retrain() -> None:
        calls.append(1)
        raise TrainingStopped("stopped")

    run_periodically(retrain, 0.01, threading.Event())  # returns instead of retrying
    assert calls == [1]
