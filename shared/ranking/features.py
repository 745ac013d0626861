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
    """
    names = feature_names(source_names)
    column = {name: i for i, name in enumerate(names)}
    index: dict[str, int] = {}
    found_by: list[dict[str, int]] = []
    rows: list[list[float]] = []
    width = len(names)
    for source in source_names:
        hits = lists_by_source.get(source) or []
        rank_col = column[f"rank:{source}"]
        score_col, low, span = _score_scale(source, hits, column)
        for rank, (item_id, score) in enumerate(hits):
            row_i = index.get(item_id)
            if row_i is None:
                row_i = index[item_id] = len(rows)
                rows.append([0.0] * width)
                found_by.append({})
            found_by[row_i][source] = rank
            row = rows[row_i]
            row[rank_col] = 1.0 / math.log2(rank + 2)
            if score_col is not None:
                row[score_col] = (score - low) / span
    item_ids = list(index)
    activity = min(1.0, math.log1p(len(user.seen)) / math.log1p(_ACTIVITY_SATURATION))
    affinity = _category_shares(user, categories)
    n_sources = max(1, len(source_names))
    gmf_col = column.get("rank:gmf")
    for row_i, item_id in enumerate(item_ids):
        row = rows[row_i]
        popularity = lists.popular_score.get(item_id, 0.0)
        row[column["popularity"]] = popularity
        row[column["trending"]] = lists.trending_score.get(item_id, 0.0)
        first_seen = lists.first_seen_ms.get(item_id)
        if first_seen is not None:
            age_h = max(0.0, (now_ms - first_seen) / 3_600_000.0)
            newness = 1.0 - math.log1p(age_h) / math.log1p(_NEWNESS_HORIZON_H)
            row[column["newness"]] = max(0.0, newness)
        row[column["sources"]] = len(found_by[row_i]) / n_sources
        if gmf_col is not None:
            row[column["activity*gmf"]] = activity * row[gmf_col]
        row[column["activity*popularity"]] = activity * popularity
        category = categories.get(item_id)
        if category is not None:
            row[column["category_affinity"]] = affinity.get(category, 0.0)
    features = np.asarray(rows, dtype=np.float32).reshape(len(rows), width)
    return CandidatePool(item_ids, found_by, features, names)


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
