"""The last stage: from scored candidates to the list served.

Rules, in order: the user's seen items and ``exclude`` out; when ``category`` is asked for,
only items known to be in it; best score first; then at most ``max_per_category`` items of one
category in the top ``k`` (0 = no limit; items of unknown category are never capped) — items
over the cap move behind the top ``k`` instead of disappearing, so a short catalogue still
fills the list. Duplicates were merged when the pool was built.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RerankRules:
    k: int
    exclude: frozenset[str] = frozenset()
    category: str | None = None
    max_per_category: int = 0


def rerank(
    item_ids: list[str],
    scores: np.ndarray,
    seen: Collection[str],
    categories: Mapping[str, str],
    rules: RerankRules,
) -> list[int]:
    """Indices into ``item_ids`` of the items to serve, in order (at most ``rules.k``)."""
    order = np.argsort(-scores, kind="stable")
    allowed = [
        int(i)
        for i in order
        if item_ids[i] not in seen
        and item_ids[i] not in rules.exclude
        and (rules.category is None or categories.get(item_ids[i]) == rules.category)
    ]
    if rules.max_per_category <= 0:
        return allowed[: rules.k]
    chosen: list[int] = []
    deferred: list[int] = []
    per_category: dict[str, int] = {}
    for i in allowed:
        if len(chosen) == rules.k:
            break
        category = categories.get(item_ids[i])
        if category is not None and per_category.get(category, 0) >= rules.max_per_category:
            deferred.append(i)
            continue
        if category is not None:
            per_category[category] = per_category.get(category, 0) + 1
        chosen.append(i)
    return (chosen + deferred)[: rules.k]
