"""Catalogue writes behind ``PUT/GET/DELETE /items/{id}`` and ``DELETE /users/{id}``.

- An item's metadata lives in MongoDB ``items`` (source of truth) and the Redis hash
  ``item:{id}`` (cache); a PUT replaces both (fields not sent are removed).
- An item PUT for the first time is added to the Redis sorted set ``items:new`` (score: Unix
  ms), so answers can offer it before anyone interacted with it
  (:mod:`services.recommender_app.new_items`).
- A delete goes on the deny-list (:mod:`shared.deleted_items`), is removed from the metadata,
  ``popular`` and ``items:new``, and a tombstone for it is produced to ``item-vectors``.
- Forgetting a user puts a forget record in their place on ``interactions`` and records it in
  MongoDB ``forgotten_users`` (:mod:`shared.forgotten_users`: the trainer resets their row and
  ignores their earlier events if it replays them), then removes their query vector (MongoDB
  ``users`` and its Redis copy ``query:{id}``) and seen list (Redis ``seen:{id}``), so the next
  request treats them as new.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import redis
from pymongo.database import Database

from shared.deleted_items import mark_deleted, restore
from shared.forgotten_users import record_forgotten
from shared.storage import mongo, redis_store

NEW_ITEMS_KEY = "items:new"
# Every Redis key that holds per-user state, so forgetting a user removes all of it (the
# ranking stage's keys, shared/storage/ranking_store.py, are per item or global: none per user).
USER_KEY_TEMPLATES = (redis_store.SEEN_KEY, redis_store.QUERY_KEY)


def put_item(db: Database, r: redis.Redis, item_id: str, fields: Mapping[str, Any],
             now_ms: int) -> bool:
    """Create or replace an item's metadata; True if the item was not in the catalogue."""
    # _id in the replacement too: the local stack's server ignores the filter's on upsert
    document = {"_id": item_id, **fields, "updated_at": dt.datetime.now(dt.UTC)}
    result = db[mongo.ITEMS].replace_one({"_id": item_id}, document, upsert=True)
    created = result.matched_count == 0
    restored = restore(db, r, item_id)
    pipe = r.pipeline(transaction=True)
    pipe.delete(redis_store.item_key(item_id))
    if fields:
        pipe.hset(redis_store.item_key(item_id), mapping={k: str(v) for k, v in fields.items()})
    if created or restored:
        pipe.zadd(NEW_ITEMS_KEY, {item_id: now_ms})
    pipe.execute()
    return created


def get_item(db: Database, item_id: str) -> dict[str, Any] | None:
    """The item's metadata from MongoDB (``item_id`` plus its fields), or None."""
    doc = db[mongo.ITEMS].find_one({"_id": item_id})
    if doc is None:
        return None
    doc.pop("_id", None)
    updated = doc.pop("updated_at", None)
    body: dict[str, Any] = {"item_id": item_id, **doc}
    if isinstance(updated, dt.datetime):
        body["updated_at"] = updated.replace(tzinfo=dt.UTC).isoformat()
    return body


def delete_item(db: Database, r: redis.Redis, item_id: str,
                tombstone: Callable[[str], None]) -> bool:
    """Deny-list ``item_id`` and remove it everywhere; True if it had metadata.

    ``tombstone(item_id)`` must publish the ``item-vectors`` delete and wait for it.
    """
    mark_deleted(db, r, item_id)
    existed = db[mongo.ITEMS].delete_one({"_id": item_id}).deleted_count > 0
    pipe = r.pipeline(transaction=True)
    pipe.delete(redis_store.item_key(item_id))
    pipe.zrem(redis_store.POPULAR_KEY, item_id)
    pipe.zrem(NEW_ITEMS_KEY, item_id)
    pipe.execute()
    tombstone(item_id)
    return existed


def forget_user(db: Database, r: redis.Redis, user_id: str,
                announce: Callable[[str], tuple[int, int]]) -> bool:
    """Forget a user everywhere; True if a serving copy of them was there.

    ``announce(user_id)`` must put the user's forget record on ``interactions`` and return its
    acknowledged ``(partition, offset)`` (:mod:`shared.forgotten_users`): it goes first, so a
    failure changes nothing, and once it is acknowledged the trainer will reset the user's row
    whatever happens to this process.
    """
    partition, offset = announce(user_id)
    record_forgotten(db, user_id, partition, offset)
    return remove_user_copies(db, r, [user_id]) > 0


def remove_user_copies(db: Database | None, r: redis.Redis, user_ids: Sequence[str]) -> int:
    """Delete the users' serving copies: MongoDB ``users`` (unless ``db`` is None: the trainer
    removes it through its write-behind) and every per-user Redis key; how many existed."""
    if not user_ids:
        return 0
    removed = 0 if db is None else mongo.delete_users(db, user_ids)
    keys = [template.format(user_id=u) for u in user_ids for template in USER_KEY_TEMPLATES]
    return removed + int(r.delete(*keys))


def newest_items(r: redis.Redis, n: int, since_ms: int) -> list[str]:
    """Up to ``n`` items first PUT at or after ``since_ms``, newest first."""
    if n <= 0:
        return []
    return list(cast("list[str]", r.zrevrangebyscore(NEW_ITEMS_KEY, "+inf", since_ms,
                                                     start=0, num=n)))
