"""Offline evaluation: leave-last-out, full-catalogue and sampled (NCF) ranking metrics.

Users and items here are *codes*: consecutive integers ``0..n_users-1`` and ``0..n_items-1``
(one per distinct id), so hash-mode rows that several ids share still rank as separate items.
Each test user has one held-out positive; its rank among candidates gives

- ``hr@k`` (hit rate; with one held-out item this equals ``recall@k``),
- ``ndcg@k`` = 1 / log2(rank + 2) when rank < k,
- ``precision@k`` = hit / k, and ``mrr``.

Ties are broken uniformly at random (seeded), so a constant scorer gets chance-level figures
rather than a lucky or unlucky order.

Two protocols: **full** ranks the held-out item against every item except the user's training
items; **sampled** (He et al., NCF) ranks it against ``n_negatives`` (99) items the user never
engaged with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from shared.model.gmf import GMF
from shared.model.sampling import known_pairs, sample_negatives

FULL = "full"
SAMPLED = "sampled"


class Scorer(Protocol):
    """Scores of users (codes) for items (codes); higher is better."""

    def score_all(self, users: np.ndarray) -> torch.Tensor:
        """float32 (len(users), n_items)."""
        ...

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> torch.Tensor:
        """``users`` (n,), ``items`` (n, c) → float32 (n, c)."""
        ...


class GMFScorer:
    """Ranks with the serving vectors (query · item), exactly as the platform serves.

    Parameters
    ----------
    model : GMF
    user_rows : int array (n_users,)
        Model row of each user code.
    item_rows : int array (n_items,)
        Model row of each item code.
    """

    def __init__(self, model: GMF, user_rows: np.ndarray, item_rows: np.ndarray) -> None:
        self._model = model
        self._user_rows = np.asarray(user_rows, dtype=np.int64)
        self._items = torch.from_numpy(model.item_vectors(np.asarray(item_rows, dtype=np.int64)))

    def _queries(self, users: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self._model.query_vectors(self._user_rows[users]))

    def score_all(self, users: np.ndarray) -> torch.Tensor:
        return self._queries(users) @ self._items.T

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> torch.Tensor:
        vectors = self._items[torch.from_numpy(np.asarray(items, dtype=np.int64))]
        return torch.einsum("nd,ncd->nc", self._queries(users), vectors)


class PopularityScorer:
    """Same score for every user: the item's count of training interactions (n_items,)."""

    def __init__(self, counts: np.ndarray) -> None:
        self._counts = torch.from_numpy(np.asarray(counts, dtype=np.float32))

    def score_all(self, users: np.ndarray) -> torch.Tensor:
        return self._counts.unsqueeze(0).expand(len(users), -1).clone()

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> torch.Tensor:
        return self._counts[torch.from_numpy(np.asarray(items, dtype=np.int64))]


@dataclass(frozen=True)
class Split:
    """Indices into an interaction table: training rows and one held-out row per user."""

    train: np.ndarray  # int64 (n_train,)
    test: np.ndarray  # int64 (n_test,)


def leave_last_out(users: np.ndarray, ts: np.ndarray, min_interactions: int = 2) -> Split:
    """Hold out each user's latest interaction (ties broken by position).

    Parameters
    ----------
    users : int array (n,)
    ts : int array (n,)
        Timestamps (any unit).
    min_interactions : int
        Users with fewer interactions keep them all for training.

    Returns
    -------
    Split
        ``train`` and ``test`` are sorted positions into the input arrays.
    """
    users = np.asarray(users)
    order = np.lexsort((np.arange(users.size), np.asarray(ts), users))
    sorted_users = users[order]
    is_last = np.ones(users.size, dtype=bool)
    is_last[:-1] = sorted_users[:-1] != sorted_users[1:]
    _, counts = np.unique(sorted_users, return_counts=True)
    per_row_count = np.repeat(counts, counts)
    held = is_last & (per_row_count >= min_interactions)
    return Split(train=np.sort(order[~held]), test=np.sort(order[held]))


def ranking_metrics(ranks: np.ndarray, ks: Sequence[int] = (10,)) -> dict[str, float]:
    """Metrics from 0-based ranks of the held-out item (n,)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {"n": int(ranks.size), "mrr": float(np.mean(1.0 / (ranks + 1)))}
    for k in ks:
        hit = ranks < k
        out[f"hr@{k}"] = float(hit.mean())
        out[f"recall@{k}"] = float(hit.mean())
        out[f"precision@{k}"] = float(hit.mean() / k)
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    return out


def _rank(scores: torch.Tensor, target: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """Rank of ``target`` (n,) among ``scores`` (n, c) that exclude it; ties broken at random."""
    greater = (scores > target[:, None]).sum(1).numpy()
    ties = (scores == target[:, None]).sum(1).numpy()
    return greater + np.floor(rng.random(greater.size) * (ties + 1)).astype(np.int64)


def full_ranks(
    scorer: Scorer,
    train_users: np.ndarray,
    train_items: np.ndarray,
    test_users: np.ndarray,
    test_items: np.ndarray,
    n_items: int,
    batch_size: int = 512,
    seed: int = 0,
) -> np.ndarray:
    """0-based rank of each held-out item among all items minus the user's training items."""
    train_users = np.asarray(train_users, dtype=np.int64)
    order = np.argsort(train_users, kind="stable")
    sorted_items = np.asarray(train_items, dtype=np.int64)[order]
    n_users = int(max(train_users.max(initial=-1), np.max(test_users, initial=-1))) + 1
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(train_users, minlength=n_users), out=indptr[1:])
    rng = np.random.default_rng(seed)
    ranks = np.empty(len(test_users), dtype=np.int64)
    for start in range(0, len(test_users), batch_size):
        users = np.asarray(test_users[start : start + batch_size], dtype=np.int64)
        items = torch.from_numpy(np.asarray(test_items[start : start + batch_size], np.int64))
        scores = scorer.score_all(users).to(torch.float32)
        local = torch.arange(len(users))
        target = scores[local, items].clone()
        counts = indptr[users + 1] - indptr[users]
        rows = np.repeat(np.arange(len(users)), counts)
        cols = sorted_items[np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
                            + np.repeat(indptr[users], counts)]
        scores[torch.from_numpy(rows), torch.from_numpy(cols)] = -torch.inf
        scores[local, items] = -torch.inf
        ranks[start : start + len(users)] = _rank(scores, target, rng)
    return ranks


def sampled_ranks(
    scorer: Scorer,
    known_users: np.ndarray,
    known_items: np.ndarray,
    test_users: np.ndarray,
    test_items: np.ndarray,
    n_items: int,
    n_negatives: int = 99,
    seed: int = 0,
) -> np.ndarray:
    """0-based rank of each held-out item among ``n_negatives`` items the user never had.

    ``known_*`` must include every positive of the user (training and held-out).
    """
    rng = np.random.default_rng(seed)
    known = known_pairs(known_users, known_items, n_items)
    users = np.asarray(test_users, dtype=np.int64)
    negatives = sample_negatives(users, n_negatives, np.arange(n_items), known, n_items, rng)
    candidates = np.concatenate([np.asarray(test_items, np.int64)[:, None], negatives], axis=1)
    scores = scorer.score_pairs(users, candidates).to(torch.float32)
    return _rank(scores[:, 1:], scores[:, 0], rng)


def evaluate(
    scorers: Mapping[str, Scorer],
    users: np.ndarray,
    items: np.ndarray,
    split: Split,
    n_items: int,
    ks: Sequence[int] = (10,),
    n_negatives: int = 99,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, float]]]:
    """Both protocols for every scorer: ``{name: {"full": metrics, "sampled": metrics}}``.

    Parameters
    ----------
    scorers : mapping of name to Scorer
    users, items : int arrays (n,)
        All interactions as codes; ``split`` indexes them.
    split : Split
    n_items : int
        Size of the catalogue (item codes are ``0..n_items-1``).
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    tu, ti = users[split.train], items[split.train]
    hu, hi = users[split.test], items[split.test]
    report: dict[str, dict[str, dict[str, float]]] = {}
    for name, scorer in scorers.items():
        full = full_ranks(scorer, tu, ti, hu, hi, n_items, seed=seed)
        sampled = sampled_ranks(scorer, users, items, hu, hi, n_items, n_negatives, seed=seed)
        report[name] = {FULL: ranking_metrics(full, ks), SAMPLED: ranking_metrics(sampled, ks)}
    return report
