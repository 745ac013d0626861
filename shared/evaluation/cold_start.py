"""Cold-start slices of a stream evaluation: new items and new users, ranked per ranker.

An event is in the **cold-items** slice when its item had fewer than ``threshold`` (5) earlier
interactions, and in the **cold-users** slice when its user had fewer than ``threshold``
earlier interactions ("earlier" = before it in time order, the training prefix included).
Each ranker's answer is summarised by the 0-based rank of the event's item in its list
(``MISS`` when the item is not in the top k), from which recall@k (one relevant item: the hit
rate) and NDCG@k = 1 / log2(rank + 2) follow.

The report keeps the shape of the stream evaluator's ``"rankers"``::

    {"cold_items": {"<ranker>": {"n", "recall@10", "ndcg@10"}, ...}, "cold_users": {...}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

COLD_THRESHOLD = 5
COLD_ITEMS = "cold_items"
COLD_USERS = "cold_users"
MISS = np.iinfo(np.int64).max


def earlier_counts(keys: Sequence[str] | np.ndarray | pd.Series) -> np.ndarray:
    """For events in time order, how many earlier events share each one's key: int64 (n,)."""
    return pd.Series(np.asarray(keys, dtype=object)).groupby(
        np.asarray(keys, dtype=object), sort=False).cumcount().to_numpy(np.int64)


def slice_masks(item_earlier: np.ndarray, user_earlier: np.ndarray,
                threshold: int = COLD_THRESHOLD) -> dict[str, np.ndarray]:
    """Boolean masks (n,) of the two slices from the earlier-interaction counts."""
    return {COLD_ITEMS: np.asarray(item_earlier) < threshold,
            COLD_USERS: np.asarray(user_earlier) < threshold}


def metrics(ranks: np.ndarray, ks: Sequence[int] = (10,)) -> dict[str, float]:
    """``n``, ``recall@k`` and ``ndcg@k`` from 0-based ranks (MISS = not retrieved)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    out: dict[str, float] = {"n": int(ranks.size)}
    for k in ks:
        hit = ranks < k
        gain = np.where(hit, 1.0 / np.log2(np.minimum(ranks, k) + 2.0), 0.0)
        out[f"recall@{k}"] = float(hit.mean()) if ranks.size else 0.0
        out[f"ndcg@{k}"] = float(gain.mean()) if ranks.size else 0.0
    return out


def report(ranks: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray],
           ks: Sequence[int] = (10,)) -> dict[str, dict[str, dict[str, float]]]:
    """``{slice: {ranker: metrics}}`` for every slice mask over the same tested events."""
    return {name: {ranker: metrics(np.asarray(r)[mask], ks) for ranker, r in ranks.items()}
            for name, mask in masks.items()}


def rank_in(top: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based position of ``targets`` (n,) in each row of ``top`` (n, k), MISS if absent."""
    top = np.asarray(top)
    hit = top == np.asarray(targets)[:, None]
    return np.where(hit.any(1), hit.argmax(1), MISS).astype(np.int64)
