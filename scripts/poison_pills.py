"""Malformed ``interactions`` records of many kinds, for tests and bench_ingestion.

Each kind is a record the trainer must dead-letter without stopping: the ones that killed it
once (deep nesting, a huge integer, the event type as an object), what JSON parsers disagree
on (NaN literals, lone surrogates, invalid UTF-8), ids that almost match, and plain garbage.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

TEN_MB = 10 * 1024 * 1024


def _event(now_ms: int, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"user_id": "pill-user", "item_id": "pill-item", "event": "view"}
    body["ts"] = now_ms
    body.update(changes)
    return body


def _json(now_ms: int, **changes: Any) -> bytes:
    return json.dumps(_event(now_ms, **changes)).encode("utf-8")


def _without(now_ms: int, name: str) -> bytes:
    body = _event(now_ms)
    del body[name]
    return json.dumps(body).encode("utf-8")


def _raw_ts(now_ms: int, literal: str) -> bytes:
    return (
        '{"user_id":"pill-user","item_id":"pill-item","event":"view","ts":' + literal + "}"
    ).encode()


PillMaker = Callable[[int], bytes]

# kind -> maker(now_ms) -> record value. Small kinds first; ``huge_value`` is 10 MB.
KINDS: dict[str, PillMaker] = {
    "deep_array": lambda now: b"[" * 5000 + b"]" * 5000,
    "deep_object": lambda now: b'{"a":' * 2000 + b"1" + b"}" * 2000,
    "deep_item": lambda now: _json(now, item={"title": "x"}).replace(
        b'"x"', b"[" * 2000 + b"]" * 2000
    ),
    "huge_integer_ts": lambda now: _raw_ts(now, "9" * 5000),
    "huge_integer_field": lambda now: _json(now, item={"price": 1}).replace(
        b'"price": 1', b'"price": ' + b"1" * 4400
    ),
    "nan_ts": lambda now: _raw_ts(now, "NaN"),
    "infinity_ts": lambda now: _raw_ts(now, "Infinity"),
    "minus_infinity_price": lambda now: _json(now, item={"price": 1}).replace(
        b'"price": 1', b'"price": -Infinity'
    ),
    "float_overflow": lambda now: _raw_ts(now, "1e400"),
    "invalid_utf8": lambda now: b'{"user_id":"\xff\xfe","item_id":"i","event":"view","ts":1}',
    "lone_surrogate": lambda now: _json(now, item={"title": "x"}).replace(b'"x"', b'"\\ud800"'),
    "event_object": lambda now: _json(now, event={}),
    "event_list": lambda now: _json(now, event=["view"]),
    "event_number": lambda now: _json(now, event=1),
    "event_null": lambda now: _json(now, event=None),
    "event_unknown": lambda now: _json(now, event="like"),
    "user_trailing_newline": lambda now: _json(now, user_id="u1\n"),
    "item_trailing_newline": lambda now: _json(now, item_id="i1\n"),
    "user_empty": lambda now: _json(now, user_id=""),
    "user_too_long": lambda now: _json(now, user_id="u" * 129),
    "user_object": lambda now: _json(now, user_id={"$ne": None}),
    "user_number": lambda now: _json(now, user_id=7),
    "item_space": lambda now: _json(now, item_id="bad id"),
    "ts_string": lambda now: _json(now, ts=str(now)),
    "ts_float": lambda now: _json(now, ts=now + 0.5),
    "ts_bool": lambda now: _json(now, ts=True),
    "ts_seconds": lambda now: _json(now, ts=now // 1000),
    "ts_future": lambda now: _json(now, ts=now + 10 * 86_400_000),
    "missing_user": lambda now: _without(now, "user_id"),
    "missing_ts": lambda now: _without(now, "ts"),
    "unknown_field": lambda now: _json(now, extra=1),
    "item_not_object": lambda now: _json(now, item="lamp"),
    "item_unknown_field": lambda now: _json(now, item={"colour": "red"}),
    "price_negative": lambda now: _json(now, item={"price": -1}),
    "price_bool": lambda now: _json(now, item={"price": True}),
    "title_too_long": lambda now: _json(now, item={"title": "x" * 300}),
    "top_level_list": lambda now: b"[" + _json(now) + b"]",
    "top_level_string": lambda now: b'"hello"',
    "truncated_json": lambda now: _json(now)[:-5],
    "trailing_garbage": lambda now: _json(now) + b"}}",
    "empty_value": lambda now: b"",
    "binary_noise": lambda now: bytes(range(256)) * 4,
    "huge_value": lambda now: b'{"user_id":"' + b"u" * TEN_MB + b'"}',
}


def pills(now_ms: int, include_huge: bool = True) -> dict[str, bytes]:
    """Every kind's record for events timestamped ``now_ms``."""
    return {
        kind: make(now_ms) for kind, make in KINDS.items() if include_huge or kind != "huge_value"
    }
