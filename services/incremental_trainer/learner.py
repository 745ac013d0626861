"""The in-memory half of the trainer: test-then-train over a micro-batch of events.

No I/O here: :class:`Learner` owns the model, the id maps, the streaming popularity and the
prequential evaluator, and :meth:`Learner.learn` returns what changed so the caller can
publish it. That keeps the update testable without a broker and reusable by the benchmark.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.incremental_trainer.popularity import StreamingPopularity, sample_rows
from services.incremental_trainer.prequential import PrequentialEvaluator
from shared import snapshots
from shared.config import ModelSettings, RedisSettings, TrainerSettings
from shared.events import EVENT_WEIGHTS, Interaction
from shared.model.checkpoint import load_snapshot
from shared.model.gmf import GMF
from shared.model.ids import HASH, HashIdMap, VocabIdMap, id_map_from_settings
from shared.model.isgd import ISGDParams, Tables, event_scale
from shared.model.isgd_batch import model_scores, rank_hits, update_batch

log = logging.getLogger(__name__)

USERS = "users"
ITEMS = "items"
# Negatives are drawn ∝ popularity^NEGATIVE_POWER over the catalogue. Measured on the synthetic
# stream by changing this constant and replaying it offline (services/incremental_trainer/
# offline.py; there is no flag for it): power 0.75 (word2vec-style, popular items as
# negatives) recall@10 0.149, 0.5 → 0.160, 0.25 → 0.176, 0 (uniform) → 0.190, popularity 0.098.
# Popular negatives fight the very signal that predicts the next item, so the default is uniform.
NEGATIVE_POWER = 0.0
# Events learned per vectorized update (shared.model.isgd_batch): each chunk is scored and
# stepped from the rows as they stood at its start, so a chunk much larger than the rows it
# touches more than once goes stale. Measured on the synthetic stream of tests/
# test_trainer_quality.py (400 users, 250 items): prequential recall@10 relative to the
# sequential learner was -8.0% with chunks of 512, -1.7% with 256, +3.8% with 128 (noise: about
# ±4% at 1,600 tests), and 128 costs about 10% of the learner's speed against 512.
UPDATE_CHUNK = 128


@dataclass
class ModelState:
    """The model with its id maps, the version it descends from and the offsets it holds."""

    model: GMF
    user_map: VocabIdMap | HashIdMap
    item_map: VocabIdMap | HashIdMap
    version: str
    offsets: dict[str, dict[str, int]]
    loaded_from_snapshot: bool
    metrics: dict[str, Any] = field(default_factory=dict)  # the snapshot manifest's "metrics"

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
        metrics = snap.manifest.get("metrics")
        return cls(
            snap.model,
            snap.user_map,
            snap.item_map,
            snap.version,
            offsets,
            True,
            dict(metrics) if isinstance(metrics, dict) else {},
        )


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
    positive_rows: set[int] = field(default_factory=set)  # item rows engaged with (a subset)
    new_item_rows: set[int] = field(default_factory=set)  # rows this batch created (a subset)
    seen: dict[str, list[str]] = field(default_factory=dict)  # user id → items, oldest first
    popularity: dict[str, float] = field(default_factory=dict)  # item id → weight at ts_ms
    ts_ms: int = 0  # newest event time of the batch
    growths: list[Growth] = field(default_factory=list)
    tested: int = 0
    evaluate_s: float = 0.0  # seconds of the batch spent on the prequential test


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

    def forget_users(self, user_ids: Iterable[str]) -> int:
        """Reset the users' rows to a fresh draw and drop their seen sets; how many had rows.

        With hashed ids a row is shared by every user of its bucket, who all start again:
        hashing already trades such collisions for a bounded table.
        """
        user_map = self.state.user_map
        rows = sorted({r for u in user_ids if (r := user_map.row(u, create=False)) is not None})
        if rows:
            self.state.model.reset_user_rows(np.array(rows, dtype=np.int64))
            for row in rows:
                self.seen.pop(row, None)
        return len(rows)

    def set_user_rows(self, user_ids: Sequence[str], rows: np.ndarray) -> None:
        """Overwrite (or create) the embedding rows of ``user_ids``: float32 (n, d)."""
        result = BatchResult()
        self._ensure_capacity(USERS, _rows_needed(self.state.user_map, list(user_ids)), result)
        user_rows = self.state.user_map.rows(user_ids, create=True)
        self.tables.user_embedding[user_rows] = rows

    def set_item_vectors(self, item_ids: Sequence[str], vectors: np.ndarray, keep: set[int]) -> int:
        """Overwrite items' rows from serving vectors ``concat(q, b)`` (n, d + 1), except rows
        in ``keep``; new items get rows. Returns how many rows were written."""
        ids = list(item_ids)
        known = self.state.item_map.rows(ids, create=False)
        result = BatchResult()
        self._ensure_capacity(
            ITEMS, _rows_needed(self.state.item_map, _new_ids(ids, known)), result
        )
        rows = self._item_rows(ids, known)
        take = np.array([int(r) not in keep for r in rows.tolist()], dtype=bool)
        rows, vectors = rows[take], vectors[take]
        d = self.tables.item_embedding.shape[1]
        self.tables.item_embedding[rows] = vectors[:, :d]
        self.tables.item_bias[rows] = vectors[:, d]
        return int(rows.shape[0])

    def known_user_rows(self) -> set[int]:
        return set(self.seen)

    # ------------------------------------------------------------------ learning
    def learn(self, events: Sequence[Interaction]) -> BatchResult:
        """Test, then train on ``events`` in chunks of :data:`UPDATE_CHUNK`; returns what changed.

        The test-then-train rule of a chunk (the prequential contract): event ``e`` is tested
        when it is sampled (``eval_sample_rate``), its user and its item both had rows before
        the chunk, and its item is neither in the user's seen set before the chunk nor engaged
        by the same user earlier in the chunk. Every tested event is scored against the model
        and the streaming popularity **as they stood at the start of the chunk**, excluding the
        user's seen items and the user's earlier items of the chunk; only then does the chunk's
        update (``shared.model.isgd_batch``) touch any row. So no tested event is scored by a
        model that has learned it, and chunks are learned in stream order.
        """
        result = BatchResult()
        if not events:
            return result
        for start in range(0, len(events), UPDATE_CHUNK):
            self._learn_chunk(events[start : start + UPDATE_CHUNK], result)
        self.events_learned += len(events)
        # Each event appended one item to its user's list: the count per user is its length.
        result.user_events = {user_id: len(items) for user_id, items in result.seen.items()}
        self._express_popularity_at(result)
        return result

    def _learn_chunk(self, events: Sequence[Interaction], result: BatchResult) -> None:
        n = len(events)
        user_map, item_map = self.state.user_map, self.state.item_map
        user_ids = [e.user_id for e in events]
        item_ids = [e.item_id for e in events]
        k_neg = self.settings.negatives_per_positive
        n_items_start = self.n_item_rows
        cdf = self.popularity.sampler(n_items_start, NEGATIVE_POWER) if k_neg else None
        negatives = sample_rows(cdf, n_items_start, (n, k_neg), self.rng) if k_neg else None
        draws = self.rng.random(n)

        known_users = user_map.rows(user_ids, create=False)
        known_items = item_map.rows(item_ids, create=False)
        started = time.perf_counter()
        result.tested += self._test_batch(known_users, known_items, draws, n_items_start)
        result.evaluate_s += time.perf_counter() - started

        self._ensure_capacity(
            USERS, _rows_needed(user_map, _new_ids(user_ids, known_users)), result
        )
        self._ensure_capacity(
            ITEMS, _rows_needed(item_map, _new_ids(item_ids, known_items)), result
        )
        user_rows = (
            known_users if known_users.min() >= 0 else user_map.rows(user_ids, create=True)
        )
        item_rows = self._item_rows(item_ids, known_items)
        event_weights = [EVENT_WEIGHTS[e.event] for e in events]
        scales = np.array([_event_scale(w) for w in event_weights], dtype=np.float32)
        update_batch(self.tables, user_rows, item_rows, scales, self.params, negatives)

        weights = np.array(event_weights, dtype=np.float64)
        ts = np.array([e.ts for e in events], dtype=np.int64)
        added = self.popularity.bump_many(item_rows, weights, ts).tolist()
        seen = self.seen
        seen_ids, popularity = result.seen, result.popularity
        for user_id, item_id, user_row, item_row, amount in zip(
            user_ids, item_ids, user_rows.tolist(), item_rows.tolist(), added, strict=True
        ):
            seen[user_row].add(item_row)
            items = seen_ids.get(user_id)
            if items is None:
                seen_ids[user_id] = [item_id]
            else:
                items.append(item_id)
            popularity[item_id] = popularity.get(item_id, 0.0) + amount
        touched = item_rows if negatives is None else np.concatenate([item_rows, negatives.ravel()])
        result.item_rows.update(np.unique(touched).tolist())
        result.positive_rows.update(np.unique(item_rows).tolist())
        result.new_item_rows.update(np.unique(item_rows[item_rows >= n_items_start]).tolist())
        result.ts_ms = max(result.ts_ms, int(ts.max()))

    def _express_popularity_at(self, result: BatchResult) -> None:
        """Popularity weights are relative to the in-process reference; express them at ts_ms."""
        scale = 1.0 / self.popularity.factor(result.ts_ms)
        result.popularity = {i: w * scale for i, w in result.popularity.items()}

    def _item_rows(self, item_ids: list[str], known: np.ndarray) -> np.ndarray:
        """Rows of ``item_ids``, creating the new ones (capacity must already suffice)."""
        if np.all(known >= 0):
            return known
        rows = known.copy()
        item_map = self.state.item_map
        for e in np.flatnonzero(known < 0).tolist():
            item_id = item_ids[e]
            row = item_map.row(item_id, create=False)
            if row is None:
                row = item_map.row(item_id, create=True)
                if item_map.mode == HASH:
                    self._hash_rows[row].append(item_id)
            rows[e] = row
        return rows

    def _test_batch(
        self, users: np.ndarray, items: np.ndarray, draws: np.ndarray, n_items: int
    ) -> int:
        """Prequential test of the batch's sampled events, before any update (see learn)."""
        rate = self.settings.eval_sample_rate
        candidates = np.flatnonzero((users >= 0) & (items >= 0) & (draws < rate))
        if candidates.size == 0:
            return 0
        earlier: dict[int, list[int]] = {}  # user row → items engaged earlier in the batch
        first = int(candidates[0])
        tests: list[tuple[int, int, list[int]]] = []
        empty: set[int] = set()
        for e, (user_row, item_row) in enumerate(zip(users.tolist(), items.tolist(), strict=True)):
            if e < first or user_row < 0 or item_row < 0:
                continue
            before = earlier.setdefault(user_row, [])
            if draws[e] < rate:
                seen = self.seen.get(user_row, empty)
                if item_row not in seen and item_row not in before:
                    tests.append((user_row, item_row, [*seen, *before]))
            before.append(item_row)
        if not tests:
            return 0
        test_users = np.array([t[0] for t in tests], dtype=np.int64)
        targets = np.array([t[1] for t in tests], dtype=np.int64)
        exclude = [t[2] for t in tests]
        k = self.evaluator.k
        model = rank_hits(model_scores(self.tables, test_users, n_items), targets, k, exclude)
        popular = rank_hits(self.popularity.ranking(n_items), targets, k, exclude)
        for model_hit, popular_hit in zip(model.tolist(), popular.tolist(), strict=True):
            self.evaluator.record(model_hit, popular_hit)
        return len(tests)


_SCALES: dict[float, float] = {}


def _event_scale(weight: float) -> float:
    """``event_scale`` memoised: a handful of distinct event weights, one log2 each."""
    scale = _SCALES.get(weight)
    if scale is None:
        scale = _SCALES[weight] = event_scale(weight)
    return scale


def _new_ids(ids: list[str], known_rows: np.ndarray) -> list[str]:
    """The ids whose row is -1 (not in the map)."""
    return [ids[e] for e in np.flatnonzero(known_rows < 0).tolist()]


def _rows_needed(id_map: VocabIdMap | HashIdMap, ids: Iterable[str]) -> int:
    """Rows a table needs once every id in ``ids`` has one (so a batch grows it at most once)."""
    new = {i for i in ids if i not in id_map}
    needed = int(id_map.required_rows)
    if not new:
        return needed
    if isinstance(id_map, HashIdMap):  # mode == HASH
        return max(needed, max(id_map.bucket(i) for i in new) + 1)
    return needed + len(new)
