"""A durable local spool for events Kafka did not acknowledge in time.

Layout, in ``RECSYS_RECOMMENDER_SPOOL_DIR``:

- ``events-<pid>-<random>.log``: append-only, one event per line (the event's own JSON, which never
  holds a newline), fsync'd before the request is answered. Each gunicorn worker appends only
  to its own file and holds an exclusive ``flock`` on it for its lifetime, so workers never
  write into each other's files.
- ``events-<pid>-<random>.pos``: how many bytes of the log were acknowledged by Kafka, written
  atomically after each acknowledged batch. A crash between an acknowledgement and this write
  re-sends that batch (at-least-once, never lost).

At start a worker adopts every log whose lock is free (its worker died, or the API was
restarted) and delivers adopted logs, oldest first, before its own: a crash of the API
process loses no spooled event. A line without its newline is a write the crash interrupted
(the request was never answered 202) and is dropped.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from shared.atomic import write_text_atomic

log = logging.getLogger(__name__)

PREFIX = "events-"
LOG_SUFFIX = ".log"
POS_SUFFIX = ".pos"


class SpoolFull(RuntimeError):
    """The spool holds ``max_bytes`` already; the client must retry later."""


@dataclass(frozen=True)
class SpooledRecord:
    """One spooled event: its bytes and where the record ends in its log."""

    log: Path
    end: int
    value: bytes


class _Log:
    """One spool file with its delivered position; ``handle`` holds the flock."""

    def __init__(self, path: Path, handle: IO[bytes]):
        self.path = path
        self.pos_path = path.with_suffix(POS_SUFFIX)
        self.handle = handle
        self.size = _complete_size(handle)
        self.delivered = min(_read_pos(self.pos_path), self.size)
        self.count = _count_lines(handle, self.delivered, self.size)

    @property
    def pending_bytes(self) -> int:
        return self.size - self.delivered


class Spool:
    """The worker's spool: its own log plus the logs it adopted from dead workers.

    Thread-safe. ``depth`` is the number of undelivered events, ``pending_bytes`` their size.
    """

    def __init__(self, directory: Path, max_bytes: int):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.directory.mkdir(parents=True, exist_ok=True)
        # A fresh name per instance: a reused pid (containers) or a second app in one process
        # never meets a log that is still locked.
        name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}{LOG_SUFFIX}"
        self._own = _Log(self.directory / name, _open_locked(self.directory / name, fcntl.LOCK_NB))
        self._adopted: list[_Log] = []
        self.adopt()

    # ------------------------------------------------------------------ state
    @property
    def depth(self) -> int:
        with self._lock:
            return sum(lg.count for lg in self._logs())

    @property
    def pending_bytes(self) -> int:
        with self._lock:
            return sum(lg.pending_bytes for lg in self._logs())

    def pending(self) -> bool:
        with self._lock:
            return any(lg.count for lg in self._logs())

    def _logs(self) -> list[_Log]:
        return [*self._adopted, self._own]

    # ------------------------------------------------------------------ writing
    def append(self, values: list[bytes]) -> int:
        """Append events durably (fsync) in order; raises :class:`SpoolFull` and writes
        nothing if they do not fit. Returns how many were spooled."""
        return len(self.append_located(values))

    def append_located(self, values: list[bytes]) -> list[tuple[Path, int]]:
        """:meth:`append`, returning where each record ends (``SpooledRecord.log, .end``)."""
        data = b"".join(v + b"\n" for v in values)
        if any(b"\n" in v for v in values):
            raise ValueError("a spooled event must not contain a newline")
        with self._lock:
            used = sum(lg.pending_bytes for lg in self._logs())
            if used + len(data) > self.max_bytes:
                raise SpoolFull(
                    f"the local spool holds {used} bytes; its limit is {self.max_bytes}"
                )
            own = self._own
            own.handle.seek(own.size)
            own.handle.write(data)
            own.handle.flush()
            os.fsync(own.handle.fileno())
            ends = list(itertools.accumulate((len(v) + 1 for v in values), initial=own.size))
            own.size += len(data)
            own.count += len(values)
        return [(own.path, end) for end in ends[1:]]

    # ------------------------------------------------------------------ delivering
    def read_batch(self, max_records: int) -> list[SpooledRecord]:
        """The oldest undelivered records of the oldest log that has any (order kept)."""
        with self._lock:
            for lg in self._logs():
                if lg.count:
                    return _read_records(lg, max_records)
        return []

    def delivered(self, record: SpooledRecord, count: int) -> None:
        """Kafka acknowledged everything of ``record.log`` up to ``record.end`` (``count``
        records): persist the position; an emptied log is truncated or removed."""
        with self._lock:
            lg = next((x for x in self._logs() if x.path == record.log), None)
            if lg is None or record.end <= lg.delivered:
                return
            lg.delivered = record.end
            lg.count = max(0, lg.count - count)
            if lg.delivered < lg.size:
                write_text_atomic(lg.pos_path, str(lg.delivered))
            elif lg is self._own:
                # Truncate first: a crash before the position is reset leaves a position past
                # the end, which reads as 0 of an empty log.
                lg.handle.truncate(0)
                os.fsync(lg.handle.fileno())
                lg.size = lg.delivered = lg.count = 0
                write_text_atomic(lg.pos_path, "0")
            else:
                lg.path.unlink(missing_ok=True)
                lg.pos_path.unlink(missing_ok=True)
                lg.handle.close()
                self._adopted.remove(lg)

    def adopt(self) -> int:
        """Take over the logs of workers that are gone (their lock is free); returns how many
        events they hold."""
        found = 0
        with self._lock:
            taken = {lg.path for lg in self._logs()}
            candidates = sorted(
                (p for p in self.directory.glob(f"{PREFIX}*{LOG_SUFFIX}") if p not in taken),
                key=lambda p: p.stat().st_mtime,
            )
            for path in candidates:
                try:
                    handle = _open_locked(path, fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live worker's log
                lg = _Log(path, handle)
                if lg.count == 0:
                    path.unlink(missing_ok=True)
                    lg.pos_path.unlink(missing_ok=True)
                    handle.close()
                    continue
                self._adopted.append(lg)
                found += lg.count
        if found:
            log.warning("adopted %d spooled events of stopped workers", found)
        return found

    def close(self) -> None:
        with self._lock:
            for lg in self._logs():
                lg.handle.close()


def _open_locked(path: Path, flags: int = 0) -> IO[bytes]:
    """``path`` opened for appending and reading, under an exclusive flock (BlockingIOError
    with ``flags=fcntl.LOCK_NB`` when another process holds it)."""
    handle = open(path, "a+b")  # noqa: SIM115 - held open (with its lock) for the worker's life
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | flags)
    except BaseException:
        handle.close()
        raise
    return handle


def _complete_size(handle: IO[bytes]) -> int:
    """Size of the log up to its last newline; a torn last line is cut off."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    if size == 0:
        return 0
    step = 4096
    end = size
    while end > 0:
        start = max(0, end - step)
        handle.seek(start)
        chunk = handle.read(end - start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            complete = start + cut + 1
            break
        end = start
    else:
        complete = 0
    if complete != size:
        handle.truncate(complete)
        os.fsync(handle.fileno())
    return complete


def _read_pos(path: Path) -> int:
    try:
        return max(0, int(path.read_text().strip() or 0))
    except (FileNotFoundError, ValueError):
        return 0


def _count_lines(handle: IO[bytes], start: int, end: int) -> int:
    count = 0
    handle.seek(start)
    left = end - start
    while left > 0:
        chunk = handle.read(min(1 << 20, left))
        if not chunk:
            break
        count += chunk.count(b"\n")
        left -= len(chunk)
    return count


def _read_records(lg: _Log, max_records: int) -> list[SpooledRecord]:
    records: list[SpooledRecord] = []
    lg.handle.seek(lg.delivered)
    offset = lg.delivered
    while len(records) < max_records and offset < lg.size:
        line = lg.handle.readline()
        if not line.endswith(b"\n"):
            break
        offset += len(line)
        records.append(SpooledRecord(lg.path, offset, line[:-1]))
    return records
