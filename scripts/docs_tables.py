"""Render the README's configuration and metrics tables from the code that defines them.

    python -m scripts.docs_tables            # rewrite the tables in README.md in place
    python -m scripts.docs_tables --check    # exit 1 if README.md is out of date

The tables sit between ``<!-- config-table -->`` / ``<!-- metrics-table -->`` markers and their
``<!-- end -->``; a test runs ``--check`` so the README cannot drift from settings or catalogue.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

from shared.config import Settings
from shared.metrics import CATALOGUE

README = Path(__file__).resolve().parent.parent / "README.md"


def config_table() -> str:
    rows = ["| variable | default | setting |", "|---|---|---|"]
    defaults = Settings()
    for section in dataclasses.fields(Settings):
        values = getattr(defaults, section.name)
        for f in dataclasses.fields(values):
            default = getattr(values, f.name)
            shown = "(empty)" if default in ("", ()) else str(default)
            rows.append(f"| `{f.metadata['env']}` | `{shown}` | {section.name}.{f.name} |")
    return "\n".join(rows)


def metrics_table() -> str:
    rows = ["| metric (prefix `recsys.`) | kind | meaning |", "|---|---|---|"]
    rows += [f"| `{s.name}` | {s.kind} | {s.help} |" for s in CATALOGUE.values()]
    return "\n".join(rows)


def render(text: str) -> str:
    for marker, table in (("config-table", config_table()), ("metrics-table", metrics_table())):
        pattern = re.compile(rf"(<!-- {marker} -->\n).*?(<!-- end -->)", re.DOTALL)
        if not pattern.search(text):
            raise ValueError(f"README.md has no <!-- {marker} --> ... <!-- end --> block")

        def fill(m: re.Match[str], table: str = table) -> str:
            return m.group(1) + table + "\n" + m.group(2)

        text = pattern.sub(fill, text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check, do not write")
    args = parser.parse_args(argv)
    current = README.read_text()
    wanted = render(current)
    if args.check:
        if current != wanted:
            print("README.md tables are out of date: run python -m scripts.docs_tables")
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
