"""Redis calls bounded by a deadline of the calling thread, not a fixed socket timeout each.

redis-py has no per-call timeout: a socket timeout applies to every read, connect and retry of
every command, so a request that made three calls to a hung Redis waited three timeouts. A
client from :func:`connect` reads the deadline the calling thread set with :func:`within` and
gives each socket operation only what is left of it (never more than the configured socket
timeout); with nothing left, the operation fails at once with ``redis.TimeoutError`` and the
connection is dropped (a sent command's answer must never be read by the next caller).
Deadlines nest: the earliest one wins, so a request's budget bounds every call inside it, and
a call given less by its own timeout ends sooner. A thread without a deadline gets the plain
socket timeouts.

Not bounded by the deadline itself: an answer that arrives in several pieces. Each piece may
take up to the time left when its answer's read began (a server that stalls in the middle of
an answer, which a hung server does not do).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.connection import Connection
from redis.retry import Retry
from redis.utils import SENTINEL

from shared.config import RedisSettings
from shared.storage import redis_store

_local = threading.local()


@contextmanager
def within(timeout_s: float) -> Iterator[None]:
    """Redis calls of this thread inside the block end within ``timeout_s`` seconds from now
    (or sooner, when an enclosing block's deadline comes first)."""
    outer: float | None = getattr(_local, "deadline", None)
    deadline = time.monotonic() + timeout_s
    _local.deadline = deadline if outer is None else min(outer, deadline)
    try:
        yield
    finally:
        _local.deadline = outer


def time_left() -> float | None:
    """Seconds left before this thread's deadline (0.0 when past); None without one."""
    deadline: float | None = getattr(_local, "deadline", None)
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


class DeadlineConnection(Connection):
    """A TCP connection whose socket operations get the smaller of the socket timeout and the
    time left before the calling thread's deadline."""

    def _bounded(self, configured: float | None) -> float | None:
        left = time_left()
        if left is None:
            return configured
        if left <= 0.0:
            self.disconnect()
            raise redis.TimeoutError("no time left in the request budget")
        return left if configured is None else min(configured, left)

    def _connect(self) -> Any:
        configured = self.socket_connect_timeout
        self.socket_connect_timeout = self._bounded(configured)
        try:
            return super()._connect()
        finally:
            self.socket_connect_timeout = configured

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        timeout = self._bounded(self.socket_timeout)
        if self._sock is not None and timeout is not self.socket_timeout:
            self._sock.settimeout(timeout)
            try:
                super().send_packed_command(command, check_health)
            finally:
                if self._sock is not None:  # a failed send disconnects
                    self._sock.settimeout(self.socket_timeout)
            return
        super().send_packed_command(command, check_health)

    def read_response(
        self,
        disable_decoding: bool = False,
        *,
        timeout: float | object = SENTINEL,
        disconnect_on_error: bool = True,
        push_request: bool = False,
    ) -> Any:
        if timeout is SENTINEL and time_left() is not None:
            timeout = self._bounded(self.socket_timeout)
        return super().read_response(
            disable_decoding,
            timeout=timeout,
            disconnect_on_error=disconnect_on_error,
            push_request=push_request,
        )


def connect(settings: RedisSettings) -> redis.Redis:
    """A client whose calls honour :func:`within`, otherwise like
    :func:`shared.storage.redis_store.connect`. Retries once at once (a pooled connection a
    restarted server closed); redis-py's default of ten retries with growing sleeps would
    spend the budget sleeping, and the caller's breaker deals with an outage."""
    return redis_store.connect(
        settings, connection_class=DeadlineConnection, retry=Retry(NoBackoff(), 1)
    )
