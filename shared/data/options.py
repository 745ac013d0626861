"""The data flags every script shares: ``--format``, ``--columns``, ``--events``, ``--items``,
``--items-format``, ``--item-columns``, and the calls that load what they name (printing the load reports).

    parser = argparse.ArgumentParser()
    parser.add_argument("--input", type=Path)
    add_data_arguments(parser)
    args = parser.parse_args()
    frame = interactions_from_args(args.input, args)
    items = items_from_args(args)  # None without --items
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import pandas as pd

from shared.data.items import ITEM_FORMATS, load_items
from shared.data.loaders import FORMATS, load_interactions
from shared.data.mapping import parse_columns, parse_events


def _mapping(parse: Callable[[str], dict[str, str]]) -> Callable[[str], dict[str, str]]:
    def convert(text: str) -> dict[str, str]:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = parse.__name__  # argparse names the type in its error message
    return convert


def add_data_arguments(parser: argparse.ArgumentParser, items: bool = True) -> None:
    """Add the shared data flags (the interactions path itself stays the script's own)."""
    group = parser.add_argument_group("data format")
    group.add_argument("--format", choices=FORMATS, default="auto",
                       help="format of the interactions file; auto looks at its content "
                            "(MovieLens u.data/u1.base, ratings.dat, ratings.csv, RetailRocket "
                            "events.csv, Amazon ratings CSV / reviews JSON lines, CSV, JSON "
                            "lines, Parquet; gzip too) (default: auto)")
    group.add_argument("--columns", type=_mapping(parse_columns), default=None,
                       metavar="FIELD=COLUMN,...",
                       help="source columns for user, item, event, ts, rating, e.g. "
                            "user=visitorid,item=itemid,event=event,ts=timestamp "
                            "(default: the format's own names)")
    group.add_argument("--events", type=_mapping(parse_events), default=None,
                       metavar="SOURCE=EVENT,...",
                       help="source event names → view, click, add_to_cart, purchase, or - to "
                            "drop, e.g. addtocart=add_to_cart,transaction=purchase "
                            "(default: the format's own mapping)")
    if items:
        group.add_argument("--items", type=Path, default=None,
                           help="item metadata: MovieLens u.item / movies.dat / movies.csv or a "
                                "CSV item_id[,title][,category][,price] (default: none)")
        group.add_argument("--items-format", choices=ITEM_FORMATS, default="auto",
                           help="format of --items; auto looks at its content (default: auto)")
        group.add_argument("--item-columns", type=_mapping(parse_columns), default=None,
                           metavar="FIELD=COLUMN,...",
                           help="source columns of --items for item, title, category, genres, "
                                "price, e.g. item=sku,title=name,category=dept (default: "
                                "item_id,title,category,price)")


def interactions_from_args(path: Path, args: argparse.Namespace,
                           out: TextIO | None = None) -> pd.DataFrame:
    """Load ``path`` as the flags say; the load report goes to ``out`` (default stderr)."""
    frame, report = load_interactions(path, args.format, args.columns, args.events)
    print(report.summary(), file=out or sys.stderr)
    return frame


def items_from_args(args: argparse.Namespace, path: Path | None = None,
                    out: TextIO | None = None) -> pd.DataFrame | None:
    """Load ``path`` (default ``--items``) as item metadata, or None when there is none."""
    path = path or getattr(args, "items", None)
    if path is None:
        return None
    items, report = load_items(path, args.items_format, args.item_columns)
    print(report.summary(), file=out or sys.stderr)
    return items


def data_flags(args: argparse.Namespace) -> list[str]:
    """The data flags of ``args`` as command-line arguments again, for a child process."""
    argv = ["--format", args.format]
    for flag, mapping in (("--columns", args.columns), ("--events", args.events),
                          ("--item-columns", getattr(args, "item_columns", None))):
        if mapping:
            argv += [flag, ",".join(f"{k}={v}" for k, v in mapping.items())]
    if getattr(args, "items", None) is not None:
        argv += ["--items", str(args.items), "--items-format", args.items_format]
    return argv
