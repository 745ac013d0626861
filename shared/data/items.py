"""Item metadata files → a frame ``item_id, title, category, price`` (missing values NaN),
plus ``genres`` (``Genre|Genre``) when the file has them.

``format="auto"`` looks at the content:

- ``ml-100k-items``: MovieLens 100k ``u.item``: ``id|title|date|video date|url|19 genre flags``
  (Latin-1); the category is the first flagged genre other than "unknown".
- ``ml-1m-items``: MovieLens 1M/10M ``movies.dat``: ``id::title::Genre|Genre``.
- ``ml-csv-items``: MovieLens ``movies.csv``: header ``movieId,title,genres``.
- ``csv``: a header with ``item_id`` and any of ``title, category, price`` (or as ``columns``
  maps them: ``item=sku,title=name,category=dept,price=price``; ``genres`` may stand for a
  ``Genre|Genre`` column).

For MovieLens, ``genres`` → ``category`` takes the first genre listed (one category per item
is what popularity-by-category and the answers' metadata use). Rows with a bad id, a title or
category over ``shared.events.MAX_METADATA_TEXT`` characters, or a price that is not a number
in [0, 1e9) are rejected and counted in the report, never cut short or zeroed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from shared.data.loaders import sniff_delimiter, split_fields
from shared.data.normalize import Rejector, valid_ids
from shared.data.reading import RawTable, head_lines, read_delimited, read_double_colon
from shared.data.report import LoadReport
from shared.events import MAX_METADATA_TEXT

ITEM_FORMATS = ("auto", "ml-100k-items", "ml-1m-items", "ml-csv-items", "csv")
ITEM_COLUMNS = ["item_id", "title", "category", "price"]
ML_100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                  "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                  "Romance", "Sci-Fi", "Thriller", "War", "Western"]
NO_GENRES = {"", "(no genres listed)", "unknown"}
MAX_PRICE = 1e9


def detect_item_format(path: Path) -> str:
    lines = head_lines(Path(path), 3)
    if not lines:
        raise ValueError(f"{path}: the file is empty")
    first = lines[0]
    if first.count("|") == 4 + len(ML_100K_GENRES):
        return "ml-100k-items"
    if "::" in first and len(first.split("::")) == 3:
        return "ml-1m-items"
    fields = [f.strip() for f in split_fields(first, sniff_delimiter(lines))]
    if {"movieId", "title", "genres"} <= set(fields):
        return "ml-csv-items"
    return "csv"


def _first_genre(genres: pd.Series) -> pd.Series:
    first = genres.astype(str).str.split("|").str[0].str.strip()
    return first.where(~first.isin(NO_GENRES), "")


def _raw(path: Path, fmt: str, columns: Mapping[str, str] | None
         ) -> tuple[RawTable, dict[str, str]]:
    """The raw table and field → column (fields: item, title, category, genres, price)."""
    if fmt == "ml-100k-items":
        names = ["item", "title", "date", "video_date", "url", *ML_100K_GENRES]
        raw = read_delimited(path, "|", header=False, names=names)
        flags = raw.frame[ML_100K_GENRES[1:]].eq("1").to_numpy()
        labels = np.asarray(ML_100K_GENRES[1:], dtype=object)
        raw.frame["genres"] = ["|".join(labels[row]) for row in flags]
        return raw, {"item": "item", "title": "title", "genres": "genres"}
    if fmt == "ml-1m-items":
        raw = read_double_colon(path, ["item", "title", "genres"])
        return raw, {"item": "item", "title": "title", "genres": "genres"}
    if fmt == "ml-csv-items":
        raw = read_delimited(path, ",", header=True)
        return raw, {"item": "movieId", "title": "title", "genres": "genres"}
    raw = read_delimited(path, sniff_delimiter(head_lines(path)), header=True)
    wanted = {"item": "item_id", "title": "title", "category": "category", "price": "price",
              "genres": "genres"}
    wanted.update(columns or {})
    available = list(raw.frame.columns)
    fields = {}
    for name, source in wanted.items():
        if source in available:
            fields[name] = source
        elif name == "item" or (columns and name in columns):
            raise ValueError(f"{path}: no column {source!r} for {name}; the file has "
                             f"{', '.join(available[:20])}; map it with --columns {name}=NAME")
    return raw, fields


def load_items(path: Path | str, format: str = "auto",
               columns: Mapping[str, str] | None = None) -> tuple[pd.DataFrame, LoadReport]:
    """Item metadata as ``item_id`` (str), ``title``/``category`` (str or NaN), ``price``
    (float or NaN), one row per item (the last row of an id wins, counted in the report)."""
    path = Path(path)
    if format not in ITEM_FORMATS:
        raise ValueError(f"unknown items format {format!r}; expected one of "
                         f"{', '.join(ITEM_FORMATS)}")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    fmt = detect_item_format(path) if format == "auto" else format
    raw, fields = _raw(path, fmt, columns)
    report = LoadReport(str(path), fmt, rows=len(raw.frame) + raw.skipped_count)
    report.reject(raw.skipped_reason, raw.skipped_count, raw.skipped)
    if raw.encoding == "latin-1":
        report.note("not valid UTF-8: read as Latin-1")
    frame = raw.frame
    rejector = Rejector(raw, report)
    item = frame[fields["item"]].astype(str).str.strip()
    rejector.reject(~valid_ids(item), "item id missing or outside [A-Za-z0-9_.:@-]{1,128}")
    out = pd.DataFrame({"item_id": item})
    texts = {"title": fields.get("title"), "category": fields.get("category")}
    if "genres" in fields and texts["category"] is None:
        out["category"] = _first_genre(frame[fields["genres"]])
        report.note("category = the first genre listed")
    for name, source in texts.items():
        if source is not None:
            out[name] = frame[source].astype(str).str.strip()
    for name in ("title", "category"):
        if name in out:
            too_long = (out[name].str.len() > MAX_METADATA_TEXT).to_numpy()
            rejector.reject(too_long, f"{name} longer than {MAX_METADATA_TEXT} characters")
            out[name] = out[name].where(out[name] != "", np.nan)
        else:
            out[name] = np.nan
    if "price" in fields:
        text = frame[fields["price"]].astype(str).str.strip()
        price = pd.to_numeric(text, errors="coerce")
        bad = ((text != "") & ~price.between(0, MAX_PRICE, inclusive="left")).to_numpy()
        rejector.reject(bad, f"price is not a number in [0, {MAX_PRICE:g})")
        out["price"] = price
    else:
        out["price"] = np.nan
    if "genres" in fields:  # all of them, for models that embed items from their features
        genres = frame[fields["genres"]].astype(str).str.split("|").map(
            lambda gs: "|".join(g.strip() for g in gs if g.strip() not in NO_GENRES))
        out["genres"] = genres.where(genres != "", np.nan)
    kept = ITEM_COLUMNS + (["genres"] if "genres" in out else [])
    out = out[~rejector.bad][kept].reset_index(drop=True)
    repeated = out["item_id"].duplicated(keep="last")
    if repeated.any():
        report.note(f"{int(repeated.sum())} repeated item ids: the last row of each is kept")
        out = out[~repeated].reset_index(drop=True)
    report.loaded = len(out)
    if out.empty:
        raise ValueError(f"no usable rows in {path}\n{report.summary()}")
    return out, report


__all__ = ["ITEM_COLUMNS", "ITEM_FORMATS", "detect_item_format", "load_items"]
