"""The API described for clients: OpenAPI 3.1, written by hand and built per deployment.

:func:`build_spec` fills in what the running settings decide (k's range, body and batch
sizes, whether keys and rate limits apply, the newest accepted event time), so the document a
server answers is the contract it enforces. ``tests/test_api_schema.py`` runs schemathesis
against both apps with their own documents: no 5xx, no status code or body the document does
not list. Every operation lists what the server may answer, including the statuses any route
can give: 413 for a declared body over the limit, 401/403 for keyed routes when keys are set.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from services.recommender_app.access import KEYED_ROUTES, RATE_LIMITED_ROUTES
from services.recommender_app.openapi_catalogue import ITEM_METADATA, merge_into
from shared.config import AccessSettings, RecommenderSettings
from shared.events import EVENT_WEIGHTS, MAX_ID_LENGTH
from shared.openapi import ERROR_SCHEMA, error, json_answer

ID_CHARS = "A-Za-z0-9_.:@\\-"
_ID = {
    "type": "string",
    "pattern": f"^[{ID_CHARS}]{{1,{MAX_ID_LENGTH}}}$",
    "description": f"1-{MAX_ID_LENGTH} letters, digits and _.:@- (matched whole: no newline)",
}
_MIN_TS_MS = 946_684_800_000  # 2000-01-01 (shared.events)
_FUTURE_SLACK_MS = 86_400_000
_RECORD_ERROR = {
    "type": "object",
    "required": ["index", "reason"],
    "properties": {"index": {"type": ["integer", "null"]}, "reason": {"type": "string"}},
}
# One id, optionally padded with spaces, between commas; empty parts are ignored.
_EXCLUDE_PATTERN = f"^ *([{ID_CHARS}]{{1,{MAX_ID_LENGTH}}} *)?(, *([{ID_CHARS}]{{1,{MAX_ID_LENGTH}}} *)?)*$"
MAX_EXCLUDE = 500  # enforced by resources.RecommendResource
MAX_CATEGORY_CHARS = 128


# gunicorn refuses a request line over its limit (4094 bytes) before the app sees it: a long
# exclude list, or a category of many multi-byte characters, percent-encoded.
_URI_TOO_LONG = {"description": "the request line is over the server's limit (4094 bytes "
                 "under gunicorn); send fewer exclude ids"}


def _recommend_query(rec: RecommenderSettings) -> dict[str, Any]:
    """/recommend's query as one object parameter: exclusivity and unknown names in schema."""
    return {
        "type": "object",
        "additionalProperties": False,
        "not": {"required": ["user_id", "item_id"]},
        "properties": {
            "user_id": {**_ID, "description": "personalized items for this user"},
            "item_id": {**_ID, "description": "items similar to this one (never itself)"},
            "k": {"type": "integer", "minimum": 1, "maximum": rec.max_k,
                  "default": rec.default_k, "description": "items wanted"},
            "category": {"type": "string", "minLength": 1, "maxLength": MAX_CATEGORY_CHARS,
                         "description": "only items of this category (by their metadata); "
                         "the list may then be shorter than k"},
            "exclude": {"type": "string", "pattern": _EXCLUDE_PATTERN,
                        "description": f"comma-separated item ids never to return (at most "
                        f"{MAX_EXCLUDE} ids; spaces around an id and empty parts are ignored)"},
            "explain": {"type": "boolean", "default": False,
                        "description": "add each item's candidate sources (name → rank) and "
                        "its top feature contributions to the ranker's score"},
        },
    }  # fmt: skip


def _event(now_ms: int | None) -> dict[str, Any]:
    """An event as posted (``ts`` at most one day past ``now_ms``) or, with None, as echoed
    in a 202: accepted against the server's clock then, which a document fetched earlier
    does not know."""
    ts: dict[str, Any] = {"type": "integer", "minimum": _MIN_TS_MS}
    if now_ms is not None:
        ts["maximum"] = now_ms + _FUTURE_SLACK_MS
    return {
        "type": "object",
        "required": ["user_id", "item_id", "event", "ts"],
        "additionalProperties": False,
        "properties": {
            "user_id": _ID,
            "item_id": _ID,
            "event": {"enum": list(EVENT_WEIGHTS)},
            "ts": {
                **ts,
                "description": "Unix milliseconds from 2000-01-01 to one day after the "
                "server's clock (the maximum shown is that bound when this document was "
                "served)",
            },
            "item": {**ITEM_METADATA, "description": "the item's metadata, if known"},
        },
    }


def _events_body(rec: RecommenderSettings) -> dict[str, Any]:
    return {
        "description": f"One event, or a list of 1-{rec.max_events_per_request} whose "
        "valid events are accepted and invalid ones reported by index (a list without any "
        "valid event is a 400). Any Content-Type is read as JSON, chunked or not; at most "
        f"{rec.max_body_bytes} bytes, nesting and numbers bounded as for every JSON body.",
        "required": True,
        "content": {"application/json": {"schema": {"oneOf": [
            {"$ref": "#/components/schemas/Event"},
            {"type": "array", "minItems": 1, "maxItems": rec.max_events_per_request,
             "contains": {"$ref": "#/components/schemas/Event"}},
        ]}}},
    }  # fmt: skip


def _too_large(rec: RecommenderSettings) -> dict[str, Any]:
    return error(f"a body over {rec.max_body_bytes} bytes (declared or read), on any route")


def _access_responses(access: AccessSettings, path: str, method: str) -> dict[str, Any]:
    """401/403 where a key is required, 429 where the rate limit counts."""
    keyed = set(KEYED_ROUTES.get(path, ()))
    if access.recommend_requires_key and path == "/recommend":
        keyed.add("GET")
    answers: dict[str, Any] = {}
    if access.api_keys and method.upper() in keyed:
        answers["401"] = error("no API key (Authorization: Bearer <key> or X-API-Key)")
        answers["403"] = error("the API key is not valid")
    if access.events_rate_per_s and method.upper() in RATE_LIMITED_ROUTES.get(path, ()):
        answers["429"] = error("over the key's rate limit; see Retry-After")
    return answers


def build_spec(
    rec: RecommenderSettings | None = None,
    access: AccessSettings | None = None,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """The document for these settings (defaults: the built-in ones) at ``now_ms``."""
    rec = rec or RecommenderSettings()
    access = access or AccessSettings()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    spec = copy.deepcopy(_STATIC)
    spec["components"]["schemas"]["Event"] = _event(now_ms)
    spec["components"]["schemas"]["AcceptedEvent"] = _event(None)
    paths = spec["paths"]
    paths["/recommend"]["get"]["parameters"] = [{
        "name": "query", "in": "query", "style": "form", "explode": True,
        "schema": _recommend_query(rec),
        "description": "user_id and item_id are mutually exclusive (both → 400); each "
        "parameter may be given once (repeated → 400); unknown names → 400",
    }]  # fmt: skip
    paths["/events"]["post"]["requestBody"] = _events_body(rec)
    merge_into(spec)
    for path, operations in paths.items():
        for method, operation in operations.items():
            responses = operation["responses"]
            responses.setdefault("413", _too_large(rec))
            for status in ("401", "403", "429"):  # only where these settings give them
                responses.pop(status, None)
            responses.update(_access_responses(access, path, method))
            operation.pop("security", None)
            if "401" in responses:
                operation["security"] = [{"apiKey": []}]
    return spec


_STATIC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "recommender_app",
        "version": "1.0.0",
        "description": "Real-time recommendations (GMF model served through faiss_app) and the "
        "interaction events that train it. Every answer carries an X-Request-ID header. A "
        "method a path does not have → 405 (with Allow); a path not listed → 404. Under gunicorn, malformed HTTP is refused before the app: 400, 414 "
        "(request line over 4094 bytes), 501 (a Transfer-Encoding it does not support).",
    },
    "paths": {
        "/recommend": {
            "get": {
                "summary": "Personalized (user_id), similar (item_id) or popular items",
                "description": "Without an id, or for an unknown user or item, the most popular "
                "items. When a dependency is down the answer is still 200, with what could be "
                "computed and degraded: true.",
                "responses": {
                    "200": json_answer(
                        "recommended items, best first",
                        {"$ref": "#/components/schemas/Recommendation"},
                    ),
                    "400": error(
                        "bad k, malformed id, unknown or repeated parameter, both ids, or a bad "
                        "category, exclude or explain"
                    ),
                    "414": _URI_TOO_LONG,
                },
            }
        },
        "/events": {
            "post": {
                "summary": "Publish interactions (one event or a list) to Kafka",
                "responses": {
                    "202": json_answer(
                        "the valid events are in Kafka, or (when Kafka did not confirm them in "
                        "time) in the service's durable local spool, delivered in order once "
                        "Kafka answers (`spooled` counts them); invalid ones are listed by index",
                        {"$ref": "#/components/schemas/Accepted"},
                    ),
                    "400": json_answer(
                        "no valid event, or the body is empty or not JSON (then only title and "
                        "description)",
                        {"$ref": "#/components/schemas/Rejected"},
                    ),
                    "413": error("body or batch too large"),
                    "503": error(
                        "Kafka is away and the local spool is full (or turned off); retry "
                        "after the Retry-After header's seconds"
                    ),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness: the process answers",
                "responses": {"200": json_answer("alive", {
                    "type": "object", "required": ["status"],
                    "properties": {"status": {"const": "ok"}}})},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: /recommend can answer, possibly degraded "
                "(Redis or faiss_app reachable; MongoDB and Kafka down only degrade)",
                "responses": {
                    "200": json_answer(
                        "ready; `degraded` names what is down",
                        {"$ref": "#/components/schemas/Ready"},
                    ),
                    "503": json_answer(
                        "neither item source answers", {"$ref": "#/components/schemas/Ready"}
                    ),
                },
            }
        },
        "/healthz/dependencies": {
            "get": {
                "summary": "Each dependency: reachable, latency, error kind, what it is used for",
                "responses": {
                    "200": json_answer("the report", {"$ref": "#/components/schemas/Dependencies"})
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": json_answer("OpenAPI 3.1", {"type": "object"})},
            }
        },
    },
    "components": {
        "schemas": {
            "Error": ERROR_SCHEMA,
            "Item": {
                "type": "object",
                "required": ["item_id", "score"],
                "properties": {
                    "item_id": _ID,
                    "score": {"type": "number"},
                    "title": {"type": "string"},
                    "category": {"type": "string"},
                    "price": {"type": "number"},
                    "explain": {
                        "type": "object",
                        "properties": {
                            "sources": {
                                "type": "object",
                                "additionalProperties": {"type": "integer"},
                            },
                            "contributions": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "feature": {"type": "string"},
                                        "value": {"type": "number"},
                                    },
                                },
                            },
                        },
                    },
                },
                "additionalProperties": True,
            },
            "Recommendation": {
                "type": "object",
                "required": ["items", "source", "model_version", "degraded"],
                "properties": {
                    "user_id": _ID,
                    "item_id": _ID,
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                    "source": {"enum": ["personalized", "similar", "popular"]},
                    "model_version": {"type": ["string", "null"]},
                    "ranker_version": {
                        "type": "string",
                        "description": "the ranker that ordered a personalized answer "
                        "(\"prior\" before the trainer has published one)",
                    },
                    "degraded": {"type": "boolean"},
                    "degraded_dependencies": {
                        "type": "array",
                        "items": {"enum": ["mongo", "redis", "faiss"]},
                    },
                },
            },
            "Rejected": {
                "type": "object",
                "required": ["title"],
                "properties": {
                    "title": {"type": "string"},
                    "description": {"type": "string"},
                    "accepted": {"const": 0},
                    "rejected": {"type": "integer", "minimum": 0},
                    "errors": {"type": "array", "items": _RECORD_ERROR},
                },
            },
            "Accepted": {
                "type": "object",
                "required": ["accepted", "rejected", "spooled", "events", "errors"],
                "properties": {
                    "accepted": {"type": "integer"},
                    "rejected": {"type": "integer"},
                    "spooled": {"type": "integer", "minimum": 0},
                    "events": {"type": "array",
                               "items": {"$ref": "#/components/schemas/AcceptedEvent"}},
                    "errors": {"type": "array", "items": _RECORD_ERROR},
                },
            },
            "Ready": {
                "type": "object",
                "properties": {
                    "status": {"enum": ["ready", "not ready"]},
                    "degraded": {"type": "array", "items": {"type": "string"}},
                    "dependencies": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "properties": {"ok": {"type": "boolean"}},
                        },
                    },
                },
            },
            "Dependencies": {
                "type": "object",
                "properties": {
                    "dependencies": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "properties": {
                                "ok": {"type": "boolean"},
                                "ms": {"type": ["number", "null"]},
                                "error": {
                                    "type": "string",
                                    "description": "exception class name or 'timed out'",
                                },
                                "used_for": {"type": "string"},
                            },
                        },
                    },
                },
            },
        }
    },
}

SPEC = build_spec()  # the built-in settings' document (the served one: build_spec(settings))
