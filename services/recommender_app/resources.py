"""HTTP resources: validate the request, call one object, set ``resp.media``.

Domain errors (bad ids, invalid events, Kafka not confirming) are mapped to HTTP once, in
:mod:`services.recommender_app.errors`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from services.recommender_app.health import USED_FOR, Readiness
from services.recommender_app.openapi import MAX_CATEGORY_CHARS, MAX_EXCLUDE, build_spec
from services.recommender_app.publisher import EventPublisher, validate
from services.recommender_app.recommender import Filters, Recommender
from shared.config import AccessSettings, RecommenderSettings
from shared.events import validate_id
from shared.json_limits import JSONLimitError, JSONLimits, loads_bounded
from shared.metrics import Metrics
from shared.request_body import read_body

# MAX_EXCLUDE: at most this many ids in ``exclude=`` (a page of already-shown items, not a
# blocklist); both limits are stated in the OpenAPI document, which owns them.


class RecommendResource:
    endpoint = "recommend"
    PARAMS = frozenset({"user_id", "item_id", "k", "category", "exclude", "explain"})

    def __init__(self, recommender: Recommender, settings: RecommenderSettings):
        self._recommender = recommender
        self._default_k = settings.default_k
        self._max_k = settings.max_k

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        unknown = sorted(set(req.params) - self.PARAMS)
        if unknown:
            # Also what ``user_id[$ne]=`` looks like: a parameter name, never an operator.
            raise falcon.HTTPBadRequest(
                title="Unknown parameter",
                description=f"unknown query parameters: {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(self.PARAMS))}",
            )
        repeated = sorted(name for name, value in req.params.items() if isinstance(value, list))
        if repeated:
            raise falcon.HTTPBadRequest(
                title="Repeated parameter",
                description=f"give each parameter once: {', '.join(repeated)}",
            )
        k = req.get_param_as_int("k", min_value=1, max_value=self._max_k, default=self._default_k)
        user_id = self._id(req, "user_id")
        item_id = self._id(req, "item_id")
        if user_id is not None and item_id is not None:
            raise falcon.HTTPBadRequest(
                title="Conflicting parameters",
                description="give user_id (personalized) or item_id (similar items), not both",
            )
        answer = self._recommender.recommend(
            k, user_id=user_id, item_id=item_id, filters=self._filters(req)
        )
        body: dict[str, Any] = {}
        if user_id is not None:
            body["user_id"] = user_id
        if item_id is not None:
            body["item_id"] = item_id
        body.update(
            items=answer.items,
            source=answer.source,
            model_version=answer.model_version,
            degraded=bool(answer.degraded),
            degraded_dependencies=list(answer.degraded),
        )
        if answer.ranker_version is not None:
            body["ranker_version"] = answer.ranker_version
        resp.media = body

    @staticmethod
    def _filters(req: falcon.Request) -> Filters:
        raw_exclude = req.get_param("exclude") or ""
        exclude = [part.strip() for part in raw_exclude.split(",") if part.strip()]
        if len(exclude) > MAX_EXCLUDE:
            raise falcon.HTTPBadRequest(
                title="Invalid parameter",
                description=f"exclude takes at most {MAX_EXCLUDE} ids",
            )
        category = req.get_param("category")
        if category is not None and not 0 < len(category) <= MAX_CATEGORY_CHARS:
            raise falcon.HTTPBadRequest(
                title="Invalid parameter",
                description=f"category must be 1 to {MAX_CATEGORY_CHARS} characters",
            )
        return Filters(
            exclude=frozenset(validate_id("exclude", item_id) for item_id in exclude),
            category=category,
            explain=bool(req.get_param_as_bool("explain", default=False)),
        )

    @staticmethod
    def _id(req: falcon.Request, name: str) -> str | None:
        value = req.get_param(name)
        return None if value is None else validate_id(name, value)


class EventsResource:
    endpoint = "events"

    def __init__(
        self,
        publisher: EventPublisher,
        settings: RecommenderSettings,
        metrics: Metrics,
        now_ms: Callable[[], int],
    ):
        self._publisher = publisher
        self._max_bytes = settings.max_body_bytes
        self._max_events = settings.max_events_per_request
        self._metrics = metrics
        self._now_ms = now_ms

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        raw = read_body(req, self._max_bytes)
        if len(raw) > self._max_bytes:
            raise falcon.HTTPContentTooLarge(
                title="Body too large",
                description=f"the request body may be at most {self._max_bytes} bytes",
            )
        body = self._decode(raw, self._max_bytes)
        if isinstance(body, list) and len(body) > self._max_events:
            raise falcon.HTTPContentTooLarge(
                title="Too many events",
                description=f"at most {self._max_events} events per request, got {len(body)}",
            )
        checked = validate(body, self._now_ms())
        spooled = self._publisher.publish(checked.events)
        self._metrics.incr("api.events.accepted", len(checked.events))
        if spooled:
            self._metrics.incr("api.events.spooled", spooled)
        if checked.errors:
            self._metrics.incr("api.events.rejected", len(checked.errors))
        resp.status = falcon.HTTP_202
        resp.media = {
            "accepted": len(checked.events),
            "rejected": len(checked.errors),
            "spooled": spooled,
            "events": [event.to_dict() for event in checked.events],
            "errors": checked.errors,
        }

    @staticmethod
    def _decode(raw: bytes, max_bytes: int) -> Any:
        if not raw.strip():
            raise falcon.HTTPBadRequest(title="Empty body", description="send a JSON event or list")
        try:
            return loads_bounded(raw, JSONLimits(max_bytes=max_bytes))
        except JSONLimitError as exc:
            raise falcon.HTTPBadRequest(
                title="Invalid JSON", description=f"the body is not valid JSON: {exc}"[:300]
            ) from None


class HealthResource:
    endpoint = "healthz"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class ReadyResource:
    """200 while /recommend can answer (possibly degraded); ``degraded`` names what is down."""

    endpoint = "readyz"

    def __init__(self, readiness: Readiness):
        self._readiness = readiness

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        report = self._readiness.check()
        ready = self._readiness.can_recommend(report)
        resp.status = falcon.HTTP_200 if ready else falcon.HTTP_503
        resp.media = {
            "status": "ready" if ready else "not ready",
            "degraded": sorted(name for name, entry in report.items() if not entry["ok"]),
            "dependencies": {name: {"ok": entry["ok"]} for name, entry in report.items()},
        }


class DependenciesResource:
    """Each dependency: reachable, latency, error kind, what it is for (always 200)."""

    endpoint = "dependencies"

    def __init__(self, readiness: Readiness):
        self._readiness = readiness

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        report = self._readiness.check()
        resp.media = {
            "dependencies": {
                name: {**entry, "used_for": USED_FOR[name]} for name, entry in report.items()
            }
        }


class OpenApiResource:
    """The document for this deployment's settings, as of now (``ts``'s upper bound moves)."""

    endpoint = "openapi"

    def __init__(self, settings: RecommenderSettings, access: AccessSettings,
                 now_ms: Callable[[], int]):
        self._settings = settings
        self._access = access
        self._now_ms = now_ms

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = build_spec(self._settings, self._access, self._now_ms())
