"""Two-tower cold-start model: features, training, the numpy encoder and its snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from shared import snapshots
from shared.data import SyntheticConfig, generate, load_interactions, load_items
from shared.data.movielens_writer import write_movielens_100k
from shared.model.errors import SnapshotFormatError
from shared.model.two_tower import TwoTowerConfig, fit_two_tower, prepare
from shared.model.two_tower_cli import catalogue_vectors, movielens_item_file, train_two_tower
from shared.model.two_tower_features import (
    FeatureSpace,
    age_buckets,
    histories,
    id_bucket,
    item_table,
    price_bucket,
    time_features,
)
from shared.model.two_tower_snapshot import (
    encoder_of,
    load_two_tower,
    save_two_tower,
    space_dir,
)

SMALL = FeatureSpace(id_buckets=4096, user_buckets=4096, category_buckets=64,
                     token_buckets=1024, max_tokens=8, history=10)


def _metadata(items: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {str(r["item_id"]): r for r in items.to_dict("records")}


@pytest.fixture(scope="module")
def synthetic() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate(SyntheticConfig(n_users=300, n_items=200, n_events=8000, n_clusters=6,
                                    seed=5))


def test_histories_hold_each_users_previous_items_newest_first() -> None:
    users = np.array([0, 1, 0, 0, 1])
    items = np.array([10, 20, 11, 12, 21])
    assert histories(users, items, 2).tolist() == [
        [-1, -1], [-1, -1], [10, -1], [11, 10], [20, -1]]


def test_features_hash_stably_and_keep_bucket_zero_for_none() -> None:
    assert id_bucket("i1", SMALL) == id_bucket("i1", SMALL) != 0
    table = item_table(["i1", "i2"], {"i1": {"category": "Books", "price": 3.0,
                                             "title": "A b", "genres": "Drama|War"}},
                       SMALL, known_ids=["i1"])
    assert table.ids[1] == 0 and table.ids[0] == id_bucket("i1", SMALL)  # i2 unknown: no id
    assert table.category[0] > 0 and table.category[1] == 0
    assert (table.tokens[0] > 0).sum() == 4 and (table.tokens[1] == 0).all()
    assert price_bucket(None) == 0 and price_bucket(0) == 1 and price_bucket(3.0) == 3
    assert price_bucket(1e12) == price_bucket(1e15)  # capped, not out of the table
    day = 86_400_000
    assert age_buckets(np.array([-1, 0, day, 3 * day, 10_000 * day])).tolist() == [0, 1, 2, 3, 11]
    # 2024-01-01 was a Monday, 06:00 UTC: a quarter of the day, the first day of the week
    when = time_features(np.array([1_704_067_200_000 + 6 * 3_600_000]))[0]
    assert when[0] == pytest.approx(1.0) and abs(when[1]) < 1e-6
    assert when[2] == pytest.approx(np.sin(2 * np.pi * 0.25 / 7), abs=1e-6)


def test_training_learns_and_numpy_encoder_matches_the_towers(
        synthetic: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    frame, items = synthetic
    data = prepare(frame, _metadata(items), SMALL, min_id_count=3)
    config = TwoTowerConfig(dim=16, hidden=32, epochs=3, batch_size=256, patience=3, seed=1)
    model, fit = fit_two_tower(data, SMALL, config)
    losses = [h["loss"] for h in fit.history]
    assert fit.epochs_run == 3 and losses[-1] < losses[0]
    assert fit.best_recall is not None and fit.best_recall > 0.05  # random would be ~10/200
    encoder = encoder_of(model, data.known_items, data.known_users)
    ages = np.arange(len(data.table), dtype=np.int64) * 3_600_000
    with torch.no_grad():
        expected = model.candidate(*(torch.from_numpy(a) for a in (
            data.table.ids, data.table.category, data.table.price, data.table.tokens,
            age_buckets(ages))))
        hist = np.where(np.arange(SMALL.history) < 3, data.table.ids[:SMALL.history], 0)[None]
        query = model.query(torch.tensor([data.user_buckets[0]]), torch.from_numpy(hist),
                            torch.from_numpy(time_features(np.array([data.ts[0]]))))
    np.testing.assert_allclose(encoder.candidate_vectors(data.table, ages), expected.numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(
        encoder.query_vectors_from_buckets(np.array([data.user_buckets[0]]), hist,
                                           np.array([data.ts[0]])), query.numpy(), atol=1e-5)


def test_a_new_item_lands_beside_its_category_from_features_alone(
        synthetic: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    frame, items = synthetic
    metadata = _metadata(items)
    encoder, _, size = train_two_tower(
        frame, metadata, TwoTowerConfig(dim=16, hidden=32, epochs=4, batch_size=256, seed=2),
        SMALL)
    assert size["parameters"] > 0 and size["bytes_float32"] == 4 * size["parameters"]
    ids, vectors = catalogue_vectors(encoder, frame, metadata)
    category = {i: metadata[i]["category"] for i in ids}
    hits = 0
    cats = sorted(set(category.values()))
    for cat in cats:
        new = {"new": {"category": cat, "title": f"Fresh {cat} thing", "price": 20.0}}
        vector = encoder.candidate_vectors(encoder.item_table(["new"], new), np.zeros(1))[0]
        nearest = np.argsort(-(vectors @ vector))[:10]
        hits += sum(category[ids[j]] == cat for j in nearest)
    # chance would be 10 / len(cats) of each ten
    assert hits / (10 * len(cats)) > 0.6


def test_snapshot_round_trip_without_pickle(tmp_path: Path,
                                            synthetic: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    frame, items = synthetic
    metadata = _metadata(items)
    small = frame.iloc[:1500]
    encoder, _, _ = train_two_tower(small, metadata, TwoTowerConfig(dim=8, hidden=16, epochs=1),
                                    SMALL)
    ids, vectors = catalogue_vectors(encoder, small, metadata)
    version = save_two_tower(tmp_path, encoder.weights, encoder.space, encoder.known_items,
                             encoder.known_users, ids, vectors, metrics={"x": 1})
    assert snapshots.read_latest(space_dir(tmp_path)) == version
    assert snapshots.list_versions(tmp_path) == []  # the GMF versions are not polluted
    loaded, manifest = load_two_tower(tmp_path)
    assert manifest["space"] == "two_tower" and manifest["serving_dim"] == 8
    assert manifest["n_items"] == len(ids) and manifest["metrics"] == {"x": 1}
    read_ids, read_vectors = snapshots.read_item_vectors(space_dir(tmp_path) / version)
    assert read_ids == ids
    np.testing.assert_array_equal(read_vectors, vectors)
    table = loaded.item_table(ids[:5], metadata)
    np.testing.assert_array_equal(loaded.candidate_vectors(table, np.zeros(5)),
                                  encoder.candidate_vectors(table, np.zeros(5)))
    (space_dir(tmp_path) / version / "known_ids.json").write_text("[]")
    with pytest.raises(SnapshotFormatError):
        load_two_tower(tmp_path)


def test_movielens_items_beside_the_ratings_keep_every_genre(tmp_path: Path) -> None:
    flags = ["0"] * 19
    flags[1] = flags[5] = "1"  # Action, Comedy
    (tmp_path / "u.item").write_bytes(
        ("1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(flags) + "\n").encode("latin-1"))
    (tmp_path / "u.data").write_text("1\t1\t5\t881250949\n2\t1\t3\t881250950\n")
    assert movielens_item_file(tmp_path / "u.data") == tmp_path / "u.item"
    assert movielens_item_file(tmp_path / "elsewhere" / "ratings.dat") is None
    items, _ = load_items(tmp_path / "u.item")
    assert items[["category", "genres"]].values.tolist() == [["Action", "Action|Comedy"]]
    csv = tmp_path / "items.csv"
    csv.write_text("item_id,title,category,price,genres\na,Mug,kitchen,3,\nb,Pan,kitchen,4,x|y\n")
    items, _ = load_items(csv)
    assert items["genres"].isna().tolist() == [True, False] and items["genres"][1] == "x|y"


def test_synthetic_stream_as_movielens_files_reads_back(tmp_path: Path) -> None:
    frame, items = generate(SyntheticConfig(n_users=50, n_items=40, n_events=500, seed=8))
    write_movielens_100k(frame, items, tmp_path)
    back, _ = load_interactions(tmp_path / "u.data")
    assert len(back) == len(frame)
    assert back["event"].value_counts().to_dict() == frame["event"].value_counts().to_dict()
    assert movielens_item_file(tmp_path / "u.data") == tmp_path / "u.item"
    read, _ = load_items(tmp_path / "u.item")
    assert len(read) == len(items)
    # genres survive (as MovieLens names), titles carry no category
    assert read["genres"].str.contains("|".join(["Action", "Drama", "Comedy", "Sci-Fi",
                                                  "War", "Western", "Crime"])).any()
    assert not read["title"].str.contains("|".join(items["category"].unique())).any()
