"""Pieces both apps' OpenAPI documents are built from."""

from __future__ import annotations

from typing import Any

# Every error answer: falcon's HTTPError body (title, description).
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["title"],
    "properties": {"title": {"type": "string"}, "description": {"type": "string"}},
}


def error(description: str) -> dict[str, Any]:
    """A response object for an error answer (``#/components/schemas/Error``)."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def json_answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A response object with a JSON body of ``schema``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}
