"""Interaction loaders chosen by content, one small file per real format (real column names and
quirks: CRLF, quotes, header or none, gzip); bad rows counted, never silently dropped."""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import pandas as pd
import pytest

from shared.data import COLUMNS, SyntheticConfig, detect_format, generate, load_interactions
from shared.data.mapping import parse_columns, parse_events
from shared.data.options import add_data_arguments, interactions_from_args
from shared.data.split import chronological_split
from shared.events import EVENT_WEIGHTS


def test_movielens_100k_split_file_found_by_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "u1.base"  # 100k's split files; the name alone says nothing
    path.write_text("196\t242\t3\t881250949\n186\t302\t5\t891717742\n22\t377\t1\t878887116\n")
    frame, report = load_interactions(path)
    assert report.format == "ml-100k" and list(frame.columns) == COLUMNS
    assert frame["user_id"].tolist() == ["22", "196", "186"]  # sorted by time
    assert frame["event"].tolist() == ["view", "click", "purchase"]
    assert frame["ts"].tolist() == [878887116000, 881250949000, 891717742000]
    assert frame["ts"].dtype == "int64"
    renamed = tmp_path / "anything.txt"
    renamed.write_bytes(path.read_bytes())
    assert detect_format(renamed) == "ml-100k"


def test_movielens_1m_and_10m_double_colon(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"  # 10M has half stars
    path.write_bytes(b"1::1193::5::978300760\r\n1::661::4.5::978302109\r\n2::3408::2::978300000\r\n"
                     b"2::99::3::97830::0\r\n")
    frame, report = load_interactions(path)
    assert report.format == "ml-1m"
    assert frame["item_id"].tolist() == ["3408", "1193", "661"]
    assert frame["event"].tolist() == ["view", "purchase", "add_to_cart"]
    assert report.rows == 4 and report.loaded == 3
    assert report.bad == {"wrong number of fields": 1}
    assert report.examples[0].line == 4 and "2::99" in report.examples[0].text


def test_movielens_ratings_csv_with_crlf_and_bad_rows_reported(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_bytes(b"userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n"
                     b"1,3,0.5,964981247\r\n2,x y,3.0,964982224\r\n3,5,abc,964982224\r\n"
                     b"4,6,7.0,964982224\r\n")
    frame, report = load_interactions(path)
    assert report.format == "ml-csv"
    assert frame[["item_id", "event"]].values.tolist() == [["3", "view"], ["1", "add_to_cart"]]
    assert (report.rows, report.loaded, report.bad_rows) == (5, 2, 3)
    assert [b.line for b in report.examples] == [4, 5, 6]
    assert "x y" in report.examples[0].text
    summary = report.summary()
    assert "3 rejected" in summary and "rating is not a number" in summary
    assert "ratings → events for 2 rows" in summary


def test_retailrocket_events_mapped_and_unknown_events_named(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("timestamp,visitorid,event,itemid,transactionid\n"
                    "1433221332117,257597,view,355908,\n"
                    "1433224214164,992329,addtocart,248676,\n"
                    "1433221999827,111016,transaction,318965,4000\n"
                    "1433221999828,111016,like,318965,\n")
    frame, report = load_interactions(path)
    assert report.format == "retailrocket"
    assert frame["event"].tolist() == ["view", "purchase", "add_to_cart"]
    assert frame["ts"].tolist()[0] == 1433221332117  # already milliseconds
    assert report.bad == {"unknown event": 1}
    assert any("'like' 1" in note for note in report.notes)
    frame, report = load_interactions(path, events={"like": "click"})
    assert report.loaded == 4 and "click" in frame["event"].tolist()
    _, report = load_interactions(path, events={"view": "-"})
    assert report.bad == {"unknown event": 1, "event mapped to '-' (dropped on purpose)": 1}


def test_amazon_ratings_headerless(tmp_path: Path) -> None:
    path = tmp_path / "ratings_Books.csv"
    path.write_text("A2SUAM1J3GNN3B,0000013714,5.0,1355616000\n"
                    "A1NUSB0W1LQ1LH,0000013714,2.0,1355616001\n")
    frame, report = load_interactions(path)
    assert report.format == "amazon-ratings"
    assert frame["user_id"].tolist() == ["A2SUAM1J3GNN3B", "A1NUSB0W1LQ1LH"]
    assert frame["item_id"].tolist() == ["0000013714"] * 2  # leading zeros kept
    assert frame["event"].tolist() == ["purchase", "view"]


@pytest.mark.parametrize("record", [
    '{"reviewerID": "A2SUAM1J3GNN3B", "asin": "0000013714", "overall": 5.0, '
    '"unixReviewTime": 1355616000, "reviewText": "a, \\"quoted\\" text"}',
    '{"rating": 5.0, "title": "x", "asin": "B01", "parent_asin": "0000013714", '
    '"user_id": "A2SUAM1J3GNN3B", "timestamp": 1355616000000, "verified_purchase": true}',
])
def test_amazon_reviews_json_lines_both_generations_and_gzip(tmp_path: Path, record: str) -> None:
    path = tmp_path / "Books.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(record + "\n{not json\n\n")
    frame, report = load_interactions(path)
    assert report.format == "amazon-reviews"
    assert frame.values.tolist() == [["A2SUAM1J3GNN3B", "0000013714", "purchase", 1355616000000]]
    assert report.bad == {"not a JSON object": 1} and report.examples[0].line == 2


def test_generic_csv_with_column_and_event_mapping(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text('who;what;kind;when\n"u;1";i1;Basket;2024-01-01T00:00:01Z\n'
                    "u2;i2;seen;2024-01-01T00:00:00+00:00\nu3;i3;seen;yesterday\n")
    columns = parse_columns("user=who,item=what,event=kind,ts=when")
    events = parse_events("basket=add_to_cart,seen=view")
    frame, report = load_interactions(path, "auto", columns, events)
    assert report.format == "csv"
    assert frame.values.tolist() == [["u2", "i2", "view", 1704067200000]]
    assert report.bad == {"user or item id outside [A-Za-z0-9_.:@-]{1,128}": 1,
                          "ts is not a number or an ISO-8601 date": 1}
    with pytest.raises(ValueError, match="no column 'userid' for user"):
        load_interactions(path, columns={"user": "userid"})
    with pytest.raises(ValueError, match="not one of"):
        parse_events("like=love")


def test_generic_csv_rating_without_event_is_used_and_said(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("user_id,item_id,rating,ts\nu1,i1,5,1704067200\nu1,i2,1,1704067201\n")
    frame, report = load_interactions(path)
    assert frame["event"].tolist() == ["purchase", "view"]
    assert any("ratings → events for 2 rows" in note for note in report.notes)
    bare = tmp_path / "bare.csv"
    bare.write_text("item_id,user_id\na,x\nb,y\n")
    frame, report = load_interactions(bare, "csv")
    assert frame["user_id"].tolist() == ["x", "y"] and set(frame["event"]) == {"view"}
    assert frame["ts"].is_monotonic_increasing
    assert any("taken as view" in n for n in report.notes)
    assert any("row order" in n for n in report.notes)


def test_parquet_with_mapping(tmp_path: Path) -> None:
    path = tmp_path / "log.bin"  # found by its magic bytes
    pd.DataFrame({"visitor": [7, 8], "sku": ["a", "b"], "action": ["click", "buy"],
                  "at": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True)}
                 ).to_parquet(path)
    frame, report = load_interactions(path, columns=parse_columns(
        "user=visitor,item=sku,event=action,ts=at"), events={"buy": "purchase"})
    assert report.format == "parquet"
    assert frame.values.tolist() == [["7", "a", "click", 1704067200000],
                                     ["8", "b", "purchase", 1704153600000]]


def test_nothing_usable_and_unknown_layouts_are_errors(tmp_path: Path) -> None:
    bad_event = tmp_path / "e.csv"
    bad_event.write_text("user_id,item_id,event\nu1,i1,like\n")
    with pytest.raises(ValueError, match="no usable rows(.|\n)*'like'"):
        load_interactions(bad_event)
    headerless = tmp_path / "h.csv"
    headerless.write_text("u1,i1,1704067200\n")
    with pytest.raises(ValueError, match="cannot tell the format"):
        load_interactions(headerless)
    with pytest.raises(FileNotFoundError):
        load_interactions(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="unknown format"):
        load_interactions(bad_event, "xml")


def test_shared_flags_parse_and_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.csv"
    path.write_text("t,v,e,i\n1433221332117,1,addtocart,9\n")
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    args = parser.parse_args(["--columns", "user=v,item=i,event=e,ts=t",
                              "--events", "addtocart=add_to_cart"])
    frame = interactions_from_args(path, args)
    assert frame["event"].tolist() == ["add_to_cart"]
    assert "1 loaded" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["--columns", "person=v"])


def test_synthetic_is_seeded_structured_and_valid() -> None:
    cfg = SyntheticConfig(n_users=200, n_items=100, n_events=3000, n_clusters=5, seed=11)
    frame, items = generate(cfg)
    again, _ = generate(cfg)
    pd.testing.assert_frame_equal(frame, again)
    assert len(frame) == 3000 and frame["ts"].is_monotonic_increasing
    assert set(frame["event"]) <= set(EVENT_WEIGHTS)
    assert list(items.columns) == ["item_id", "title", "category", "price", "genres"]
    assert items["category"].nunique() == 5 and (items["price"] > 0).all()
    # taste clusters: a user's most frequent category covers most of their events
    merged = frame.merge(items, on="item_id")
    share = merged.groupby("user_id")["category"].agg(lambda c: c.value_counts().iloc[0] / len(c))
    assert share[merged.groupby("user_id").size() >= 10].mean() > 0.45
    # genres carry taste too (cold start learns from them): a user's most frequent genre
    # covers clearly more of their events than with the genres shuffled across items
    def genre_share(genres: pd.Series) -> float:
        first = genres.str.split("|").str[0].groupby(merged["user_id"]).agg(
            lambda g: g.value_counts().iloc[0] / len(g))
        return float(first[merged.groupby("user_id").size() >= 10].mean())

    shuffled = pd.Series(merged["genres"].sample(frac=1.0, random_state=0).to_numpy(),
                         index=merged.index)
    assert genre_share(merged["genres"]) > genre_share(shuffled) + 0.1
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
