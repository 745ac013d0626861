"""MongoDB ``users`` written behind the consume loop, coalesced per user.

MongoDB ``users`` is a serving copy of the model's user rows, not the trainer's durable state
(that is the snapshot with the offsets it reflects). So the consume loop only hands each
batch's query vectors to :class:`UserVectorWriter` (a dict update) and a background thread
writes them with one unordered bulk upsert per round, newest vector per user, the offsets of its
events merged (the store counts each offset once: ``shared.storage.applied_offsets``):
a user touched by ten batches while a round was in flight costs one write. How fast the store
upserts sets how stale ``users`` may get, never how fast the trainer learns.

Guarantees (docs/CONTRACTS.md, "Trainer outputs"):

- :meth:`UserVectorWriter.flush` returns once everything handed over so far is written (a clean
  stop flushes before its final snapshot);
- :meth:`UserVectorWriter.owed` lists what is handed over and not written yet (users, whether
  their document is to be deleted first, the offsets of their uncounted events). A snapshot
  stores it instead of waiting for the store (:mod:`users_owed`), and a process that starts from
  that snapshot hands it over again (:meth:`restore`): the offsets are counted once whatever
  was written meanwhile, and users learned after the snapshot are rewritten anyway when their
  events are replayed. (Older snapshots only say whether the writer was behind,
  :attr:`behind`; a start from one of those rewrites every user, :meth:`catch_up`.)
- a failed round is retried after a pause, merged under anything newer; nothing is dropped.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from shared.storage.applied_offsets import EventOffsets

log = logging.getLogger(__name__)

# Upserts per bulk_write: bounds one round's duration so flush and stop stay responsive.
ROUND_SIZE = 2000
# A round starts at most this often (unless flushing): users touched again meanwhile are
# written once. Writing as fast as the store allowed, the local MongoDB upserted each user of a
# 20k-user stream ~19 times in 200k events and took a core from the trainer; the recommender
# reads the Redis copy of the query vector, so MongoDB's extra second of staleness is free.
MIN_ROUND_INTERVAL_S = 1.0
# Users per second written while not flushing (RECSYS_TRAINER_MONGO_USERS_PER_S). At 10k
# events/s over 20k users ~8k distinct users a second are touched: every write is CPU of the
# trainer (building the update, ~13-21% of its Python time) and of the store, on the cores the
# trainer learns on, for a copy that is read only when Redis has no vector. Rounds of at most
# this many users a second: a user's document lags its model row by the backlog's length, the
# rest waits coalesced (newest vector, offsets merged).
USERS_PER_S = 500
RETRY_PAUSE_S = 1.0

UpsertUsers = Callable[[Iterable[tuple[str, np.ndarray, EventOffsets]], str], int]
DeleteUsers = Callable[[list[str]], int]


def merge_offsets(into: EventOffsets, more: EventOffsets) -> None:
    for partition, offsets in more.items():
        into.setdefault(partition, []).extend(offsets)


def _copy(events: EventOffsets) -> EventOffsets:
    return {p: list(o) for p, o in events.items()}


@dataclass(frozen=True)
class OwedUser:
    """A user whose MongoDB document the writer has not brought up to date yet."""

    user_id: str
    forget: bool  # delete the document first
    vector: bool  # a vector is owed (False: only the deletion)
    events: EventOffsets  # offsets of events not counted in n_events yet


@dataclass
class _Pending:
    vector: np.ndarray | None  # None: only the deletion is owed
    events: EventOffsets
    version: str
    forget: bool = False  # delete the document first (a forgotten user: n_events restarts)


class UserVectorWriter:
    """Coalescing write-behind of ``(user_id, query vector, offsets of its new events)``.

    Parameters
    ----------
    upsert : callable
        ``upsert(rows, model_version)``: ``shared.storage.applied_offsets.
        upsert_user_vectors_once`` bound to a database.
    """

    def __init__(
        self,
        upsert: UpsertUsers,
        min_round_interval_s: float = MIN_ROUND_INTERVAL_S,
        delete: DeleteUsers | None = None,
        users_per_s: int = USERS_PER_S,
    ) -> None:
        self._upsert = upsert
        self._delete = delete
        self._min_round_interval_s = min_round_interval_s
        # users per round while not flushing (a flush writes ROUND_SIZE per round, no pause)
        self._paced_round = max(1, min(ROUND_SIZE, int(users_per_s * min_round_interval_s)))
        self._round_at = 0.0  # monotonic start of the last round
        self._flushing = 0  # callers waiting in flush(): no pause between rounds
        self._pending: dict[str, _Pending] = {}
        self._in_flight = 0
        self._in_flight_batch: dict[str, _Pending] = {}  # the round being written
        self._cond = threading.Condition()
        self._closed = False
        self.written = 0
        self.failures = 0
        self.busy_s = 0.0  # seconds spent in bulk writes (the MongoDB share of the work)
        self._thread = threading.Thread(target=self._run, name="users-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the consume side
    def put(
        self, users: Iterable[tuple[str, np.ndarray, EventOffsets]], model_version: str
    ) -> None:
        """Hand over the newest query vector of each user (and the offsets of its events)."""
        with self._cond:
            pending = self._pending
            for user_id, vector, events in users:
                old = pending.get(user_id)
                if old is None:
                    pending[user_id] = _Pending(vector, {p: list(o) for p, o in events.items()},
                                                model_version)
                else:
                    old.vector, old.version = vector, model_version
                    merge_offsets(old.events, events)
            self._cond.notify()

    def forget(self, user_ids: Iterable[str]) -> None:
        """Delete the users' documents, in order with the writes: what was handed over before
        is dropped (it came from events before the deletion), what comes after is written
        after the deletion (``delete`` must have been given)."""
        with self._cond:
            for user_id in user_ids:
                self._pending[user_id] = _Pending(None, {}, "", forget=True)
            self._cond.notify()

    def catch_up(self, users: Iterable[tuple[str, np.ndarray]], model_version: str) -> None:
        """Rewrite users whose stored vector may lag the model (no events counted)."""
        self.put(((u, v, {}) for u, v in users), model_version)

    def owed(self) -> list[OwedUser]:
        """What is handed over and not written yet, the round in flight included (it may yet
        fail): per user, whether its document is to be deleted first, whether a vector is owed,
        and the offsets of its events not counted yet."""
        with self._cond:
            merged = {
                u: _Pending(item.vector, _copy(item.events), item.version, item.forget)
                for u, item in self._in_flight_batch.items()
            }
            for user_id, item in self._pending.items():  # newer than the round in flight
                older = merged.get(user_id)
                if older is None or item.forget:  # a newer deletion drops what came before
                    merged[user_id] = _Pending(item.vector, _copy(item.events), item.version,
                                               item.forget)
                else:
                    merge_offsets(older.events, item.events)
                    if item.vector is not None:
                        older.vector = item.vector
        return [
            OwedUser(u, item.forget, item.vector is not None, item.events)
            for u, item in merged.items()
        ]

    def restore(self, owed: Iterable[OwedUser], vectors: Mapping[str, np.ndarray],
                model_version: str) -> None:
        """Hand over again what a snapshot says was owed: deletions first, then each user's
        current vector (``vectors``; a user absent from it is skipped) with the offsets owed."""
        owed = list(owed)
        forgotten = [o.user_id for o in owed if o.forget]
        if forgotten:
            self.forget(forgotten)
        self.put(
            (
                (o.user_id, vectors[o.user_id], o.events)
                for o in owed
                if o.vector and o.user_id in vectors
            ),
            model_version,
        )

    @property
    def backlog(self) -> int:
        """Users handed over and not written yet."""
        with self._cond:
            return len(self._pending) + self._in_flight

    @property
    def behind(self) -> bool:
        return self.backlog > 0

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything handed over so far is written; False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._pending or self._in_flight:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            finally:
                self._flushing -= 1
        return True

    def close(self, timeout_s: float | None = None) -> bool:
        """Flush, then stop the thread; returns whether everything was written."""
        flushed = self.flush(timeout_s)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)
        return flushed

    # ------------------------------------------------------------------ the writer thread
    def _take_round(self) -> dict[str, _Pending] | None:
        with self._cond:
            while True:
                if not self._pending and not self._closed:
                    self._cond.wait()
                    continue
                pause = self._round_at + self._min_round_interval_s - time.monotonic()
                if pause > 0 and not (self._closed or self._flushing):
                    self._cond.wait(pause)  # let more batches coalesce into this round
                    continue
                break
            if not self._pending:
                return None
            self._round_at = time.monotonic()
            size = ROUND_SIZE if (self._closed or self._flushing) else self._paced_round
            if len(self._pending) <= size:
                batch, self._pending = self._pending, {}
            else:  # the users waiting longest first
                keys = list(itertools.islice(self._pending, size))
                batch = {k: self._pending.pop(k) for k in keys}
            self._in_flight = len(batch)
            self._in_flight_batch = batch
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_round()
            if batch is None:
                return
            started = time.perf_counter()
            try:
                forgotten = [u for u, item in batch.items() if item.forget]
                if forgotten and self._delete is not None:
                    self._delete(forgotten)
                    for user_id in forgotten:  # a retry of this round must not delete again
                        batch[user_id].forget = False
                by_version: dict[str, list[tuple[str, np.ndarray, EventOffsets]]] = {}
                for user_id, item in batch.items():
                    if item.vector is not None:
                        by_version.setdefault(item.version, []).append(
                            (user_id, item.vector, item.events)
                        )
                for version, rows in by_version.items():
                    self._upsert(rows, version)
            except Exception as exc:  # noqa: BLE001 - the store may be down for a while
                self.failures += 1
                log.warning("writing %d user vectors failed (will retry): %s", len(batch), exc)
                self._requeue(batch)
                time.sleep(RETRY_PAUSE_S)
                continue
            finally:
                self.busy_s += time.perf_counter() - started
            with self._cond:
                self.written += len(batch)
                self._in_flight = 0
                self._in_flight_batch = {}
                self._cond.notify_all()

    def _requeue(self, batch: dict[str, _Pending]) -> None:
        """Put a failed round back under anything newer handed over meanwhile."""
        with self._cond:
            for user_id, item in batch.items():
                newer = self._pending.get(user_id)
                if newer is None:
                    self._pending[user_id] = item
                elif not newer.forget:  # a newer deletion drops what came before it
                    merge_offsets(newer.events, item.events)
                    newer.forget = item.forget
            self._in_flight = 0
            self._in_flight_batch = {}
            self._cond.notify_all()
