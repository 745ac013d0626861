"""Forgotten users: ``DELETE /users/{id}`` as a point in the user's own event stream.

A deletion must hold against everything that could bring the user's state back: the
trainer's in-memory row, its snapshots, a lagging trainer that still publishes events sent
before the deletion, and a trainer that restarts from an older snapshot and replays them. So
the deletion is not a flag beside the stream but a record *in* it:

1. The API produces a **forget record** to ``interactions`` with the user's id as its key (the
   key every event of the user has), so Kafka orders it after every event the user sent
   before and before every event they send after, in their partition. It waits for the
   broker's acknowledgement, which gives the record's partition and offset.
2. It writes ``{_id: "<partition>:<user_id>", user_id, partition, offset, deleted_at,
   deleted_at_ms}`` to
   MongoDB ``forgotten_users`` (``$max`` of offset: a second deletion moves the point forward),
   then removes the user's serving copies (MongoDB ``users``, every per-user Redis key).
3. The trainer that owns the partition meets the record in order: it resets the user's row to
   a fresh draw, drops their seen set and recent items, and removes the serving copies again
   (anything it published for the user's earlier events while lagging behind the API).
   Events after the record are learned on the fresh row.
4. A trainer that loads a snapshot taken before the record (``position <= offset``) resets
   the row at load and drops the user's events below the offset while replaying; it meets the
   record again and resets again (idempotent). Offsets, not clocks: event times come from
   clients and API hosts' clocks differ, but the order inside a partition is exact.

The record is a JSON object that is not an interaction (other readers of the topic reject it
as invalid), marked by the :data:`CONTROL_HEADER` header so the trainer never dead-letters it.
"""

from __future__ import annotations

import datetime as dt
import json

from confluent_kafka import Message
from pymongo.database import Database

COLLECTION = "forgotten_users"
CONTROL_HEADER = "recsys-control"
FORGET_USER = b"forget-user"
Offsets = dict[int, int]  # partition → offset of the newest forget record of the user there
Headers = list[tuple[str, str | bytes | None]]


def forget_record(user_id: str, now_ms: int) -> tuple[bytes, bytes, Headers]:
    """``(key, value, headers)`` of the forget record of ``user_id``."""
    value = json.dumps({"forget_user": user_id, "requested_at_ms": now_ms}).encode("utf-8")
    return user_id.encode("utf-8"), value, [(CONTROL_HEADER, FORGET_USER)]


def forgotten_user_of(msg: Message) -> str | None:
    """The user a forget record names, or None for any other message (an interaction)."""
    headers = msg.headers()
    if not headers or (CONTROL_HEADER, FORGET_USER) not in headers:
        return None
    key = msg.key()
    return key.decode("utf-8", "replace") if key else None


def record_forgotten(db: Database, user_id: str, partition: int, offset: int) -> None:
    """Persist where ``user_id`` was forgotten in ``partition`` (idempotent; a later deletion
    wins). One document per user and partition, top-level fields only."""
    now = dt.datetime.now(dt.UTC)
    db[COLLECTION].update_one(
        {"_id": f"{partition}:{user_id}"},
        {"$max": {"offset": offset, "deleted_at_ms": int(now.timestamp() * 1000)},
         "$set": {"user_id": user_id, "partition": partition, "deleted_at": now}},
        upsert=True,
    )


def load_forgotten(db: Database) -> dict[str, Offsets]:
    """Every forgotten user with the offsets of their forget records."""
    found: dict[str, Offsets] = {}
    for doc in db[COLLECTION].find({}, {"user_id": 1, "partition": 1, "offset": 1}):
        found.setdefault(str(doc["user_id"]), {})[int(doc["partition"])] = int(doc["offset"])
    return found


def forgotten_at_ms(db: Database) -> dict[str, int]:
    """Every forgotten user with the time of their latest deletion (Unix ms): what a data file,
    which has no offsets, is compared with (``scripts/initial_training.py``)."""
    found: dict[str, int] = {}
    for doc in db[COLLECTION].find({}, {"user_id": 1, "deleted_at_ms": 1}):
        user_id, at = str(doc["user_id"]), int(doc.get("deleted_at_ms", 0))
        found[user_id] = max(found.get(user_id, 0), at)
    return found
