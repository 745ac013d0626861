"""Item metadata files: MovieLens's own item files beside the ratings, or an items CSV.

- ml-100k ``u.item``: ``|``-separated, latin-1: id, title, release date, video date, URL,
  then 19 genre flags (unknown, Action, …, Western).
- ml-1m ``movies.dat``: ``id::title::Genre|Genre`` (latin-1).
- ml-latest ``movies.csv``: ``movieId,title,genres`` with ``|``-separated genres.
- Any other CSV: :func:`shared.data.loaders.load_items_csv` (``item_id`` and any of
  ``title, category, price, genres``).

Every loader returns a frame with ``item_id`` (str), ``title`` and ``genres`` (``|``-joined)
at least; MovieLens items get their first genre as ``category``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from shared.data.loaders import load_items_csv

ML_100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                  "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                  "Romance", "Sci-Fi", "Thriller", "War", "Western"]
ITEM_FILE_NAMES = ("u.item", "movies.dat", "movies.csv")


def find_item_file(ratings: Path) -> Path | None:
    """MovieLens's own item file in the folder of ``ratings``, if there is one."""
    for name in ITEM_FILE_NAMES:
        candidate = Path(ratings).parent / name
        if candidate.is_file():
            return candidate
    return None


def _with_category(frame: pd.DataFrame) -> pd.DataFrame:
    frame["item_id"] = frame["item_id"].astype(str).str.strip()
    frame["genres"] = frame["genres"].fillna("").astype(str)
    frame["category"] = frame["genres"].str.split("|").str[0]
    return frame[["item_id", "title", "category", "genres"]]


def load_movielens_100k_items(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, sep="|", header=None, encoding="latin-1", dtype=str)
    if raw.shape[1] < 5 + len(ML_100K_GENRES):
        raise ValueError(f"{path}: expected {5 + len(ML_100K_GENRES)} '|'-separated fields")
    flags = raw.iloc[:, 5 : 5 + len(ML_100K_GENRES)].fillna("0").to_numpy() == "1"
    genres = ["|".join(g for g, on in zip(ML_100K_GENRES, row, strict=True) if on)
              for row in flags]
    return _with_category(pd.DataFrame({"item_id": raw[0], "title": raw[1].fillna(""),
                                        "genres": genres}))


def load_movielens_1m_items(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, sep="::", engine="python", header=None, encoding="latin-1",
                      names=["item_id", "title", "genres"], dtype=str)
    return _with_category(raw)


def load_item_file(path: Path) -> pd.DataFrame:
    """Item metadata from ``path``, by its name (see the module doc)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.name == "u.item":
        return load_movielens_100k_items(path)
    if path.suffix == ".dat":
        return load_movielens_1m_items(path)
    if path.name == "movies.csv":
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        if not {"movieId", "title", "genres"} <= set(raw.columns):
            raise ValueError(f"{path}: expected columns movieId,title,genres")
        return _with_category(raw.rename(columns={"movieId": "item_id"}))
    return load_items_csv(path)
