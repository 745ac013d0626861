"""The API described for clients: OpenAPI 3.1, written by hand (tests keep it complete)."""

from __future__ import annotations

from typing import Any

from services.recommender_app.openapi_catalogue import merge_into
from shared.config import RecommenderSettings

_ID = {"type": "string", "pattern": "^[A-Za-z0-9_.:@\\-]{1,128}$"}
_ERROR = {
    "type": "object",
    "required": ["title"],
    "properties": {"title": {"type": "string"}, "description": {"type": "string"}},
}
_EVENT = {
    "type": "object",
    "required": ["user_id", "item_id", "event", "ts"],
    "additionalProperties": False,
    "properties": {
        "user_id": _ID,
        "item_id": _ID,
        "event": {"enum": ["view", "click", "add_to_cart", "purchase"]},
        "ts": {
            "type": "integer",
            "minimum": 946_684_800_000,
            "description": "Unix milliseconds, 2000-01-01 .. now + 1 day (checked by the server)",
        },
        "item": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "title": {"type": "string", "maxLength": 256},
                "category": {"type": "string", "maxLength": 256},
                "price": {"type": "number", "minimum": 0, "exclusiveMaximum": 1e9},
            },
        },
    },
}
_RECORD_ERROR = {
    "type": "object",
    "properties": {"index": {"type": ["integer", "null"]}, "reason": {"type": "string"}},
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "recommender_app",
        "version": "1.0.0",
        "description": "Real-time recommendations (GMF model served through faiss_app) and the "
        "interaction events that train it. Every answer carries an X-Request-ID header.",
    },
    "paths": {
        "/recommend": {
            "get": {
                "summary": "Personalized (user_id), similar (item_id) or popular items",
                "description": "Without an id, or for an unknown user or item, the most popular "
                "items. When a dependency is down the answer is still 200, with what could be "
                "computed and degraded: true. user_id and item_id are mutually exclusive (both "
                "→ 400); every parameter may be given once (repeated → 400); unknown parameters "
                "→ 400.",
                "parameters": [
                    {"name": "user_id", "in": "query", "schema": _ID},
                    {"name": "item_id", "in": "query", "schema": _ID},
                    {
                        "name": "k",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": RecommenderSettings().max_k,
                            "default": RecommenderSettings().default_k,
                        },
                        "description": "items wanted; at most RECSYS_RECOMMENDER_MAX_K (the "
                        "maximum shown is its default)",
                    },
                    {
                        "name": "category",
                        "in": "query",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                        "description": "only items of this category (by their metadata); the "
                        "list may then be shorter than k",
                    },
                    {
                        "name": "exclude",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "comma-separated item ids never to return (at most 500)",
                    },
                    {
                        "name": "explain",
                        "in": "query",
                        "schema": {"type": "boolean", "default": False},
                        "description": "add each item's candidate sources (name → rank) and "
                        "its top feature contributions to the ranker's score",
                    },
                ],
                "responses": {
                    "200": _json(
                        "recommended items, best first",
                        {"$ref": "#/components/schemas/Recommendation"},
                    ),
                    "400": _error(
                        "bad k, malformed id, unknown parameter, both ids, or a bad "
                        "category, exclude or explain"
                    ),
                },
            }
        },
        "/events": {
            "post": {
                "summary": "Publish interactions (one event or a list) to Kafka",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/Event"},
                                    {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Event"},
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "202": _json(
                        "the valid events are in Kafka, or (when Kafka did not confirm them in "
                        "time) in the service's durable local spool, delivered in order once "
                        "Kafka answers (`spooled` counts them); invalid ones are listed by index",
                        {"$ref": "#/components/schemas/Accepted"},
                    ),
                    "400": _json(
                        "no valid event (or the body is not JSON)",
                        {"$ref": "#/components/schemas/Accepted"},
                    ),
                    "401": _error("no API key (when RECSYS_API_KEYS is set)"),
                    "403": _error("the API key is not valid"),
                    "413": _error("body or batch too large"),
                    "429": _error("over the key's rate limit; see Retry-After"),
                    "503": _error(
                        "Kafka is away and the local spool is full (or turned off); retry "
                        "after the Retry-After header's seconds"
                    ),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness: the process answers",
                "responses": {"200": _json("alive", {"type": "object"})},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: /recommend can answer, possibly degraded "
                "(Redis or faiss_app reachable; MongoDB and Kafka down only degrade)",
                "responses": {
                    "200": _json(
                        "ready; `degraded` names what is down",
                        {"$ref": "#/components/schemas/Ready"},
                    ),
                    "503": _json(
                        "neither item source answers", {"$ref": "#/components/schemas/Ready"}
                    ),
                },
            }
        },
        "/healthz/dependencies": {
            "get": {
                "summary": "Each dependency: reachable, latency, error kind, what it is used for",
                "responses": {
                    "200": _json("the report", {"$ref": "#/components/schemas/Dependencies"})
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})},
            }
        },
    },
    "components": {
        "schemas": {
            "Error": _ERROR,
            "Event": _EVENT,
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
            "Accepted": {
                "type": "object",
                "properties": {
                    "accepted": {"type": "integer"},
                    "rejected": {"type": "integer"},
                    "spooled": {"type": "integer", "minimum": 0},
                    "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
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

merge_into(SPEC)
