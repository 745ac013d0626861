"""Read interaction files into the common frame: user_id, item_id, event, ts (Unix ms).

- MovieLens ml-100k ``u.data``: tab separated ``user item rating timestamp`` (seconds).
- MovieLens ml-1m ``ratings.dat``: ``user::item::rating::timestamp`` (seconds).
- Generic CSV with a header: ``user_id,item_id[,event][,ts]``. A missing ``event`` becomes
  "view"; a missing ``ts`` becomes the row order (1 ms apart from 2020-01-01); ``ts`` below
  1e11 is taken as seconds and converted to milliseconds.

Ratings are explicit, but the platform learns from positive-only events, so every rating is
kept as a positive and its strength picks the event type (:func:`rating_to_event`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shared.events import EVENT_WEIGHTS, ID_PATTERN

COLUMNS = ["user_id", "item_id", "event", "ts"]
FORMATS = ("auto", "ml-100k", "ml-1m", "csv")
DEFAULT_EVENT = "view"
_SECONDS_BELOW = 100_000_000_000  # ts under 1e11 cannot be ms after 1973: they are seconds
_NO_TS_START_MS = 1_577_836_800_000  # 2020-01-01


def rating_to_event(ratings: pd.Series) -> pd.Series:
    """Map 1–5 star ratings to events: 5 purchase, 4 add_to_cart, 3 click, 1–2 view."""
    values = pd.to_numeric(ratings, errors="coerce").fillna(0).to_numpy()
    events = np.select(
        [values >= 5, values >= 4, values >= 3], ["purchase", "add_to_cart", "click"], "view"
    )
    return pd.Series(events, index=ratings.index, dtype=object)


def _finish(frame: pd.DataFrame, source: Path) -> pd.DataFrame:
    frame = frame[COLUMNS].copy()
    frame["user_id"] = frame["user_id"].astype(str).str.strip()
    frame["item_id"] = frame["item_id"].astype(str).str.strip()
    frame["event"] = frame["event"].astype(str).str.strip().str.lower()
    bad_ids = ~(
        frame["user_id"].str.fullmatch(ID_PATTERN) & frame["item_id"].str.fullmatch(ID_PATTERN)
    )
    if bad_ids.any():
        first = frame[bad_ids].iloc[0]
        raise ValueError(f"{source}: {int(bad_ids.sum())} rows have ids outside "
                         f"[A-Za-z0-9_.:@-]{{1,128}}, first {first.user_id!r}/{first.item_id!r}")
    unknown = ~frame["event"].isin(list(EVENT_WEIGHTS))
    if unknown.any():
        raise ValueError(f"{source}: unknown event {frame['event'][unknown].iloc[0]!r}; "
                         f"expected one of {', '.join(EVENT_WEIGHTS)}")
    ts = pd.to_numeric(frame["ts"], errors="coerce")
    if ts.isna().any():
        raise ValueError(f"{source}: {int(ts.isna().sum())} rows have a non-numeric ts")
    ts = ts.astype(np.int64)
    frame["ts"] = np.where(ts < _SECONDS_BELOW, ts * 1000, ts).astype(np.int64)
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def _movielens(path: Path, sep: str) -> pd.DataFrame:
    raw = pd.read_csv(path, sep=sep, header=None, engine="python" if len(sep) > 1 else "c",
                      names=["user_id", "item_id", "rating", "ts"], dtype=str)
    if raw.isna().any().any():
        raise ValueError(f"{path}: expected 4 fields per line separated by {sep!r}")
    raw["event"] = rating_to_event(raw["rating"])
    return _finish(raw, path)


def load_movielens_100k(path: Path) -> pd.DataFrame:
    """Read ml-100k ``u.data`` (tab separated: user, item, rating, seconds)."""
    return _movielens(Path(path), "\t")


def load_movielens_1m(path: Path) -> pd.DataFrame:
    """Read ml-1m ``ratings.dat`` (``::`` separated: user, item, rating, seconds)."""
    return _movielens(Path(path), "::")


def load_csv(path: Path) -> pd.DataFrame:
    """Read a CSV with header ``user_id,item_id[,event][,ts]`` (extra columns are ignored)."""
    path = Path(path)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"user_id", "item_id"} - set(raw.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {', '.join(sorted(missing))}")
    if "event" not in raw.columns:
        raw["event"] = DEFAULT_EVENT
    raw["event"] = raw["event"].replace("", DEFAULT_EVENT)
    if "ts" not in raw.columns:
        raw["ts"] = _NO_TS_START_MS + np.arange(len(raw), dtype=np.int64)
    return _finish(raw, path)


def load_interactions(path: Path, fmt: str = "auto") -> pd.DataFrame:
    """Load ``path`` as ``fmt`` (one of :data:`FORMATS`).

    ``auto`` picks by file name: ``u.data`` → ml-100k, ``*.dat`` → ml-1m, else CSV.
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if fmt == "auto":
        fmt = "ml-100k" if path.name == "u.data" else "ml-1m" if path.suffix == ".dat" else "csv"
    if fmt == "ml-100k":
        return load_movielens_100k(path)
    if fmt == "ml-1m":
        return load_movielens_1m(path)
    return load_csv(path)


def load_items_csv(path: Path) -> pd.DataFrame:
    """Item metadata CSV with ``item_id`` and any of ``title, category, price``."""
    path = Path(path)
    items = pd.read_csv(path, dtype={"item_id": str, "title": str, "category": str})
    if "item_id" not in items.columns:
        raise ValueError(f"{path}: missing column item_id")
    if "price" in items.columns:
        items["price"] = pd.to_numeric(items["price"], errors="coerce")
    return items


def write_interactions_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write the common frame as CSV (header ``user_id,item_id,event,ts``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[COLUMNS].to_csv(path, index=False)
