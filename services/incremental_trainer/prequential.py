"""Prequential (test-then-train) evaluation over a moving window.

Each sampled event ``(u, i)`` whose user and item were already known is scored *before* the
model learns from it: the model ranks every item for ``u`` (the served inner product), the
streaming-popularity baseline ranks items by decayed popularity, both excluding the items
``u`` already engaged with (the recommender filters those out too), and each scores a hit if
``i`` is in its top ``k``. With one relevant item per test, recall@k is the hit rate and
precision@k is hits / k. Repeat interactions (``i`` already seen by ``u``) are not tested:
a served list never contains them, so neither ranker can be credited for them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


class MovingMean:
    """Mean of the last ``size`` values, O(1) per update."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._values: deque[float] = deque(maxlen=size)
        self._sum = 0.0

    def add(self, value: float) -> None:
        if len(self._values) == self._values.maxlen:
            self._sum -= self._values[0]
        self._values.append(value)
        self._sum += value

    def __len__(self) -> int:
        return len(self._values)

    @property
    def mean(self) -> float:
        return self._sum / len(self._values) if self._values else 0.0


@dataclass
class PrequentialFigures:
    """Moving-window figures, and totals since the process started."""

    recall: float
    precision: float
    popularity_recall: float
    popularity_precision: float
    window: int
    tested: int
    model_hits: int
    popularity_hits: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "recall_at_k": round(self.recall, 5),
            "precision_at_k": round(self.precision, 5),
            "popularity_recall_at_k": round(self.popularity_recall, 5),
            "popularity_precision_at_k": round(self.popularity_precision, 5),
            "window": self.window,
            "tested": self.tested,
            "model_hits": self.model_hits,
            "popularity_hits": self.popularity_hits,
        }


class PrequentialEvaluator:
    """Accumulates hits of the model and of the popularity baseline on the same events."""

    def __init__(self, k: int, window: int) -> None:
        self.k = k
        self._model = MovingMean(window)
        self._popular = MovingMean(window)
        self.tested = 0
        self.model_hits = 0
        self.popularity_hits = 0

    def record(self, model_hit: bool, popularity_hit: bool) -> None:
        self._model.add(1.0 if model_hit else 0.0)
        self._popular.add(1.0 if popularity_hit else 0.0)
        self.tested += 1
        self.model_hits += int(model_hit)
        self.popularity_hits += int(popularity_hit)

    def figures(self) -> PrequentialFigures:
        return PrequentialFigures(
            recall=self._model.mean,
            precision=self._model.mean / self.k,
            popularity_recall=self._popular.mean,
            popularity_precision=self._popular.mean / self.k,
            window=len(self._model),
            tested=self.tested,
            model_hits=self.model_hits,
            popularity_hits=self.popularity_hits,
        )
