"""String ids to embedding rows.

Two maps share one interface (:class:`IdMap`):

- :class:`VocabIdMap`: an append-only vocabulary; row = position of the id in :attr:`ids`.
  Two ids never share a row. Persisted as the list of ids.
- :class:`HashIdMap`: MurmurHash3 (mmh3, seed 0, unsigned 32 bit) modulo ``hash_buckets``, for
  id spaces too large to enumerate; two ids can share a row. It still keeps the ids it has seen
  (for reporting, item-vector export and "is this user known" checks). Persisted as that list.

``row(id, create=False)`` answers None for an id never seen, in both modes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Protocol, overload

import mmh3
import numpy as np

from shared.config import ModelSettings

VOCAB = "vocab"
HASH = "hash"
HASH_SEED = 0
MISSING = -1


class IdMap(Protocol):
    """What the trainer, checkpoints and scripts use of an id map."""

    mode: str

    @overload
    def row(self, id_: str, create: Literal[True] = True) -> int: ...
    @overload
    def row(self, id_: str, create: bool) -> int | None: ...

    def rows(self, ids: Iterable[str], create: bool = True) -> np.ndarray: ...

    def __len__(self) -> int: ...

    def __contains__(self, id_: object) -> bool: ...

    @property
    def ids(self) -> list[str]: ...

    @property
    def required_rows(self) -> int: ...

    def to_json(self) -> list[str]: ...


class _SeenIds:
    """What both maps share: the ids seen in first-seen order and their rows.

    Subclasses say which row a new id gets (:meth:`_assign`) and how many rows a table needs.
    """

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}

    def _assign(self, id_: str) -> int:
        raise NotImplementedError

    @overload
    def row(self, id_: str, create: Literal[True] = True) -> int: ...
    @overload
    def row(self, id_: str, create: bool) -> int | None: ...
    def row(self, id_: str, create: bool = True) -> int | None:
        """Row of ``id_``; an unseen id gets a row when ``create``, else None is returned."""
        found = self._rows.get(id_)
        if found is not None or not create:
            return found
        row = self._assign(id_)
        self._rows[id_] = row
        self._ids.append(id_)
        return row

    def rows(self, ids: Iterable[str], create: bool = True) -> np.ndarray:
        """Rows of ``ids`` as int64 (n,); unseen ids are -1 when not ``create``."""
        if not create:  # the trainer's per-batch lookup: one dict probe per id
            get = self._rows.get
            return np.fromiter((get(i, MISSING) for i in ids), dtype=np.int64)
        out = [self.row(i, create) for i in ids]
        return np.array([MISSING if r is None else r for r in out], dtype=np.int64)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._rows

    @property
    def ids(self) -> list[str]:
        """Ids seen so far, in first-seen order (the live list: do not modify).

        In vocabulary mode this is also the index of rows: ``ids[j]`` has row ``j``.
        """
        return self._ids

    def to_json(self) -> list[str]:
        return list(self._ids)


class VocabIdMap(_SeenIds):
    """Append-only string → row vocabulary.

    Parameters
    ----------
    ids : sequence of str, optional
        Initial vocabulary; ``ids[j]`` gets row ``j``. Duplicates raise ValueError.
    """

    mode = VOCAB

    def __init__(self, ids: Sequence[str] = ()) -> None:
        super().__init__()
        for id_ in ids:
            if id_ in self._rows:
                raise ValueError(f"duplicate id {id_!r} in vocabulary")
            self.row(id_)

    def _assign(self, id_: str) -> int:
        return len(self._ids)

    @property
    def required_rows(self) -> int:
        """Rows an embedding table needs to hold every id of this map."""
        return len(self._ids)

    @classmethod
    def from_json(cls, ids: Sequence[str]) -> VocabIdMap:
        return cls(ids)


class HashIdMap(_SeenIds):
    """String → ``mmh3(id) % hash_buckets``; distinct ids may share a row.

    Parameters
    ----------
    hash_buckets : int
        Number of rows ids hash into.
    ids : sequence of str, optional
        Ids already seen (their rows come from the hash, not their position).
    """

    mode = HASH

    def __init__(self, hash_buckets: int, ids: Sequence[str] = ()) -> None:
        if hash_buckets < 1:
            raise ValueError("hash_buckets must be at least 1")
        super().__init__()
        self.hash_buckets = int(hash_buckets)
        self._max_row = -1
        for id_ in ids:
            self.row(id_, create=True)

    def bucket(self, id_: str) -> int:
        """The row ``id_`` hashes to, whether or not it was seen."""
        return mmh3.hash(id_, HASH_SEED, signed=False) % self.hash_buckets

    def _assign(self, id_: str) -> int:
        row = self.bucket(id_)
        self._max_row = max(self._max_row, row)
        return row

    @property
    def required_rows(self) -> int:
        """Rows an embedding table needs for every id seen so far (highest row + 1)."""
        return self._max_row + 1

    @classmethod
    def from_json(cls, ids: Sequence[str], hash_buckets: int) -> HashIdMap:
        return cls(hash_buckets, ids)


def make_id_map(
    mode: str, hash_buckets: int | None = None, ids: Sequence[str] = ()
) -> VocabIdMap | HashIdMap:
    """An id map of ``mode`` ("vocab" or "hash"), optionally pre-filled with ``ids``."""
    if mode == VOCAB:
        return VocabIdMap(ids)
    if mode == HASH:
        if hash_buckets is None:
            raise ValueError("hash mode needs hash_buckets")
        return HashIdMap(hash_buckets, ids)
    raise ValueError(f"unknown id mode {mode!r}; expected {VOCAB!r} or {HASH!r}")


def id_map_from_settings(
    settings: ModelSettings, ids: Sequence[str] = ()
) -> VocabIdMap | HashIdMap:
    """The id map ``settings.id_mode`` asks for (``RECSYS_ID_MODE``, ``RECSYS_HASH_BUCKETS``)."""
    return make_id_map(settings.id_mode, settings.hash_buckets, ids)
