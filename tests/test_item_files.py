"""MovieLens item files beside the ratings: u.item, movies.dat, movies.csv."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.data.item_files import find_item_file, load_item_file


def test_movielens_item_files(tmp_path: Path) -> None:
    flags = ["0"] * 19
    flags[1] = flags[5] = "1"  # Action, Comedy
    (tmp_path / "u.item").write_bytes(
        ("1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(flags) + "\n").encode("latin-1"))
    (tmp_path / "u.data").write_text("1\t1\t5\t881250949\n")
    found = find_item_file(tmp_path / "u.data")
    assert found == tmp_path / "u.item"
    items = load_item_file(found)
    assert items.to_dict("records") == [{"item_id": "1", "title": "Toy Story (1995)",
                                         "category": "Action", "genres": "Action|Comedy"}]
    dat = tmp_path / "ml-1m" / "movies.dat"
    dat.parent.mkdir()
    dat.write_bytes("2::Jumanji (1995)::Adventure|Children's\n".encode("latin-1"))
    assert load_item_file(dat)["category"].tolist() == ["Adventure"]
    csv = tmp_path / "latest" / "movies.csv"
    csv.parent.mkdir()
    csv.write_text('movieId,title,genres\n3,"Heat, The (1995)",Crime|Thriller\n')
    assert load_item_file(csv)[["item_id", "genres"]].values.tolist() == [["3", "Crime|Thriller"]]
    assert find_item_file(tmp_path / "elsewhere" / "ratings.dat") is None
    csv.write_text("id,name\n1,x\n")
    with pytest.raises(ValueError):
        load_item_file(csv)
