"""Item-to-item embedding trained on co-engagement triplets (anchor, positive, negatives).

An item's vector is the unit-length sum of an id embedding and, when the item has metadata,
a category embedding and the mean of its hashed title-token embeddings
(:mod:`shared.model.item_features`). Cosine between vectors ranks "similar items".

Training triplets come from the interaction log (:func:`next_item_pairs`): the anchor is an
item a user engaged with, the positive one of the same user's next items within a time
window, the negatives are drawn from item popularity (``count^popularity_alpha``; the default
0 is uniform, see :class:`TripletConfig`). From epoch ``hard_after_epoch`` on, each anchor
draws ``hard_pool`` candidates and keeps the ``negatives`` it scores highest (hard-negative
mining on a sample, which avoids the false negatives that mining over the whole catalogue
would pick; never the anchor or its positive).

Two losses over the same triplets (``TripletConfig.loss``):

- ``"margin"``: ``relu(margin - cos(a, p) + cos(a, n))`` averaged over the anchor's negatives;
- ``"softmax"`` (default): the many-negative form (N-pair / sampled softmax): the positive's
  ``cos / temperature`` against the anchor's negatives plus ``shared_negatives`` items drawn
  uniformly once per batch (the whole catalogue when it is no larger). With uniform negatives
  this fits P(next | previous) itself, popularity included, which is what "what comes next"
  asks; a low temperature leaves the cosine room to carry both the taste and the
  popularity part (cosine has no per-item bias term, and the served space is cosine).

With probability ``feature_dropout`` the id embedding of an item in a batch is left out, so
category and tokens alone must place it near its co-engaged items: that is what a new item,
which has no id row yet, is served with (:meth:`TripletModel.embed_features`).

Early stopping watches next-item HR@k on held-out (previous item → next item) pairs: the
best epoch's weights are restored.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from shared.model.errors import ModelFitError
from shared.model.item_features import MAX_TOKENS
from shared.model.next_item import next_item_metrics

log = logging.getLogger(__name__)

DAY_S = 86_400.0
# Hard negatives are picked with a table of every item's vector recomputed this often (in
# batches) rather than by re-embedding every candidate of every batch: slightly stale scores,
# a fraction of the cost.
MINING_REFRESH_BATCHES = 20
LOSSES = ("margin", "softmax")


@dataclass(frozen=True)
class TripletConfig:
    """Hyperparameters of :func:`fit_triplet` (defaults are not tuned to any data set)."""

    # 64, not 32: on both data sets the cosine needs the room to hold taste and popularity
    # (softmax loss, evaluate_similar next-item HR@10: 32 dims lose 6% on the synthetic log).
    dim: int = 64
    window_items: int = 3  # positives: up to this many next items of the same user...
    window_s: float = 7 * DAY_S  # ...that follow the anchor within this time
    negatives: int = 8
    margin: float = 0.3
    # Negatives ∝ count^alpha. 0 (uniform) by default: popularity-sampled negatives (0.75, as
    # word2vec) push popular items away from everything, i.e. learn popularity-corrected
    # similarity, while "what comes next" includes popularity. Measured on both the synthetic
    # and the MovieLens-format log (reports/similar_*.json): 0.75 costs 22% of HR@10.
    popularity_alpha: float = 0.0
    hard_after_epoch: int = 3  # 1-based: epochs before this one use popularity samples only
    hard_pool: int = 64
    feature_dropout: float = 0.25
    # "margin": relu(margin - cos(a, p) + cos(a, n)) over the anchor's own negatives.
    # "softmax": the many-negative form of the same triplet (N-pair / sampled softmax,
    # cos / temperature): the positive against the anchor's negatives plus `shared_negatives`
    # items drawn uniformly once per batch and shared by its anchors; with a catalogue no
    # larger than that, the shared set is the whole catalogue (an exact softmax).
    loss: str = "softmax"
    # Low, so that cosines a few hundredths apart are probability ratios of several times:
    # the whole range of "how likely next" fits into [-1, 1] (0.1 scored 3-10% lower
    # next-item HR@10 than 0.03 on both data sets).
    temperature: float = 0.03
    shared_negatives: int = 2048
    epochs: int = 30
    batch_size: int = 1024
    learning_rate: float = 0.003
    patience: int = 3
    eval_k: int = 10
    seed: int = 7
    num_threads: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if min(self.dim, self.window_items, self.negatives, self.epochs, self.batch_size) < 1:
            raise ValueError("dim, window_items, negatives, epochs, batch_size must be ≥ 1")
        if self.hard_pool < self.negatives:
            raise ValueError("hard_pool must be at least negatives")
        if not 0.0 <= self.feature_dropout < 1.0 or self.margin <= 0 or self.patience < 1:
            raise ValueError("feature_dropout in [0, 1), margin > 0 and patience ≥ 1 needed")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if self.temperature <= 0 or self.shared_negatives < 0:
            raise ValueError("temperature > 0 and shared_negatives ≥ 0 needed")


class TripletModel(nn.Module):
    """Item tower: id embedding + category embedding + mean hashed-token embedding, unit norm.

    Parameters
    ----------
    n_items : int
        Id rows (item codes 0..n_items-1).
    n_categories : int
        Category rows, row 0 = none (``FeatureVocabulary.n_categories``); 1 → no categories.
    token_buckets : int
        Token hash buckets (token codes 1..token_buckets, 0 = padding); 0 → no tokens.
    dim : int
        Embedding dimension.
    """

    def __init__(self, n_items: int, n_categories: int, token_buckets: int, dim: int, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.dim = dim
        self.ids = nn.Embedding(n_items, dim)
        self.categories = nn.Embedding(max(1, n_categories), dim, padding_idx=0)
        self.tokens = nn.Embedding(token_buckets + 1, dim, padding_idx=0)
        with torch.no_grad():
            for table in (self.ids, self.categories, self.tokens):
                table.weight.normal_(0.0, 0.1, generator=generator)
            self.categories.weight[0].zero_()
            self.tokens.weight[0].zero_()
        self.item_category: torch.Tensor
        self.item_tokens: torch.Tensor
        self.register_buffer("item_category", torch.zeros(n_items, dtype=torch.long))
        self.register_buffer("item_tokens", torch.zeros(n_items, MAX_TOKENS, dtype=torch.long))

    def set_features(self, category: np.ndarray, token_codes: np.ndarray) -> None:
        """Feature codes of the id rows: int64 (n_items,) and (n_items, MAX_TOKENS)."""
        self.item_category.copy_(torch.as_tensor(category, dtype=torch.long))
        self.item_tokens.copy_(torch.as_tensor(token_codes, dtype=torch.long))

    def _content(self, category: torch.Tensor, token_codes: torch.Tensor) -> torch.Tensor:
        summed = self.tokens(token_codes).sum(dim=-2)
        count = (token_codes > 0).sum(dim=-1, keepdim=True).clamp(min=1)
        return self.categories(category) + summed / count

    def forward(self, items: torch.Tensor, keep_id: torch.Tensor | None = None) -> torch.Tensor:
        """Unit vectors of item codes ``items`` (any shape) → (*items.shape, dim).

        ``keep_id`` (same shape, bool) leaves the id part out where False (feature dropout).
        """
        ids = self.ids(items)
        if keep_id is not None:
            ids = ids * keep_id.unsqueeze(-1)
        content = self._content(self.item_category[items], self.item_tokens[items])
        return F.normalize(ids + content, dim=-1)

    @torch.no_grad()
    def item_vectors(self) -> np.ndarray:
        """Every id row's unit vector: float32 (n_items, dim)."""
        rows = torch.arange(self.ids.num_embeddings)
        return self.forward(rows).numpy().astype(np.float32)

    @torch.no_grad()
    def embed_features(self, category: np.ndarray, token_codes: np.ndarray) -> np.ndarray:
        """Unit vectors of items known only by features (no id row): float32 (n, dim).

        Items with neither a known category nor a token get zeros (nothing to place them by).
        """
        content = self._content(
            torch.as_tensor(category, dtype=torch.long),
            torch.as_tensor(token_codes, dtype=torch.long),
        )
        return F.normalize(content, dim=-1).numpy().astype(np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Weights and feature codes as numpy arrays (np.savez, no pickle)."""
        return {name: t.detach().numpy().copy() for name, t in self.state_dict().items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], seed: int = 0) -> TripletModel:
        n_items, dim = arrays["ids.weight"].shape
        model = cls(n_items, len(arrays["categories.weight"]),
                    len(arrays["tokens.weight"]) - 1, dim, seed)  # fmt: skip
        model.load_state_dict({name: torch.as_tensor(a) for name, a in arrays.items()})
        return model


@dataclass
class TripletFit:
    """What :func:`fit_triplet` did."""

    epochs_run: int
    best_epoch: int
    best_hit_rate: float | None
    seconds: float
    stopped_early: bool
    n_pairs: int
    history: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def next_item_hits(
    vectors: np.ndarray, previous: np.ndarray, following: np.ndarray, k: int
) -> tuple[float, float]:
    """(HR@k, NDCG@k) of cosine neighbours in unit ``vectors`` (float32 (n, d)) for
    held-out (previous → following) item-code pairs."""
    table = torch.as_tensor(vectors)
    return next_item_metrics(lambda prev: table[prev] @ table.T, previous, following, k)


def _shared_negatives(n_items: int, wanted: int, rng: np.random.Generator) -> torch.Tensor:
    """Item codes every anchor of a batch is contrasted with: the whole catalogue when it is
    no larger than ``wanted``, else ``wanted`` codes drawn uniformly (int64 (s,))."""
    if n_items <= wanted:
        return torch.arange(n_items)
    return torch.as_tensor(rng.integers(0, n_items, wanted), dtype=torch.long)


def _is_pair_item(negatives: torch.Tensor, a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Where a drawn negative (b, n) is its row's anchor or positive: not a negative."""
    return (negatives == a.unsqueeze(1)) | (negatives == p.unsqueeze(1))


def _keep_mask(n: int, config: TripletConfig, features: Any) -> torch.Tensor | None:
    if not config.feature_dropout or features is None:
        return None
    return torch.rand(n) >= config.feature_dropout


def fit_triplet(
    n_items: int,
    anchors: np.ndarray,
    positives: np.ndarray,
    popularity: np.ndarray,
    config: TripletConfig = TripletConfig(),
    features: tuple[np.ndarray, np.ndarray, int, int] | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    stop: Any = None,
) -> tuple[TripletModel, TripletFit]:
    """Train a :class:`TripletModel` on (anchor, positive) item-code pairs.

    Parameters
    ----------
    n_items : int
        Item codes are 0..n_items-1.
    anchors, positives : int64 arrays (m,)
        Co-engaged pairs (:func:`next_item_pairs`).
    popularity : array (n_items,)
        Engagement counts: the negative sampling distribution is ``count^popularity_alpha``.
    features : (category (n_items,), tokens (n_items, MAX_TOKENS), n_categories,
        token_buckets), optional
        Feature codes from ``FeatureVocabulary.encode``; None trains ids only.
    validation : (previous, next) int64 arrays, optional
        Held-out next-item pairs for early stopping on HR@eval_k.
    stop : threading.Event-like, optional
        ``stop.is_set()`` ends training after the current batch (Ctrl-C / SIGTERM).

    Returns the model with the best validation epoch's weights and a :class:`TripletFit`.
    Raises ModelFitError when the loss becomes NaN, ValueError without pairs.
    """
    if not len(anchors):
        raise ValueError("no co-engaged pairs to train on (each user needs two items)")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    n_categories, buckets = (features[2], features[3]) if features else (1, 0)
    model = TripletModel(n_items, n_categories, buckets, config.dim, config.seed)
    if features is not None:
        model.set_features(features[0], features[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    weights = np.power(np.asarray(popularity, dtype=np.float64) + 1.0, config.popularity_alpha)
    cumulative = np.cumsum(weights / weights.sum())
    anchors_t = torch.as_tensor(anchors, dtype=torch.long)
    positives_t = torch.as_tensor(positives, dtype=torch.long)
    result = TripletFit(0, 0, None, 0.0, False, len(anchors))
    best_state: dict[str, torch.Tensor] | None = None
    since_best = 0
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        hard = epoch >= config.hard_after_epoch
        order = torch.as_tensor(rng.permutation(len(anchors)))
        losses: list[float] = []
        batches = range(0, len(order), config.batch_size)
        bar = tqdm(batches, desc=f"triplet epoch {epoch}", unit="batch", disable=not config.progress,
                   leave=False)  # fmt: skip
        model.train()
        table: torch.Tensor | None = None  # item vectors the mining scores with, refreshed
        for step, start in enumerate(bar):
            if stop is not None and stop.is_set():
                break
            rows = order[start : start + config.batch_size]
            a, p = anchors_t[rows], positives_t[rows]
            pool = config.hard_pool if hard else config.negatives
            drawn = np.searchsorted(cumulative, rng.random((len(rows), pool)), side="right")
            candidates = torch.as_tensor(np.minimum(drawn, n_items - 1), dtype=torch.long)
            ea = model(a)
            if hard:
                with torch.no_grad():
                    if table is None or step % MINING_REFRESH_BATCHES == 0:
                        table = torch.as_tensor(model.item_vectors())
                    scores = torch.einsum("bd,bcd->bc", ea, table[candidates])
                    # never the positive, nor the anchor itself (always the "hardest")
                    scores[_is_pair_item(candidates, a, p)] = -torch.inf
                    picked = scores.topk(config.negatives, dim=1).indices
                negatives = candidates.gather(1, picked)
            else:
                negatives = candidates
            keep = None
            if config.feature_dropout and features is not None:
                keep = torch.rand(len(rows), 2 + config.negatives) >= config.feature_dropout
            ep = model(p, keep[:, 1] if keep is not None else None)
            en = model(negatives, keep[:, 2:] if keep is not None else None)
            if keep is not None:
                ea = model(a, keep[:, 0])
            positive_score = (ea * ep).sum(-1, keepdim=True)
            negative_score = torch.einsum("bd,bnd->bn", ea, en)
            negative_score = negative_score.masked_fill(
                _is_pair_item(negatives, a, p), -torch.inf)
            if config.loss == "softmax":
                shared = _shared_negatives(n_items, config.shared_negatives, rng)
                shared_score = ea @ model(shared, _keep_mask(len(shared), config, features)).T
                shared_score = shared_score.masked_fill(
                    _is_pair_item(shared.expand(len(rows), -1), a, p), -torch.inf)
                logits = torch.cat([positive_score, negative_score, shared_score], dim=1)
                loss = -F.log_softmax(logits / config.temperature, dim=1)[:, 0].mean()
            else:
                loss = F.relu(config.margin - positive_score + negative_score).mean()
            if not torch.isfinite(loss):
                raise ModelFitError(f"triplet loss became {loss.item()} in epoch {epoch}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", hard=hard)
        bar.close()
        result.epochs_run = epoch
        entry: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses or [0.0])),
                                 "hard_negatives": hard}  # fmt: skip
        if validation is not None and len(validation[0]):
            model.eval()
            hr, ndcg = next_item_hits(model.item_vectors(), validation[0], validation[1],
                                      config.eval_k)  # fmt: skip
            entry.update({f"val_hr@{config.eval_k}": hr, f"val_ndcg@{config.eval_k}": ndcg})
            if result.best_hit_rate is None or hr > result.best_hit_rate:
                result.best_hit_rate, result.best_epoch, since_best = hr, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since_best += 1
        else:
            result.best_epoch = epoch
        result.history.append(entry)
        log.info("triplet epoch %d: %s", epoch, entry)
        if config.progress:
            tqdm.write(
                f"triplet epoch {epoch}: "
                + ", ".join(
                    f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()
                )
            )
        if since_best >= config.patience:
            result.stopped_early = True
            break
        if stop is not None and stop.is_set():
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - started
    return model, result
