"""The in-memory half of the trainer: test-then-train over a micro-batch of events.

No I/O here: :class:`Learner` owns the model, the id maps, the streaming popularity and the
prequential evaluator, and :meth:`Learner.learn` returns what changed so the caller can
publish it. That keeps the update testable without a broker and reusable by the benchmark.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.incremental_trainer.popularity import StreamingPopularity, sample_rows, top_k
from services.incremental_trainer.prequential import PrequentialEvaluator
from shared import snapshots
from shared.config import ModelSettings, RedisSettings, TrainerSettings
from shared.events import Interaction
from shared.model.checkpoint import load_snapshot
from shared.model.errors import ModelFitError
from shared.model.gmf import GMF
from shared.model.ids import HASH, HashIdMap, VocabIdMap, id_map_from_settings
from shared.model.isgd import ISGDParams, Tables, event_scale, update_event

log = logging.getLogger(__name__)

USERS = "users"
ITEMS = "items"
# Negatives are drawn ∝ popularity^NEGATIVE_POWER over the catalogue. Measured on the synthetic
# stream by changing this constant and replaying it offline (services/incremental_trainer/
# offline.py; there is no flag for it): power 0.75 (word2vec-style, popular items as
# negatives) recall@10 0.149, 0.5 → 0.160, 0.25 → 0.176, 0 (uniform) → 0.190, popularity 0.098.
# Popular negatives fight the very signal that predicts the next item, so the default is uniform.
NEGATIVE_POWER = 0.0


@dataclass
class ModelState:
    """The model with its id maps, the version it descends from and the offsets it holds."""

    model: GMF
    user_map: VocabIdMap | HashIdMap
    item_map: VocabIdMap | HashIdMap
    version: str
    offsets: dict[str, dict[str, int]]
    loaded_from_snapshot: bool

    @classmethod
    def load_or_create(cls, settings: ModelSettings) -> ModelState:
        """``models/LATEST`` if there is one, else an empty model of the configured size."""
        try:
            snap = load_snapshot(
                Path(settings.models_dir), growth_factor=settings.growth_factor, seed=settings.seed
            )
        except snapshots.SnapshotNotFound as exc:
            log.log(*snapshots.why_no_snapshot(Path(settings.models_dir), exc))
            model = GMF(
                settings.initial_capacity,
                settings.initial_capacity,
                settings.embedding_dim,
                growth_factor=settings.growth_factor,
                seed=settings.seed,
            )
            return cls(
                model,
                id_map_from_settings(settings),
                id_map_from_settings(settings),
                snapshots.new_version(),
                {},
                False,
            )
        log.info(
            "loaded snapshot %s from %s: %d users, %d items",
            snap.version,
            settings.models_dir,
            len(snap.user_map),
            len(snap.item_map),
        )
        offsets = {
            t: {str(p): int(o) for p, o in parts.items()} for t, parts in snap.offsets.items()
        }
        return cls(snap.model, snap.user_map, snap.item_map, snap.version, offsets, True)


@dataclass
class Growth:
    table: str
    old_capacity: int
    new_capacity: int


@dataclass
class BatchResult:
    """What one call of :meth:`Learner.learn` changed."""

    user_events: dict[str, int] = field(default_factory=dict)  # user id → events learned
    item_rows: set[int] = field(default_factory=set)  # rows whose serving vector moved
    seen: dict[str, list[str]] = field(default_factory=dict)  # user id → items, oldest first
    popularity: dict[str, float] = field(default_factory=dict)  # item id → weight at ts_ms
    ts_ms: int = 0  # newest event time of the batch
    growths: list[Growth] = field(default_factory=list)
    tested: int = 0


class Learner:
    """Prequential evaluation, then the ISGD update, event by event.

    Parameters
    ----------
    state : ModelState
    trainer : TrainerSettings
        Learning rate, L2, negatives per positive, evaluation sample rate, k and window.
    half_life_s : float
        Half-life of the streaming popularity (same as Redis ``popular``).
    seed : int
        Seeds evaluation sampling and negative sampling.
    """

    def __init__(
        self, state: ModelState, trainer: TrainerSettings, half_life_s: float, seed: int = 0
    ) -> None:
        self.state = state
        self.settings = trainer
        self.params = ISGDParams(trainer.learning_rate, trainer.l2)
        self.popularity = StreamingPopularity(half_life_s, state.model.item_capacity)
        self.evaluator = PrequentialEvaluator(trainer.eval_k, trainer.eval_window)
        self.rng = np.random.default_rng(seed)
        self.seen: dict[int, set[int]] = defaultdict(set)
        self.tables = Tables.of(state.model)
        self.events_learned = 0
        self._hash_rows: dict[int, list[str]] = defaultdict(list)
        item_map = self.state.item_map
        if isinstance(item_map, HashIdMap):  # mode == HASH
            for item_id in item_map.ids:
                self._hash_rows[item_map.bucket(item_id)].append(item_id)  # its row

    @classmethod
    def from_settings(
        cls, model: ModelSettings, trainer: TrainerSettings, redis: RedisSettings
    ) -> Learner:
        return cls(
            ModelState.load_or_create(model), trainer, redis.popularity_half_life_s, model.seed
        )

    # ------------------------------------------------------------------ ids
    @property
    def n_item_rows(self) -> int:
        return int(self.state.item_map.required_rows)

    def item_ids_of_rows(self, rows: Sequence[int]) -> list[tuple[str, int]]:
        """``(item_id, row)`` for every known id living in ``rows``."""
        item_map = self.state.item_map
        if item_map.mode == HASH:
            return [(i, r) for r in rows for i in self._hash_rows.get(r, ())]
        ids = item_map.ids
        return [(ids[r], r) for r in rows if r < len(ids)]

    def _item_row(self, item_id: str, result: BatchResult) -> int:
        item_map = self.state.item_map
        known = item_map.row(item_id, create=False)
        if known is not None:
            return known
        row = item_map.row(item_id, create=True)
        if item_map.mode == HASH:
            self._hash_rows[row].append(item_id)
        self._ensure_capacity(ITEMS, row + 1, result)
        return row

    def _user_row(self, user_id: str, result: BatchResult) -> int:
        row = self.state.user_map.row(user_id, create=True)
        self._ensure_capacity(USERS, row + 1, result)
        return row

    def _ensure_capacity(self, table: str, n_rows: int, result: BatchResult) -> None:
        model = self.state.model
        old = model.user_capacity if table == USERS else model.item_capacity
        if n_rows <= old:
            return
        if table == USERS:
            model.ensure_user_capacity(n_rows)
        else:
            model.ensure_item_capacity(n_rows)
        new = model.user_capacity if table == USERS else model.item_capacity
        self.tables = Tables.of(model)
        result.growths.append(Growth(table, old, new))
        log.info("grew %s table from %d to %d rows", table, old, new)

    def remember_seen(self, user_id: str, item_ids: Sequence[str]) -> None:
        """Fold items a user engaged with before this process started (e.g. from Redis)."""
        user_row = self.state.user_map.row(user_id, create=False)
        if user_row is None:
            return
        rows = self.state.item_map.rows(item_ids, create=False)
        self.seen[user_row].update(int(r) for r in rows if r >= 0)

    def known_user_rows(self) -> set[int]:
        return set(self.seen)

    # ------------------------------------------------------------------ learning
    def _test(self, user_row: int, item_row: int) -> None:
        n_items = self.n_item_rows
        k = self.evaluator.k
        exclude = self.seen.get(user_row, ())
        model_top = top_k(self.tables.scores(user_row, n_items), k, exclude)
        popular_top = self.popularity.top(k, exclude, n_items)
        self.evaluator.record(
            bool(np.any(model_top == item_row)), bool(np.any(popular_top == item_row))
        )

    def learn(self, events: Sequence[Interaction]) -> BatchResult:
        """Test-then-train over ``events`` in order; returns what changed."""
        result = BatchResult()
        if not events:
            return result
        k_neg = self.settings.negatives_per_positive
        n_items_start = self.n_item_rows
        cdf = self.popularity.sampler(n_items_start, NEGATIVE_POWER) if k_neg else None
        negatives = (
            sample_rows(cdf, n_items_start, (len(events), k_neg), self.rng) if k_neg else None
        )
        draws = self.rng.random(len(events))
        user_map, item_map = self.state.user_map, self.state.item_map
        self._ensure_capacity(USERS, _rows_needed(user_map, (e.user_id for e in events)), result)
        self._ensure_capacity(ITEMS, _rows_needed(item_map, (e.item_id for e in events)), result)
        for e, event in enumerate(events):
            user_known = user_map.row(event.user_id, create=False)
            item_known = item_map.row(event.item_id, create=False)
            if (
                user_known is not None
                and item_known is not None
                and draws[e] < self.settings.eval_sample_rate
                and item_known not in self.seen.get(user_known, ())
            ):
                self._test(user_known, item_known)
                result.tested += 1
            user_row = (
                user_known if user_known is not None else self._user_row(event.user_id, result)
            )
            item_row = (
                item_known if item_known is not None else self._item_row(event.item_id, result)
            )
            negs = () if negatives is None else negatives[e]
            prob = update_event(
                self.tables, user_row, item_row, event_scale(event.weight), self.params, negs
            )
            if not math.isfinite(prob):
                raise ModelFitError(f"non-finite score for {event.user_id}/{event.item_id}")
            added = self.popularity.bump(item_row, event.weight, event.ts)
            self.seen[user_row].add(item_row)
            result.user_events[event.user_id] = result.user_events.get(event.user_id, 0) + 1
            result.item_rows.add(item_row)
            result.item_rows.update(int(r) for r in negs)
            result.seen.setdefault(event.user_id, []).append(event.item_id)
            result.popularity[event.item_id] = result.popularity.get(event.item_id, 0.0) + added
            result.ts_ms = max(result.ts_ms, event.ts)
        self.events_learned += len(events)
        # Popularity weights are relative to the in-process reference; express them at ts_ms.
        scale = 1.0 / self.popularity.factor(result.ts_ms)
        result.popularity = {i: w * scale for i, w in result.popularity.items()}
        return result


def _rows_needed(id_map: VocabIdMap | HashIdMap, ids: Iterable[str]) -> int:
    """Rows a table needs once every id in ``ids`` has one (so a batch grows it at most once)."""
    new = {i for i in ids if i not in id_map}
    needed = int(id_map.required_rows)
    if not new:
        return needed
    if isinstance(id_map, HashIdMap):  # mode == HASH
        return max(needed, max(id_map.bucket(i) for i in new) + 1)
    return needed + len(new)
