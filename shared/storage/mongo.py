"""MongoDB: the ``users`` (query vectors) and ``items`` (metadata) collections.

Ids are validated strings used as ``_id`` and always passed as values of an equality filter,
never as a query document, so a caller cannot smuggle an operator such as ``{"$ne": null}``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from pymongo import MongoClient, UpdateOne
from pymongo.database import Database
from pymongo.errors import OperationFailure

from shared.config import MongoSettings

USERS = "users"
ITEMS = "items"
# Updates per ``update`` command: far below MongoDB's 16 MiB command and 100,000-write limits
# for vectors of a few hundred floats.
MAX_UPDATES_PER_COMMAND = 5000


def connect(settings: MongoSettings) -> Database:
    """A database handle whose every operation times out after ``settings.timeout_ms``."""
    client: MongoClient = MongoClient(
        settings.uri,
        serverSelectionTimeoutMS=settings.timeout_ms,
        connectTimeoutMS=settings.timeout_ms,
        socketTimeoutMS=settings.timeout_ms,
        timeoutMS=settings.timeout_ms,
        appname="recsys",
    )
    return client[settings.database]


def ensure_indexes(db: Database) -> None:
    """Create secondary indexes idempotently (``_id`` is the key of both collections)."""
    db[USERS].create_index("updated_at")
    db[ITEMS].create_index("category")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def upsert_user_vectors(
    db: Database,
    rows: Iterable[tuple[str, np.ndarray, int]],
    model_version: str,
) -> int:
    """Bulk upsert ``(user_id, query_vector (serving_dim,) float32, events_added)`` rows.

    ``n_events`` is incremented, so a replayed batch over-counts but never loses a user.
    Returns the number of rows written; raises :class:`OperationFailure` if any was not.

    One unordered ``update`` command of plain documents: pymongo's ``UpdateOne`` validates each
    operation in Python, which was most of the trainer's write-behind thread, and the vectors
    become lists in one conversion.
    """
    user_ids: list[str] = []
    vectors: list[np.ndarray] = []
    counts: list[int] = []
    for user_id, vector, events_added in rows:
        user_ids.append(str(user_id))
        vectors.append(vector)
        counts.append(int(events_added))
    if not user_ids:
        return 0
    now = _now()
    values = np.asarray(vectors, dtype=np.float32).reshape(len(user_ids), -1).tolist()
    updates = [
        {
            "q": {"_id": user_id},
            "u": {
                "$set": {"query_vector": value, "model_version": model_version, "updated_at": now},
                "$inc": {"n_events": count},
            },
            "upsert": True,
        }
        for user_id, value, count in zip(user_ids, values, counts, strict=True)
    ]
    for start in range(0, len(updates), MAX_UPDATES_PER_COMMAND):
        chunk = updates[start : start + MAX_UPDATES_PER_COMMAND]
        reply = db.command("update", USERS, updates=chunk, ordered=False)
        errors = reply.get("writeErrors") or []
        if errors or reply.get("writeConcernError"):
            first = errors[0].get("errmsg") if errors else reply.get("writeConcernError")
            raise OperationFailure(
                f"{len(errors) or len(chunk)} of {len(chunk)} user vectors not written: {first}",
                details=reply,
            )
    return len(updates)


def delete_users(db: Database, user_ids: Sequence[str]) -> int:
    """Remove users' documents (forgotten users); how many existed."""
    if not user_ids:
        return 0
    return int(db[USERS].delete_many({"_id": {"$in": [str(u) for u in user_ids]}}).deleted_count)


def get_user(db: Database, user_id: str) -> dict[str, Any] | None:
    return db[USERS].find_one({"_id": str(user_id)})


def upsert_items(db: Database, items: Iterable[Mapping[str, Any]]) -> int:
    """Bulk upsert item metadata documents; each needs ``item_id``, other fields are set."""
    ops = []
    for item in items:
        fields = {k: v for k, v in item.items() if k not in ("item_id", "_id")}
        ops.append(UpdateOne({"_id": str(item["item_id"])}, {"$set": fields}, upsert=True))
    if not ops:
        return 0
    db[ITEMS].bulk_write(ops, ordered=False)
    return len(ops)


def get_items(db: Database, item_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Metadata for the ids that exist, keyed by item id (``_id`` removed)."""
    if not item_ids:
        return {}
    found = db[ITEMS].find({"_id": {"$in": [str(i) for i in item_ids]}})
    return {doc.pop("_id"): doc for doc in found}
