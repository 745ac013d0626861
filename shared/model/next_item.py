"""Next-item pairs from an interaction log and the ranking metrics of "similar items".

Used by the triplet model (training pairs, early stopping) and by
``scripts.evaluate_similar`` (co-occurrence, GMF cosine and triplet on the same pairs): the
question is always "given the item a user just engaged with, is their next one among the
``k`` items most similar to it?".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def next_item_pairs(
    user_codes: np.ndarray, item_codes: np.ndarray, ts_ms: np.ndarray, window_items: int,
    window_s: float,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(anchor codes, positive codes): each event's item and each of the same user's next
    ``window_items`` items within ``window_s`` seconds (repeats of the anchor dropped).

    Inputs are int64 arrays (n,) of one event each, in any order; outputs int64 (m,).
    """
    order = np.lexsort((ts_ms, user_codes))
    users, items, ts = user_codes[order], item_codes[order], ts_ms[order]
    anchors: list[np.ndarray] = []
    positives: list[np.ndarray] = []
    for offset in range(1, window_items + 1):
        if offset >= len(items):
            break
        same_user = users[offset:] == users[:-offset]
        close = (ts[offset:] - ts[:-offset]) <= window_s * 1000.0
        different = items[offset:] != items[:-offset]
        keep = same_user & close & different
        anchors.append(items[:-offset][keep])
        positives.append(items[offset:][keep])
    if not anchors:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(anchors).astype(np.int64), np.concatenate(positives).astype(np.int64)


def next_item_metrics(
    score_rows: Callable[[torch.Tensor], torch.Tensor],
    previous: np.ndarray,
    following: np.ndarray,
    k: int,
    batch: int = 1024,
) -> tuple[float, float]:
    """(HR@k, NDCG@k) over held-out pairs, ranking every item but the query itself.

    ``score_rows(prev)`` maps int64 item codes (b,) to float scores (b, n_items), higher is
    more similar. ``previous``/``following`` are int64 (m,). A tie with the target counts
    against it (rank = items scored strictly higher), so a constant scorer scores ~0, not
    a lucky order. NDCG@k = 1 / log2(rank + 2) when rank < k.
    """
    if not len(previous):
        return 0.0, 0.0
    hits = ndcg = 0.0
    for start in range(0, len(previous), batch):
        prev = torch.as_tensor(previous[start : start + batch], dtype=torch.long)
        nxt = torch.as_tensor(following[start : start + batch], dtype=torch.long)
        scores = score_rows(prev).to(torch.float64).clone()
        rows = torch.arange(len(prev))
        scores[rows, prev] = -torch.inf
        target = scores[rows, nxt].unsqueeze(1)
        rank = (scores >= target).sum(dim=1) - 1  # the target itself is >= itself
        found = rank < k
        hits += float(found.sum())
        ndcg += float((1.0 / torch.log2(rank[found].double() + 2.0)).sum())
    return hits / len(previous), ndcg / len(previous)
