"""Deleted items: a persisted deny-list every component respects, and the one filter for it.

``DELETE /items/{id}`` writes the id to MongoDB ``deleted_items`` (the durable copy), to the
Redis set ``items:deleted`` with a version counter ``items:deleted:version`` (the fast copy),
and a tombstone to ``item-vectors`` (faiss_app drops the vector). Then:

- the recommender drops deleted ids from every answer (:func:`drop_deleted`), whichever path
  produced them (personalized, similar, popular, new items), re-reading the set within
  ``refresh_s`` (:class:`DeletedItems`); the worker that took the DELETE sees it at once;
- the incremental trainer ignores events for deleted items (no vector, no popularity) and
  re-publishes tombstones after each snapshot, so a faiss_app that loads any snapshot replays
  the deletes after it;
- ``scripts/initial_training.py`` leaves deleted items out of a re-training.

``PUT /items/{id}`` of a deleted id restores it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

import redis
from pymongo.database import Database

log = logging.getLogger(__name__)

DELETED_KEY = "items:deleted"
DELETED_VERSION_KEY = "items:deleted:version"
DELETED_COLLECTION = "deleted_items"

REBUILD_EVERY_S = 30.0
FAILURE_BACKOFF_S = 5.0
H = TypeVar("H", bound=Sequence[Any])


def drop_deleted(hits: Iterable[H], deleted: frozenset[str] | set[str]) -> list[H]:
    """``hits`` (tuples or lists whose first element is an item id) without deleted items."""
    if not deleted:
        return list(hits)
    return [hit for hit in hits if hit[0] not in deleted]


def mark_deleted(db: Database, r: redis.Redis, item_id: str) -> None:
    """Persist ``item_id`` as deleted: MongoDB first (durable), then Redis (what readers see)."""
    db[DELETED_COLLECTION].update_one(
        {"_id": item_id}, {"$setOnInsert": {"deleted_at": dt.datetime.now(dt.UTC)}}, upsert=True
    )
    pipe = r.pipeline(transaction=True)
    pipe.sadd(DELETED_KEY, item_id)
    pipe.incr(DELETED_VERSION_KEY)
    pipe.execute()


def restore(db: Database, r: redis.Redis, item_id: str) -> bool:
    """Take ``item_id`` off the deny-list; True if it was on it."""
    removed = db[DELETED_COLLECTION].delete_one({"_id": item_id}).deleted_count > 0
    pipe = r.pipeline(transaction=True)
    pipe.srem(DELETED_KEY, item_id)
    pipe.incr(DELETED_VERSION_KEY)
    was_cached = bool(pipe.execute()[0])
    return removed or was_cached


def load_deleted(db: Database) -> set[str]:
    """Every deleted id from MongoDB (re-training, and refilling a lost Redis copy)."""
    return {str(doc["_id"]) for doc in db[DELETED_COLLECTION].find({}, {"_id": 1})}


class DeletedItems:
    """The deny-list as this process sees it: re-read from Redis at most every ``refresh_s``.

    A refresh costs one GET of the version counter; the set itself is read only when the
    version changed. If the Redis copy is missing (a flushed or new Redis) it is rebuilt from
    MongoDB. Failures keep the last known set: a store outage never re-lists a deleted item.
    """

    def __init__(self, r: redis.Redis, db: Database | None = None, refresh_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = r
        self._db = db
        self._refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._items: frozenset[str] = frozenset()
        self._version: str | None = None
        self._checked = float("-inf")
        self._rebuilt_at = float("-inf")

    def current(self) -> frozenset[str]:
        if self._clock() - self._checked >= self._refresh_s:
            with self._lock:
                if self._clock() - self._checked >= self._refresh_s:
                    self._refresh()
        return self._items

    def add_local(self, item_id: str) -> None:
        """Seen at once by this process (the one that handled the DELETE)."""
        with self._lock:
            self._items = self._items | {item_id}

    def remove_local(self, item_id: str) -> None:
        with self._lock:
            self._items = self._items - {item_id}

    def _refresh(self) -> None:
        self._checked = self._clock()
        try:
            version = cast("str | None", self._redis.get(DELETED_VERSION_KEY))
            if version is None:
                self._start_rebuild()
            if version == self._version:
                return
            members = cast("set[str]", self._redis.smembers(DELETED_KEY))
        except (redis.RedisError, OSError) as exc:
            log.warning("deleted items not refreshed (keeping %d known): %s", len(self._items), exc)
            # a Redis that is down is not asked again on every request
            self._checked = self._clock() + FAILURE_BACKOFF_S - self._refresh_s
            return
        self._items = frozenset(members)
        self._version = version

    def _start_rebuild(self) -> None:
        """Refill a missing Redis copy from MongoDB, off the request path, at most every
        :data:`REBUILD_EVERY_S` (a Redis with no deletes yet looks the same as a lost one)."""
        if self._db is None or self._clock() - self._rebuilt_at < REBUILD_EVERY_S:
            return
        self._rebuilt_at = self._clock()
        threading.Thread(target=self._rebuild, args=(self._db,), name="deleted-items-rebuild",
                         daemon=True).start()

    def _rebuild(self, db: Database) -> None:
        try:
            ids = load_deleted(db)
            pipe = self._redis.pipeline(transaction=True)
            if ids:
                pipe.sadd(DELETED_KEY, *ids)
            pipe.setnx(DELETED_VERSION_KEY, "0")
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - MongoDB or Redis down: the next rebuild retries
            log.warning("deleted items not rebuilt from MongoDB: %s", exc)
            return
        with self._lock:
            self._items = self._items | ids
            self._checked = float("-inf")  # read the rebuilt set at the next request
