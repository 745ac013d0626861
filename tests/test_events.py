import json

import pytest

from scripts.poison_pills import KINDS
from shared import events
from shared.events import EVENT_WEIGHTS, Interaction, InvalidEvent, from_dict, parse

NOW_MS = 1_780_000_000_000


def _event(**changes: object) -> dict:
    body: dict = {"user_id": "u-1", "item_id": "i:42", "event": "click", "ts": NOW_MS - 1000}
    body.update(changes)
    return body


def test_round_trip_through_bytes() -> None:
    event = from_dict(_event(item={"title": "Lamp", "price": 12.5}), now_ms=NOW_MS)
    again = parse(event.to_bytes(), now_ms=NOW_MS)
    assert again == event
    assert again.weight == EVENT_WEIGHTS["click"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"user_id": "u"}).encode(), "missing fields: item_id, event, ts"),
        (json.dumps(_event(event="like")).encode(), "event must be one of"),
        (json.dumps(_event(user_id="")).encode(), "user_id must be 1-128"),
        (json.dumps(_event(user_id="a" * 129)).encode(), "user_id must be 1-128"),
        (json.dumps(_event(item_id="bad id")).encode(), "item_id must be 1-128"),
        (json.dumps(_event(item_id={"$ne": None})).encode(), "item_id must be a string"),
        (json.dumps(_event(ts="yesterday")).encode(), "ts must be an integer"),
        (json.dumps(_event(ts=True)).encode(), "ts must be an integer"),
        (json.dumps(_event(ts=1_700_000_000)).encode(), "Unix milliseconds between"),
        (json.dumps(_event(extra=1)).encode(), "unknown fields: extra"),
        (json.dumps(_event(item={"colour": "red"})).encode(), "unknown fields: colour"),
        (json.dumps(_event(item={"price": -1})).encode(), "price must be between"),
        (json.dumps(_event(item={"title": "x" * 300})).encode(), "longer than"),
        (b"{" + b" " * 20000 + b"}", "larger than"),
        (None, "empty message"),
    ],
)
def test_bad_events_are_rejected_with_a_precise_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        parse(raw, now_ms=NOW_MS)


def test_interaction_without_metadata_serialises_without_item_key() -> None:
    event = Interaction("u", "i", "view", NOW_MS)
    assert "item" not in json.loads(event.to_bytes())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_poison_pill_is_an_invalid_event_never_another_error(kind: str) -> None:
    # Regression (issue 17): TypeError, ValueError and RecursionError escaped parse().
    with pytest.raises(InvalidEvent):
        parse(KINDS[kind](NOW_MS), now_ms=NOW_MS)


def test_ids_are_matched_whole() -> None:
    # Regression (issue 17): "u1\n" passed the ^...$ pattern and was learned.
    for bad in ("u1\n", "u1\r\n", "\nu1"):
        with pytest.raises(InvalidEvent, match="user_id"):
            from_dict(_event(user_id=bad), now_ms=NOW_MS)


def _parsed(raw: bytes) -> Interaction | str:
    """The event, or the reason it is refused."""
    try:
        return parse(raw, now_ms=NOW_MS)
    except InvalidEvent as exc:
        return f"invalid: {exc}"


CANONICAL = Interaction("u-1", "i:42", "click", NOW_MS - 1000).to_bytes()


@pytest.mark.parametrize(
    "raw",
    [
        CANONICAL,  # the fast path
        Interaction("A_b.c:d@e-9" * 11, "x" * 128, "purchase", NOW_MS).to_bytes(),
        CANONICAL.replace(b'"click"', b'"clack"'),  # unknown event
        CANONICAL.replace(b'"u-1"', b'"' + b"u" * 129 + b'"'),  # id too long
        CANONICAL.replace(b'"u-1"', b'"u\\u002d1"'),  # an escape: same id, full path
        CANONICAL.replace(b'"u-1"', b'"u 1"'),
        CANONICAL.replace(str(NOW_MS - 1000).encode(), b"946684799999"),  # before 2000
        CANONICAL.replace(str(NOW_MS - 1000).encode(), str(NOW_MS + 86_400_001).encode()),
        CANONICAL.replace(str(NOW_MS - 1000).encode(), b"0" + str(NOW_MS).encode()),
        CANONICAL.replace(str(NOW_MS - 1000).encode(), b"17800000000000000000000"),
        CANONICAL.replace(b",", b", "),  # whitespace: full path
        CANONICAL + b" ",
        CANONICAL + b"\n",
        CANONICAL[:-1] + b',"item":{"title":"Lamp"}}',
        CANONICAL[:-1] + b',"ts":5}',  # a duplicate key: the last one wins in both paths
        b'{"item_id":"i:42","user_id":"u-1","event":"click","ts":1779999999000}',
    ],
)
def test_the_canonical_fast_path_answers_exactly_like_the_full_parser(
    raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = _parsed(raw)
    monkeypatch.setattr(events, "_parse_canonical", lambda _data, _now: None)
    assert fast == _parsed(raw)


def test_what_producers_write_takes_the_fast_path() -> None:
    assert events._parse_canonical(CANONICAL, NOW_MS) == parse(CANONICAL, now_ms=NOW_MS)
    with_metadata = from_dict(_event(item={"title": "Lamp"}), now_ms=NOW_MS).to_bytes()
    assert events._parse_canonical(with_metadata, NOW_MS) is None
