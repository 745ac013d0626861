"""GMF (Generalized Matrix Factorization, He et al. 2017) with growable embedding tables.

``score(u, i) = σ(hᵀ(p_u ⊙ q_i) + b_i + b)``. The serving vectors of docs/CONTRACTS.md are
``concat(h ⊙ p_u, 1)`` for users and ``concat(q_i, b_i)`` for items: their inner product is the
logit minus the global bias, so ranking by it equals ranking by the score.

Growth keeps every ``nn.Parameter`` object and swaps in a larger tensor
(``torch.utils.swap_tensors``), so an optimizer built over ``model.parameters()`` still points
at the live tensors. Stateless plain
SGD needs nothing more; an optimizer with per-parameter state (Adam, momentum) must call
:func:`shared.model.optim.extend_optimizer_state` after a growth, which pads that state with
zeros for the new rows (old rows keep their state).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

DEFAULT_INIT_STD = 0.01


def grown_capacity(capacity: int, n_rows: int, growth_factor: float) -> int:
    """Smallest capacity reached by repeated growth of ``growth_factor`` that holds ``n_rows``.

    Each step adds ``max(1, floor(capacity * growth_factor))`` rows, so a table always grows
    by at least one row and by 10% (the default factor) once it is large enough.
    """
    if growth_factor <= 0:
        raise ValueError("growth_factor must be positive")
    while capacity < n_rows:
        capacity += max(1, math.floor(capacity * growth_factor))
    return capacity


class GMF(nn.Module):
    """GMF scorer over user and item rows.

    Parameters
    ----------
    user_capacity, item_capacity : int
        Initial number of rows of the user and item tables (at least 1).
    embedding_dim : int
        ``d``, the width of both tables and of ``h``.
    growth_factor : float
        Fraction by which a full table grows (0.10 = 10%, at least one row per step).
    init_std : float
        Standard deviation of the normal initialisation of embedding rows (initial and grown).
    seed : int or None
        Seeds the generator used for initial rows and for rows added by growth.

    Attributes
    ----------
    user_embedding : nn.Parameter, float32 (user_capacity, d)
    item_embedding : nn.Parameter, float32 (item_capacity, d)
    item_bias : nn.Parameter, float32 (item_capacity,)
    h : nn.Parameter, float32 (d,)
        Output layer; frozen during incremental learning.
    global_bias : nn.Parameter, float32 ()
    """

    def __init__(
        self,
        user_capacity: int,
        item_capacity: int,
        embedding_dim: int,
        growth_factor: float = 0.10,
        init_std: float = DEFAULT_INIT_STD,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if user_capacity < 1 or item_capacity < 1 or embedding_dim < 1:
            raise ValueError("capacities and embedding_dim must be at least 1")
        if growth_factor <= 0:
            raise ValueError("growth_factor must be positive")
        self.growth_factor = float(growth_factor)
        self.init_std = float(init_std)
        self._generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        if seed is None:
            self._generator.seed()
        d = int(embedding_dim)
        self.user_embedding = nn.Parameter(self._new_rows(user_capacity, d))
        self.item_embedding = nn.Parameter(self._new_rows(item_capacity, d))
        self.item_bias = nn.Parameter(torch.zeros(item_capacity))
        self.h = nn.Parameter(torch.ones(d))
        self.global_bias = nn.Parameter(torch.zeros(()))

    # ------------------------------------------------------------------ sizes
    @property
    def embedding_dim(self) -> int:
        return int(self.h.shape[0])

    @property
    def serving_dim(self) -> int:
        return self.embedding_dim + 1

    @property
    def user_capacity(self) -> int:
        return int(self.user_embedding.shape[0])

    @property
    def item_capacity(self) -> int:
        return int(self.item_embedding.shape[0])

    # ------------------------------------------------------------------ scoring
    def forward(self, user_rows: torch.Tensor, item_rows: torch.Tensor) -> torch.Tensor:
        """Logits of pairs.

        Parameters
        ----------
        user_rows, item_rows : torch.Tensor, int64 (n,)

        Returns
        -------
        torch.Tensor, float32 (n,)
            ``hᵀ(p_u ⊙ q_i) + b_i + b`` (apply ``torch.sigmoid`` for probabilities).
        """
        p = self.user_embedding[user_rows]
        q = self.item_embedding[item_rows]
        return (p * q) @ self.h + self.item_bias[item_rows] + self.global_bias

    @torch.no_grad()
    def score(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """Probabilities ``σ(logit)`` of pairs; int arrays (n,) in, float32 (n,) out."""
        logits = self.forward(_as_index(user_rows), _as_index(item_rows))
        return torch.sigmoid(logits).numpy()

    @torch.no_grad()
    def query_vectors(self, user_rows: np.ndarray) -> np.ndarray:
        """User serving vectors ``concat(h ⊙ p_u, 1)``.

        Parameters
        ----------
        user_rows : array of int, shape (n,)

        Returns
        -------
        np.ndarray, float32 (n, embedding_dim + 1)
        """
        p = self.user_embedding[_as_index(user_rows)] * self.h
        ones = torch.ones((p.shape[0], 1), dtype=p.dtype)
        return torch.cat([p, ones], dim=1).numpy().astype(np.float32, copy=False)

    @torch.no_grad()
    def item_vectors(self, item_rows: np.ndarray) -> np.ndarray:
        """Item serving vectors ``concat(q_i, b_i)``.

        Parameters
        ----------
        item_rows : array of int, shape (n,)

        Returns
        -------
        np.ndarray, float32 (n, embedding_dim + 1)
        """
        rows = _as_index(item_rows)
        q = self.item_embedding[rows]
        b = self.item_bias[rows].unsqueeze(1)
        return torch.cat([q, b], dim=1).numpy().astype(np.float32, copy=False)

    # ------------------------------------------------------------------ growth
    def ensure_user_capacity(self, n_rows: int) -> bool:
        """Grow the user table until it holds ``n_rows`` rows; True if it grew.

        Old rows are kept bit for bit, new rows are drawn from N(0, init_std²). Call this with
        ``max_row + 1`` before indexing a new row.
        """
        return self._grow(n_rows, (self.user_embedding,), ())

    def ensure_item_capacity(self, n_rows: int) -> bool:
        """Grow the item table and item biases to hold ``n_rows`` rows; True if it grew.

        New embedding rows are drawn from N(0, init_std²), new biases are 0.
        """
        return self._grow(n_rows, (self.item_embedding,), (self.item_bias,))

    @torch.no_grad()
    def _grow(
        self, n_rows: int, tables: tuple[nn.Parameter, ...], biases: tuple[nn.Parameter, ...]
    ) -> bool:
        capacity = int(tables[0].shape[0])
        target = grown_capacity(capacity, int(n_rows), self.growth_factor)
        if target == capacity:
            return False
        extra = target - capacity
        for table in tables:
            _swap(table, torch.cat([table.data, self._new_rows(extra, table.shape[1])], dim=0))
        for bias in biases:
            _swap(bias, torch.cat([bias.data, torch.zeros(extra, dtype=bias.dtype)], dim=0))
        return True

    @torch.no_grad()
    def reset_user_rows(self, user_rows: np.ndarray) -> None:
        """Give ``user_rows`` fresh initial values, drawn as a new user's row is (a forgotten
        user starts again). In place: numpy views of the table stay valid."""
        rows = _as_index(user_rows)
        self.user_embedding.data[rows] = self._new_rows(int(rows.shape[0]),
                                                         int(self.user_embedding.shape[1]))

    def _new_rows(self, n: int, d: int) -> torch.Tensor:
        return torch.randn((n, d), generator=self._generator) * self.init_std

    # ------------------------------------------------------------------ arrays
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Weights as float32 numpy arrays with the names of ``weights.npz`` (a copy)."""
        return {
            "user_embedding": self.user_embedding.detach().numpy().astype(np.float32, copy=True),
            "item_embedding": self.item_embedding.detach().numpy().astype(np.float32, copy=True),
            "item_bias": self.item_bias.detach().numpy().astype(np.float32, copy=True),
            "h": self.h.detach().numpy().astype(np.float32, copy=True),
            "global_bias": np.asarray(self.global_bias.item(), dtype=np.float32),
        }

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, np.ndarray],
        growth_factor: float = 0.10,
        init_std: float = DEFAULT_INIT_STD,
        seed: int | None = None,
    ) -> GMF:
        """Rebuild a model from :meth:`to_arrays` output; raises ValueError on bad shapes."""
        users = np.asarray(arrays["user_embedding"], dtype=np.float32)
        items = np.asarray(arrays["item_embedding"], dtype=np.float32)
        bias = np.asarray(arrays["item_bias"], dtype=np.float32)
        h = np.asarray(arrays["h"], dtype=np.float32)
        if users.ndim != 2 or items.ndim != 2 or h.ndim != 1:
            raise ValueError("embeddings must be 2-D and h 1-D")
        if users.shape[1] != h.shape[0] or items.shape[1] != h.shape[0]:
            raise ValueError("embedding widths do not match h")
        if bias.shape != (items.shape[0],):
            raise ValueError("item_bias must have one value per item row")
        model = cls(users.shape[0], items.shape[0], h.shape[0], growth_factor, init_std, seed)
        with torch.no_grad():
            model.user_embedding.data = torch.from_numpy(users.copy())
            model.item_embedding.data = torch.from_numpy(items.copy())
            model.item_bias.data = torch.from_numpy(bias.copy())
            model.h.data = torch.from_numpy(h.copy())
            model.global_bias.data = torch.tensor(float(arrays["global_bias"]), dtype=torch.float32)
        return model


def _swap(param: nn.Parameter, data: torch.Tensor) -> None:
    """Give ``param`` new (larger) data in place, keeping the Python object.

    ``torch.utils.swap_tensors`` swaps the whole tensor, autograd metadata included: a plain
    ``param.data = ...`` would keep autograd's cached shape and break the next backward.
    """
    torch.utils.swap_tensors(param, nn.Parameter(data, requires_grad=param.requires_grad))
    param.grad = None


def _as_index(rows: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(rows, torch.Tensor):
        return rows.long()
    return torch.from_numpy(np.asarray(rows, dtype=np.int64).reshape(-1))
