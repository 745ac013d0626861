"""What a loader did with a file: rows read and kept, bad rows by reason, conversions applied.

A loader never drops or re-labels a row without saying so here; scripts print
:meth:`LoadReport.summary` so the user sees it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLES = 5
MAX_EXAMPLE_TEXT = 120


@dataclass(frozen=True)
class BadRow:
    """One rejected row: ``line`` is 1-based (a line of a text file, a row of a Parquet file)."""

    line: int
    reason: str
    text: str
    unit: str = "line"

    def __str__(self) -> str:
        return f"{self.unit} {self.line}: {self.reason}" + (f": {self.text}" if self.text else "")


@dataclass
class LoadReport:
    """Counts for one loaded file; ``rows`` = data rows read (header and blank lines excluded)."""

    path: str
    format: str
    rows: int = 0
    loaded: int = 0
    bad: Counter[str] = field(default_factory=Counter)
    examples: list[BadRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)

    @property
    def bad_rows(self) -> int:
        return sum(self.bad.values())

    def reject(self, reason: str, count: int, examples: list[BadRow]) -> None:
        """Count ``count`` rows rejected for ``reason``; keep the earliest examples overall."""
        if count <= 0:
            return
        self.bad[reason] += count
        merged = sorted(self.examples + examples[:MAX_EXAMPLES], key=lambda b: b.line)
        self.examples = merged[:MAX_EXAMPLES]

    def note(self, text: str) -> None:
        self.notes.append(text)

    def summary(self) -> str:
        """A few lines for people: what was read, kept, converted and rejected (with examples)."""
        lines = [f"{self.path}: format {self.format}, {self.rows} rows read, {self.loaded} loaded"
                 + (f", {self.bad_rows} rejected" if self.bad_rows else "")]
        if self.events:
            lines.append("  events: " + ", ".join(f"{k} {v}" for k, v in self.events.items()))
        lines.extend(f"  {n}" for n in self.notes)
        for reason, count in self.bad.most_common():
            lines.append(f"  rejected {count}: {reason}")
        if self.examples:
            lines.append("  first rejected rows:")
            lines.extend(f"    {example}" for example in self.examples)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "rows": self.rows,
                "loaded": self.loaded, "rejected": dict(self.bad), "notes": list(self.notes),
                "events": dict(self.events),
                "examples": [{"line": b.line, "reason": b.reason, "text": b.text}
                             for b in self.examples]}


def shorten(text: str) -> str:
    return text if len(text) <= MAX_EXAMPLE_TEXT else text[: MAX_EXAMPLE_TEXT - 3] + "..."
