"""Keeping the two-tower space fresh: a periodic re-train that swaps the served space atomically.

Why re-train rather than update incrementally: the candidate tower is one MLP shared by every
item, so any step that improves it moves every item's vector; the catalogue must be
re-embedded as a whole anyway, and a re-train over the whole log gives the id rows of items
that gathered events since (a new item has none until then) and re-embeds every item at its
current age (a vector carries the item's age when it was embedded).

Why a process of its own (``scripts.train_two_tower --every S``, the ``two-tower-refresh``
service of docker-compose) rather than a step of the incremental trainer: a re-train is tens
of seconds to minutes of torch CPU work; inside the trainer's loop it would stall ISGD and
the freshness budget of its micro-batches, and the trainer would need torch. A separate
process costs one core while it trains and nothing between re-trains.

One re-train (:meth:`TwoTowerRefresh.run_once`):

1. note the end offsets of ``item-vectors.two_tower``: every vector ``PUT /items`` published
   so far is an old model's;
2. read the log (the data file plus the events followed since start) and the catalogue's
   metadata (item file, events' ``item`` fields, MongoDB ``items``, where every PUT item is);
3. train, then embed every item of the log and of the catalogue at its age now;
4. write the snapshot with the offsets of 1 (LATEST switches atomically,
   :func:`shared.snapshots.write_snapshot_dir`);
5. ask faiss_app to reload the ``two_tower`` space: it builds the new index beside the old one
   and swaps one reference, then tails the topic from the snapshot's offsets, so only vectors
   published during the re-train are applied over it. The recommender's
   :class:`~services.recommender_app.two_tower.TwoTowerModel` loads the new encoder within
   its ``RELOAD_CHECK_S``.

A failed re-train leaves the served space as it was (:func:`run_periodically` logs it).

Between re-trains, :class:`NewItemVectors` gives an item that arrives on the stream with
metadata (an event's ``item`` field) and that the space does not hold its candidate vector
(age 0) on ``item-vectors.two_tower`` at once, as ``PUT /items`` does for catalogue writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from confluent_kafka import Producer, TopicPartition

from shared.config import KafkaSettings
from shared.item_vectors import encode_value
from shared.kafka import flush_or_raise, make_consumer, produce_blocking
from shared.model.two_tower import TwoTowerConfig
from shared.model.two_tower_cli import catalogue_vectors, train_two_tower
from shared.model.two_tower_snapshot import SPACE, TwoTowerEncoder, save_two_tower

log = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 10.0

Metadata = dict[str, Mapping[str, Any]]


def end_offsets(kafka: KafkaSettings, topic: str) -> dict[str, int]:
    """``{partition: next offset}`` of ``topic`` now (empty when the topic does not exist)."""
    consumer = make_consumer(kafka, f"two-tower-refresh-offsets-{topic}")
    try:
        found = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
        if found is None or found.error is not None:
            return {}
        out = {}
        for partition in sorted(found.partitions):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                     timeout=METADATA_TIMEOUT_S)
            out[str(partition)] = int(high)
        return out
    finally:
        consumer.close()


@dataclass
class Refreshed:
    """What one re-train produced."""

    version: str
    items: int
    train_seconds: float
    epochs_run: int
    best_recall: float | None
    reloaded: bool
    encoder: TwoTowerEncoder
    item_ids: list[str]


class TwoTowerRefresh:
    """One re-train and swap of the two-tower space; every input is a callable so the script
    wires Kafka, MongoDB and faiss_app and the tests can watch each step.

    inputs : the training events now (``user_id, item_id, ts``) and item id → fields (title,
        category, price, genres) of every catalogue item
    offsets : end offsets of the space's update topic (taken before anything else)
    reload : asks faiss_app to load ``version`` of the space (None: nobody to tell)
    """

    def __init__(
        self,
        inputs: Callable[[], tuple[pd.DataFrame, Metadata]],
        offsets: Callable[[], dict[str, int]],
        config: TwoTowerConfig,
        models_dir: Path,
        keep: int | None = None,
        reload: Callable[[str], object] | None = None,
    ) -> None:
        self._inputs = inputs
        self._offsets = offsets
        self._config = config
        self._models_dir = Path(models_dir)
        self._keep = keep
        self._reload = reload
        self.runs = 0

    def run_once(self) -> Refreshed:
        offsets = self._offsets()  # before reading anything: see the module docstring
        frame, metadata = self._inputs()
        encoder, fit, size = train_two_tower(frame, metadata, self._config)
        ids, vectors = catalogue_vectors(encoder, frame, metadata)
        metrics = {"epochs_run": fit.epochs_run, "best_epoch": fit.best_epoch,
                   "best_val_recall@10": fit.best_recall, "train_seconds": round(fit.seconds, 2),
                   "train_events": len(frame), "retrain": True, **size}
        version = save_two_tower(
            self._models_dir, encoder.weights, encoder.space, encoder.known_items,
            encoder.known_users, ids, vectors,
            config={k: v for k, v in vars(self._config).items() if k != "progress"},
            metrics=metrics, keep=self._keep, offsets=offsets)
        reloaded = False
        if self._reload is not None:
            try:
                self._reload(version)
                reloaded = True
            except Exception as exc:  # faiss_app loads LATEST at its next start anyway
                log.warning("faiss_app did not reload the %s space %s: %s", SPACE, version, exc)
        self.runs += 1
        log.info("two-tower space %s: %d items, %d epochs in %.1fs%s", version, len(ids),
                 fit.epochs_run, fit.seconds, ", reloaded" if reloaded else "")
        return Refreshed(version, len(ids), round(fit.seconds, 2), fit.epochs_run,
                         fit.best_recall, reloaded, encoder, ids)


class NewItemVectors:
    """Candidate vectors (age 0) of items that arrive on the stream with metadata and that the
    served space does not hold yet, published on ``item-vectors.two_tower`` at once (as
    ``PUT /items`` does for catalogue writes); :meth:`use` switches to a re-trained model."""

    def __init__(self, producer: Producer, topic: str, refreshed: Refreshed) -> None:
        self._producer = producer
        self._topic = topic
        self.use(refreshed)
        self.published = 0

    def use(self, refreshed: Refreshed) -> None:
        self._encoder = refreshed.encoder
        self._version = refreshed.version
        self._known = set(refreshed.item_ids)

    def publish_new(self, metadata: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Embed and publish the items of ``metadata`` the space does not hold; their ids."""
        fresh = [i for i, fields in metadata.items() if fields and i not in self._known]
        if not fresh:
            return []
        table = self._encoder.item_table(fresh, metadata)
        vectors = self._encoder.candidate_vectors(table, np.zeros(len(fresh), dtype=np.int64))
        for item_id, vector in zip(fresh, vectors, strict=True):
            produce_blocking(self._producer, self._topic, item_id,
                             encode_value(vector, self._version))
        flush_or_raise(self._producer, PUBLISH_TIMEOUT_S)
        self._known.update(fresh)
        self.published += len(fresh)
        log.info("published two-tower vectors of %d new items", len(fresh))
        return fresh


def merged_metadata(*sources: Mapping[str, Mapping[str, Any]]) -> Metadata:
    """Item fields from several sources; a later source's fields win for the same item."""
    out: dict[str, dict[str, Any]] = {}
    for source in sources:
        for item_id, fields in source.items():
            out.setdefault(str(item_id), {}).update(
                {k: v for k, v in fields.items() if k not in ("_id", "item_id")})
    return dict(out)
