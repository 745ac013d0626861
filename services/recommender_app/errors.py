"""Domain errors mapped to JSON HTTP answers, once, for the whole app."""

from __future__ import annotations

import logging
from typing import Any

import falcon

from services.recommender_app.publisher import InvalidEvents, PublishFailed
from services.recommender_app.spool import SpoolFull
from shared.events import InvalidEvent
from shared.metrics import Metrics

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1
SPOOL_FULL_RETRY_AFTER_S = 5


def add_error_handlers(app: falcon.App, metrics: Metrics) -> None:
    def invalid_parameter(
        req: falcon.Request, resp: falcon.Response, exc: InvalidEvent, params: dict[str, Any]
    ) -> None:
        raise falcon.HTTPBadRequest(title="Invalid parameter", description=str(exc))

    def invalid_events(
        req: falcon.Request, resp: falcon.Response, exc: InvalidEvents, params: dict[str, Any]
    ) -> None:
        metrics.incr("api.events.rejected", len(exc.errors))
        resp.status = falcon.HTTP_400
        resp.media = {
            "title": "Invalid events" if exc.batch else "Invalid event",
            "description": "no event was accepted" if exc.batch else str(exc),
            "accepted": 0,
            "rejected": len(exc.errors),
            "errors": exc.errors,
        }

    def publish_failed(
        req: falcon.Request, resp: falcon.Response, exc: PublishFailed, params: dict[str, Any]
    ) -> None:
        log.warning("events not published: %s", exc)
        raise falcon.HTTPServiceUnavailable(
            title="Kafka unavailable",
            description=f"events were not confirmed by Kafka; retry later ({exc})",
            retry_after=RETRY_AFTER_S,
        )

    def spool_full(
        req: falcon.Request, resp: falcon.Response, exc: SpoolFull, params: dict[str, Any]
    ) -> None:
        log.warning("events not accepted: %s", exc)
        raise falcon.HTTPServiceUnavailable(
            title="Kafka unavailable",
            description="Kafka is away and the local spool is full; retry later",
            retry_after=SPOOL_FULL_RETRY_AFTER_S,
        )

    def unexpected(
        req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict[str, Any]
    ) -> None:
        log.exception("unhandled error on %s %s", req.method, req.path)
        raise falcon.HTTPInternalServerError(
            title="Internal error", description="see the service log for this request id"
        )

    app.add_error_handler(Exception, unexpected)
    app.add_error_handler(InvalidEvent, invalid_parameter)
    app.add_error_handler(InvalidEvents, invalid_events)
    app.add_error_handler(PublishFailed, publish_failed)
    app.add_error_handler(SpoolFull, spool_full)
