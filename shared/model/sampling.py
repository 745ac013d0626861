"""Negative sampling that avoids a user's known positives, vectorised with numpy."""

from __future__ import annotations

import numpy as np

_RESAMPLE_ROUNDS = 8


def pair_keys(users: np.ndarray, items: np.ndarray, n_item_slots: int) -> np.ndarray:
    """One int64 key per (user, item) pair: ``user * n_item_slots + item``, shape (n,)."""
    return np.asarray(users, dtype=np.int64) * int(n_item_slots) + np.asarray(items, np.int64)


def known_pairs(users: np.ndarray, items: np.ndarray, n_item_slots: int) -> np.ndarray:
    """Sorted unique pair keys of the positives (for :func:`sample_negatives`)."""
    return np.unique(pair_keys(users, items, n_item_slots))


def is_known(keys: np.ndarray, known_sorted: np.ndarray) -> np.ndarray:
    """Boolean mask of ``keys`` present in the sorted array ``known_sorted``."""
    if known_sorted.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.searchsorted(known_sorted, keys)
    pos = np.minimum(pos, known_sorted.size - 1)
    return known_sorted[pos] == keys


def sample_negatives(
    users: np.ndarray,
    n_per_user: int,
    pool: np.ndarray,
    known_sorted: np.ndarray,
    n_item_slots: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw ``n_per_user`` items per user from ``pool`` that the user has no positive for.

    Parameters
    ----------
    users : int array (n,)
    n_per_user : int
    pool : int array (m,)
        Candidate items (rows or codes), drawn uniformly.
    known_sorted : int64 array
        Sorted positive pair keys from :func:`known_pairs`, same ``n_item_slots``.
    n_item_slots : int
        The multiplier used for the keys (any bound above the largest item value).
    rng : numpy Generator

    Returns
    -------
    int64 array (n, n_per_user)
        After a few resampling rounds a negative may rarely still be a positive (a user who
        engaged with almost the whole pool); that is accepted rather than looping forever.
    """
    pool = np.asarray(pool, dtype=np.int64)
    if pool.size == 0:
        raise ValueError("cannot sample negatives from an empty pool")
    users = np.asarray(users, dtype=np.int64)
    out = pool[rng.integers(0, pool.size, size=(users.size, n_per_user))]
    owners = np.broadcast_to(users[:, None], out.shape)
    for _ in range(_RESAMPLE_ROUNDS):
        bad = is_known(pair_keys(owners, out, n_item_slots), known_sorted)
        n_bad = int(bad.sum())
        if n_bad == 0:
            break
        out[bad] = pool[rng.integers(0, pool.size, size=n_bad)]
    return out
