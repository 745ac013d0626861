"""Input features of the two-tower model, as integer buckets and floats (numpy only, no torch).

Everything is hashed with MurmurHash3 (mmh3, unsigned 32 bit) into fixed bucket counts, so an
item or user never seen in training needs no vocabulary change: it lands in a bucket like any
other. Bucket 0 of every table means "none" (missing value, padding, or an id the model has no
trained row for) and embeds to a zero vector.

Candidate tower (one item)
    id bucket, category bucket, price bucket (log2 scale), up to ``max_tokens`` token buckets
    from the title and genres, item-age bucket (log2 days since the item was first seen).
Query tower (one user at one moment)
    user id bucket, the id buckets of the user's last ``history`` items (newest first, 0 =
    padding), and the time of day and day of week as sin/cos (4 floats).

The same functions build the training batches, the offline evaluation and the served
vectors, so what is measured offline is what is served.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mmh3
import numpy as np

HASH_SEED_ITEM = 1
HASH_SEED_USER = 2
HASH_SEED_CATEGORY = 3
HASH_SEED_TOKEN = 4
PRICE_BUCKETS = 16  # 0 = unknown, then one per power of two of (price + 1)
AGE_BUCKETS = 12  # 0 = unknown, then one per power of two of (1 + age in days)
TIME_FEATURES = 4
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
_TOKEN = re.compile(r"[a-z0-9]+")
# 1970-01-01 was a Thursday: shift so that 0 = Monday
_EPOCH_WEEKDAY = 3


@dataclass(frozen=True)
class FeatureSpace:
    """Bucket counts and lengths; stored in the model's manifest so serving hashes alike."""

    id_buckets: int = 1 << 16
    user_buckets: int = 1 << 16
    category_buckets: int = 1024
    token_buckets: int = 1 << 14
    max_tokens: int = 12
    history: int = 20

    def __post_init__(self) -> None:
        for name in ("id_buckets", "user_buckets", "category_buckets", "token_buckets"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2 (bucket 0 means none)")
        if self.max_tokens < 1 or self.history < 1:
            raise ValueError("max_tokens and history must be at least 1")


def _bucket(value: str, seed: int, buckets: int) -> int:
    """1..buckets-1 for ``value`` (0 stays free for "none")."""
    return 1 + mmh3.hash(value, seed, signed=False) % (buckets - 1)


def id_bucket(item_id: str, space: FeatureSpace) -> int:
    return _bucket(str(item_id), HASH_SEED_ITEM, space.id_buckets)


def user_bucket(user_id: str, space: FeatureSpace) -> int:
    return _bucket(str(user_id), HASH_SEED_USER, space.user_buckets)


def tokens(text: str) -> list[str]:
    """Lower-case alphanumeric words of ``text``."""
    return _TOKEN.findall(text.lower())


def price_bucket(price: Any) -> int:
    try:
        value = float(price)
    except (TypeError, ValueError):
        return 0
    if not math.isfinite(value) or value < 0:
        return 0
    return 1 + min(PRICE_BUCKETS - 2, int(math.log2(value + 1.0)))


def age_buckets(age_ms: np.ndarray) -> np.ndarray:
    """int64 buckets of item ages in ms (negative or NaN = unknown → 0)."""
    age = np.asarray(age_ms, dtype=np.float64)
    days = np.where(np.isfinite(age) & (age >= 0), age, np.nan) / DAY_MS
    raw = np.floor(np.log2(1.0 + np.nan_to_num(days, nan=0.0)))
    out = 1 + np.minimum(AGE_BUCKETS - 2, raw).astype(np.int64)
    return np.where(np.isnan(days), 0, out)


def time_features(ts_ms: np.ndarray) -> np.ndarray:
    """float32 (n, 4): sin/cos of the hour of day and of the day of week (UTC)."""
    ts = np.asarray(ts_ms, dtype=np.float64)
    hour = (ts % DAY_MS) / HOUR_MS
    weekday = ((ts // DAY_MS) + _EPOCH_WEEKDAY) % 7 + hour / 24.0
    a, b = 2 * np.pi * hour / 24.0, 2 * np.pi * weekday / 7.0
    return np.stack([np.sin(a), np.cos(a), np.sin(b), np.cos(b)], axis=1).astype(np.float32)


@dataclass
class ItemTable:
    """Static features of ``n`` items (age is added per moment by :func:`age_buckets`).

    ids : int64 (n,) id buckets, 0 where the model has no trained row for the item
    category : int64 (n,)
    price : int64 (n,)
    tokens : int64 (n, max_tokens), 0 = padding
    """

    ids: np.ndarray
    category: np.ndarray
    price: np.ndarray
    tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: np.ndarray) -> ItemTable:
        return ItemTable(self.ids[rows], self.category[rows], self.price[rows], self.tokens[rows])


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def item_table(item_ids: Sequence[str], metadata: Mapping[str, Mapping[str, Any]],
               space: FeatureSpace, known_ids: Iterable[str] | None = None) -> ItemTable:
    """Features of ``item_ids`` from ``metadata`` (item id → {title, category, price, genres}).

    ``known_ids``: the ids that keep their id bucket (those the model trained a row for); all
    others get 0, so a new item is embedded from its features alone. None = every id is known.
    Genres may be a list or a ``|``-separated string (MovieLens); they become ``g:<genre>``
    tokens, title words plain tokens.
    """
    known = None if known_ids is None else set(known_ids)
    n = len(item_ids)
    ids = np.zeros(n, dtype=np.int64)
    category = np.zeros(n, dtype=np.int64)
    price = np.zeros(n, dtype=np.int64)
    toks = np.zeros((n, space.max_tokens), dtype=np.int64)
    for j, item_id in enumerate(item_ids):
        if known is None or item_id in known:
            ids[j] = id_bucket(item_id, space)
        meta = metadata.get(item_id) or {}
        cat = _text(meta.get("category")).strip().lower()
        if cat:
            category[j] = _bucket(cat, HASH_SEED_CATEGORY, space.category_buckets)
        price[j] = price_bucket(meta.get("price"))
        genres = meta.get("genres")
        genre_list = genres if isinstance(genres, list) else _text(genres).split("|")
        words = [f"g:{g.strip().lower()}" for g in genre_list if str(g).strip()]
        words += tokens(_text(meta.get("title")))
        buckets = list(dict.fromkeys(
            _bucket(w, HASH_SEED_TOKEN, space.token_buckets) for w in words))[: space.max_tokens]
        toks[j, : len(buckets)] = buckets
    return ItemTable(ids, category, price, toks)


def histories(users: np.ndarray, items: np.ndarray, length: int) -> np.ndarray:
    """For events in time order, each event's user's previous ``length`` items, newest first.

    Parameters
    ----------
    users, items : int arrays (n,)
        User and item codes of events sorted by time.

    Returns
    -------
    int64 (n, length): item codes, -1 = padding (fewer earlier events).
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    order = np.argsort(users, kind="stable")  # per user, time order kept
    su, si = users[order], items[order]
    out_sorted = np.full((users.size, length), -1, dtype=np.int64)
    for lag in range(1, length + 1):
        same = np.zeros(users.size, dtype=bool)
        same[lag:] = su[lag:] == su[:-lag]
        out_sorted[lag:, lag - 1] = np.where(same[lag:], si[:-lag], -1)
    out = np.empty_like(out_sorted)
    out[order] = out_sorted
    return out
