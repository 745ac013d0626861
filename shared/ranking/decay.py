"""Exponential time decay without touching every entry on every event.

An event at time t adds ``w · 2^((t - ref) / half_life)``: the order of stored sums at any
moment equals the order of their decayed values, and a reader divides by the current factor
only when it needs absolute values. Same trick as ``shared.storage.redis_store`` popularity.
"""

from __future__ import annotations

RESCALE_AFTER_HALF_LIVES = 32.0


class DecayClock:
    """The multiplier of a unit weight at an event time, relative to a movable reference.

    Parameters
    ----------
    half_life_s : float
        Half-life of an event's weight, in seconds of event time.
    """

    def __init__(self, half_life_s: float) -> None:
        if half_life_s <= 0:
            raise ValueError("half_life_s must be positive")
        self.half_life_s = float(half_life_s)
        self.ref_s: float | None = None

    def factor(self, ts_ms: int) -> float:
        """Multiplier of a unit weight at ``ts_ms`` (the reference is the first time seen)."""
        now_s = ts_ms / 1000.0
        if self.ref_s is None:
            self.ref_s = now_s
        return 2.0 ** max((now_s - self.ref_s) / self.half_life_s, -RESCALE_AFTER_HALF_LIVES)

    def rescale_due(self, ts_ms: int) -> float | None:
        """The shrink factor to apply to every stored sum if the reference should move to
        ``ts_ms`` (too many half-lives ahead for float precision), else None; moves it."""
        now_s = ts_ms / 1000.0
        if self.ref_s is None or (now_s - self.ref_s) / self.half_life_s <= RESCALE_AFTER_HALF_LIVES:
            return None
        shrink = 2.0 ** (-(now_s - self.ref_s) / self.half_life_s)
        self.ref_s = now_s
        return shrink


class DecayedScores:
    """Decayed sums per key, e.g. item popularity at one half-life."""

    def __init__(self, half_life_s: float) -> None:
        self.clock = DecayClock(half_life_s)
        self.scores: dict[str, float] = {}

    def add(self, weights: dict[str, float], ts_ms: int) -> None:
        shrink = self.clock.rescale_due(ts_ms)
        if shrink is not None:
            self.scores = {key: value * shrink for key, value in self.scores.items()}
        factor = self.clock.factor(ts_ms)
        for key, weight in weights.items():
            self.scores[key] = self.scores.get(key, 0.0) + weight * factor
