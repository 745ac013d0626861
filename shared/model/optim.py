"""Optimizers over a growable GMF.

Growth (:meth:`GMF.ensure_user_capacity` and friends) keeps the same ``nn.Parameter`` objects,
so an optimizer keeps working; only per-parameter state shaped like the old table is stale.
:func:`extend_optimizer_state` pads it with zeros for the new rows: the new rows start fresh
(as if never updated) and old rows keep their moments bit for bit.
"""

from __future__ import annotations

import torch


def extend_optimizer_state(optimizer: torch.optim.Optimizer) -> int:
    """Pad state tensors (Adam moments, momentum buffers) to the current parameter shapes.

    Returns the number of state tensors that were extended. Scalars such as Adam's ``step``
    are left alone. Safe to call after every growth check, grown or not.
    """
    extended = 0
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param)
            if not state:
                continue
            for key, value in list(state.items()):
                if not isinstance(value, torch.Tensor) or value.dim() == 0:
                    continue
                if value.shape == param.shape:
                    continue
                if value.shape[1:] != param.shape[1:] or value.shape[0] > param.shape[0]:
                    raise ValueError(f"state {key!r} of shape {tuple(value.shape)} cannot "
                                     f"be extended to {tuple(param.shape)}")
                pad = torch.zeros(
                    (param.shape[0] - value.shape[0], *value.shape[1:]),
                    dtype=value.dtype,
                    device=value.device,
                )
                state[key] = torch.cat([value, pad], dim=0)
                extended += 1
    return extended
