"""Cross-cutting request handling: body size limit and per-endpoint metrics."""

from __future__ import annotations

import logging
import time
from typing import Any, cast

import falcon

from shared.metrics import Metrics

log = logging.getLogger(__name__)

# The request-id middleware is shared with faiss_app: shared.request_ids.


class BodyLimit:
    """413 for a declared body larger than the limit (resources also read with a bound)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.content_length is not None and req.content_length > self.max_bytes:
            raise falcon.HTTPContentTooLarge(
                title="Body too large",
                description=f"the request body may be at most {self.max_bytes} bytes",
            )


class RequestMetrics:
    """A timer and a counter per endpoint, a counter per error status, one log line each."""

    def __init__(self, metrics: Metrics):
        self._metrics = metrics
        # Metric names built once per endpoint and status, not per request.
        self._endpoint_names: dict[str, tuple[str, str]] = {}
        self._error_names: dict[int, str] = {}

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict
    ) -> None:
        req.context.endpoint = getattr(resource, "endpoint", None)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        # Context.get is typed Any | None even when given a default; process_request sets a float.
        started = cast(float, req.context.get("started", time.perf_counter()))
        ms = (time.perf_counter() - started) * 1000.0
        endpoint = req.context.get("endpoint")
        if endpoint:
            names = self._endpoint_names.get(endpoint)
            if names is None:
                names = self._endpoint_names[endpoint] = (
                    f"api.{endpoint}.ms",
                    f"api.{endpoint}.requests",
                )
            self._metrics.timing(names[0], ms)
            self._metrics.incr(names[1])
        status = resp.status_code
        if status >= 400:
            name = self._error_names.get(status)
            if name is None:
                name = self._error_names[status] = f"api.errors.{status}"
            self._metrics.incr(name)
            if status >= 500:
                self._metrics.incr("api.server_errors")
        level = logging.WARNING if status >= 500 else logging.DEBUG
        log.log(level, "%s %s -> %s in %.1f ms", req.method, req.path, status, ms)
