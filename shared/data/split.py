"""Chronological splits of an interaction frame."""

from __future__ import annotations

import pandas as pd


def chronological_split(frame: pd.DataFrame, train_fraction: float) -> tuple[pd.DataFrame,
                                                                              pd.DataFrame]:
    """``(prefix, stream)``: the earliest ``train_fraction`` of events and the rest.

    The frame is ordered by ``ts`` (stable) first; events sharing the boundary timestamp all go
    to the prefix, so the stream starts strictly later than the prefix ends.
    """
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError("train_fraction must be in (0, 1]")
    ordered = frame.sort_values("ts", kind="stable").reset_index(drop=True)
    cut = max(1, int(round(len(ordered) * train_fraction)))
    if cut < len(ordered):
        boundary = ordered["ts"].iloc[cut - 1]
        cut = int((ordered["ts"] <= boundary).sum())
    return ordered.iloc[:cut].reset_index(drop=True), ordered.iloc[cut:].reset_index(drop=True)
