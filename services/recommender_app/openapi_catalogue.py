"""The catalogue API's part of the OpenAPI document (merged into ``openapi.SPEC``)."""

from __future__ import annotations

from typing import Any

_ID = {"type": "string", "pattern": "^[A-Za-z0-9_.:@\\-]{1,128}$"}
_ERROR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_ITEM_ID = [{"name": "item_id", "in": "path", "required": True, "schema": _ID}]
_SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}]


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _ERROR_REF}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_WRITE_ERRORS = {
    "400": _error("malformed id, body not a JSON object, unknown field, wrong type or size"),
    "401": _error("no API key (Authorization: Bearer <key> or X-API-Key; RECSYS_API_KEYS)"),
    "403": _error("the API key is not valid"),
    "503": _error("a store or Kafka did not confirm the change; retry (writes are idempotent)"),
}

ITEM_METADATA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "title": {"type": "string", "maxLength": 256},
        "category": {"type": "string", "maxLength": 256},
        "price": {"type": "number", "minimum": 0, "exclusiveMaximum": 1e9},
    },
}

PATHS: dict[str, Any] = {
    "/items/{item_id}": {
        "get": {
            "parameters": _ITEM_ID,
            "summary": "An item's metadata",
            "responses": {
                "200": _json("the item", {"$ref": "#/components/schemas/CatalogueItem"}),
                "400": _error("malformed id"),
                "404": _error("no such item (or it was deleted)"),
                "503": _error("MongoDB did not answer"),
            },
        },
        "put": {
            "parameters": _ITEM_ID,
            "summary": "Create or replace an item's metadata",
            "description": "Fields not sent are removed. A new item is offered in answers "
            "(the last RECSYS_NEW_ITEM_SLOTS places) for RECSYS_NEW_ITEM_WINDOW_S seconds, "
            "before anyone interacted with it. PUT of a deleted item restores it.",
            "security": _SECURITY,
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ItemMetadata"}}}},
            "responses": {
                "200": _json("replaced", {"$ref": "#/components/schemas/CatalogueItem"}),
                "201": _json("created", {"$ref": "#/components/schemas/CatalogueItem"}),
                "413": _error("body larger than 4096 bytes"),
                **_WRITE_ERRORS,
            },
        },
        "delete": {
            "parameters": _ITEM_ID,
            "summary": "Delete an item from every answer, for good",
            "description": "Gone from personalized, similar and popular answers within "
            "RECSYS_DELETED_ITEMS_REFRESH_S; stays out after restarts and re-training "
            "(a persisted deny-list). Idempotent.",
            "security": _SECURITY,
            "responses": {
                "200": _json("deleted", {"type": "object", "properties": {
                    "item_id": _ID, "deleted": {"const": True},
                    "had_metadata": {"type": "boolean"}}}),
                **_WRITE_ERRORS,
            },
        },
    },
    "/users/{user_id}": {
        "delete": {
            "parameters": [{"name": "user_id", "in": "path", "required": True, "schema": _ID}],
            "summary": "Forget a user: query vector and seen list removed; the user is new",
            "description": "A forget record is put on the user's place in the interactions "
                           "stream first (503 if Kafka does not confirm it: nothing changed, "
                           "retry). The trainer then resets the user's row and never learns "
                           "events they sent before, also when it replays them.",
            "security": _SECURITY,
            "responses": {
                "200": _json("forgotten", {"type": "object", "properties": {
                    "user_id": _ID, "deleted": {"const": True},
                    "existed": {"type": "boolean"}}}),
                **_WRITE_ERRORS,
            },
        },
    },
}

SCHEMAS: dict[str, Any] = {
    "ItemMetadata": ITEM_METADATA,
    "CatalogueItem": {
        "type": "object",
        "required": ["item_id"],
        "properties": {"item_id": _ID, **ITEM_METADATA["properties"],
                       "created": {"type": "boolean"},
                       "updated_at": {"type": "string", "format": "date-time"}},
    },
}

SECURITY_SCHEMES: dict[str, Any] = {
    "apiKey": {"type": "http", "scheme": "bearer",
               "description": "one of RECSYS_API_KEYS (open when none is set, development only)"},
}


def merge_into(spec: dict[str, Any]) -> None:
    spec["paths"].update(PATHS)
    spec["components"]["schemas"].update(SCHEMAS)
    spec["components"].setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
