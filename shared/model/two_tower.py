"""Two-tower retrieval model for cold start: items and users embedded from their features.

Candidate tower: ``MLP(concat(id, category, price, mean(tokens), age))``; query tower:
``MLP(concat(user id, mean of the last items' id embeddings, time sin/cos))``. Both outputs
are L2-normalised into one ``dim``-wide space; a user ranks items by the inner product.
The history uses the candidate tower's *id* table, so a query needs only item ids, never
their metadata (the recommender has the user's recent ids in its seen list).

Training: in-batch softmax (every other item of the batch is a negative) with the
log-frequency correction of Yi et al. 2019 (``logit − log Q(item)``, ``Q`` the item's share
of the training events), so popular items are not over-punished for appearing as negatives
more often. Duplicates of the positive in the batch are masked out. Ids with fewer than
``min_id_count`` training events, and a further ``id_dropout`` share of ids in every batch,
are replaced by "no id" (bucket 0, a zero vector): the towers learn to place an item or a
user from its features alone, exactly as they must for a new one at serving time. Early
stopping on recall@k of the latest ``validation_fraction`` of events (in time), against the
whole catalogue, best epoch restored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from shared.model.errors import ModelFitError
from shared.model.two_tower_features import (
    AGE_BUCKETS,
    PRICE_BUCKETS,
    TIME_FEATURES,
    FeatureSpace,
    ItemTable,
    age_buckets,
    histories,
    item_table,
    time_features,
    user_bucket,
)

log = logging.getLogger(__name__)

CATEGORY_DIM = 16
SMALL_DIM = 8  # price and age


@dataclass(frozen=True)
class TwoTowerConfig:
    """Architecture and training hyper-parameters."""

    dim: int = 32
    hidden: int = 64
    temperature: float = 0.05
    epochs: int = 20
    batch_size: int = 512
    learning_rate: float = 0.005
    id_dropout: float = 0.3
    min_id_count: int = 3
    validation_fraction: float = 0.1
    patience: int = 2
    eval_k: int = 10
    seed: int = 7
    num_threads: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if min(self.dim, self.hidden, self.epochs, self.batch_size, self.patience) < 1:
            raise ValueError("dim, hidden, epochs, batch_size and patience must be at least 1")
        if self.temperature <= 0 or self.learning_rate <= 0:
            raise ValueError("temperature and learning_rate must be positive")
        if not 0.0 <= self.id_dropout < 1.0 or not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError("id_dropout and validation_fraction must be in [0, 1)")


class TwoTower(nn.Module):
    """The two towers; bucket 0 of every table is the zero "none" row (``padding_idx``)."""

    def __init__(self, space: FeatureSpace, dim: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.space = space
        self.dim = dim
        # sparse gradients: a batch touches a few hundred of the 2^16 rows, and a dense Adam
        # step over every row made an epoch of 100k events take minutes instead of seconds
        self.item_id = nn.Embedding(space.id_buckets, dim, padding_idx=0, sparse=True)
        self.category = nn.Embedding(space.category_buckets, CATEGORY_DIM, padding_idx=0,
                                     sparse=True)
        self.price = nn.Embedding(PRICE_BUCKETS, SMALL_DIM, padding_idx=0, sparse=True)
        self.token = nn.Embedding(space.token_buckets, dim, padding_idx=0, sparse=True)
        self.age = nn.Embedding(AGE_BUCKETS, SMALL_DIM, padding_idx=0, sparse=True)
        self.candidate_mlp = nn.Sequential(
            nn.Linear(2 * dim + CATEGORY_DIM + 2 * SMALL_DIM, hidden), nn.ReLU(),
            nn.Linear(hidden, dim))
        self.user_id = nn.Embedding(space.user_buckets, dim, padding_idx=0, sparse=True)
        self.query_mlp = nn.Sequential(
            nn.Linear(2 * dim + TIME_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        for table in (self.item_id, self.category, self.price, self.token, self.age,
                      self.user_id):
            nn.init.normal_(table.weight, std=0.05)
            with torch.no_grad():
                table.weight[0].zero_()

    @staticmethod
    def _masked_mean(vectors: torch.Tensor, buckets: torch.Tensor) -> torch.Tensor:
        weight = (buckets > 0).to(vectors.dtype).unsqueeze(-1)
        return (vectors * weight).sum(1) / weight.sum(1).clamp(min=1.0)

    def candidate(self, ids: torch.Tensor, category: torch.Tensor, price: torch.Tensor,
                  toks: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
        """(n,) ×4 and tokens (n, t), int64 buckets → float32 (n, dim), unit length."""
        x = torch.cat([self.item_id(ids), self.category(category), self.price(price),
                       self._masked_mean(self.token(toks), toks), self.age(age)], dim=1)
        return F.normalize(self.candidate_mlp(x), dim=1)

    def query(self, users: torch.Tensor, history: torch.Tensor,
              when: torch.Tensor) -> torch.Tensor:
        """users (n,), history id buckets (n, h), time features (n, 4) → float32 (n, dim)."""
        x = torch.cat([self.user_id(users), self._masked_mean(self.item_id(history), history),
                       when], dim=1)
        return F.normalize(self.query_mlp(x), dim=1)

    def tables(self) -> list[torch.Tensor]:
        """The embedding tables (sparse gradients: SparseAdam)."""
        return [m.weight for m in self.modules() if isinstance(m, nn.Embedding)]

    def dense_parameters(self) -> list[nn.Parameter]:
        """Everything else: the two MLPs (plain Adam)."""
        sparse = {id(p) for p in self.tables()}
        return [p for p in self.parameters() if id(p) not in sparse]

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


@dataclass
class TwoTowerData:
    """Training events as codes plus everything the towers read about users and items.

    users, items, ts : int64 (n,) in time order; item_ids, user_ids : object arrays of ids;
    table : features of every item code (id buckets zeroed for items without a trained row);
    user_buckets : int64 (n_users,) (0 for users without a trained row); first_seen : int64
    (n_items,) ms; log_q : float32 (n_items,) log share of training events per item.
    """

    users: np.ndarray
    items: np.ndarray
    ts: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    table: ItemTable
    user_buckets: np.ndarray
    first_seen: np.ndarray
    log_q: np.ndarray
    known_items: list[str]
    known_users: list[str]


def prepare(frame: pd.DataFrame, metadata: Mapping[str, Mapping[str, Any]],
            space: FeatureSpace, min_id_count: int) -> TwoTowerData:
    """Codes, features and frequencies of ``frame`` (``user_id, item_id, ts``; any order)."""
    if frame.empty:
        raise ValueError("no events to train the two-tower model on")
    ordered = frame.sort_values("ts", kind="stable")
    user_codes, user_ids = pd.factorize(ordered["user_id"].astype(str))
    item_codes, item_ids = pd.factorize(ordered["item_id"].astype(str))
    users = user_codes.astype(np.int64)
    items = item_codes.astype(np.int64)
    ts = ordered["ts"].to_numpy(np.int64)
    item_counts = np.bincount(items, minlength=len(item_ids))
    user_counts = np.bincount(users, minlength=len(user_ids))
    known_items = [str(i) for i, c in zip(item_ids, item_counts, strict=True) if c >= min_id_count]
    known_users = [str(u) for u, c in zip(user_ids, user_counts, strict=True) if c >= min_id_count]
    known_user_set = set(known_users)
    table = item_table([str(i) for i in item_ids], metadata, space, known_items)
    ubuckets = np.array([user_bucket(u, space) if u in known_user_set else 0 for u in user_ids],
                        dtype=np.int64)
    first_seen = np.full(len(item_ids), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_seen, items, ts)
    log_q = np.log(item_counts / item_counts.sum()).astype(np.float32)
    return TwoTowerData(users, items, ts, np.asarray(user_ids, dtype=object),
                        np.asarray(item_ids, dtype=object), table, ubuckets, first_seen, log_q,
                        known_items, known_users)


@dataclass
class TwoTowerFit:
    """What happened during :func:`fit_two_tower`."""

    epochs_run: int = 0
    best_epoch: int = 0
    best_recall: float | None = None
    seconds: float = 0.0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _candidates(model: TwoTower, table: ItemTable, age: np.ndarray) -> torch.Tensor:
    return model.candidate(_tensor(table.ids), _tensor(table.category), _tensor(table.price),
                           _tensor(table.tokens), _tensor(age))


def _history_buckets(data: TwoTowerData, hist: np.ndarray) -> np.ndarray:
    return np.where(hist >= 0, data.table.ids[np.maximum(hist, 0)], 0)


def fit_two_tower(data: TwoTowerData, space: FeatureSpace,
                  config: TwoTowerConfig = TwoTowerConfig()) -> tuple[TwoTower, TwoTowerFit]:
    """Train a fresh :class:`TwoTower` on ``data``; returns it (best epoch) and the fit record.

    Raises
    ------
    ModelFitError
        When a batch loss is not finite.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    previous_threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    model = TwoTower(space, config.dim, config.hidden)
    hist = _history_buckets(data, histories(data.users, data.items, space.history))
    when = time_features(data.ts)
    age = age_buckets(data.ts - data.first_seen[data.items])
    n_val = int(len(data.users) * config.validation_fraction)
    n_fit = len(data.users) - n_val
    optimizers = [torch.optim.SparseAdam(model.tables(), lr=config.learning_rate),
                  torch.optim.Adam(model.dense_parameters(), lr=config.learning_rate)]
    result = TwoTowerFit()
    best: dict[str, torch.Tensor] | None = None
    stale = 0
    started = time.perf_counter()
    try:
        for epoch in range(1, config.epochs + 1):
            loss = _epoch(model, optimizers, data, hist, when, age, np.arange(n_fit), rng,
                          config, epoch)
            record: dict[str, Any] = {"epoch": epoch, "loss": round(loss, 5)}
            result.epochs_run = epoch
            if n_val:
                recall = _validation_recall(model, data, hist, when, n_fit, config.eval_k)
                record["val_recall"] = round(recall, 5)
                if result.best_recall is None or recall > result.best_recall:
                    result.best_recall, result.best_epoch, stale = recall, epoch, 0
                    best = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
            else:
                result.best_epoch = epoch
            result.history.append(record)
            log.info("two-tower epoch %d loss=%.4f val_recall=%s", epoch, loss,
                     record.get("val_recall"))
            if stale >= config.patience:
                result.stopped_early = True
                break
    finally:
        torch.set_num_threads(previous_threads)
        result.seconds = time.perf_counter() - started
    if best is not None:
        model.load_state_dict(best)
    model.eval()
    return model, result


def _dropped(buckets: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(buckets.size) < share, 0, buckets) if share else buckets


def _epoch(model: TwoTower, optimizers: list[torch.optim.Optimizer], data: TwoTowerData,
           hist: np.ndarray, when: np.ndarray, age: np.ndarray, rows: np.ndarray,
           rng: np.random.Generator, config: TwoTowerConfig, epoch: int) -> float:
    order = rng.permutation(rows)
    starts = range(0, order.size, config.batch_size)
    bar = tqdm(starts, desc=f"two-tower epoch {epoch}", unit="batch", leave=False,
               disable=not config.progress)
    total, count = 0.0, 0
    model.train()
    for start in bar:
        batch = order[start : start + config.batch_size]
        if batch.size < 2:
            continue
        items = data.items[batch]
        t = data.table.take(items)
        ids = _dropped(t.ids, config.id_dropout, rng)
        cand = model.candidate(_tensor(ids), _tensor(t.category), _tensor(t.price),
                               _tensor(t.tokens), _tensor(age[batch]))
        users = _dropped(data.user_buckets[data.users[batch]], config.id_dropout, rng)
        query = model.query(_tensor(users), _tensor(hist[batch]), _tensor(when[batch]))
        logits = query @ cand.T / config.temperature - _tensor(data.log_q[items])[None, :]
        same = _tensor(items[:, None] == items[None, :])
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
        loss = F.cross_entropy(logits, torch.arange(batch.size))
        value = float(loss.item())
        if not np.isfinite(value):
            raise ModelFitError(f"two-tower loss became {value} in epoch {epoch}")
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        total += value * batch.size
        count += batch.size
        if config.progress:
            bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)
    model.eval()
    return total / max(count, 1)


@torch.no_grad()
def _validation_recall(model: TwoTower, data: TwoTowerData, hist: np.ndarray, when: np.ndarray,
                       n_fit: int, k: int) -> float:
    """Recall@k of the events after ``n_fit`` against every item first seen before them."""
    rows = np.arange(n_fit, len(data.users))
    moment = data.ts[n_fit]
    catalogue = np.flatnonzero(data.first_seen <= moment)
    vectors = _candidates(model, data.table.take(catalogue),
                          age_buckets(moment - data.first_seen[catalogue]))
    position = np.full(len(data.item_ids), -1, dtype=np.int64)
    position[catalogue] = np.arange(catalogue.size)
    hits = 0
    for start in range(0, rows.size, 2048):
        batch = rows[start : start + 2048]
        query = model.query(_tensor(data.user_buckets[data.users[batch]]), _tensor(hist[batch]),
                            _tensor(when[batch]))
        top = torch.topk(query @ vectors.T, min(k, catalogue.size), dim=1).indices.numpy()
        hits += int((top == position[data.items[batch]][:, None]).any(1).sum())
    return hits / max(rows.size, 1)
