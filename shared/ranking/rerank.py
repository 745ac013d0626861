"""The last stage: from scored candidates to the list served.

Rules, in order: the user's seen items and ``exclude`` out; when ``category`` is asked for,
only items known to be in it; best score first; then one diversity rule, if configured:

- MMR (maximal marginal relevance, Carbonell & Goldstein 1998), ``mmr_lambda`` < 1: the list is
  built greedily, each next item maximising ``λ·relevance − (1 − λ)·max similarity to the items
  already chosen``, relevance being the score min-max scaled over the candidates considered.
  Similarity is 1 for two items of the same known category and 0 otherwise (what the serving
  path knows about an item without another round trip), so each further item of a category
  already shown pays ``1 − λ``. ``mmr_lambda`` = 1 is relevance alone (the rule is off).
- at most ``max_per_category`` items of one category in the top ``k`` (0 = no limit; items of
  unknown category are never capped) — items over the cap move behind the top ``k`` instead of
  disappearing, so a short catalogue still fills the list.

Duplicates were merged when the pool was built.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np

# MMR looks at this many times k of the best-scored candidates: the rest are too far below to
# be chosen at any reasonable λ, and the greedy loop stays O(k · window).
MMR_WINDOW_PER_K = 5


@dataclass(frozen=True)
class RerankRules:
    k: int
    exclude: frozenset[str] = frozenset()
    category: str | None = None
    max_per_category: int = 0
    mmr_lambda: float = 1.0


def rerank(
    item_ids: list[str],
    scores: np.ndarray,
    seen: Collection[str],
    categories: Mapping[str, str],
    rules: RerankRules,
) -> list[int]:
    """Indices into ``item_ids`` of the items to serve, in order (at most ``rules.k``)."""
    order = np.argsort(-scores, kind="stable").tolist()
    # Without a diversity rule only the first k allowed items matter: stop there.
    limit = rules.k if rules.mmr_lambda >= 1.0 and rules.max_per_category <= 0 else len(order)
    allowed: list[int] = []
    for i in order:
        item_id = item_ids[i]
        if (
            item_id not in seen
            and item_id not in rules.exclude
            and (rules.category is None or categories.get(item_id) == rules.category)
        ):
            allowed.append(i)
            if len(allowed) == limit:
                break
    if rules.mmr_lambda < 1.0:
        return _mmr(allowed, item_ids, scores, categories, rules)
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


def _mmr(
    allowed: list[int],
    item_ids: list[str],
    scores: np.ndarray,
    categories: Mapping[str, str],
    rules: RerankRules,
) -> list[int]:
    window = allowed[: max(rules.k, MMR_WINDOW_PER_K * rules.k)]
    if len(window) <= 1:
        return window[: rules.k]
    relevance = scores[window].astype(np.float64)
    span = relevance.max() - relevance.min()
    relevance = (relevance - relevance.min()) / span if span > 0 else np.ones_like(relevance)
    lam = rules.mmr_lambda
    codes: dict[str, int] = {}
    category_code = np.array(
        [codes.setdefault(categories[item_ids[i]], len(codes)) if item_ids[i] in categories
         else -1 for i in window],
        dtype=np.int64,
    )
    redundancy = np.zeros(len(window), dtype=np.float64)  # max similarity to the chosen
    free = np.ones(len(window), dtype=bool)
    chosen: list[int] = []
    while len(chosen) < rules.k and free.any():
        gain = np.where(free, lam * relevance - (1.0 - lam) * redundancy, -np.inf)
        best = int(np.argmax(gain))  # ties: the better-scored item (window is score order)
        chosen.append(window[best])
        free[best] = False
        if category_code[best] >= 0:
            redundancy[category_code == category_code[best]] = 1.0
    return chosen
