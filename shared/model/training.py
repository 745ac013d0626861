"""Batch (initial) training of GMF: sampled negatives, binary cross-entropy, early stopping.

Each epoch pairs every positive with ``negatives`` items drawn uniformly from the item pool
(resampled when they are the user's positives) and minimises BCE with Adam. L2 applies only to
the rows in the batch. After each epoch a held-out split (one positive per user, against
``eval_negatives`` sampled negatives) is scored; training stops when its HR@k has not improved
for ``patience`` epochs and the best epoch's weights are restored.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from shared.model.errors import ModelFitError
from shared.model.gmf import GMF
from shared.model.sampling import known_pairs, sample_negatives

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of :func:`fit`."""

    epochs: int = 30
    batch_size: int = 1024
    learning_rate: float = 0.01
    l2: float = 1e-5
    negatives: int = 4
    patience: int = 3
    eval_negatives: int = 99
    eval_k: int = 10
    seed: int = 7
    num_threads: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.negatives < 1:
            raise ValueError("epochs, batch_size and negatives must be at least 1")
        if self.learning_rate <= 0 or self.l2 < 0 or self.patience < 1:
            raise ValueError("learning_rate must be > 0, l2 >= 0, patience >= 1")


@dataclass
class FitResult:
    """What happened during :func:`fit`."""

    epochs_run: int
    best_epoch: int
    best_hit_rate: float | None
    seconds: float
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)


def fit(
    model: GMF,
    user_rows: np.ndarray,
    item_rows: np.ndarray,
    config: TrainConfig = TrainConfig(),
    item_pool: np.ndarray | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> FitResult:
    """Train ``model`` in place on positive pairs.

    Parameters
    ----------
    model : GMF
        Its tables must already hold every row used (see ``ensure_*_capacity``).
    user_rows, item_rows : int array (n,)
        Positive pairs (deduplicate them first).
    config : TrainConfig
    item_pool : int array (m,), optional
        Rows negatives are drawn from; default ``unique(item_rows)``.
    validation : (int array (v,), int array (v,)), optional
        Held-out positives (one per user) for early stopping; without it every epoch runs.

    Returns
    -------
    FitResult

    Raises
    ------
    ModelFitError
        When a batch loss is NaN or infinite.
    ValueError
        On mismatched inputs or rows beyond the model's capacity.
    """
    users = np.asarray(user_rows, dtype=np.int64)
    items = np.asarray(item_rows, dtype=np.int64)
    if users.shape != items.shape or users.ndim != 1 or users.size == 0:
        raise ValueError("user_rows and item_rows must be non-empty 1-D arrays of equal length")
    if users.max() >= model.user_capacity or items.max() >= model.item_capacity:
        raise ValueError("rows exceed the model's capacity: call ensure_*_capacity first")
    pool = np.unique(items) if item_pool is None else np.asarray(item_pool, dtype=np.int64)
    slots = model.item_capacity
    known = known_pairs(users, items, slots)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    previous_threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    validator = None
    if validation is not None:
        val_users, val_items = (np.asarray(a, dtype=np.int64) for a in validation)
        val_known = np.union1d(known, known_pairs(val_users, val_items, slots))
        val_rng = np.random.default_rng(config.seed + 1)
        val_negs = sample_negatives(val_users, config.eval_negatives, pool, val_known, slots, val_rng)
        validator = (val_users, np.concatenate([val_items[:, None], val_negs], axis=1))

    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    result = FitResult(0, 0, None, 0.0, False)
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    started = time.perf_counter()
    try:
        for epoch in range(1, config.epochs + 1):
            loss = _epoch(model, optimizer, users, items, pool, known, slots, rng, config, epoch)
            record: dict[str, Any] = {"epoch": epoch, "loss": loss}
            result.epochs_run = epoch
            if validator is not None:
                hit_rate = _sampled_hit_rate(model, *validator, config.eval_k)
                record["val_hr"] = hit_rate
                if result.best_hit_rate is None or hit_rate > result.best_hit_rate:
                    result.best_hit_rate, result.best_epoch, stale = hit_rate, epoch, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
            else:
                result.best_epoch = epoch
            result.history.append(record)
            log.info("epoch %d loss=%.4f val_hr=%s", epoch, loss, record.get("val_hr"))
            if stale >= config.patience:
                result.stopped_early = True
                break
    finally:
        torch.set_num_threads(previous_threads)
        result.seconds = time.perf_counter() - started
    if best_state is not None:
        model.load_state_dict(best_state)
    return result


def _epoch(
    model: GMF,
    optimizer: torch.optim.Optimizer,
    users: np.ndarray,
    items: np.ndarray,
    pool: np.ndarray,
    known: np.ndarray,
    slots: int,
    rng: np.random.Generator,
    config: TrainConfig,
    epoch: int,
) -> float:
    order = rng.permutation(users.size)
    negatives = sample_negatives(users[order], config.negatives, pool, known, slots, rng)
    u_all = torch.from_numpy(users[order])
    i_all = torch.from_numpy(items[order])
    n_all = torch.from_numpy(negatives)
    starts = range(0, users.size, config.batch_size)
    bar = tqdm(starts, desc=f"epoch {epoch}", unit="batch", leave=False, disable=not config.progress)
    total, count = 0.0, 0
    model.train()
    for start in bar:
        stop = start + config.batch_size
        u = u_all[start:stop]
        n_neg = n_all[start:stop]
        batch_users = torch.cat([u, u.repeat_interleave(config.negatives)])
        batch_items = torch.cat([i_all[start:stop], n_neg.reshape(-1)])
        targets = torch.cat([torch.ones(u.shape[0]), torch.zeros(n_neg.numel())])
        logits = model(batch_users, batch_items)
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        if config.l2:
            p = model.user_embedding[batch_users]
            q = model.item_embedding[batch_items]
            loss = loss + config.l2 * ((p * p).sum(1) + (q * q).sum(1)).mean()
        value = float(loss.item())
        if not np.isfinite(value):
            raise ModelFitError(f"loss became {value} in epoch {epoch} at batch {start}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += value * u.shape[0]
        count += u.shape[0]
        if config.progress:
            bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)
    model.eval()
    return total / max(count, 1)


@torch.no_grad()
def _sampled_hit_rate(model: GMF, users: np.ndarray, candidates: np.ndarray, k: int) -> float:
    """HR@k of column 0 of ``candidates`` (v, 1 + negatives) for each user (v,)."""
    u = torch.from_numpy(np.repeat(users, candidates.shape[1]))
    logits = model(u, torch.from_numpy(candidates.reshape(-1))).reshape(candidates.shape)
    rank = (logits[:, 1:] > logits[:, :1]).sum(1)
    return float((rank < k).float().mean())
