"""A linear ranker over candidate features, trained online from the stream.

For an event whose chosen item was among the candidates the pipeline would have served, the
default step is listwise (a softmax over the whole candidate pool, as in ListNet / sampled
softmax): ``-log p(chosen)`` with ``p = softmax(w·x)`` over the pool, L2 on ``w``. Its gradient
``x_chosen - E_p[x]`` pushes down what the ranker currently puts on top, in proportion to how
much it does, so it focuses on the head of the list without sampling negatives.
The pairwise alternative (``loss="bpr"``, Rendle et al.) takes one SGD step on
``-log σ(w·(x_chosen - x_other))`` per pair, the others drawn among the ranker's current top 30.
Measured with ``scripts.evaluate_stream`` (micro-batches of 128): on the real MovieLens 100k
(first 40k events) the pipeline's recall@10 was 0.0865 listwise against 0.0612 pairwise (the
pairwise weights shrank towards 0: the top-30 others are often items the user picks next); on
the synthetic stream 0.182 against 0.185 (NDCG@10 0.105 against 0.101).
Scoring is one float32 matrix-vector product: 200 candidates × 15 features cost microseconds.

Models are plain JSON (``{"version", "features", "weights", "pairs"}``) so a model trained with
other sources still loads: features it lacks keep their prior weight (0 for most), so a source
added at serving before the trainer learns it still counts a little.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Before any training: trust the personalised sources first, popularity a little.
PRIOR_WEIGHTS: Mapping[str, float] = {
    "rank:gmf": 1.0,
    "rank:co_engagement": 1.0,
    "rank:popular": 0.3,
    "rank:trending": 0.3,
    "rank:new_items": 0.1,
    "rank:two_tower": 0.5,
    "rank:triplet": 0.5,
}


LISTWISE = "softmax"
PAIRWISE = "bpr"


@dataclass(frozen=True)
class RankerParams:
    learning_rate: float = 0.05
    l2: float = 1e-4
    loss: str = LISTWISE  # or PAIRWISE
    # Pairwise only: others per step, drawn among the ranker's current top
    # ``negatives_from_top`` (0 = anywhere in the pool).
    negatives: int = 10
    negatives_from_top: int = 30


class LinearRanker:
    """Scores candidates as ``features @ weights``.

    Parameters
    ----------
    names : feature names, the columns of the feature matrices it scores
    weights : float64 (n_features,), or None for :data:`PRIOR_WEIGHTS`
    version : model version published with it
    """

    def __init__(
        self,
        names: Sequence[str],
        weights: np.ndarray | None = None,
        version: str = "prior",
        pairs: int = 0,
    ) -> None:
        self.names = list(names)
        if weights is None:
            weights = np.array([PRIOR_WEIGHTS.get(n, 0.0) for n in self.names], dtype=np.float64)
        if weights.shape != (len(self.names),):
            raise ValueError("weights must have one entry per feature name")
        self.weights = weights.astype(np.float64)
        self._weights32 = self.weights.astype(np.float32)
        self.version = version
        self.pairs = pairs

    def scores(self, features: np.ndarray) -> np.ndarray:
        """float32 (n,) scores of ``features`` float32 (n, n_features)."""
        return features @ self._weights32

    def contributions(self, row: np.ndarray, top: int = 3) -> list[tuple[str, float]]:
        """The ``top`` largest feature contributions ``w_f · x_f`` of one candidate."""
        parts = row.astype(np.float64) * self.weights
        order = np.argsort(-np.abs(parts), kind="stable")[:top]
        return [(self.names[i], round(float(parts[i]), 5)) for i in order if parts[i] != 0.0]

    def learn(
        self,
        features: np.ndarray,
        chosen: int,
        rng: np.random.Generator,
        params: RankerParams = RankerParams(),
    ) -> float:
        """One step for the pool ``features`` whose row ``chosen`` was engaged; returns the
        loss before the step (listwise: ``-log p(chosen)``; pairwise: mean over pairs)."""
        n = features.shape[0]
        if n < 2:
            return 0.0
        if params.loss == LISTWISE:
            return self._learn_listwise(features, chosen, params)
        if params.negatives_from_top and params.negatives_from_top < n:
            window = np.argsort(-self.scores(features), kind="stable")[: params.negatives_from_top]
            drawn = window[rng.integers(0, window.size, params.negatives)]
        else:
            drawn = rng.integers(0, n, params.negatives)
        others = drawn[drawn != chosen]
        if not others.size:
            return 0.0
        diffs = features[chosen].astype(np.float64)[None, :] - features[others].astype(np.float64)
        margins = diffs @ self.weights
        # d/dw of -log σ(m) is -σ(-m)·diff
        pull = 1.0 / (1.0 + np.exp(np.clip(margins, -30.0, 30.0)))
        grad = (pull[:, None] * diffs).mean(axis=0)
        self.weights += params.learning_rate * (grad - params.l2 * self.weights)
        self._weights32 = self.weights.astype(np.float32)
        self.pairs += int(others.size)
        return float(np.mean(np.log1p(np.exp(-np.clip(margins, -30.0, 30.0)))))

    def _learn_listwise(self, features: np.ndarray, chosen: int, params: RankerParams) -> float:
        x = features.astype(np.float64)
        logits = x @ self.weights
        logits -= logits.max()
        p = np.exp(logits)
        p /= p.sum()
        grad = x[chosen] - p @ x
        self.weights += params.learning_rate * (grad - params.l2 * self.weights)
        self._weights32 = self.weights.astype(np.float32)
        self.pairs += x.shape[0] - 1  # the chosen item against every other candidate
        return float(-np.log(max(float(p[chosen]), 1e-300)))

    # ------------------------------------------------------------------ publishing
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "features": self.names,
            "weights": [round(float(w), 8) for w in self.weights],
            "pairs": self.pairs,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def stamped(self) -> LinearRanker:
        """A copy with a fresh version (Unix ms), to publish."""
        version = f"ranker-{int(time.time() * 1000)}"
        return LinearRanker(self.names, self.weights.copy(), version, self.pairs)

    @classmethod
    def from_json(cls, raw: str | bytes, names: Sequence[str]) -> LinearRanker:
        """Load a published model onto the feature layout ``names`` (features it lacks: their
        prior weight, 0 for most).

        Raises ValueError on malformed JSON or non-finite weights.
        """
        try:
            body = json.loads(raw)
            stored = dict(zip(body["features"], map(float, body["weights"]), strict=True))
            version = str(body["version"])
            pairs = int(body.get("pairs", 0))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed ranker model: {exc}") from exc
        if not all(math.isfinite(w) for w in stored.values()):
            raise ValueError("ranker model has non-finite weights")
        weights = np.array(
            [stored.get(name, PRIOR_WEIGHTS.get(name, 0.0)) for name in names], dtype=np.float64
        )
        return cls(names, weights, version, pairs)
