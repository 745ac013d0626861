"""Incremental SGD for GMF on a stream of positive-only feedback (ISGD, Vinagre et al. 2014).

One event ``(u, i)`` is one observation with target 1. The update is a stochastic gradient
step on the logistic loss of that pair, plus (optionally) ``k`` sampled negatives with target
0, drawn by the caller from the streaming popularity distribution (popular items are the
likeliest "seen but not chosen"). For each pair ``(u, j)`` with target ``t``::

    s   = hᵀ(p_u ⊙ q_j) + b_j + b
    g_j = t - σ(s)
    p_u ← p_u + η'·w·(Σ_j g_j · h ⊙ q_j − λ·p_u)      η' = η / mean(h²)
    q_j ← q_j + η'·w·(g_j · h ⊙ p_u − λ·q_j)
    b_j ← b_j + η·w·g_j

- the output layer ``h`` and the global bias ``b`` are frozen: ranking stays an inner product
  of serving vectors, so a user's query vector changes only when that user's row moves;
- L2 (``λ``) shrinks only the rows being updated, never the whole table;
- both embedding gradients carry a factor ``h``, whose scale depends on how the model was
  trained (≈1 for a fresh model, |h| ≈ 4 after batch training here), so the embedding step is
  ``η / mean(h²)``: one learning rate suits a fresh and a batch-trained model alike;
- ``w`` is a per-event-type weight: :func:`event_scale` of ``shared.events.EVENT_WEIGHTS``
  (a purchase moves the rows more than a view, without an 8× step that would overshoot).

The functions work in place on numpy views of the model's tensors (``tensor.numpy()`` shares
memory), event by event in stream order, because that is what prequential evaluation assumes
and because tiny per-row numpy operations cost far less than autograd for one pair at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # no torch import at runtime
    from shared.model.gmf import GMF

# Keep logits in a range where exp() is finite; σ is saturated long before.
_LOGIT_CLIP = 30.0


def event_scale(weight: float) -> float:
    """Step multiplier for an event of ``weight``: ``1 + log2(weight)`` (view 1 … purchase 4)."""
    if weight <= 0:
        raise ValueError("event weight must be positive")
    return 1.0 + math.log2(max(weight, 1.0))


@dataclass(frozen=True)
class ISGDParams:
    """Hyper-parameters of the update.

    learning_rate : float
        ``η``, the step of one event of weight 1.
    l2 : float
        ``λ``, applied to the rows an event updates.
    bias_learning_rate : float or None
        Step of the item bias; None = ``learning_rate``.
    """

    learning_rate: float
    l2: float
    bias_learning_rate: float | None = None


@dataclass
class Tables:
    """Numpy views of the model's parameters that the update writes into.

    user_embedding : float32 (user_capacity, d)
    item_embedding : float32 (item_capacity, d)
    item_bias : float32 (item_capacity,)
    h : float32 (d,)
    global_bias : float
    """

    user_embedding: np.ndarray
    item_embedding: np.ndarray
    item_bias: np.ndarray
    h: np.ndarray
    global_bias: float

    @property
    def h_scale(self) -> float:
        """``mean(h²)``: both embedding gradients carry a factor h, so steps are divided by it."""
        return float(np.mean(np.square(self.h))) or 1.0

    @classmethod
    def of(cls, model: GMF) -> Tables:
        """Views of a ``shared.model.gmf.GMF``'s live tensors (refresh after any growth)."""
        return cls(
            user_embedding=model.user_embedding.data.numpy(),
            item_embedding=model.item_embedding.data.numpy(),
            item_bias=model.item_bias.data.numpy(),
            h=model.h.data.numpy(),
            global_bias=float(model.global_bias.item()),
        )

    def scores(self, user_row: int, n_items: int) -> np.ndarray:
        """Ranking scores of user ``user_row`` against item rows ``0..n_items-1``.

        Equal to the inner product of the serving vectors (docs/CONTRACTS.md): float32 (n_items,).
        """
        query = self.h * self.user_embedding[user_row]
        return self.item_embedding[:n_items] @ query + self.item_bias[:n_items]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -_LOGIT_CLIP, _LOGIT_CLIP)))


def update_event(
    tables: Tables,
    user_row: int,
    item_row: int,
    scale: float,
    params: ISGDParams,
    negatives: Sequence[int] | np.ndarray = (),
) -> float:
    """Apply one event in place; returns the positive pair's probability *before* the step.

    Parameters
    ----------
    tables : Tables
        Views of the live weights; rows ``user_row`` and ``item_row`` must exist.
    user_row, item_row : int
    scale : float
        Event-type multiplier of the step (see :func:`event_scale`).
    params : ISGDParams
    negatives : array of int, shape (k,)
        Item rows used as negatives (target 0); any equal to ``item_row`` are ignored.
    """
    neg = np.asarray(negatives, dtype=np.int64).reshape(-1)
    if neg.size:
        neg = np.unique(neg[neg != item_row])
    rows = np.concatenate(([item_row], neg)).astype(np.int64)
    targets = np.zeros(rows.shape[0], dtype=np.float32)
    targets[0] = 1.0

    h = tables.h
    p = tables.user_embedding[user_row].copy()
    q = tables.item_embedding[rows]  # (1+k, d) copy (fancy indexing)
    logits = q @ (h * p) + tables.item_bias[rows] + tables.global_bias
    prob = _sigmoid(logits)
    g = (targets - prob).astype(np.float32)  # (1+k,)

    lr = params.learning_rate * scale / tables.h_scale
    step = np.float32(lr)
    decay = np.float32(1.0 - lr * params.l2)
    bias_step = np.float32((params.bias_learning_rate or params.learning_rate) * scale)

    # Both rows move from the same pre-step values (a simultaneous gradient step).
    tables.user_embedding[user_row] = decay * p + step * (h * (g @ q))
    tables.item_embedding[rows] = decay * q + step * np.outer(g, h * p)
    tables.item_bias[rows] += bias_step * g
    return float(prob[0])


def update_batch(
    tables: Tables,
    user_rows: np.ndarray,
    item_rows: np.ndarray,
    scales: np.ndarray,
    params: ISGDParams,
    negatives: np.ndarray | None = None,
) -> np.ndarray:
    """Apply events in order (each sees the previous ones' effect); returns probabilities.

    Parameters
    ----------
    user_rows, item_rows : int arrays (n,)
    scales : float array (n,)
    negatives : int array (n, k) or None

    Returns
    -------
    np.ndarray, float32 (n,)
        Probability of each positive pair just before its own update.
    """
    n = len(user_rows)
    out = np.empty(n, dtype=np.float32)
    for e in range(n):
        out[e] = update_event(
            tables,
            int(user_rows[e]),
            int(item_rows[e]),
            float(scales[e]),
            params,
            () if negatives is None else negatives[e],
        )
    if not np.all(np.isfinite(out)):
        from shared.model.errors import ModelFitError

        raise ModelFitError("ISGD produced a non-finite score")
    return out
