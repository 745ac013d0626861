"""Bounded JSON decoding: the one function every service uses on bytes it did not write.

``json.loads`` on hostile input fails in ways its callers rarely expect: ``RecursionError`` for
arrays nested a few thousand levels deep, ``ValueError`` for integers of more than 4,300 digits
(and seconds of CPU below that), ``inf`` for ``1e400``, ``NaN``/``Infinity`` literals that are
not JSON at all, lone UTF-16 surrogates that break re-encoding later. :func:`loads_bounded`
rejects all of them up front with :class:`JSONLimitError` (a ``ValueError``), so a caller needs
to catch exactly one exception, and the trainer, the recommender and faiss_app agree on what
"valid JSON" is.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Any


class JSONLimitError(ValueError):
    """Bytes that are not JSON within the limits; the message says which limit and why."""


@dataclass(frozen=True)
class JSONLimits:
    """Limits of one decoding.

    ``max_int_digits`` keeps integers within what any field of the platform can mean (Unix
    milliseconds have 13 digits); ``max_float_chars`` bounds the text of one float literal.
    """

    max_bytes: int = 1 << 20
    max_depth: int = 32
    max_int_digits: int = 20
    max_float_chars: int = 64


DEFAULT_LIMITS = JSONLimits()

# A JSON string (escapes included) or one bracket; strings are matched whole so that brackets
# inside them do not count as nesting.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_OPENERS = frozenset(b"[{")
_SURROGATE = re.compile("[\ud800-\udfff]")


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of arrays/objects in ``data`` (0 for a scalar).

    A regex pass at C speed; cheap enough for the largest body a service accepts.
    """
    if data.count(b"[") + data.count(b"{") <= 1:
        return data.count(b"[") + data.count(b"{")
    depth = deepest = 0
    for match in _TOKENS.finditer(data):
        token = match.group()
        if len(token) != 1:
            continue  # a string
        if token[0] in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _reject_constant(name: str) -> Any:
    raise JSONLimitError(f"{name} is not a JSON number")


@functools.lru_cache(maxsize=8)
def _decoder(limits: JSONLimits) -> json.JSONDecoder:
    """One decoder per limits: building it (and its hooks) per message cost the trainer ~5%
    of its time."""

    def parse_int(literal: str) -> int:
        if len(literal.lstrip("-")) > limits.max_int_digits:
            raise JSONLimitError(f"an integer has more than {limits.max_int_digits} digits")
        return int(literal)

    def parse_float(literal: str) -> float:
        if len(literal) > limits.max_float_chars:
            raise JSONLimitError(f"a number is longer than {limits.max_float_chars} characters")
        value = float(literal)
        if not math.isfinite(value):
            raise JSONLimitError("a number is outside the range of a 64-bit float")
        return value

    return json.JSONDecoder(
        parse_int=parse_int, parse_float=parse_float, parse_constant=_reject_constant
    )


def loads_bounded(data: bytes | str, limits: JSONLimits = DEFAULT_LIMITS) -> Any:
    """Decode one JSON document from ``data`` or raise :class:`JSONLimitError`.

    Rejects: more than ``limits.max_bytes`` bytes, invalid UTF-8, nesting deeper than
    ``limits.max_depth``, integers longer than ``limits.max_int_digits`` digits, float
    literals longer than ``limits.max_float_chars`` or outside float64's range, the
    ``NaN``/``Infinity``/``-Infinity`` literals, lone UTF-16 surrogates in strings, and
    anything ``json`` itself refuses.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > limits.max_bytes:
        raise JSONLimitError(f"larger than {limits.max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONLimitError(f"not valid UTF-8 at byte {exc.start}") from None
    depth = nesting_depth(raw)
    if depth > limits.max_depth:
        raise JSONLimitError(f"nested deeper than {limits.max_depth} levels")

    try:
        value = _decoder(limits).decode(text)
    except JSONLimitError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise JSONLimitError(str(exc)[:200]) from None
    if "\\u" in text and _has_surrogate(value):
        raise JSONLimitError("a string holds a lone UTF-16 surrogate (not valid Unicode)")
    return value


def _has_surrogate(value: Any) -> bool:
    # Iterative: the depth is bounded already, but recursion per value costs more.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
