"""Item metadata for an answer: Redis ``item:{id}`` hashes, MongoDB ``items`` behind them.

All ids of an answer are read from Redis in one pipelined round trip. Misses (and everything,
when Redis is down) are read from MongoDB in one ``$in`` query, and what MongoDB had is written
back to the cache so the next answer finds it there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pymongo
import redis
from pymongo.database import Database

from services.recommender_app.resilience import Budget, DependencyDown, Guard
from shared.storage import mongo, redis_store

log = logging.getLogger(__name__)

RESERVED_FIELDS = frozenset({"item_id", "_id", "score"})
NUMERIC_FIELDS = frozenset({"price"})


def normalize(fields: Mapping[str, Any]) -> dict[str, Any]:
    """One shape whatever the source: strings, as cached, except numeric fields as floats."""
    clean: dict[str, Any] = {}
    for key, value in fields.items():
        if key in RESERVED_FIELDS or value is None:
            continue
        if key in NUMERIC_FIELDS:
            try:
                clean[key] = float(value)
                continue
            except (TypeError, ValueError):
                pass
        clean[key] = value if isinstance(value, str) else str(value)
    return clean


class Catalog:
    def __init__(self, guard: Guard, db: Database, cache: redis.Redis):
        self._guard = guard
        self._db = db
        self._cache = cache

    def metadata(
        self, item_ids: Sequence[str], budget: Budget, degraded: set[str]
    ) -> dict[str, dict[str, Any]]:
        """Metadata of ``item_ids`` that exist in the cache or in MongoDB, normalized.

        Adds ``"redis"`` / ``"mongo"`` to ``degraded`` when a store could not be read.
        """
        if not item_ids:
            return {}
        cache_ok = True
        try:
            found: dict[str, Any] = self._guard.call(
                "redis", budget, lambda _t: redis_store.get_item_metadata(self._cache, item_ids)
            )
        except DependencyDown:
            degraded.add("redis")
            cache_ok, found = False, {}
        misses = [item_id for item_id in item_ids if item_id not in found]
        if misses:
            loaded = self._from_mongo(misses, budget, degraded)
            if loaded and cache_ok:
                self._refill(loaded, budget)
            found.update(loaded)
        return {item_id: normalize(fields) for item_id, fields in found.items()}

    def _from_mongo(
        self, item_ids: list[str], budget: Budget, degraded: set[str]
    ) -> dict[str, dict[str, Any]]:
        def fetch(timeout_s: float) -> dict[str, dict[str, Any]]:
            with pymongo.timeout(timeout_s):
                return mongo.get_items(self._db, item_ids)

        try:
            return self._guard.call("mongo", budget, fetch)
        except DependencyDown:
            degraded.add("mongo")
            return {}

    def _refill(self, loaded: dict[str, dict[str, Any]], budget: Budget) -> None:
        rows = [{**fields, "item_id": item_id} for item_id, fields in loaded.items()]
        try:
            self._guard.call(
                "redis", budget, lambda _t: redis_store.put_item_metadata(self._cache, rows)
            )
        except DependencyDown as exc:
            log.info("metadata cache not refilled: %s", exc.reason)
