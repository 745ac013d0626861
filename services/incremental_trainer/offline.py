"""Prequential replay of a stream without Kafka: the quality half of tests and benchmarks.

The same :class:`Learner` the service runs, fed from a DataFrame: the prefix (what the batch
model was trained on) only warms the streaming popularity and the seen sets, as Redis would
after ``scripts.initial_training``; the stream is then evaluated and learned batch by batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from services.incremental_trainer.learner import Learner
from shared.events import EVENT_WEIGHTS, Interaction


def warm_start(learner: Learner, prefix: pd.DataFrame) -> None:
    """Fold ``prefix`` (user_id, item_id, event, ts) into popularity and seen sets, no learning."""
    users, items = learner.state.user_map, learner.state.item_map
    for user_id, item_id, event, ts in prefix[["user_id", "item_id", "event", "ts"]].itertuples(
        index=False
    ):
        item_row = items.row(str(item_id), create=False)
        if item_row is None:
            continue
        learner.popularity.bump(item_row, EVENT_WEIGHTS[str(event)], int(ts))
        user_row = users.row(str(user_id), create=False)
        if user_row is not None:
            learner.seen[user_row].add(item_row)


def interactions(frame: pd.DataFrame) -> list[Interaction]:
    return [
        Interaction(str(u), str(i), str(e), int(t))
        for u, i, e, t in frame[["user_id", "item_id", "event", "ts"]].itertuples(index=False)
    ]


def replay(
    learner: Learner,
    stream: pd.DataFrame,
    batch_size: int = 512,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Test-then-train over ``stream``; returns the moving-window figures after every batch."""
    events = interactions(stream)
    curve: list[dict[str, Any]] = []
    for start in range(0, len(events), batch_size):
        chunk = events[start : start + batch_size]
        learner.learn(chunk)
        curve.append({"events": start + len(chunk), **learner.evaluator.figures().as_dict()})
        if progress is not None:
            progress(len(chunk))
    return curve


def summary(curve: list[dict[str, Any]]) -> dict[str, float]:
    """Final totals: overall recall@k of the model and of popularity on the same tests."""
    if not curve:
        return {"tested": 0, "recall": 0.0, "popularity_recall": 0.0}
    last = curve[-1]
    tested = max(1, int(last["tested"]))
    return {
        "tested": int(last["tested"]),
        "recall": last["model_hits"] / tested,
        "popularity_recall": last["popularity_hits"] / tested,
        "window_recall": float(last["recall_at_k"]),
        "window_popularity_recall": float(last["popularity_recall_at_k"]),
    }
