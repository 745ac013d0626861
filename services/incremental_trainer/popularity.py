"""Streaming, time-decayed item popularity kept in process, indexed by item row.

It serves three purposes: the streaming-popularity baseline of prequential evaluation, the
distribution negatives are sampled from, and (mirrored to Redis ``popular``) the fallback list.
Decay uses the same trick as ``shared.storage.redis_store``: an event at time t adds
``w · 2^((t - ref) / half_life)``, so the order at any moment equals the order of decayed
scores without touching every item; the array is rescaled when the exponent gets large.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from shared.ranking.decay import RESCALE_AFTER_HALF_LIVES, DecayClock


class StreamingPopularity:
    """Decayed popularity scores of item rows ``0..capacity-1``.

    Parameters
    ----------
    half_life_s : float
        Half-life of an event's weight, in seconds of event time.
    capacity : int
        Initial number of rows; :meth:`bump` grows the array as needed.
    """

    def __init__(self, half_life_s: float, capacity: int = 1024) -> None:
        self.clock = DecayClock(half_life_s)
        self.scores = np.zeros(max(1, capacity), dtype=np.float64)
        self.n_rows = 0  # rows that ever received weight (highest row + 1)

    def _ensure(self, row: int) -> None:
        if row >= self.scores.shape[0]:
            bigger = np.zeros(max(row + 1, int(self.scores.shape[0] * 1.1) + 1))
            bigger[: self.scores.shape[0]] = self.scores
            self.scores = bigger
        self.n_rows = max(self.n_rows, row + 1)

    def factor(self, ts_ms: int) -> float:
        """The multiplier of a unit weight at event time ``ts_ms`` (rescaling if needed)."""
        shrink = self.clock.rescale_due(ts_ms)
        if shrink is not None:
            self.scores *= shrink
        return self.clock.factor(ts_ms)

    def bump(self, row: int, weight: float, ts_ms: int) -> float:
        """Add ``weight`` decayed to ``ts_ms`` to ``row``; returns the amount added."""
        self._ensure(row)
        added = weight * self.factor(ts_ms)
        self.scores[row] += added
        return added

    def bump_many(self, rows: np.ndarray, weights: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
        """:meth:`bump` for a batch of events (rows int (n,), weights (n,), event times (n,)).

        Returns the amount added per event. The reference time is set (or rescaled) by the
        batch's first and newest events, as if they had been bumped one by one.
        """
        if rows.size == 0:
            return np.zeros(0)
        self._ensure(int(rows.max()))
        self.factor(int(ts_ms[0]))  # sets the reference on the very first event
        self.factor(int(ts_ms.max()))  # rescales before the exponent gets large
        assert self.clock.ref_s is not None
        half_lives = (ts_ms / 1000.0 - self.clock.ref_s) / self.clock.half_life_s
        added = weights * np.exp2(np.maximum(half_lives, -RESCALE_AFTER_HALF_LIVES))
        np.add.at(self.scores, rows, added)
        return added

    def ranking(self, n_items: int) -> np.ndarray:
        """Scores of rows ``0..n_items-1`` (rows never bumped score 0): float64 (n_items,)."""
        out = np.zeros(n_items)
        m = min(n_items, self.scores.shape[0])
        out[:m] = self.scores[:m]
        return out

    def load(self, rows: Iterable[int], scores: Iterable[float], ref_s: float) -> None:
        """Replace the state by ``scores`` (relative to ``ref_s``), e.g. read back from Redis."""
        self.scores[:] = 0.0
        self.clock.ref_s = float(ref_s)
        for row, score in zip(rows, scores, strict=True):
            self._ensure(int(row))
            self.scores[int(row)] = float(score)

    def top(self, k: int, exclude: Iterable[int] = (), n_items: int | None = None) -> np.ndarray:
        """The ``k`` best rows among ``0..n_items-1`` not in ``exclude``, best first (int64)."""
        return top_k(self.scores[: self.n_rows if n_items is None else n_items], k, exclude)

    def sampler(self, n_items: int, power: float = 0.75) -> np.ndarray | None:
        """Cumulative distribution ∝ score^power over rows ``0..n_items-1`` (None if empty).

        ``power`` < 1 flattens the head, as in word2vec's unigram^0.75 negatives.
        """
        if n_items <= 0:
            return None
        weights = np.zeros(n_items)
        m = min(n_items, self.n_rows)
        weights[:m] = np.power(np.maximum(self.scores[:m], 0.0), power)
        total = weights.sum()
        if not total > 0:
            return None
        cdf = np.cumsum(weights)
        cdf /= cdf[-1]
        return cdf


def sample_rows(
    cdf: np.ndarray | None, n_items: int, shape: tuple[int, ...], rng: np.random.Generator
) -> np.ndarray:
    """Rows drawn from ``cdf`` (or uniformly over ``n_items`` when None), int64 of ``shape``."""
    if n_items <= 0:
        return np.zeros(shape, dtype=np.int64)
    if cdf is None:
        return rng.integers(0, n_items, size=shape, dtype=np.int64)
    rows = np.searchsorted(cdf, rng.random(shape), side="right")
    return np.minimum(rows, n_items - 1).astype(np.int64)


def top_k(scores: np.ndarray, k: int, exclude: Iterable[int] = ()) -> np.ndarray:
    """Indices of the ``k`` highest ``scores`` not in ``exclude``, best first (int64)."""
    excluded = set(exclude)
    n = scores.shape[0]
    wanted = min(n, k + len(excluded))
    if wanted <= 0:
        return np.zeros(0, dtype=np.int64)
    if wanted < n:
        part = np.argpartition(-scores, wanted - 1)[:wanted]
    else:
        part = np.arange(n)
    ranked = part[np.argsort(-scores[part], kind="stable")]
    if excluded:
        ranked = ranked[~np.isin(ranked, list(excluded))]
    return ranked[:k].astype(np.int64)
