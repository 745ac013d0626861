"""The interaction event: validation from raw bytes, serialization, event-type weights.

Producers (the recommender's POST /events, scripts/replay_stream.py) and the trainer share this
module, so an event the API accepts is exactly an event the trainer can learn from.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.json_limits import JSONLimitError, JSONLimits, loads_bounded

# Matched with fullmatch: ``$`` would also accept a trailing newline ("u1\n").
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:@\-]{1,128}")
MAX_ID_LENGTH = 128
MAX_EVENT_BYTES = 16 * 1024
METADATA_FIELDS: Mapping[str, type | tuple[type, ...]] = {
    "title": str,
    "category": str,
    "price": (int, float),
}
MAX_METADATA_TEXT = 256
# An event is a flat object with one optional nested object (item metadata).
EVENT_JSON_LIMITS = JSONLimits(max_bytes=MAX_EVENT_BYTES, max_depth=4)

# How much each positive signal counts, for popularity and for the learning rate of the update.
EVENT_WEIGHTS: Mapping[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 4.0,
    "purchase": 8.0,
}

# Timestamps outside [2000-01-01, now + 1 day] are almost always seconds-vs-milliseconds bugs.
_MIN_TS_MS = 946_684_800_000
_FUTURE_SLACK_MS = 86_400_000


class InvalidEvent(ValueError):
    """An event that cannot be learned from; the message says which field and why."""


@dataclass(frozen=True)
class Interaction:
    """One positive interaction of a user with an item. ``ts`` is Unix time in milliseconds."""

    user_id: str
    item_id: str
    event: str
    ts: int
    item: dict[str, Any] = field(default_factory=dict)  # optional metadata: title, category, price

    @property
    def weight(self) -> float:
        return EVENT_WEIGHTS[self.event]

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "user_id": self.user_id,
            "item_id": self.item_id,
            "event": self.event,
            "ts": self.ts,
        }
        if self.item:
            body["item"] = dict(self.item)
        return body

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode("utf-8")


def validate_id(name: str, value: Any) -> str:
    """Return ``value`` if it is a well-formed id, else raise InvalidEvent naming ``name``."""
    if not isinstance(value, str):
        raise InvalidEvent(f"{name} must be a string")
    if not ID_PATTERN.fullmatch(value):
        raise InvalidEvent(
            f"{name} must be 1-{MAX_ID_LENGTH} characters of letters, digits and _.:@-"
        )
    return value


def validate_metadata(raw: Any) -> dict[str, Any]:
    """Item metadata (title, category, price) checked for types and sizes; InvalidEvent if not."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidEvent("item must be an object of metadata")
    unknown = set(raw) - set(METADATA_FIELDS)
    if unknown:
        raise InvalidEvent(f"item has unknown fields: {', '.join(sorted(unknown))}")
    clean: dict[str, Any] = {}
    for key, value in raw.items():
        expected = METADATA_FIELDS[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            raise InvalidEvent(f"item.{key} has the wrong type")
        if isinstance(value, str) and len(value) > MAX_METADATA_TEXT:
            raise InvalidEvent(f"item.{key} is longer than {MAX_METADATA_TEXT} characters")
        if key == "price" and isinstance(value, int | float) and not (0 <= value < 1e9):
            raise InvalidEvent("item.price must be between 0 and 1e9")
        clean[key] = value
    return clean


def from_dict(raw: Any, now_ms: int | None = None) -> Interaction:
    """Validate a decoded JSON object into an Interaction."""
    if not isinstance(raw, dict):
        raise InvalidEvent("event must be a JSON object")
    missing = [k for k in ("user_id", "item_id", "event", "ts") if k not in raw]
    if missing:
        raise InvalidEvent(f"missing fields: {', '.join(missing)}")
    unknown = set(raw) - {"user_id", "item_id", "event", "ts", "item"}
    if unknown:
        raise InvalidEvent(f"unknown fields: {', '.join(sorted(unknown))}")
    event = raw["event"]
    if not isinstance(event, str) or event not in EVENT_WEIGHTS:
        raise InvalidEvent(f"event must be one of {', '.join(EVENT_WEIGHTS)}")
    ts = raw["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise InvalidEvent("ts must be an integer (Unix milliseconds)")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if not _MIN_TS_MS <= ts <= now + _FUTURE_SLACK_MS:
        raise InvalidEvent("ts must be Unix milliseconds between 2000-01-01 and tomorrow")
    return Interaction(
        user_id=validate_id("user_id", raw["user_id"]),
        item_id=validate_id("item_id", raw["item_id"]),
        event=event,
        ts=ts,
        item=validate_metadata(raw.get("item")),
    )


# The exact bytes Interaction.to_bytes writes for an event without metadata (compact, this key
# order). An id can hold no quote or backslash, so a match decodes to exactly what the bounded
# JSON parser would return: the trainer skips the parser for the messages producers write (its
# largest per-event cost after learning); any other message takes the full path below.
_ID_BYTES = rb"([A-Za-z0-9_.:@\-]{1,128})"
_CANONICAL_EVENT = re.compile(
    rb'\{"user_id":' + rb'"' + _ID_BYTES + rb'","item_id":"' + _ID_BYTES
    + rb'","event":"([a-z_]{1,32})","ts":([1-9][0-9]{0,19})\}'
)


def _parse_canonical(data: bytes, now_ms: int | None) -> Interaction | None:
    """The event if ``data`` is in the canonical form and valid, else None (full parse)."""
    match = _CANONICAL_EVENT.fullmatch(data)
    if match is None:
        return None
    user_id, item_id, event, ts_text = match.groups()
    ts = int(ts_text)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    name = event.decode("ascii")
    if name not in EVENT_WEIGHTS or not _MIN_TS_MS <= ts <= now + _FUTURE_SLACK_MS:
        return None  # the full path names what is wrong
    return Interaction(user_id.decode("ascii"), item_id.decode("ascii"), name, ts)


def parse(data: bytes | None, now_ms: int | None = None) -> Interaction:
    """Parse and validate one Kafka message value; raises InvalidEvent with a precise reason."""
    if data is None:
        raise InvalidEvent("empty message")
    if len(data) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"message larger than {MAX_EVENT_BYTES} bytes")
    canonical = _parse_canonical(data, now_ms)
    if canonical is not None:
        return canonical
    try:
        raw = loads_bounded(data, EVENT_JSON_LIMITS)
    except JSONLimitError as exc:
        raise InvalidEvent(f"not valid JSON: {exc}") from None
    return from_dict(raw, now_ms)
