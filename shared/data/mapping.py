"""The ``--columns`` and ``--events`` mappings: which source column is which field, and which
source event name is which platform event.

    --columns user=visitorid,item=itemid,event=event,ts=timestamp
    --events addtocart=add_to_cart,transaction=purchase,dislike=-

An event mapped to ``-`` is dropped on purpose (and counted in the load report).
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.events import EVENT_WEIGHTS

INTERACTION_FIELDS = ("user", "item", "event", "ts", "rating")
ITEM_FIELDS = ("item", "title", "category", "genres", "price")
DROP_EVENT = "-"


def _pairs(text: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{what}: expected NAME=VALUE pairs separated by commas, got {part!r}")
        pairs.append((key.strip(), value.strip()))
    return pairs


def parse_columns(text: str) -> dict[str, str]:
    """``"user=visitorid,item=itemid"`` → ``{"user": "visitorid", "item": "itemid"}``.

    Keys are fields (:data:`INTERACTION_FIELDS` or :data:`ITEM_FIELDS`); values are the source
    column names, exactly as in the file's header (or JSON keys).
    """
    known = set(INTERACTION_FIELDS) | set(ITEM_FIELDS)
    columns: dict[str, str] = {}
    for key, value in _pairs(text, "--columns"):
        if key not in known:
            raise ValueError(f"--columns: unknown field {key!r}; expected one of "
                             f"{', '.join(sorted(known))}")
        columns[key] = value
    return columns


def parse_events(text: str) -> dict[str, str]:
    """``"addtocart=add_to_cart,dislike=-"`` → source event (lower case) → platform event."""
    events: dict[str, str] = {}
    for key, value in _pairs(text, "--events"):
        if value != DROP_EVENT and value not in EVENT_WEIGHTS:
            raise ValueError(f"--events: {key}={value}: {value!r} is not one of "
                             f"{', '.join(EVENT_WEIGHTS)} (or {DROP_EVENT} to drop it)")
        events[key.lower()] = value
    return events


def merged_events(defaults: Mapping[str, str], overrides: Mapping[str, str] | None
                  ) -> dict[str, str]:
    """Platform events map to themselves, then the format's defaults, then the user's."""
    events = {name: name for name in EVENT_WEIGHTS}
    events.update(defaults)
    events.update({k.lower(): v for k, v in (overrides or {}).items()})
    return events
