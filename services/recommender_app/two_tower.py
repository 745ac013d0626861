"""The two-tower space in the request path: new items' vectors and cold users' candidates.

- **New item** (``PUT /items/{id}`` with metadata): the candidate tower embeds it from its
  features (age 0) and the vector goes out on ``item-vectors.two_tower``; faiss_app's
  two-tower space adds it as soon as its follower reads the message, so the item is
  searchable without waiting for anyone to engage with it.
- **User**: the query tower embeds the user from their id, their seen list (already read in
  the request's one Redis round trip) and the time of the request; the two-tower space's
  nearest items are blended with GMF's by :class:`shared.cold_start_blend.BlendRule`, from
  half the list for a user with no history down to a fifth once GMF knows them.

The encoder is the newest snapshot under ``<models_dir>/spaces/two_tower/``; the worker
re-reads LATEST at most every ``RELOAD_CHECK_S`` and loads a new version when it changes.
Without a snapshot there is no two-tower source and /recommend answers as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, Message

from shared import snapshots
from shared.cold_start_blend import BlendRule, blend
from shared.faiss_client import FaissClient, SpaceNotReady, UnknownSpace
from shared.item_vectors import encode_value
from shared.kafka import DeliveryError
from shared.model.errors import SnapshotFormatError
from shared.model.two_tower_snapshot import (
    SPACE,
    TwoTowerEncoder,
    load_two_tower,
    space_dir,
)
from shared.recovering_producer import RecoveringProducer

log = logging.getLogger(__name__)

RELOAD_CHECK_S = 30.0


class TwoTowerModel:
    """The two-tower encoder of the newest snapshot, or None while there is none."""

    def __init__(self, models_dir: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self._models_dir = Path(models_dir)
        self._clock = clock
        self._lock = threading.Lock()
        self._encoder: TwoTowerEncoder | None = None
        self.version: str | None = None
        self._checked = float("-inf")

    def current(self) -> TwoTowerEncoder | None:
        if self._clock() - self._checked >= RELOAD_CHECK_S:
            with self._lock:
                if self._clock() - self._checked >= RELOAD_CHECK_S:
                    self._checked = self._clock()
                    self._reload()
        return self._encoder

    def _reload(self) -> None:
        latest = snapshots.read_latest(space_dir(self._models_dir))
        if latest is None or latest == self.version:
            return
        try:
            encoder, _ = load_two_tower(self._models_dir, latest)
        except (snapshots.SnapshotNotFound, SnapshotFormatError, OSError) as exc:
            log.warning("two-tower snapshot %s not loaded: %s", latest, exc)
            return
        self._encoder, self.version = encoder, latest
        log.info("two-tower model %s loaded", latest)

    def item_vector(self, item_id: str, fields: Mapping[str, Any]) -> np.ndarray | None:
        """Unit vector (dim,) of a new item from its metadata; None without a model."""
        encoder = self.current()
        if encoder is None:
            return None
        table = encoder.item_table([item_id], {item_id: fields})
        return encoder.candidate_vectors(table, np.zeros(1, dtype=np.int64))[0]

    def query_vector(self, user_id: str, recent: Sequence[str], now_ms: int
                     ) -> np.ndarray | None:
        """Unit query vector (dim,) of a user from their recent items, newest first."""
        encoder = self.current()
        if encoder is None:
            return None
        return encoder.query_vectors([user_id], [list(recent)], [now_ms])[0]


def update_topic(item_vectors_topic: str) -> str:
    """The compacted topic of the two-tower space's updates (docs/CONTRACTS.md)."""
    return f"{item_vectors_topic}.{SPACE}"


class NewItemVectors:
    """Publishes a new item's candidate vector on the two-tower topic; waits for Kafka."""

    def __init__(self, model: TwoTowerModel, producer: RecoveringProducer, item_vectors_topic: str,
                 timeout_s: float) -> None:
        self._model = model
        self._producer = producer
        self._topic = update_topic(item_vectors_topic)
        self._timeout_s = timeout_s

    def __call__(self, item_id: str, fields: Mapping[str, Any]) -> bool:
        """True when a vector was published (False: no two-tower model loaded)."""
        vector = self._model.item_vector(item_id, fields)
        if vector is None or self._model.version is None:
            return False
        done = threading.Event()
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)
            done.set()

        self._producer.produce(self._topic, key=item_id.encode(),
                               value=encode_value(vector, self._model.version),
                               on_delivery=delivered)
        self._producer.flush(self._timeout_s)
        if not done.is_set() or errors:
            raise DeliveryError(f"two-tower vector of {item_id} not confirmed: "
                                f"{errors[0] if errors else 'timeout'}")
        return True


Search = Callable[[np.ndarray, int, list[str], float], dict[str, Any]]
NOTHING: dict[str, Any] = {"results": [{"ids": [], "scores": []}]}


def faiss_search(faiss: FaissClient) -> Search:
    """Search faiss_app's two-tower space; a space that is not served or not loaded yet is
    no answer rather than a faiss outage (so it never opens the breaker GMF relies on)."""

    def search(query: np.ndarray, k: int, exclude: list[str], timeout_s: float
               ) -> dict[str, Any]:
        try:
            return faiss.search_full(query[None, :], k, [exclude], timeout_s, space=SPACE)
        except (UnknownSpace, SpaceNotReady):
            return NOTHING

    return search


class TwoTowerCandidates:
    """Blends the two-tower space's nearest items into the user's other candidates.

    ``search(query, k, exclude, timeout_s)`` asks faiss_app's two-tower space (the
    ``/v1/search`` answer). The other list is the user's GMF candidates, or popular items
    when GMF has none for them, so the blend is the one the evaluator measures
    (``services.incremental_trainer.cold_start_replay``).
    """

    def __init__(self, model: TwoTowerModel, search: Search, rule: BlendRule | None = None,
                 now_ms: Callable[[], int] | None = None) -> None:
        self._model = model
        self._search = search
        self._rule = rule or BlendRule()
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))

    @property
    def available(self) -> bool:
        return self._model.current() is not None

    def blend(self, user_id: str, seen: list[str], other: list[tuple[str, float]], k: int,
              timeout_s: float) -> list[tuple[str, float]] | None:
        """The served list (best first; each item keeps its own source's score), or None when
        two-tower has nothing to add."""
        query = self._model.query_vector(user_id, seen, self._now_ms())
        if query is None:
            return None
        answer = self._search(query, k, seen, timeout_s)
        result = answer["results"][0]
        tower = [(str(i), float(s)) for i, s in zip(result["ids"], result["scores"],
                                                    strict=True)]
        if not tower:
            return None
        scores = dict(other)
        scores.update(tower)
        order = blend([i for i, _ in tower], [i for i, _ in other],
                      self._rule.share(len(seen)), k)
        return [(item_id, scores[item_id]) for item_id in order]
