"""Loaders for ml-100k, ml-1m and CSV; the synthetic generator; the chronological split."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from shared.data import COLUMNS, SyntheticConfig, generate, load_interactions
from shared.data.split import chronological_split
from shared.events import EVENT_WEIGHTS


def test_movielens_100k(tmp_path: Path) -> None:
    path = tmp_path / "u.data"
    path.write_text("196\t242\t3\t881250949\n186\t302\t5\t891717742\n22\t377\t1\t878887116\n")
    frame = load_interactions(path)
    assert list(frame.columns) == COLUMNS
    assert frame["user_id"].tolist() == ["22", "196", "186"]  # sorted by time
    assert frame["event"].tolist() == ["view", "click", "purchase"]
    assert frame["ts"].tolist() == [878887116000, 881250949000, 891717742000]
    assert frame["ts"].dtype == "int64"


def test_movielens_1m(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text("1::1193::5::978300760\n1::661::4::978302109\n2::3408::2::978300000\n")
    frame = load_interactions(path)
    assert frame["item_id"].tolist() == ["3408", "1193", "661"]
    assert frame["event"].tolist() == ["view", "purchase", "add_to_cart"]


def test_generic_csv_with_and_without_optional_columns(tmp_path: Path) -> None:
    full = tmp_path / "full.csv"
    full.write_text("user_id,item_id,event,ts\nu1,i1,click,1704067200000\n"
                    "u2,i2,,1704067100\n")
    frame = load_interactions(full)
    assert frame["event"].tolist() == ["view", "click"]  # empty event → view
    assert frame["ts"].tolist() == [1704067100000, 1704067200000]  # seconds → ms
    bare = tmp_path / "bare.csv"
    bare.write_text("item_id,user_id\na,x\nb,y\n")
    frame = load_interactions(bare, "csv")
    assert frame["user_id"].tolist() == ["x", "y"] and set(frame["event"]) == {"view"}
    assert frame["ts"].is_monotonic_increasing


def test_bad_files_are_rejected_with_a_reason(tmp_path: Path) -> None:
    bad_event = tmp_path / "e.csv"
    bad_event.write_text("user_id,item_id,event\nu1,i1,like\n")
    with pytest.raises(ValueError, match="unknown event"):
        load_interactions(bad_event)
    bad_id = tmp_path / "i.csv"
    bad_id.write_text("user_id,item_id\nu 1,i1\n")
    with pytest.raises(ValueError, match="ids"):
        load_interactions(bad_id)
    with pytest.raises(FileNotFoundError):
        load_interactions(tmp_path / "missing.csv")


def test_synthetic_is_seeded_structured_and_valid() -> None:
    cfg = SyntheticConfig(n_users=200, n_items=100, n_events=3000, n_clusters=5, seed=11)
    frame, items = generate(cfg)
    again, _ = generate(cfg)
    pd.testing.assert_frame_equal(frame, again)
    assert len(frame) == 3000 and frame["ts"].is_monotonic_increasing
    assert set(frame["event"]) <= set(EVENT_WEIGHTS)
    assert list(items.columns) == ["item_id", "title", "category", "price"]
    assert items["category"].nunique() == 5 and (items["price"] > 0).all()
    # taste clusters: a user's most frequent category covers most of their events
    merged = frame.merge(items, on="item_id")
    share = merged.groupby("user_id")["category"].agg(lambda c: c.value_counts().iloc[0] / len(c))
    assert share[merged.groupby("user_id").size() >= 10].mean() > 0.45
    # power law: the top 10% of items take far more than 10% of events
    top = frame["item_id"].value_counts()
    assert top.iloc[: len(top) // 10].sum() / len(frame) > 0.3
    # arrivals: some users and items appear only later
    first_seen = frame.groupby("user_id")["ts"].min()
    assert (first_seen > frame["ts"].min() + (frame["ts"].max() - frame["ts"].min()) / 2).any()
    assert generate(SyntheticConfig(n_users=200, n_items=100, n_events=3000, seed=12))[0][
        "user_id"].tolist() != frame["user_id"].tolist()


def test_chronological_split_keeps_time_order_and_boundary_ties() -> None:
    frame = pd.DataFrame({"user_id": list("abcde"), "item_id": list("vwxyz"),
                          "event": ["view"] * 5, "ts": [5, 1, 3, 3, 9]})
    prefix, stream = chronological_split(frame, 0.5)
    assert prefix["ts"].tolist() == [1, 3, 3] and stream["ts"].tolist() == [5, 9]
    prefix, stream = chronological_split(frame, 1.0)
    assert len(prefix) == 5 and stream.empty
