"""Write an interaction frame and its items as MovieLens 100k files (``u.data``, ``u.item``).

For evaluating on the MovieLens *format* end to end (loaders by content, the item file found
beside the ratings, genres as the only item features). Ids become integers (the digits of the
ids, which the synthetic generator's ``u000123``/``i000045`` have); events become ratings
(purchase 5, add_to_cart 4, click 3, view 2, which the loader maps back); timestamps become
seconds. Titles carry no taste: ``Film <id> (<year>)``; genres are the items' ``genres``
names matched to MovieLens's 19 (unmatched ones dropped, none left → "unknown"). So the
only taste-bearing feature left is the genre, weaker than the generated category.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from shared.data.items import ML_100K_GENRES

EVENT_RATINGS = {"purchase": 5, "add_to_cart": 4, "click": 3, "view": 2}
_DIGITS = re.compile(r"\d+")


def _numeric(ids: pd.Series) -> pd.Series:
    digits = ids.astype(str).str.findall(_DIGITS).str.join("")
    if (digits == "").any():
        raise ValueError("MovieLens ids are integers: every id needs digits")
    return digits.astype(np.int64).astype(str)


def write_movielens_100k(interactions: pd.DataFrame, items: pd.DataFrame, out: Path,
                         seed: int = 0) -> None:
    """``out/u.data`` (user, item, rating, seconds; tab separated) and ``out/u.item``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = pd.DataFrame({
        "user": _numeric(interactions["user_id"]), "item": _numeric(interactions["item_id"]),
        "rating": interactions["event"].map(EVENT_RATINGS).fillna(2).astype(int),
        "ts": interactions["ts"].astype(np.int64) // 1000})
    data.to_csv(out / "u.data", sep="\t", header=False, index=False)
    names = {g.lower().replace("-", "").replace("'", ""): j for j, g in enumerate(ML_100K_GENRES)}
    years = np.random.default_rng(seed).integers(1930, 2000, size=len(items))
    lines = []
    genres = items["genres"] if "genres" in items else pd.Series("", index=items.index)
    for item, wanted, year in zip(_numeric(items["item_id"]), genres.fillna(""), years,
                                  strict=True):
        flags = ["0"] * len(ML_100K_GENRES)
        for genre in str(wanted).split("|"):
            j = names.get(genre.strip().lower().replace("-", ""))
            if j is not None:
                flags[j] = "1"
        if "1" not in flags:
            flags[0] = "1"
        lines.append(f"{item}|Film {item} ({year})|01-Jan-{year}||-|{'|'.join(flags)}")
    (out / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
