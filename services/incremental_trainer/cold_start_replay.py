"""Stream replay that ranks every event with popularity, GMF, two-tower and the served blend.

Test-then-train per micro-batch, as the trainer publishes: every event of a batch is ranked by
each ranker from the state *before* the batch, then the batch is learned (GMF by ISGD through
the trainer's own :class:`Learner`, streaming popularity, user histories). The two-tower
model stays as trained on the prefix; new items get its candidate vector from their features
when they enter the catalogue, as the served space does.

- Tested: every event whose item the user has not engaged with before (a served list never
  holds those), brand-new users and items included: that is the point of the slices.
- Catalogue at a batch: every item seen in the prefix or the stream up to the end of that
  batch (an item enters the catalogue, with its metadata, when it is first put or seen).
- Items a user already engaged with are excluded from every ranker's list.
- ``popularity``: the trainer's time-decayed streaming popularity. ``gmf``: the served inner
  product; a user without a row scores items by their bias alone (query ``[0…0, 1]``), an
  item without a row cannot be retrieved. ``two_tower``: query tower (user id, last items,
  time of the event) against the candidate vectors. ``served_without_two_tower``: GMF for a
  user with a row, popularity otherwise (what /recommend does without the two-tower space).
  ``served``: :func:`shared.cold_start_blend.blend` of two-tower with that list.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from services.incremental_trainer.learner import Learner
from services.incremental_trainer.offline import interactions, warm_start
from shared.cold_start_blend import BlendRule, blend
from shared.evaluation import cold_start
from shared.model.two_tower_snapshot import TwoTowerEncoder

RANKERS = ("popularity", "gmf", "two_tower", "served_without_two_tower", "served")


@dataclass
class ReplayResult:
    """Per tested event: each ranker's 0-based rank of the item, and the slice masks."""

    ranks: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]

    def report(self, ks: tuple[int, ...] = (10,)) -> dict[str, Any]:
        rankers = {name: cold_start.metrics(r, ks) for name, r in self.ranks.items()}
        return {"rankers": rankers, "slices": cold_start.report(self.ranks, self.masks, ks)}


def _top(
    scores: np.ndarray,
    exclude_rows: np.ndarray,
    exclude_cols: np.ndarray,
    k: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Top-k columns per row, excluded cells removed, ties broken at random (seeded)."""
    scores = scores.astype(np.float64, copy=True)
    scale = np.abs(scores[np.isfinite(scores)]).max(initial=1.0)
    scores += rng.random(scores.shape) * scale * 1e-9
    scores[exclude_rows, exclude_cols] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
    top = np.take_along_axis(part, order, 1)
    return np.where(np.isfinite(np.take_along_axis(scores, top, 1)), top, -1)


def replay(
    learner: Learner,
    encoder: TwoTowerEncoder,
    prefix: pd.DataFrame,
    stream: pd.DataFrame,
    metadata: Mapping[str, Mapping[str, Any]],
    rule: BlendRule | None = None,
    k: int = 10,
    batch_size: int = 256,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Rank every new-to-the-user event of ``stream`` with every ranker; see the module doc."""
    rule = rule or BlendRule()
    rng = np.random.default_rng(seed)
    warm_start(learner, prefix)
    everything = pd.concat([prefix, stream], ignore_index=True)
    item_earlier = cold_start.earlier_counts(everything["item_id"].astype(str))[len(prefix) :]
    user_earlier = cold_start.earlier_counts(everything["user_id"].astype(str))[len(prefix) :]
    recent: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=encoder.space.history))
    seen: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for u, i in prefix[["user_id", "item_id"]].astype(str).itertuples(index=False):
        recent[u].appendleft(i)
        seen[u].add(i)
        counts[u] += 1
    catalogue: list[str] = list(dict.fromkeys(prefix["item_id"].astype(str)))
    position = {item: j for j, item in enumerate(catalogue)}
    first_seen = prefix.groupby(prefix["item_id"].astype(str))["ts"].min().to_dict()
    table = encoder.item_table(catalogue, metadata)
    ranks: dict[str, list[np.ndarray]] = {name: [] for name in RANKERS}
    keep: list[np.ndarray] = []
    events = interactions(stream)
    for start in range(0, len(events), batch_size):
        batch = events[start : start + batch_size]
        new = [e.item_id for e in batch if e.item_id not in position]
        new = list(dict.fromkeys(new))
        if new:
            for item in new:
                position[item] = len(catalogue)
                catalogue.append(item)
            for e in batch:
                first_seen.setdefault(e.item_id, e.ts)
            more = encoder.item_table(new, metadata)
            table = type(table)(
                *(
                    np.concatenate([a, b])
                    for a, b in zip(
                        (table.ids, table.category, table.price, table.tokens),
                        (more.ids, more.category, more.price, more.tokens),
                        strict=True,
                    )
                )
            )
        tested = np.array([e.item_id not in seen[e.user_id] for e in batch])
        keep.append(tested)
        if tested.any():
            chosen = [e for e, t in zip(batch, tested, strict=True) if t]
            for name, r in _rank_batch(
                learner,
                encoder,
                chosen,
                catalogue,
                position,
                table,
                first_seen,
                recent,
                seen,
                counts,
                rule,
                k,
                rng,
            ).items():
                ranks[name].append(r)
        for e in batch:
            recent[e.user_id].appendleft(e.item_id)
            seen[e.user_id].add(e.item_id)
            counts[e.user_id] += 1
        learner.learn(batch)
        if progress is not None:
            progress(len(batch))
    tested_mask = np.concatenate(keep) if keep else np.zeros(0, dtype=bool)
    masks = cold_start.slice_masks(item_earlier[tested_mask], user_earlier[tested_mask])
    return ReplayResult(
        {n: np.concatenate(r) if r else np.zeros(0, np.int64) for n, r in ranks.items()}, masks
    )


def _rank_batch(
    learner: Learner,
    encoder: TwoTowerEncoder,
    batch: list[Any],
    catalogue: list[str],
    position: dict[str, int],
    table: Any,
    first_seen: dict[str, int],
    recent: Mapping[str, deque[str]],
    seen: Mapping[str, set[str]],
    counts: Mapping[str, int],
    rule: BlendRule,
    k: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    n_cat = len(catalogue)
    targets = np.array([position[e.item_id] for e in batch], dtype=np.int64)
    rows, cols = [], []
    for r, e in enumerate(batch):
        for item in seen.get(e.user_id, ()):
            rows.append(r)
            cols.append(position[item])
    ex_r, ex_c = np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)
    # popularity and GMF, by the learner's item rows (−1 = the item has no row yet)
    item_map, user_map = learner.state.item_map, learner.state.user_map
    item_rows = np.array(
        [item_map.row(i, create=False) if i in item_map else -1 for i in catalogue], dtype=np.int64
    )
    has_row = item_rows >= 0
    pop = np.zeros(n_cat)
    pop_scores = learner.popularity.scores
    in_pop = has_row & (item_rows < pop_scores.shape[0])
    pop[in_pop] = pop_scores[item_rows[in_pop]]
    popularity = _top(np.broadcast_to(pop, (len(batch), n_cat)), ex_r, ex_c, k, rng)
    tables = learner.tables
    user_rows = [user_map.row(e.user_id, create=False) for e in batch]
    known_user = np.array([u is not None for u in user_rows])
    queries = np.zeros((len(batch), tables.h.shape[0]), dtype=np.float32)
    for r, u in enumerate(user_rows):
        if u is not None:
            queries[r] = tables.h * tables.user_embedding[u]
    gmf_scores = np.full((len(batch), n_cat), -np.inf)
    safe = np.maximum(item_rows, 0)
    gmf_scores[:, has_row] = (queries @ tables.item_embedding[safe].T + tables.item_bias[safe])[
        :, has_row
    ]
    gmf = _top(gmf_scores, ex_r, ex_c, k, rng)
    # two-tower: candidate vectors at this moment (item age from first seen), query tower
    moment = batch[0].ts
    ages = np.array([moment - first_seen.get(i, moment) for i in catalogue], dtype=np.int64)
    items = encoder.candidate_vectors(table, np.maximum(ages, 0))
    users = encoder.query_vectors(
        [e.user_id for e in batch],
        [list(recent.get(e.user_id, ())) for e in batch],
        [e.ts for e in batch],
    )
    two_tower = _top(users @ items.T, ex_r, ex_c, k, rng)
    without = np.where(known_user[:, None], gmf, popularity)
    served = np.full((len(batch), k), -1, dtype=np.int64)
    for r, e in enumerate(batch):
        tt = [int(x) for x in two_tower[r] if x >= 0]
        other = [int(x) for x in without[r] if x >= 0]
        merged = blend(tt, other, rule.share(counts.get(e.user_id, 0)), k)
        served[r, : len(merged)] = merged
    out = {
        "popularity": popularity,
        "gmf": gmf,
        "two_tower": two_tower,
        "served_without_two_tower": without,
        "served": served,
    }
    return {name: cold_start.rank_in(top, targets) for name, top in out.items()}
