"""Keeping the triplet space fresh: a vector for a new item at once, a periodic re-train.

Why periodic re-training rather than incremental updates: a triplet embedding is relational
(an item's place only means something next to the items it was pushed from), so nudging a
few rows per event drifts the space against the IVF cells and against the rows nobody
touches. A re-train over the whole log (seconds to minutes at catalogue sizes the evaluation
uses) gives a consistent space; faiss_app swaps it in atomically (``POST /v1/reload`` with
``"space": "triplet"`` builds the new index beside the old one, then replaces one reference).

Between re-trains, an item the space does not know yet gets a feature-only vector (category,
title tokens; :meth:`TripletSpace.embed_new`) the moment an event or the catalogue mentions
it with metadata, published on ``item-vectors.triplet``; faiss_app adds it to its nearest IVF
cell at once. Items without metadata wait for the next re-train (nothing would place them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from confluent_kafka import Producer

from shared.config import KafkaSettings
from shared.events import Interaction
from shared.item_vectors import encode_value
from shared.kafka import flush_or_raise, produce_blocking
from shared.model.triplet import TripletConfig
from shared.model.triplet_offline import train_triplet_on
from shared.model.triplet_space import TRIPLET_SPACE, TripletSpace, metadata_records
from shared.spaces import space_topic

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0


class TrainingStopped(Exception):
    """The stop event was set while training: nothing was written, the served space stays."""


def train_space(
    frame: pd.DataFrame,
    items: pd.DataFrame | None,
    config: TripletConfig,
    models_dir: Path,
    keep: int | None = 3,
    stop: threading.Event | None = None,
) -> tuple[TripletSpace, dict[str, Any]]:
    """Train on the whole ``frame`` (each user's last event held out for early stopping) and
    write a snapshot of the triplet space; catalogue items with metadata but no events get
    feature-only vectors. Returns the space (with its version) and the training summary."""
    catalogue = pd.Index(pd.unique(frame["item_id"].astype(str)))
    model, info, vocabulary = train_triplet_on(frame, catalogue, config, items, stop)
    if stop is not None and stop.is_set():
        # a model cut short (maybe before its first epoch ended) must not replace the served one
        raise TrainingStopped("stopped while training; no snapshot written")
    space = TripletSpace(model, list(catalogue), vocabulary)
    summary = {k: info[k] for k in ("epochs_run", "best_epoch", "best_hit_rate", "seconds",
                                    "stopped_early", "n_pairs", "features")}  # fmt: skip
    space.write(models_dir, new_items=metadata_records(items), extra={"training": summary},
                keep=keep)  # fmt: skip
    return space, summary


class NewItemPublisher:
    """Publishes feature-only vectors of items the current space does not hold."""

    def __init__(self, space: TripletSpace, kafka: KafkaSettings, producer: Producer):
        self._space = space
        self._known = set(space.item_ids)
        self._topic = space_topic(kafka.item_vectors_topic, TRIPLET_SPACE)
        self._producer = producer
        self.published = 0

    def use(self, space: TripletSpace) -> None:
        """Switch to a re-trained space (its snapshot already holds what was published)."""
        self._space = space
        self._known = set(space.item_ids)

    def publish_new(self, metadata: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Embed and publish the items of ``metadata`` (id → {title, category}) not yet known;
        returns the ids published."""
        fresh = {i: m for i, m in metadata.items() if i not in self._known and m}
        vectors = self._space.embed_new(fresh)
        for item_id, vector in vectors.items():
            produce_blocking(self._producer, self._topic, item_id,
                             encode_value(vector, self._space.version))  # fmt: skip
            self._known.add(item_id)
        if vectors:
            flush_or_raise(self._producer, PUBLISH_TIMEOUT_S)
            self.published += len(vectors)
            log.info("published feature vectors of %d new items", len(vectors))
        return list(vectors)


class StreamLog:
    """Events seen on the stream since start, added to the next re-train's log."""

    def __init__(self) -> None:
        self._rows: list[tuple[str, str, str, int]] = []
        self._metadata: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add(self, events: list[Interaction]) -> dict[str, dict[str, Any]]:
        """Record ``events``; returns the metadata they carry, by item id."""
        carried: dict[str, dict[str, Any]] = {}
        for event in events:
            meta = {k: v for k, v in event.item.items()
                    if k in ("title", "category") and isinstance(v, str) and v}  # fmt: skip
            if meta:
                carried[event.item_id] = meta
        with self._lock:
            self._rows.extend((e.user_id, e.item_id, e.event, e.ts) for e in events)
            self._metadata.update(carried)
        return carried

    def merged(self, frame: pd.DataFrame, items: pd.DataFrame | None
               ) -> tuple[pd.DataFrame, pd.DataFrame | None]:  # fmt: skip
        """``frame`` and ``items`` plus what the stream brought."""
        with self._lock:
            rows, metadata = list(self._rows), dict(self._metadata)
        if rows:
            frame = pd.concat([frame, pd.DataFrame(rows, columns=["user_id", "item_id", "event",
                                                                  "ts"])], ignore_index=True)
        if metadata:
            extra = pd.DataFrame([{"item_id": i, **m} for i, m in metadata.items()])
            items = extra if items is None else pd.concat([items, extra], ignore_index=True)
        return frame, items


def run_periodically(
    retrain: Callable[[], None], every_s: float, stop: threading.Event
) -> None:
    """Call ``retrain`` every ``every_s`` seconds until ``stop``; a failed re-train is logged
    and the space already served stays (the next period tries again)."""
    while not stop.wait(every_s):
        try:
            retrain()
        except TrainingStopped:
            return
        except Exception:
            log.exception("triplet re-train failed; the served space is unchanged")
