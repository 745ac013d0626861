"""A seeded synthetic interaction stream with structure a recommender can learn.

- **Taste clusters**: every item belongs to one category; every user has a primary and a
  secondary category and otherwise explores at random (``noise``).
- **Popularity**: item appeal follows a power law (Zipf exponent ``popularity_exponent``), so a
  popularity baseline is meaningful but beatable.
- **Arrivals**: a share of users and items exist from the start, the rest appear uniformly over
  the period; nobody interacts before arriving and no item is engaged with before it exists.
- **Drift**: over the period each user's primary and secondary categories swap weight by
  ``drift`` (0 = static tastes, 1 = fully swapped by the end).
- **Events**: types from ``shared.events.EVENT_WEIGHTS`` with stronger signals rarer.

Returns the common interaction frame (see :mod:`shared.data.loaders`) and item metadata
(``item_id, title, category, price, genres``). The features carry taste, so a model that
embeds items from their features (the two-tower cold-start model) has something to learn:
the category *is* the item's taste cluster (the title repeats it), and ``genres``
(``|``-separated, as MovieLens writes them) usually names the cluster's *family* (two
neighbouring clusters share one genre) plus sometimes a random genre, a weaker, noisier hint.
Genres are drawn after everything else, so the interactions, titles, categories and prices
are the same as before genres existed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shared.events import EVENT_WEIGHTS

DAY_MS = 86_400_000
DEFAULT_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
EVENT_PROBABILITIES = {"view": 0.55, "click": 0.25, "add_to_cart": 0.12, "purchase": 0.08}
CATEGORY_NAMES = [
    "books", "music", "games", "garden", "kitchen", "sports", "toys", "beauty", "tools",
    "outdoor", "office", "pets", "baby", "movies", "shoes", "jewelry", "automotive", "health",
    "electronics", "crafts",
]
_ADJECTIVES = ["classic", "compact", "deluxe", "eco", "essential", "vintage", "smart", "pro"]
_NOUNS = ["set", "kit", "edition", "pack", "collection", "bundle", "series", "model"]
_PRIMARY_SHARE = 0.7  # of a user's non-noise choices, at the start
GENRE_NAMES = [
    "action", "adventure", "animation", "comedy", "crime", "documentary", "drama", "fantasy",
    "horror", "musical", "mystery", "romance", "scifi", "thriller", "war", "western",
]
_FAMILY_GENRE_SHARE = 0.8  # items whose genres name their cluster's family
_RANDOM_GENRE_SHARE = 0.3  # items with one extra genre drawn at random


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of :func:`generate` (defaults: a few seconds of training on two cores)."""

    n_users: int = 2000
    n_items: int = 1000
    n_events: int = 60_000
    n_clusters: int = 16
    days: float = 30.0
    start_ms: int = DEFAULT_START_MS
    popularity_exponent: float = 1.0
    initial_user_fraction: float = 0.6
    initial_item_fraction: float = 0.7
    drift: float = 0.3
    noise: float = 0.1
    seed: int = 7

    def __post_init__(self) -> None:
        if min(self.n_users, self.n_items, self.n_events, self.n_clusters) < 1:
            raise ValueError("n_users, n_items, n_events and n_clusters must be at least 1")
        for name in ("initial_user_fraction", "initial_item_fraction", "drift", "noise"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.days <= 0:
            raise ValueError("days must be positive")


def _arrivals(rng: np.random.Generator, n: int, initial_fraction: float, span: int) -> np.ndarray:
    """Arrival offsets in ms: ``initial_fraction`` at 0 (at least one), the rest uniform."""
    arrivals = rng.integers(0, span, size=n)
    initial = rng.random(n) < initial_fraction
    initial[rng.integers(0, n)] = True
    arrivals[initial] = 0
    return arrivals


def _draw(rng: np.random.Generator, cumulative: np.ndarray, upto: np.ndarray) -> np.ndarray:
    """For each ``upto`` (count of eligible leading entries, ≥1), draw an index by weight."""
    totals = cumulative[upto - 1]
    picks = np.searchsorted(cumulative, rng.random(upto.size) * totals, side="right")
    return np.minimum(picks, upto - 1)


def _item_metadata(rng: np.random.Generator, cfg: SyntheticConfig, clusters: np.ndarray,
                   item_ids: list[str]) -> pd.DataFrame:
    names = [CATEGORY_NAMES[c] if c < len(CATEGORY_NAMES) else f"category-{c}"
             for c in range(cfg.n_clusters)]
    base_price = rng.uniform(5.0, 120.0, size=cfg.n_clusters)
    prices = np.round(base_price[clusters] * rng.lognormal(0.0, 0.4, size=cfg.n_items), 2)
    adjectives = rng.integers(0, len(_ADJECTIVES), size=cfg.n_items)
    nouns = rng.integers(0, len(_NOUNS), size=cfg.n_items)
    titles = [f"{_ADJECTIVES[a].title()} {names[c]} {_NOUNS[n]} {j}"
              for j, (a, c, n) in enumerate(zip(adjectives, clusters, nouns, strict=True))]
    family = rng.random(cfg.n_items) < _FAMILY_GENRE_SHARE
    extra = np.where(rng.random(cfg.n_items) < _RANDOM_GENRE_SHARE,
                     rng.integers(0, len(GENRE_NAMES), size=cfg.n_items), -1)
    genres = []
    for c, has_family, e in zip(clusters, family, extra, strict=True):
        chosen = [GENRE_NAMES[(c // 2) % len(GENRE_NAMES)]] if has_family else []
        if e >= 0 and GENRE_NAMES[e] not in chosen:
            chosen.append(GENRE_NAMES[e])
        genres.append("|".join(chosen))
    return pd.DataFrame({"item_id": item_ids, "title": titles,
                         "category": [names[c] for c in clusters], "price": prices,
                         "genres": genres})


def generate(cfg: SyntheticConfig = SyntheticConfig()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate ``(interactions, items)``; identical output for identical ``cfg``.

    Returns
    -------
    interactions : DataFrame
        ``user_id, item_id, event, ts`` (ts int64 Unix ms), ``cfg.n_events`` rows sorted by ts.
    items : DataFrame
        ``item_id, title, category, price, genres`` for all ``cfg.n_items`` items.
    """
    rng = np.random.default_rng(cfg.seed)
    span = max(1, int(cfg.days * DAY_MS))
    user_ids = [f"u{j:06d}" for j in range(cfg.n_users)]
    item_ids = [f"i{j:06d}" for j in range(cfg.n_items)]

    clusters = rng.integers(0, cfg.n_clusters, size=cfg.n_items)
    appeal = 1.0 / (rng.permutation(cfg.n_items) + 1.0) ** cfg.popularity_exponent
    item_arrival = _arrivals(rng, cfg.n_items, cfg.initial_item_fraction, span)

    primary = rng.integers(0, cfg.n_clusters, size=cfg.n_users)
    secondary = (primary + rng.integers(1, max(2, cfg.n_clusters), size=cfg.n_users)) % max(
        1, cfg.n_clusters)
    activity = rng.lognormal(0.0, 1.0, size=cfg.n_users)
    user_arrival = _arrivals(rng, cfg.n_users, cfg.initial_user_fraction, span)

    t = np.sort(rng.integers(0, span, size=cfg.n_events))
    # users: those arrived by t, by activity
    by_arrival = np.argsort(user_arrival, kind="stable")
    arrived = np.searchsorted(user_arrival[by_arrival], t, side="right")
    users = by_arrival[_draw(rng, np.cumsum(activity[by_arrival]), arrived)]
    # categories: primary / secondary drifting toward each other's weight, or noise
    progress = cfg.drift * t / span
    p_primary = (1 - progress) * _PRIMARY_SHARE + progress * (1 - _PRIMARY_SHARE)
    roll = rng.random(cfg.n_events)
    explore = rng.random(cfg.n_events) < cfg.noise
    chosen = np.where(roll < p_primary, primary[users], secondary[users])
    chosen = np.where(explore, rng.integers(0, cfg.n_clusters, size=cfg.n_events), chosen)
    # items: within the category, among items arrived by t, by appeal
    items = np.full(cfg.n_events, -1, dtype=np.int64)
    for c in range(cfg.n_clusters):
        events = np.flatnonzero(chosen == c)
        members = np.flatnonzero(clusters == c)
        if events.size == 0 or members.size == 0:
            continue
        members = members[np.argsort(item_arrival[members], kind="stable")]
        available = np.searchsorted(item_arrival[members], t[events], side="right")
        ok = available > 0
        items[events[ok]] = members[_draw(rng, np.cumsum(appeal[members]), available[ok])]
    missing = np.flatnonzero(items < 0)  # category had nothing yet: fall back to global appeal
    if missing.size:
        order = np.argsort(item_arrival, kind="stable")
        available = np.searchsorted(item_arrival[order], t[missing], side="right")
        items[missing] = order[_draw(rng, np.cumsum(appeal[order]), np.maximum(available, 1))]

    kinds = list(EVENT_PROBABILITIES)
    if set(kinds) != set(EVENT_WEIGHTS):
        raise ValueError("EVENT_PROBABILITIES must cover exactly shared.events.EVENT_WEIGHTS")
    event_codes = rng.choice(len(kinds), size=cfg.n_events, p=list(EVENT_PROBABILITIES.values()))
    interactions = pd.DataFrame({
        "user_id": np.asarray(user_ids, dtype=object)[users],
        "item_id": np.asarray(item_ids, dtype=object)[items],
        "event": np.asarray(kinds, dtype=object)[event_codes],
        "ts": (cfg.start_ms + t).astype(np.int64),
    })
    return interactions, _item_metadata(rng, cfg, clusters, item_ids)
