import json

import pytest

from scripts.poison_pills import KINDS
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
