"""Counters that a replayed ``interactions`` batch does not inflate.

The trainer is at-least-once: after a crash it reloads its last snapshot and learns again
everything after the snapshot's offsets, so the stores see those events twice. Vectors and seen
lists are overwritten or deduplicated, but counters (Redis ``popular`` and the ranking stage's
``trending`` and co-engagement scores, MongoDB ``users.n_events``) would count them twice. So
each store records, atomically with its increments, how far it has counted:

- Redis: a hash ``applied:<topic>`` maps partition → next offset not counted yet. It is raised
  (never lowered) in the MULTI/EXEC of each batch's writes, increments included
  (:func:`queue_mark`); the trainer reads it when it takes a partition and leaves out of the
  increments every event whose offset lies below it (:func:`counted_mask`).
- MongoDB: each user document holds ``counted_offset_<p>``, the highest offset of partition p
  counted in its ``n_events``, in the same single-document update as the increment
  (:func:`upsert_user_vectors_once`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import redis
from pymongo.database import Database
from pymongo.errors import OperationFailure
from redis.client import Pipeline

from shared.storage import mongo

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
RETRIES = 5

# Raise each partition's mark to the given next offset unless it is already further.
_RAISE_MARKS = """
for i = 1, #ARGV, 2 do
  local old = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  if not old or old < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return #ARGV / 2
"""


def marks_key(topic: str) -> str:
    return f"applied:{topic}"


def queue_mark(pipe: Pipeline, topic: str, next_offsets: Mapping[int, int]) -> None:
    """Queue on ``pipe`` (a MULTI/EXEC one) the raise of the marks to ``next_offsets``."""
    if not next_offsets:
        return
    args: list[int] = []
    for partition, offset in sorted(next_offsets.items()):
        args += (int(partition), int(offset))
    pipe.eval(_RAISE_MARKS, 1, marks_key(topic), *args)


def load_marks(r: redis.Redis, topic: str) -> dict[int, int]:
    """Partition → next offset Redis has not counted yet (absent: nothing counted)."""
    raw = cast("dict[str, str]", r.hgetall(marks_key(topic)))
    return {int(p): int(o) for p, o in raw.items()}


def counted_mask(
    partitions: Sequence[int], offsets: Sequence[int], marks: Mapping[int, int]
) -> list[bool]:
    """Per event: True when the store has not counted its offset yet."""
    return [o >= marks.get(p, 0) for p, o in zip(partitions, offsets, strict=True)]


# ------------------------------------------------------------------------------- MongoDB
EventOffsets = dict[int, list[int]]  # partition → offsets of one user's events


def mark_field(partition: int) -> str:
    # A top-level name: the local MongoDB stand-in mishandles dotted paths in upserts.
    return f"counted_offset_{int(partition)}"


def _fresh_only(offsets: EventOffsets) -> dict[str, Any]:
    """Filter matching a document that counted none of ``offsets`` (or does not exist)."""
    clauses = [
        {"$or": [{mark_field(p): {"$lt": min(o)}}, {mark_field(p): {"$exists": False}}]}
        for p, o in sorted(offsets.items())
        if o
    ]
    return {"$and": clauses} if clauses else {}


def _update(
    value: list[float], model_version: str, counted: int, marks: Mapping[int, int],
    now: dt.datetime,
) -> dict[str, Any]:
    update: dict[str, Any] = {
        "$set": {"query_vector": value, "model_version": model_version, "updated_at": now},
        "$inc": {"n_events": int(counted)},
    }
    if marks:
        update["$max"] = {mark_field(p): int(o) for p, o in marks.items()}
    return update


def upsert_user_vectors_once(
    db: Database, rows: Iterable[tuple[str, np.ndarray, EventOffsets]], model_version: str
) -> int:
    """Bulk upsert ``(user_id, query vector, offsets of the events added)``, counting each
    event once however often it is written.

    The fast path is unordered ``update`` commands of plain documents (as
    :func:`shared.storage.mongo.upsert_user_vectors`) whose filters match only documents that
    counted none of the offsets. A document that did count some (a replay after a crash) makes
    its upsert collide on ``_id``; it is then read and updated with just the uncounted events,
    guarded by the marks it was read with. Returns the number of rows written; raises
    :class:`OperationFailure` on any other write error.
    """
    rows = list(rows)
    if not rows:
        return 0
    now = dt.datetime.now(dt.UTC)
    values = np.asarray([v for _, v, _ in rows], dtype=np.float32).reshape(len(rows), -1).tolist()
    updates = [
        {
            "q": {"_id": str(user_id), **_fresh_only(offsets)},
            "u": _update(value, model_version, sum(map(len, offsets.values())),
                         {p: max(o) for p, o in offsets.items() if o}, now),
            "upsert": True,
        }
        for (user_id, _, offsets), value in zip(rows, values, strict=True)
    ]  # fmt: skip
    for start in range(0, len(updates), mongo.MAX_UPDATES_PER_COMMAND):
        chunk = updates[start : start + mongo.MAX_UPDATES_PER_COMMAND]
        reply = db.command("update", mongo.USERS, updates=chunk, ordered=False)
        errors = reply.get("writeErrors") or []
        others = [e for e in errors if e.get("code") != DUPLICATE_KEY]
        if others or reply.get("writeConcernError"):
            first = others[0].get("errmsg") if others else reply.get("writeConcernError")
            raise OperationFailure(
                f"{len(others) or len(chunk)} of {len(chunk)} user vectors not written: {first}",
                details=reply,
            )
        for error in errors:
            index = start + int(error["index"])
            user_id, _, offsets = rows[index]
            _count_the_rest(db, str(user_id), values[index], offsets, model_version, now)
    return len(updates)


def _count_the_rest(
    db: Database, user_id: str, value: list[float], offsets: EventOffsets,
    model_version: str, now: dt.datetime,
) -> None:  # fmt: skip
    """Update one user whose document already counted some of ``offsets``."""
    fields = [mark_field(p) for p in offsets]
    for _ in range(RETRIES):
        doc = db[mongo.USERS].find_one({"_id": user_id}, dict.fromkeys(fields, 1)) or {}
        marks: dict[int, int | None] = {p: doc.get(mark_field(p)) for p in offsets}
        fresh = {p: [o for o in offs if o > _or_minus_one(marks[p])] for p, offs in offsets.items()}
        guard = {mark_field(p): ({"$exists": False} if m is None else m) for p, m in marks.items()}
        result = db[mongo.USERS].update_one(
            {"_id": user_id, **guard},
            _update(value, model_version, sum(map(len, fresh.values())),
                    {p: max(o) for p, o in fresh.items() if o}, now),
            upsert=True,  # deleted meanwhile: the guard ($exists false) lets it be recreated
        )  # fmt: skip
        if result.matched_count:
            return
    raise RuntimeError(f"user {user_id!r} kept changing while its events were counted")


def _or_minus_one(mark: int | None) -> int:
    return -1 if mark is None else int(mark)
