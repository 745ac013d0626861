"""A user's state for one request: the seen list, the query vector and, for the ranking stage,
the co-engagement followers of the user's newest items, in one Redis round trip
(:mod:`shared.storage.request_state`).

The trainer writes ``seen:{user}`` and ``query:{user}`` in the same pipeline
(``redis_store.push_seen``), so one read returns both. MongoDB ``users`` stays the
durable record: it is read only when Redis has no vector for the user (a user the trainer has
not published since Redis lost its data, or a store seeded without the Redis copy), or when
Redis is down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pymongo
import redis
from pymongo.database import Database

from services.recommender_app.resilience import Budget, DependencyDown, Guard
from shared.storage import mongo, redis_store
from shared.storage.request_state import RequestState, RequestStateReader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserState:
    user_id: str
    seen: list[str]  # newest first; empty when unknown or Redis is down
    query_vector: np.ndarray | None  # float32 (serving_dim,); None: no vector anywhere
    vector_from: str | None = None  # "redis" | "mongo": where the vector was found
    redis_state: RequestState | None = None  # what Redis gave (None: Redis failed)


class UserStateReader:
    """Reads :class:`UserState`; a failed store only removes what it would have given and is
    added to ``degraded``."""

    def __init__(self, guard: Guard, cache: redis.Redis, db: Database, reserve_s: float,
                 co_engagement: tuple[int, int] = (0, 0)):
        """``co_engagement``: (newest seen items, followers beyond the seen list's length) read
        with the state for the ranking stage's co-engagement source; (0, 0) reads none."""
        self._guard = guard
        self._reader = RequestStateReader(cache)
        self._db = db
        self._reserve_s = reserve_s  # kept free for the fallback after a failure
        self._anchors, self._extra_followers = co_engagement

    def load(self, user_id: str, budget: Budget, degraded: set[str]) -> UserState:
        state: RequestState | None = None
        try:
            state = self._guard.call(
                "redis",
                budget,
                lambda _t: self._reader.read(user_id, self._anchors, self._extra_followers),
                self._reserve_s,
            )
        except DependencyDown:
            degraded.add("redis")
        seen = state.seen if state is not None else []
        if state is not None and state.query is not None:
            vector = self._checked(user_id, _decode(user_id, state.query))
            if vector is not None:
                return UserState(user_id, seen, vector, "redis", state)
        vector = self._from_mongo(user_id, budget, degraded)
        return UserState(user_id, seen, vector, "mongo" if vector is not None else None, state)

    def _from_mongo(self, user_id: str, budget: Budget, degraded: set[str]) -> np.ndarray | None:
        def find(timeout_s: float) -> dict[str, Any] | None:
            with pymongo.timeout(timeout_s):
                return mongo.get_user(self._db, user_id)

        try:
            user = self._guard.call("mongo", budget, find, self._reserve_s)
        except DependencyDown:
            degraded.add("mongo")
            return None
        if user is None or user.get("query_vector") is None:
            return None
        try:
            vector = np.asarray(user["query_vector"], dtype=np.float32)
        except (TypeError, ValueError):
            log.error("user %s has a malformed query_vector", user_id)
            return None
        return self._checked(user_id, vector)

    @staticmethod
    def _checked(user_id: str, vector: np.ndarray | None) -> np.ndarray | None:
        if vector is None:
            return None
        if vector.ndim != 1 or not vector.size or not np.isfinite(vector).all():
            log.error("user %s has a malformed query_vector of shape %s", user_id, vector.shape)
            return None
        return vector


def _decode(user_id: str, raw: str) -> np.ndarray | None:
    try:
        return redis_store.decode_query_vector(raw)
    except ValueError:
        log.error("user %s has a garbled query vector in Redis; reading MongoDB", user_id)
        return None
