"""scripts/initial_training against the real local MongoDB and Redis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scripts import generate_data, initial_training
from shared import snapshots
from shared.config import Settings
from shared.deleted_items import mark_deleted
from shared.forgotten_users import forgotten_at_ms, record_forgotten
from shared.model.checkpoint import load_snapshot
from shared.storage import mongo, redis_store


@pytest.fixture
def scripts_env(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The scripts run in-process read Settings.from_env(): point them at this test's stack."""
    for key, value in stack_env.items():
        if key.startswith("RECSYS_"):
            monkeypatch.setenv(key, value)


def test_initial_training_writes_snapshot_stream_and_seeds_stores(
    settings: Settings, scripts_env: None, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    assert generate_data.main(["--out", str(data), "--users", "60", "--items", "40",
                               "--events", "1500", "--clusters", "4", "--seed", "5"]) == 0
    code = initial_training.main(["--data-dir", str(data), "--dim", "8", "--epochs", "3",
                                  "--no-progress", "--no-refit"])
    assert code == 0

    stream = pd.read_csv(data / "stream.csv")
    assert 200 <= len(stream) <= 400 and list(stream.columns) == [
        "user_id", "item_id", "event", "ts"]
    models_dir = settings.model.models_dir
    snap = load_snapshot(models_dir)
    assert snapshots.read_latest(models_dir) == snap.version
    assert snap.manifest["embedding_dim"] == 8 and "gmf" in snap.manifest["metrics"]
    everything = pd.read_csv(data / "interactions.csv")
    assert stream["ts"].min() > everything["ts"].iloc[len(everything) - len(stream) - 1]

    db = mongo.connect(settings.mongo)
    assert db[mongo.USERS].count_documents({}) == len(snap.user_map)
    some_user = snap.user_map.ids[0]
    doc = mongo.get_user(db, some_user)
    assert doc is not None and doc["model_version"] == snap.version and doc["n_events"] > 0
    expected = snap.model.query_vectors(snap.user_map.rows([some_user], create=False))[0]
    np.testing.assert_allclose(doc["query_vector"], expected, rtol=1e-6)
    assert db[mongo.ITEMS].count_documents({}) == 40
    assert "category" in mongo.get_items(db, [snap.item_map.ids[0]])[snap.item_map.ids[0]]

    r = redis_store.connect(settings.redis)
    cached = redis_store.get_item_metadata(r, [snap.item_map.ids[0]])
    assert cached[snap.item_map.ids[0]]["title"]
    popular = redis_store.top_popular(r, 5)
    assert len(popular) == 5 and all(item in snap.item_map for item, _ in popular)


def test_no_seed_leaves_stores_untouched(
    settings: Settings, scripts_env: None, tmp_path: Path
) -> None:
    csv = tmp_path / "events.csv"
    rows = [f"u{u},i{(u * 3 + j) % 20},view,{1704067200000 + 1000 * (u * 10 + j)}"
            for u in range(30) for j in range(8)]
    csv.write_text("user_id,item_id,event,ts\n" + "\n".join(rows) + "\n")
    code = initial_training.main(["--input", str(csv), "--dim", "4", "--epochs", "2",
                                  "--no-progress", "--no-seed", "--no-eval",
                                  "--stream-out", str(tmp_path / "stream.csv")])
    assert code == 0
    assert load_snapshot(settings.model.models_dir).manifest["n_items"] == 20
    db = mongo.connect(settings.mongo)
    assert db[mongo.USERS].count_documents({}) == 0
    assert redis_store.connect(settings.redis).zcard(redis_store.POPULAR_KEY) == 0


def test_retraining_leaves_out_deleted_items_and_forgotten_users_earlier_events(
    settings: Settings,
) -> None:
    db = mongo.connect(settings.mongo)
    redis = redis_store.connect(settings.redis)
    mark_deleted(db, redis, "gone")
    record_forgotten(db, "u1", 0, 5)
    (deleted_at,) = forgotten_at_ms(db).values()
    frame = pd.DataFrame({
        "user_id": ["u1", "u1", "u2", "u2"],
        "item_id": ["a", "b", "gone", "c"],
        "event": ["click"] * 4,
        "ts": [deleted_at - 10, deleted_at + 10, deleted_at - 10, deleted_at - 10],
    })
    items = pd.DataFrame({"item_id": ["a", "gone"], "title": ["A", "G"]})
    kept, kept_items = initial_training.without_deleted(settings, frame, items)
    assert list(zip(kept["user_id"], kept["item_id"], strict=True)) == [("u1", "b"), ("u2", "c")]
    assert kept_items is not None and list(kept_items["item_id"]) == ["a"]
