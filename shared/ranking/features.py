"""The feature vector of each candidate, from what the candidate sources and the global lists
already hold (no extra store round trip at request time).

Features (all roughly in [0, 1]; absent = 0):

- ``rank:<source>``: 1/log2(rank + 2) of the item in that source's list (the NDCG discount);
- ``score:gmf``: the GMF score min-max scaled within the GMF list;
- ``score:co_engagement``: the share of followers of the user's recent items this item has,
  i.e. the candidate's similarity to the user's last items as the stream sees it;
- ``popularity``, ``trending``: decayed popularity at the long and the short half-life, as a
  share of the top item's;
- ``newness``: 1 for an item first seen now, falling with log age to 0 at 30 days;
- ``sources``: share of the sources that proposed the item (agreement);
- ``activity*gmf``, ``activity*popularity``: the user's activity (log number of items seen)
  times those signals: a linear model can then trust GMF more for active users and
  popularity more for new ones;
- ``category_affinity``: share of the user's recent items in the candidate's category.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from shared.ranking.candidates import UserContext
from shared.ranking.stores import GlobalLists

Hit = tuple[str, float]

_NEWNESS_HORIZON_H = 24.0 * 30
_ACTIVITY_SATURATION = 200  # items seen: the seen list's default length
_AFFINITY_RECENT = 20


def feature_names(source_names: Sequence[str]) -> list[str]:
    """The feature layout for pipelines with these sources, in order."""
    return [
        *(f"rank:{name}" for name in source_names),
        "score:gmf",
        "score:co_engagement",
        "popularity",
        "trending",
        "newness",
        "sources",
        "activity*gmf",
        "activity*popularity",
        "category_affinity",
    ]


@dataclass
class CandidatePool:
    """Candidates merged over sources (duplicates become one row).

    item_ids : candidate ids in first-proposed order
    found_by : per candidate, {source name: rank in that source (0 = best)}
    features : float32 (n_candidates, n_features), columns as :func:`feature_names`
    """

    item_ids: list[str]
    found_by: list[dict[str, int]]
    features: np.ndarray
    names: list[str]


def build_pool(
    user: UserContext,
    lists_by_source: Mapping[str, list[Hit]],
    source_names: Sequence[str],
    lists: GlobalLists,
    categories: Mapping[str, str],
    now_ms: int,
) -> CandidatePool:
    """Merge the sources' lists (seen items already removed) and compute every feature.

    ``categories`` maps item ids to categories where known (candidates and recent items).
    Runs on every personalized request: the only per-candidate Python is the merge (one dict
    lookup per hit) and one lookup per global list; the features are numpy columns.
    """
    names = feature_names(source_names)
    column = {name: i for i, name in enumerate(names)}
    index: dict[str, int] = {}
    found_by: list[dict[str, int]] = []
    # One flat list of (row, column, value) for every rank and score feature, written into the
    # matrix in one assignment: per-source numpy calls cost more than the arithmetic here.
    rows: list[int] = []
    cols: list[int] = []
    values: list[float] = []
    for source in source_names:
        hits = lists_by_source.get(source) or []
        if not hits:
            continue
        source_rows: list[int] = []
        for rank, (item_id, _score) in enumerate(hits):
            row_i = index.get(item_id)
            if row_i is None:
                row_i = index[item_id] = len(found_by)
                found_by.append({source: rank})
            else:
                found_by[row_i][source] = rank
            source_rows.append(row_i)
        # A repeated item within one list keeps its last rank: later writes win below.
        rows += source_rows
        cols += repeat(column[f"rank:{source}"], len(hits))
        values += _discounts(len(hits))
        score_col, low, span = _score_scale(source, hits, column)
        if score_col is not None:
            rows += source_rows
            cols += repeat(score_col, len(hits))
            values += [(score - low) / span for _, score in hits]
    item_ids = list(index)
    n = len(item_ids)
    # float64 while computing, float32 at the end (as the scores were computed before).
    features = np.zeros((n, len(names)), dtype=np.float64)
    if rows:  # numpy assigns in order: the last write of a cell wins
        count = len(rows)
        features[
            np.fromiter(rows, dtype=np.intp, count=count),
            np.fromiter(cols, dtype=np.intp, count=count),
        ] = np.fromiter(values, dtype=np.float64, count=count)
    n_found = np.fromiter(map(len, found_by), dtype=np.float64, count=n)
    activity = min(1.0, math.log1p(len(user.seen)) / math.log1p(_ACTIVITY_SATURATION))
    row_of, table = lists.signal_rows
    signals = table[
        np.fromiter(map(row_of.get, item_ids, repeat(len(table) - 1, n)), dtype=np.intp, count=n)
    ]
    popularity = signals[:, 0]
    features[:, column["popularity"]] = popularity
    features[:, column["trending"]] = signals[:, 1]
    first_seen = signals[:, 2]
    known = ~np.isnan(first_seen)
    age_h = np.maximum(0.0, (now_ms - first_seen[known]) / 3_600_000.0)
    newness = 1.0 - np.log1p(age_h) / math.log1p(_NEWNESS_HORIZON_H)
    features[known, column["newness"]] = np.maximum(0.0, newness)
    features[:, column["sources"]] = n_found / max(1, len(source_names))
    gmf_col = column.get("rank:gmf")
    if gmf_col is not None:
        features[:, column["activity*gmf"]] = activity * features[:, gmf_col]
    features[:, column["activity*popularity"]] = activity * popularity
    affinity = _category_shares(user, categories)
    if affinity:  # an item without a category looks up "" (never a category): 0
        item_categories = map(categories.get, item_ids, repeat("", n))
        features[:, column["category_affinity"]] = np.fromiter(
            map(affinity.get, item_categories, repeat(0.0, n)), dtype=np.float64, count=n
        )
    return CandidatePool(item_ids, found_by, features.astype(np.float32), names)


def _discount(rank: int) -> float:
    return 1.0 / math.log2(rank + 2.0)


_DISCOUNTS = [_discount(rank) for rank in range(1024)]  # longer lists compute the rest


def _discounts(n: int) -> list[float]:
    """1/log2(rank + 2) for ranks 0..n-1: the NDCG discount."""
    if n <= len(_DISCOUNTS):
        return _DISCOUNTS[:n]
    return _DISCOUNTS + [_discount(rank) for rank in range(len(_DISCOUNTS), n)]


def _score_scale(
    source: str, hits: list[Hit], column: Mapping[str, int]
) -> tuple[int | None, float, float]:
    """Column and (low, span) for sources whose raw score is a feature."""
    col = column.get(f"score:{source}")
    if col is None or not hits:
        return None, 0.0, 1.0
    if source == "co_engagement":  # already a share in [0, ~1]
        return col, 0.0, 1.0
    scores = [score for _, score in hits]
    low, high = min(scores), max(scores)
    return col, low, (high - low) or 1.0


def _category_shares(user: UserContext, categories: Mapping[str, str]) -> dict[str, float]:
    recent = [categories[i] for i in user.recent[:_AFFINITY_RECENT] if i in categories]
    if not recent:
        return {}
    shares: dict[str, float] = {}
    for category in recent:
        shares[category] = shares.get(category, 0.0) + 1.0 / len(recent)
    return shares
