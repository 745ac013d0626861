"""Item metadata loaders: MovieLens u.item / movies.dat / movies.csv and a generic items CSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.data import load_items


def test_movielens_100k_u_item_latin1_first_genre(tmp_path: Path) -> None:
    path = tmp_path / "u.item"
    flags = ["0"] * 19
    flags[3] = flags[5] = "1"  # Animation, Comedy
    rows = ["1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(flags),
            "2|Les Misérables (1995)|01-Jan-1995||http://y|" + "|".join(["1"] + ["0"] * 18)]
    path.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    items, report = load_items(path)
    assert report.format == "ml-100k-items"
    assert items["title"].tolist() == ["Toy Story (1995)", "Les Misérables (1995)"]
    assert items["category"].tolist()[0] == "Animation"
    assert items["category"].isna().tolist() == [False, True]  # only "unknown" flagged
    assert any("Latin-1" in note for note in report.notes)


def test_movielens_movies_dat_and_csv(tmp_path: Path) -> None:
    dat = tmp_path / "movies.dat"
    dat.write_text("1::Toy Story (1995)::Animation|Children's|Comedy\n"
                   "2::Star Wars: Episode IV (1977)::Action|Sci-Fi\n")
    items, report = load_items(dat)
    assert report.format == "ml-1m-items"
    assert items.values.tolist()[1][:3] == ["2", "Star Wars: Episode IV (1977)", "Action"]
    csv = tmp_path / "movies.csv"
    csv.write_bytes(b'movieId,title,genres\r\n1,"American President, The (1995)",Comedy|Drama\r\n'
                    b"2,Unknown Film (2020),(no genres listed)\r\n")
    items, report = load_items(csv)
    assert report.format == "ml-csv-items"
    assert items["title"].tolist()[0] == "American President, The (1995)"
    assert items["category"].tolist()[0] == "Comedy" and items["category"].isna().tolist()[1]


def test_generic_items_csv_rejects_and_counts_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    path.write_text("sku,name,dept,cost\nA1,Mug,kitchen,4.5\nA 2,Cup,kitchen,3\n"
                    f"A3,{'x' * 300},kitchen,1\nA4,Pan,kitchen,-1\nA1,Mug v2,kitchen,5\n")
    items, report = load_items(path, columns={"item": "sku", "title": "name",
                                              "category": "dept", "price": "cost"})
    assert items.values.tolist() == [["A1", "Mug v2", "kitchen", 5.0]]
    assert report.bad_rows == 3 and report.rows == 5
    assert any("repeated" in note for note in report.notes)
    with pytest.raises(ValueError, match="no column 'item_id'"):
        load_items(path)
