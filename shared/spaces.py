"""Named vector spaces: which snapshot folder and which update topic belong to which space.

faiss_app holds several item spaces side by side (docs/CONTRACTS.md, "Vector spaces"): the GMF
serving vectors (the default space ``gmf``), the triplet item-to-item embedding, the two-tower
item tower... Each has its own snapshot folder, update topic, model version and index type.
The default space keeps the layout it always had, so nothing written before spaces existed
moves:

- ``gmf``: snapshots in ``<models_dir>/``, updates on ``<item_vectors_topic>``;
- any other space ``S``: snapshots in ``<models_dir>/spaces/S/``, updates on
  ``<item_vectors_topic>.S`` (same wire format, ``shared.item_vectors``).

Writers (trainers) and readers (faiss_app) both derive the names from here, never by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SPACE = "gmf"
SPACES_FOLDER = "spaces"
# Index types a space may ask for; "auto" is exact up to FAISS_EXACT_MAX_ITEMS, else
# FAISS_ANN_TYPE (how the GMF space always worked).
INDEX_TYPES = ("auto", "flat", "ivf", "hnsw")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class UnknownSpace(KeyError):
    """A space name this faiss_app does not serve (or that is not a valid name)."""

    def __init__(self, name: str, known: tuple[str, ...] = ()):
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        served = ", ".join(self.known) or "none"
        return f"vector space {self.name!r} is not served here (served: {served})"


@dataclass(frozen=True)
class SpaceSpec:
    """One configured space: its name and the index type it asks for."""

    name: str
    index_type: str = "auto"


def check_name(name: str) -> str:
    """``name`` if it is a valid space name (lower-case letter, then ``[a-z0-9_]``, ≤ 32)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid space name {name!r}: use [a-z][a-z0-9_]*, at most 32 chars")
    return name


def space_models_dir(models_dir: Path, space: str) -> Path:
    """The folder holding ``space``'s versions and its LATEST pointer."""
    if space == DEFAULT_SPACE:
        return Path(models_dir)
    return Path(models_dir) / SPACES_FOLDER / check_name(space)


def space_topic(item_vectors_topic: str, space: str) -> str:
    """The compacted topic carrying ``space``'s item-vector updates."""
    if space == DEFAULT_SPACE:
        return item_vectors_topic
    return f"{item_vectors_topic}.{check_name(space)}"


def parse_spaces(raw: str) -> tuple[SpaceSpec, ...]:
    """``"triplet:ivf,two_tower"`` → specs, the default space first (always present).

    Each entry is ``name`` or ``name:index_type`` (index_type one of :data:`INDEX_TYPES`,
    default ``auto``). Raises ValueError on a bad name, type or a repeated space.
    """
    specs: dict[str, SpaceSpec] = {DEFAULT_SPACE: SpaceSpec(DEFAULT_SPACE)}
    seen: set[str] = set()
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        name, _, kind = entry.partition(":")
        name, kind = check_name(name.strip()), (kind.strip().lower() or "auto")
        if kind not in INDEX_TYPES:
            raise ValueError(f"index type of space {name!r} must be one of {INDEX_TYPES}")
        if name in seen:
            raise ValueError(f"space {name!r} is listed twice")
        seen.add(name)
        specs[name] = SpaceSpec(name, kind)
    return tuple(specs.values())
