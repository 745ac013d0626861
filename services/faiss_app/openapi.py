"""faiss_app's API described for its clients: OpenAPI 3.1, built from the running settings.

The limits stated are the ones :mod:`services.faiss_app.validation` enforces with these
settings (k, batch size, body size, finite float32 values, snapshot version names); what
JSON Schema cannot say (every query as long as the space's dimension, one exclude list per
query) is in the descriptions and answered 400. ``tests/test_api_schema.py`` runs
schemathesis against a served faiss_app with this document.
"""

from __future__ import annotations

from typing import Any

from services.faiss_app.validation import MAX_VERSION_LENGTH
from shared.config import FaissSettings
from shared.openapi import ERROR_SCHEMA, error, json_answer

_FLOAT32_MAX = 3.4028234663852886e38
_IDS = {"type": "array", "items": {"type": "string"}}
_SCORES = {"type": "array", "items": {"type": "number"}}


def _space(names: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "string", "enum": list(names), "default": names[0],
            "description": "the vector space to use (another name → 404)"}  # fmt: skip


# gunicorn refuses a request line over its limit (4094 bytes) before the app sees it.
_URI_TOO_LONG = {"description": "the request line is over the server's limit (4094 bytes "
                 "under gunicorn)"}
_NOT_LOADED = error("that space has no snapshot loaded yet")
_UNKNOWN_SPACE = error("unknown space (or, for similar, an item not in the index)")


def build_spec(limits: FaissSettings, spaces: tuple[str, ...]) -> dict[str, Any]:
    """The document for ``limits`` and the served ``spaces`` (the default one first)."""
    k = {"type": "integer", "minimum": 1, "maximum": limits.max_k, "default": 10}
    too_large = error(f"a body over {limits.max_body_bytes} bytes (declared or read)")
    search_body = {
        "type": "object",
        "required": ["queries"],
        "properties": {
            "queries": {
                "type": "array", "minItems": 1, "maxItems": limits.max_batch,
                "items": {"type": "array", "minItems": 1, "items": {
                    "type": "number", "minimum": -_FLOAT32_MAX, "maximum": _FLOAT32_MAX}},
                "description": "query vectors, each as long as the space's dimension "
                "(otherwise 400), finite float32 values",
            },
            "k": k,
            "exclude": {
                "type": "array", "items": _IDS,
                "description": "one list of item ids per query, never returned for it; at "
                f"most {limits.max_k} ids per query on average",
            },
            "space": _space(spaces),
        },
    }  # fmt: skip
    reload_body = {
        "type": "object",
        "properties": {
            "version": {
                "type": "string",
                "pattern": f"^[A-Za-z0-9_:\\-][A-Za-z0-9_.:\\-]{{0,{MAX_VERSION_LENGTH - 1}}}$",
                "description": "a snapshot folder's name (default: the space's LATEST)",
            },
            "space": _space(spaces),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "faiss_app",
            "version": "1.0.0",
            "description": "Nearest-neighbour search over the item vectors of each space. "
            "JSON bodies are read chunked or not, any Content-Type; their nesting and number "
            "sizes are bounded (400). A method a path does not have → 405; a path not listed "
            "→ 404. Every answer carries an X-Request-ID header. Under gunicorn, malformed HTTP is refused before the app: 400, 414 "
        "(request line over 4094 bytes), 501 (a Transfer-Encoding it does not support).",
        },
        "paths": {
            "/v1/search": {"post": {
                "summary": "The k items of highest inner product with each query vector",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": search_body}}},
                "responses": {
                    "200": json_answer("one result per query, best first",
                                 {"$ref": "#/components/schemas/SearchAnswer"}),
                    "400": error("malformed body, wrong dimension, k out of range, too many "
                                 "queries or excluded ids, non-finite values, or values so "
                                 "large that a score overflows float32"),
                    "404": _UNKNOWN_SPACE,
                    "413": too_large,
                    "503": _NOT_LOADED,
                },
            }},
            "/v1/similar": {"get": {
                "summary": "The k items most similar (cosine) to an item, never itself",
                "parameters": [
                    {"name": "item_id", "in": "query", "required": True,
                     "schema": {"type": "string"}},
                    {"name": "k", "in": "query", "schema": k},
                    {"name": "space", "in": "query", "schema": _space(spaces)},
                ],
                "responses": {
                    "200": json_answer("similar items, best first",
                                 {"$ref": "#/components/schemas/SimilarAnswer"}),
                    "400": error("no item_id, or k not an integer in range"),
                    "404": _UNKNOWN_SPACE,
                    "414": _URI_TOO_LONG,
                    "503": _NOT_LOADED,
                },
            }},
            "/v1/reload": {"post": {
                "summary": "Load a snapshot of a space (every worker of this server)",
                "security": [{"adminToken": []}],
                "requestBody": {"required": False, "content": {
                    "application/json": {"schema": reload_body}}},
                "responses": {
                    "200": json_answer("loaded", {"$ref": "#/components/schemas/Reloaded"}),
                    "400": error("malformed body or version name"),
                    "401": error("no or a wrong admin bearer token (RECSYS_FAISS_ADMIN_TOKEN)"),
                    "404": error("unknown space, or no such snapshot"),
                    "413": too_large,
                },
            }},
            "/v1/stats": {"get": {
                "summary": "A space's index and model, and a summary line of every space",
                "parameters": [{"name": "space", "in": "query", "schema": _space(spaces)}],
                "responses": {
                    "200": json_answer("the stats", {"type": "object",
                                               "required": ["space", "spaces", "pid"]}),
                    "404": _UNKNOWN_SPACE,
                    "503": _NOT_LOADED,
                },
            }},
            "/healthz": {"get": {
                "summary": "Liveness (also while the first index is being built)",
                "responses": {"200": json_answer("alive", {
                    "type": "object", "required": ["status", "index_loaded"],
                    "properties": {"status": {"const": "ok"},
                                   "index_loaded": {"type": "boolean"},
                                   "model_version": {"type": ["string", "null"]},
                                   "pid": {"type": "integer"}}})},
            }},
            "/readyz": {"get": {
                "summary": "Readiness: the default space's index is loaded",
                "responses": {
                    "200": json_answer("ready", {"type": "object", "required": ["status", "count"],
                                           "properties": {"status": {"const": "ready"},
                                                          "count": {"type": "integer"}}}),
                    "503": _NOT_LOADED,
                },
            }},
            "/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": json_answer("OpenAPI 3.1", {"type": "object"})},
            }},
        },
        "components": {
            "schemas": {
                "Error": ERROR_SCHEMA,
                "SearchAnswer": {
                    "type": "object",
                    "required": ["results", "model_version", "space"],
                    "properties": {
                        "results": {"type": "array", "items": {
                            "type": "object", "required": ["ids", "scores"],
                            "properties": {"ids": _IDS, "scores": _SCORES}}},
                        "model_version": {"type": "string"},
                        "index_type": {"type": "string"},
                        "space": {"type": "string"},
                    },
                },
                "SimilarAnswer": {
                    "type": "object",
                    "required": ["item_id", "ids", "scores", "model_version", "space"],
                    "properties": {"item_id": {"type": "string"}, "ids": _IDS,
                                   "scores": _SCORES, "model_version": {"type": "string"},
                                   "space": {"type": "string"}},
                },
                "Reloaded": {
                    "type": "object",
                    "required": ["space", "model_version", "count"],
                    "properties": {"space": {"type": "string"},
                                   "model_version": {"type": "string"},
                                   "count": {"type": "integer"},
                                   "index_type": {"type": "string"},
                                   "build_seconds": {"type": "number"},
                                   "pid": {"type": "integer"}},
                },
            },
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": "RECSYS_FAISS_ADMIN_TOKEN"},
            },
        },
    }  # fmt: skip
