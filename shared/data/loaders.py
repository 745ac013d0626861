"""Read interaction logs into the common frame: user_id, item_id, event, ts (Unix ms).

One entry point, :func:`load_interactions`, for every script. ``format="auto"`` looks at the
content (magic bytes, header, delimiter, the first lines), not at the file name:

=================  ===========================================================================
format             recognised by
=================  ===========================================================================
``ml-100k``        MovieLens 100k ``u.data``, ``u1.base`` ...: 4 tab-separated numbers
``ml-1m``          MovieLens 1M / 10M ``ratings.dat``: ``user::item::rating::seconds``
``ml-csv``         MovieLens ``ratings.csv`` (latest, 20M, 25M, 32M): header
                   ``userId,movieId,rating,timestamp``
``retailrocket``   RetailRocket ``events.csv``: header ``timestamp,visitorid,event,itemid,...``;
                   events view, addtocart → add_to_cart, transaction → purchase
``amazon-ratings`` Amazon ratings CSV, no header: ``user,item,rating,seconds``
``amazon-reviews`` Amazon reviews JSON lines (``reviewerID/asin/overall/unixReviewTime`` or the
                   2023 ``user_id/parent_asin/rating/timestamp``)
``csv``            any other delimited text with a header (delimiter sniffed): columns
                   ``user_id,item_id[,event][,ts][,rating]`` or as ``columns`` maps them
``jsonl``          other JSON lines, same column rules
``parquet``        a Parquet file, same column rules
=================  ===========================================================================

Files may be gzip-compressed. ``columns`` (``{"user": "visitorid", ...}``) overrides a
format's column names; ``events`` (``{"addtocart": "add_to_cart"}``) extends its event mapping.
How ratings become events and which rows are rejected: :mod:`shared.data.normalize`. Nothing is
dropped or re-labelled without being counted in the returned :class:`LoadReport`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from shared.data.mapping import merged_events
from shared.data.normalize import COLUMNS, DEFAULT_EVENT, normalize, rating_to_event
from shared.data.reading import (
    RawTable,
    head_lines,
    is_parquet,
    json_keys,
    parquet_columns,
    read_delimited,
    read_json_lines,
    read_parquet,
)
from shared.data.report import LoadReport

FORMATS = ("auto", "ml-100k", "ml-1m", "ml-csv", "retailrocket", "amazon-ratings",
           "amazon-reviews", "csv", "jsonl", "parquet")
GENERIC_COLUMNS = {"user": "user_id", "item": "item_id", "event": "event", "ts": "ts",
                   "rating": "rating"}
_POSITIONAL = ["user", "item", "rating", "ts"]  # headerless rating files


@dataclass(frozen=True)
class Layout:
    """How a format is read: the reader, its delimiter, and which source column is which."""

    reader: str  # "delimited", "jsonl" or "parquet"
    columns: Mapping[str, str]
    sep: str = ","
    header: bool = True
    events: Mapping[str, str] = field(default_factory=dict)
    optional: frozenset[str] = frozenset({"event", "ts", "rating"})


LAYOUTS: dict[str, Layout] = {
    "ml-100k": Layout("delimited", {f: f for f in _POSITIONAL}, sep="\t", header=False),
    "ml-1m": Layout("delimited", {f: f for f in _POSITIONAL}, sep="::", header=False),
    "ml-csv": Layout("delimited", {"user": "userId", "item": "movieId", "rating": "rating",
                                   "ts": "timestamp"}),
    "retailrocket": Layout("delimited", {"user": "visitorid", "item": "itemid",
                                         "event": "event", "ts": "timestamp"},
                           events={"addtocart": "add_to_cart", "transaction": "purchase"}),
    "amazon-ratings": Layout("delimited", {f: f for f in _POSITIONAL}, header=False),
    "amazon-reviews": Layout("jsonl", {"user": "reviewerID", "item": "asin", "rating": "overall",
                                       "ts": "unixReviewTime"}),
    "csv": Layout("delimited", GENERIC_COLUMNS),
    "jsonl": Layout("jsonl", GENERIC_COLUMNS),
    "parquet": Layout("parquet", GENERIC_COLUMNS),
}
AMAZON_2023_COLUMNS = {"user": "user_id", "item": "parent_asin", "rating": "rating",
                       "ts": "timestamp"}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def split_fields(line: str, sep: str) -> list[str]:
    if len(sep) > 1:
        return line.split(sep)
    return next(csv.reader([line], delimiter=sep))


def sniff_delimiter(lines: list[str]) -> str:
    """The delimiter among , tab ; | that splits the first lines into the same >1 fields."""
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",\t;|").delimiter
    except csv.Error:
        return ","


def detect_format(path: Path) -> str:
    """The format of ``path`` by content (see the table in this module's docstring)."""
    path = Path(path)
    if is_parquet(path):
        return "parquet"
    lines = head_lines(path)
    if not lines:
        raise ValueError(f"{path}: the file is empty")
    first = lines[0]
    if first.lstrip().startswith("{"):
        keys = set(json_keys(path))
        amazon = ({"reviewerID", "asin"} <= keys or {"user_id", "rating"} <= keys
                  and ("parent_asin" in keys or "asin" in keys))
        return "amazon-reviews" if amazon else "jsonl"
    if "::" in first and len(first.split("::")) == 4:
        return "ml-1m"
    if first.count("\t") == 3 and all(_is_number(f) for f in first.split("\t")):
        return "ml-100k"
    sep = sniff_delimiter(lines)
    fields = [f.strip() for f in split_fields(first, sep)]
    if {"userId", "movieId", "rating", "timestamp"} <= set(fields):
        return "ml-csv"
    if {"timestamp", "visitorid", "event", "itemid"} <= set(fields):
        return "retailrocket"
    if any(_is_number(f) for f in fields):  # a data row: no header
        if sep == "," and len(fields) == 4 and _is_number(fields[2]) and _is_number(fields[3]):
            return "amazon-ratings"
        raise ValueError(
            f"{path}: cannot tell the format: the first line {first[:80]!r} is not a header and "
            "matches no known headerless layout; add a header and use --format csv "
            "(with --columns if the names differ)")
    return "csv"


def _layout_for(path: Path, fmt: str) -> tuple[Layout, str]:
    layout = LAYOUTS[fmt]
    if fmt == "amazon-reviews" and "reviewerID" not in json_keys(path):
        keys = json_keys(path)
        columns = dict(AMAZON_2023_COLUMNS)
        if "parent_asin" not in keys:
            columns["item"] = "asin"
        layout = Layout("jsonl", columns)
    if layout.reader == "delimited" and layout.header and fmt == "csv":
        layout = Layout("delimited", layout.columns, sep=sniff_delimiter(head_lines(path)))
    return layout, fmt


def _read(path: Path, layout: Layout, wanted: Mapping[str, str]) -> RawTable:
    if layout.reader == "jsonl":
        return read_json_lines(path, list(dict.fromkeys(wanted.values())))
    if layout.reader == "parquet":
        return read_parquet(path, list(dict.fromkeys(wanted.values())))
    names = None if layout.header else list(layout.columns.values())
    return read_delimited(path, layout.sep, layout.header, names)


def _available(path: Path, layout: Layout) -> list[str]:
    if layout.reader == "jsonl":
        return json_keys(path)
    if layout.reader == "parquet":
        return parquet_columns(path)
    if not layout.header:
        return list(layout.columns.values())
    lines = head_lines(path, 1)
    return [f.strip() for f in split_fields(lines[0], layout.sep)] if lines else []


def _fields(path: Path, fmt: str, layout: Layout, columns: Mapping[str, str] | None
            ) -> dict[str, str]:
    """Field → source column, keeping only the optional ones the file has."""
    available = _available(path, layout)
    wanted = dict(layout.columns)
    wanted.update(columns or {})
    fields: dict[str, str] = {}
    for name, source in wanted.items():
        if source in available:
            fields[name] = source
        elif name not in layout.optional or (columns and name in columns):
            raise ValueError(
                f"{path} ({fmt}): no column {source!r} for {name}; the file has "
                f"{', '.join(available[:20]) or 'no columns'}; map it with --columns "
                f"{name}=NAME")
    return fields


def load_interactions(path: Path | str, format: str = "auto",
                      columns: Mapping[str, str] | None = None,
                      events: Mapping[str, str] | None = None
                      ) -> tuple[pd.DataFrame, LoadReport]:
    """Load an interaction log as the common frame plus a report of what was done.

    Parameters
    ----------
    path : a file in one of :data:`FORMATS` (plain or gzip).
    format : ``"auto"`` detects it from the content (:func:`detect_format`).
    columns : field (user, item, event, ts, rating) → source column, over the format's own.
    events : source event name → platform event (or ``-`` to drop), over the format's own.

    Returns
    -------
    frame : columns :data:`COLUMNS`: user_id (str), item_id (str), event (str, a key of
        ``shared.events.EVENT_WEIGHTS``), ts (int64 Unix ms); sorted by ts (stable).
    report : :class:`LoadReport`; rejected rows are counted there with the first few shown.

    Raises ValueError when the format is unknown or undetectable, a mapped column is missing,
    or no row at all could be loaded; FileNotFoundError when ``path`` is not a file.
    """
    path = Path(path)
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    fmt = detect_format(path) if format == "auto" else format
    layout, fmt = _layout_for(path, fmt)
    fields = _fields(path, fmt, layout, columns)
    report = LoadReport(str(path), fmt)
    raw = _read(path, layout, fields)
    frame = normalize(raw, fields, merged_events(layout.events, events), report)
    if frame.empty:
        raise ValueError(f"no usable rows in {path}\n{report.summary()}")
    return frame, report


def write_interactions_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write the common frame as CSV (header ``user_id,item_id,event,ts``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[COLUMNS].to_csv(path, index=False)


__all__ = ["COLUMNS", "DEFAULT_EVENT", "FORMATS", "LAYOUTS", "detect_format",
           "load_interactions", "rating_to_event", "write_interactions_csv"]
