"""Raw string rows → the common interaction frame, rejecting (and counting) rows that cannot be
learned from.

Rules, applied in this order to each row:

- ``user`` and ``item`` must be present and match ``shared.events.ID_PATTERN``.
- The event: the ``event`` column mapped through the event mapping (source names are compared in
  lower case; platform names map to themselves). An event the mapping does not know is rejected
  (the report lists the unknown names: add them with ``--events``); one mapped to ``-`` is
  dropped on purpose and counted. Where there is no event (no column, or an empty cell) the
  ``rating`` decides (:func:`rating_to_event`); with neither, the row is a ``view``, and the
  report says how many rows got that default.
- ``ts``: a number below 1e11 is Unix seconds, otherwise Unix milliseconds; text is parsed as an
  ISO-8601 date-time (UTC unless it says otherwise). No ``ts`` column: the row order, 1 ms apart
  from 2020-01-01, noted in the report.

Every rejected row is counted under its reason, with the first few shown.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from shared.data.mapping import DROP_EVENT
from shared.data.reading import RawTable
from shared.data.report import BadRow, LoadReport, shorten
from shared.events import EVENT_WEIGHTS, ID_PATTERN, MAX_ID_LENGTH

COLUMNS = ["user_id", "item_id", "event", "ts"]
DEFAULT_EVENT = "view"
SECONDS_BELOW = 100_000_000_000  # ts under 1e11 cannot be ms after 1973: they are seconds
NO_TS_START_MS = 1_577_836_800_000  # 2020-01-01
MAX_RATING = 5.0
# Ratings (0.5-5 stars) → events; every rating is a positive (the user watched or bought it),
# and its strength picks how much it counts. First threshold met wins.
RATING_EVENTS: tuple[tuple[float, str], ...] = (
    (5.0, "purchase"), (4.0, "add_to_cart"), (3.0, "click"), (0.0, "view"))


def rating_to_event(ratings: pd.Series) -> pd.Series:
    """Map star ratings to events: 5 purchase, 4-4.5 add_to_cart, 3-3.5 click, below 3 view.

    Non-numeric ratings map to ``view``; :func:`normalize` rejects them before calling this.
    """
    values = pd.to_numeric(ratings, errors="coerce").fillna(0).to_numpy()
    conditions = [values >= threshold for threshold, _ in RATING_EVENTS]
    events = np.select(conditions, [name for _, name in RATING_EVENTS], DEFAULT_EVENT)
    return pd.Series(events, index=ratings.index, dtype=object)


def _examples(raw: RawTable, mask: np.ndarray, reason: str, limit: int = 5) -> list[BadRow]:
    rows = np.flatnonzero(mask)[:limit]
    return [BadRow(int(raw.lines[i]), reason,
                   shorten(",".join(str(v) for v in raw.frame.iloc[i].tolist())), raw.unit)
            for i in rows]


class Rejector:
    """Marks rows bad (first reason wins) and records them in the report."""

    def __init__(self, raw: RawTable, report: LoadReport) -> None:
        self.raw = raw
        self.report = report
        self.bad = np.zeros(len(raw.frame), dtype=bool)

    def reject(self, mask: np.ndarray, reason: str) -> None:
        new = mask & ~self.bad
        if new.any():
            self.report.reject(reason, int(new.sum()), _examples(self.raw, new, reason))
            self.bad |= new


def valid_ids(values: pd.Series) -> np.ndarray:
    text = values.astype(str)
    ok = text.str.len().between(1, MAX_ID_LENGTH) & text.str.fullmatch(ID_PATTERN)
    return ok.fillna(False).to_numpy(dtype=bool)


def _timestamps(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(ms as int64, ok mask). Numbers: seconds below 1e11 else ms; text: ISO-8601 dates."""
    text = values.astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    ms = np.where(numbers < SECONDS_BELOW, numbers * 1000, numbers)
    dates = numbers.isna() & (text != "")
    if dates.any():
        parsed = pd.to_datetime(text[dates], errors="coerce", utc=True, format="ISO8601")
        as_ms = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
        ms[dates.to_numpy()] = as_ms.astype("float64").to_numpy()
    ok = np.isfinite(ms) & (ms > 0) & (ms < 2**62)
    return np.where(ok, ms, 0).astype(np.int64), ok


def normalize(raw: RawTable, fields: Mapping[str, str], events: Mapping[str, str],
              report: LoadReport) -> pd.DataFrame:
    """The common frame (:data:`COLUMNS`, sorted by ``ts``, stable) from ``raw``.

    ``fields`` maps ``user``, ``item`` and optionally ``event``, ``ts``, ``rating`` to columns
    of ``raw.frame``; ``events`` maps source event names (lower case) to platform events or
    ``-``. Updates ``report`` (rows, loaded, rejections, notes, event counts).
    """
    frame = raw.frame
    report.rows = len(frame) + raw.skipped_count
    report.reject(raw.skipped_reason, raw.skipped_count, raw.skipped)
    if raw.encoding == "latin-1":
        report.note("not valid UTF-8: read as Latin-1")
    rejector = Rejector(raw, report)
    user = frame[fields["user"]].astype(str).str.strip()
    item = frame[fields["item"]].astype(str).str.strip()
    rejector.reject(((user == "") | (item == "")).to_numpy(), "missing user or item")
    rejector.reject(~(valid_ids(user) & valid_ids(item)),
                    f"user or item id outside [A-Za-z0-9_.:@-]{{1,{MAX_ID_LENGTH}}}")

    event = pd.Series(np.full(len(frame), "", dtype=object), index=frame.index)
    if "event" in fields:
        source = frame[fields["event"]].astype(str).str.strip().str.lower()
        mapped = source.map(dict(events))
        unknown = ((source != "") & mapped.isna()).to_numpy()
        if unknown.any():
            names = source[unknown & ~rejector.bad].value_counts()
            if len(names):
                report.note("unknown events (map them with --events NAME=EVENT): " + ", ".join(
                    f"{name!r} {count}" for name, count in names.head(10).items()))
        rejector.reject(unknown, "unknown event")
        dropped = (mapped == DROP_EVENT).to_numpy()
        rejector.reject(dropped, "event mapped to '-' (dropped on purpose)")
        event = mapped.where(mapped.notna() & ~(mapped == DROP_EVENT), "").astype(object)
    no_event = (event == "").to_numpy()
    from_rating = np.zeros(len(frame), dtype=bool)
    if "rating" in fields and no_event.any():
        rating_text = frame[fields["rating"]].astype(str).str.strip()
        rating = pd.to_numeric(rating_text, errors="coerce")
        rejector.reject(no_event & (rating_text == "").to_numpy(), "missing rating")
        rejector.reject(no_event & rating.isna().to_numpy(), "rating is not a number")
        rejector.reject(no_event & ~rating.between(0, MAX_RATING).fillna(True).to_numpy(),
                        f"rating outside 0-{MAX_RATING:g}")
        event[no_event] = rating_to_event(rating_text[no_event])
        from_rating = no_event
    else:
        event[no_event] = DEFAULT_EVENT

    if "ts" in fields:
        ts_text = frame[fields["ts"]].astype(str).str.strip()
        rejector.reject((ts_text == "").to_numpy(), "missing ts")
        ts, ts_ok = _timestamps(ts_text)
        rejector.reject(~ts_ok, "ts is not a number or an ISO-8601 date")
    else:
        ts = NO_TS_START_MS + np.arange(len(frame), dtype=np.int64)
        report.note("no timestamps: the row order is the time order")

    keep = ~rejector.bad
    if (from_rating & keep).any():
        report.note(f"ratings → events for {int((from_rating & keep).sum())} rows: 5 purchase, "
                    "4-4.5 add_to_cart, 3-3.5 click, below 3 view")
    defaulted = int((no_event & ~from_rating & keep).sum())
    if defaulted:
        report.note(f"no event or rating for {defaulted} rows: taken as {DEFAULT_EVENT}")
    out = pd.DataFrame({"user_id": user[keep].to_numpy(dtype=object),
                        "item_id": item[keep].to_numpy(dtype=object),
                        "event": event[keep].to_numpy(dtype=object),
                        "ts": ts[keep]})
    out = out.sort_values("ts", kind="stable").reset_index(drop=True)
    report.loaded = len(out)
    counts = out["event"].value_counts()
    report.events = {name: int(counts[name]) for name in EVENT_WEIGHTS if name in counts}
    return out
