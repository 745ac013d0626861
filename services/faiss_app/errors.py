"""Domain errors of faiss_app; app.py maps each to an HTTP status once."""

from __future__ import annotations


class BadQuery(ValueError):
    """A request that cannot be answered as asked (wrong dimension, k out of range, NaN...)."""


class PayloadTooLarge(ValueError):
    """A request body above ``FaissSettings.max_body_bytes``."""


class UnknownItemError(KeyError):
    """An item id the live index does not hold."""

    def __init__(self, item_id: str):
        super().__init__(item_id)
        self.item_id = item_id

    def __str__(self) -> str:
        return f"item {self.item_id!r} is not in the index"


class NotAuthorized(PermissionError):
    """An admin call without the right bearer token."""


class IndexNotReady(RuntimeError):
    """No snapshot has been loaded yet (no models/LATEST when the worker started)."""
