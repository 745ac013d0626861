"""Item metadata for an answer: an in-process cache, Redis ``item:{id}`` hashes behind it,
MongoDB ``items`` behind those.

Ids the in-process cache (:mod:`services.recommender_app.metadata_cache`) holds cost nothing.
The rest are read from Redis in one pipelined round trip. Redis misses (and everything, when
Redis is down) are read from MongoDB in one ``$in`` query, and what MongoDB had is written back
to Redis so the next answer finds it there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pymongo
import redis
from pymongo.database import Database

from services.recommender_app.metadata_cache import MetadataCache
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
    def __init__(
        self, guard: Guard, db: Database, cache: redis.Redis, local: MetadataCache | None = None
    ):
        self._guard = guard
        self._db = db
        self._cache = cache
        self.local = local if local is not None else MetadataCache(max_items=0, ttl_s=0.0)

    def metadata(
        self, item_ids: Sequence[str], budget: Budget, degraded: set[str]
    ) -> dict[str, dict[str, Any]]:
        """Metadata of ``item_ids`` that exist in the caches or in MongoDB, normalized.

        Adds ``"redis"`` / ``"mongo"`` to ``degraded`` when a store could not be read.
        """
        if not item_ids:
            return {}
        known, wanted = self.local.lookup(item_ids)
        if wanted:
            fetched, complete = self._from_stores(wanted, budget, degraded)
            known.update(fetched)
            learned: dict[str, dict[str, Any] | None] = dict(fetched)
            if complete:  # both stores answered: what they lack, nobody has
                learned.update({item_id: None for item_id in wanted if item_id not in fetched})
            self.local.store(learned)
        return {item_id: fields for item_id, fields in known.items() if fields is not None}

    def _from_stores(
        self, item_ids: list[str], budget: Budget, degraded: set[str]
    ) -> tuple[dict[str, dict[str, Any]], bool]:
        """``(normalized metadata found, whether every store needed could be read)``."""
        cache_ok = True
        try:
            found: dict[str, Any] = self._guard.call(
                "redis", budget, lambda _t: redis_store.get_item_metadata(self._cache, item_ids)
            )
        except DependencyDown:
            degraded.add("redis")
            cache_ok, found = False, {}
        complete = cache_ok
        misses = [item_id for item_id in item_ids if item_id not in found]
        if misses:
            loaded = self._from_mongo(misses, budget, degraded)
            if loaded is None:
                complete, loaded = False, {}
            if loaded and cache_ok:
                self._refill(loaded, budget)
            found.update(loaded)
        return {item_id: normalize(fields) for item_id, fields in found.items()}, complete

    def _from_mongo(
        self, item_ids: list[str], budget: Budget, degraded: set[str]
    ) -> dict[str, dict[str, Any]] | None:
        """What MongoDB holds of ``item_ids``; None when it could not be read."""
        def fetch(timeout_s: float) -> dict[str, dict[str, Any]]:
            with pymongo.timeout(timeout_s):
                return mongo.get_items(self._db, item_ids)

        try:
            return self._guard.call("mongo", budget, fetch)
        except DependencyDown:
            degraded.add("mongo")
            return None

    def _refill(self, loaded: dict[str, dict[str, Any]], budget: Budget) -> None:
        rows = [{**fields, "item_id": item_id} for item_id, fields in loaded.items()]
        try:
            self._guard.call(
                "redis", budget, lambda _t: redis_store.put_item_metadata(self._cache, rows)
            )
        except DependencyDown as exc:
            log.info("metadata cache not refilled: %s", exc.reason)
