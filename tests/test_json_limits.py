"""shared.json_limits: every hostile document is one JSONLimitError, valid JSON decodes."""

from __future__ import annotations

import json

import pytest

from shared.json_limits import JSONLimitError, JSONLimits, loads_bounded, nesting_depth


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"[" * 5000 + b"]" * 5000, "nested deeper"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "nested deeper"),
        (b"[" + b"9" * 5000 + b"]", "digits"),
        (b"[-" + b"9" * 21 + b"]", "digits"),
        (b"[1e400]", "64-bit float"),
        (b"[" + b"1" * 70 + b".5]", "longer than"),
        (b"[NaN]", "NaN"),
        (b"[Infinity]", "Infinity"),
        (b"[-Infinity]", "Infinity"),
        (b'["\xff"]', "UTF-8"),
        (b'["\\udc00"]', "surrogate"),
        (b'{"k": {"\\ud800": 1}}', "surrogate"),
        (b"[1,", "Expecting"),
        (b"", "Expecting"),
        (b"[" + b" " * 100 + b"]", "larger than"),
    ],
)
def test_hostile_documents_raise_one_error_type(data: bytes, reason: str) -> None:
    with pytest.raises(JSONLimitError, match=reason):
        loads_bounded(data, JSONLimits(max_bytes=64 if b" " * 100 in data else 1 << 20))


def test_valid_documents_decode_like_json() -> None:
    doc = {"a": [1, -2, 2.5e-3, 'x[{\\"', None, True], "b": {"c": "\u00e9\U0001f600"}}
    raw = json.dumps(doc).encode()
    assert loads_bounded(raw) == doc
    assert loads_bounded(raw.decode()) == doc
    assert loads_bounded(b'["\\ud83d\\ude00"]') == ["\U0001f600"]  # a surrogate *pair* is fine


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert nesting_depth(b'{"a": "[[[[{{{{", "b": ["\\"]]]"]}') == 2
    assert nesting_depth(b"3") == 0
