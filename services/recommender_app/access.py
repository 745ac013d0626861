"""API keys and per-key rate limits, as one Falcon middleware.

Which routes need a key is a table of URI templates to methods (:data:`KEYED_ROUTES`, plus
``GET /recommend`` when RECSYS_RECOMMEND_REQUIRES_KEY is on), so a new write endpoint is one
entry there, not a check in its handler. A key is sent as ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``. With no keys configured (the local stack) every request is let through;
production refuses to start without keys (``shared.config``).

Keys are compared as SHA-256 digests in a dict: one hash and one lookup per keyed request, and
no comparison whose time depends on how much of a guessed key is right. Logs and limits name a
key by the first 8 hex digits of its digest, never by the key.

The rate limit is a token bucket per key and per worker process (RECSYS_EVENTS_RATE_PER_S,
burst RECSYS_EVENTS_BURST): with W workers a key gets at most W times the rate. Over the limit
the answer is 429 with ``Retry-After`` (whole seconds until a token is back).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import falcon

from shared.config import AccessSettings

# URI template → methods that need an API key. Writes only: reads stay open unless configured.
KEYED_ROUTES: dict[str, frozenset[str]] = {
    "/events": frozenset({"POST"}),
    "/items/{item_id}": frozenset({"PUT", "DELETE"}),
    "/users/{user_id}": frozenset({"DELETE"}),
}
# URI template → methods whose requests count against the key's rate limit.
RATE_LIMITED_ROUTES: dict[str, frozenset[str]] = {
    "/events": frozenset({"POST"}),
}
ANONYMOUS = "anonymous"


def key_id(key: str) -> str:
    """A name for a key that is safe to log: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


class TokenBucket:
    """``rate_per_s`` tokens a second up to ``burst``; thread-safe (gunicorn threads)."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float]):
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0.0 when a token was taken, else the seconds until one is available."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self._rate


class ApiKeys:
    """Falcon middleware: a valid key for keyed routes, and the per-key rate limit."""

    def __init__(
        self,
        settings: AccessSettings,
        keyed: Mapping[str, Collection[str]] | None = None,
        rate_limited: Mapping[str, Collection[str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        routes = {t: frozenset(m) for t, m in (keyed or KEYED_ROUTES).items()}
        if settings.recommend_requires_key:
            routes["/recommend"] = routes.get("/recommend", frozenset()) | {"GET"}
        self._keyed = routes
        self._digests = {hashlib.sha256(k.encode()).digest(): key_id(k) for k in settings.api_keys}
        self._limited = {t: frozenset(m) for t, m in (rate_limited or RATE_LIMITED_ROUTES).items()}
        self._rate = settings.events_rate_per_s
        self._burst = settings.events_burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._buckets_lock = threading.Lock()

    @staticmethod
    def _presented(req: falcon.Request) -> str | None:
        auth = req.get_header("Authorization")
        if auth and auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return req.get_header("X-API-Key")

    def _caller(self, req: falcon.Request) -> str:
        """The key id of a valid key, or raise 401/403."""
        if not self._digests:
            return ANONYMOUS
        given = self._presented(req)
        if not given:
            raise falcon.HTTPUnauthorized(
                title="API key required",
                description="send the key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                challenges=["Bearer"],
            )
        name = self._digests.get(hashlib.sha256(given.encode()).digest())
        if name is None:
            raise falcon.HTTPForbidden(title="Invalid API key", description="the key is not valid")
        return name

    def _bucket(self, caller: str) -> TokenBucket:
        bucket = self._buckets.get(caller)
        if bucket is None:
            with self._buckets_lock:
                bucket = self._buckets.setdefault(
                    caller, TokenBucket(self._rate, self._burst, self._clock)
                )
        return bucket

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict
    ) -> None:
        template = req.uri_template or ""
        methods = self._keyed.get(template)
        caller = self._caller(req) if methods and req.method in methods else None
        limited = self._limited.get(template)
        if not self._rate or not limited or req.method not in limited:
            return
        wait_s = self._bucket(caller or self._caller_or_anonymous(req)).take()
        if wait_s:
            raise falcon.HTTPTooManyRequests(
                title="Rate limit exceeded",
                description=f"at most {self._rate:g} requests/s per API key "
                f"(burst {self._burst}); retry later",
                retry_after=max(1, math.ceil(wait_s)),
            )

    def _caller_or_anonymous(self, req: falcon.Request) -> str:
        # A rate-limited route that needs no key: a valid key still gets its own bucket.
        given = self._presented(req)
        if given:
            return self._digests.get(hashlib.sha256(given.encode()).digest(), ANONYMOUS)
        return ANONYMOUS
