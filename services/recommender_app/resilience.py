"""Request budgets, circuit breakers and the one wrapper every dependency call goes through.

A request gets one time budget (``RecommenderSettings.request_budget_s``). Each dependency call
is given ``min(its own timeout, what is left of the budget - a reserve)``, where the reserve
keeps time for the fallback that follows a failure (popular items, metadata). A call that
cannot get at least :data:`MIN_CALL_S` is not made at all.

Some clients cannot fail faster than their own polling interval: pymongo's server selection
against a stopped MongoDB waits about 0.5 s whatever timeout it is given. Dependencies listed
in ``hard_deadline`` therefore run on a small thread pool and the request stops waiting at its
timeout (the abandoned call finishes in the background). A breaker per dependency opens after
a few consecutive failures and lets calls fail fast for a cooldown, then lets one trial through.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager
from typing import TypeVar

from shared.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")

MIN_CALL_S = 0.002
HARD_DEADLINE_THREADS = 8
BREAKER_THRESHOLD = 3


class DependencyDown(RuntimeError):
    """A dependency call failed, timed out, was short-circuited or had no budget left."""

    def __init__(self, dependency: str, reason: str):
        super().__init__(f"{dependency}: {reason}")
        self.dependency = dependency
        self.reason = reason


class Budget:
    """The time left to answer one request, on a monotonic ``clock`` (seconds)."""

    def __init__(self, total_s: float, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.deadline = clock() + total_s

    def remaining(self) -> float:
        return max(0.0, self.deadline - self._clock())


class Breaker:
    """Opens after ``threshold`` consecutive failures; while open, :meth:`allow` is False until
    ``cooldown_s`` passed, then one trial call is allowed (half-open): its success closes the
    breaker, its failure opens it again at once. Thread-safe.

    A threshold above one keeps a single slow answer (a GC pause, a burst) from cutting a
    dependency off for a whole cooldown; an outage still trips it within a few requests.
    """

    def __init__(
        self,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
        threshold: int = BREAKER_THRESHOLD,
    ):
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._threshold = threshold
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until: float | None = None
        self._trial_running = False
        self.failures = 0  # every failure so far: a change means the dependency failed since

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def allow(self) -> bool:
        with self._lock:
            if self._open_until is None:
                return True
            if self._trial_running or self._clock() < self._open_until:
                return False
            self._trial_running = True
            return True

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._open_until = None
            self._trial_running = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            self.failures += 1
            if self._open_until is not None or self._failures >= self._threshold:
                self._open_until = self._clock() + self._cooldown_s
            self._trial_running = False


class Guard:
    """Runs dependency calls with a budgeted timeout, a breaker, a timer and error mapping.

    Parameters
    ----------
    caps : mapping of dependency name to seconds
        Each dependency's own timeout; a call never gets more than this.
    errors : mapping of dependency name to exception types
        What counts as that dependency being down. Anything else propagates (a bug).
    hard_deadline : names of dependencies
        Run off the request thread, so the request never waits past the timeout even when
        the client itself overruns it.
    scopes : mapping of dependency name to a context manager factory
        Entered with the call's timeout around the call, for clients that bound themselves
        by a deadline of the calling thread (:mod:`shared.storage.redis_deadline`).
    """

    def __init__(
        self,
        caps: Mapping[str, float],
        errors: Mapping[str, tuple[type[BaseException], ...]],
        metrics: Metrics,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
        hard_deadline: Collection[str] = (),
        scopes: Mapping[str, Callable[[float], AbstractContextManager[object]]] | None = None,
    ):
        self._caps = dict(caps)
        self._scopes = dict(scopes or {})
        self._hard = frozenset(hard_deadline)
        self._pool = (
            ThreadPoolExecutor(HARD_DEADLINE_THREADS, thread_name_prefix="dependency-call")
            if self._hard
            else None
        )
        self._errors = dict(errors)
        self._metrics = metrics
        self.breakers = {name: Breaker(cooldown_s, clock) for name in caps}
        self._timers = {name: f"api.dependency.{name}.ms" for name in caps}

    def call(
        self, dependency: str, budget: Budget, fn: Callable[[float], T], reserve_s: float = 0.0
    ) -> T:
        """Return ``fn(timeout_s)`` or raise :class:`DependencyDown`."""
        timeout_s = min(self._caps[dependency], budget.remaining() - reserve_s)
        if timeout_s < MIN_CALL_S:
            raise DependencyDown(dependency, "no time left in the request budget")
        breaker = self.breakers[dependency]
        if not breaker.allow():
            raise DependencyDown(dependency, "circuit open after a recent failure")
        started = time.perf_counter()
        try:
            value = self._run(dependency, fn, timeout_s)
        except self._errors[dependency] as exc:
            breaker.failure()
            log.warning("%s call failed: %s", dependency, exc)
            raise DependencyDown(dependency, str(exc) or type(exc).__name__) from exc
        except BaseException:
            breaker.success()  # not an outage: let the next call through
            raise
        finally:
            self._metrics.timing(
                self._timers[dependency], (time.perf_counter() - started) * 1000.0
            )
        breaker.success()
        return value

    def _run(self, dependency: str, fn: Callable[[float], T], timeout_s: float) -> T:
        scope = self._scopes.get(dependency)
        if scope is not None:
            with scope(timeout_s):
                return fn(timeout_s)
        if self._pool is None or dependency not in self._hard:
            return fn(timeout_s)
        future = self._pool.submit(fn, timeout_s)
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            future.cancel()  # still queued: never runs; running: finishes in the background
            raise TimeoutError(f"no answer within {timeout_s * 1000:.0f} ms") from None
