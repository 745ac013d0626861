"""GMF: growth keeps old rows, serving vectors rank exactly like the score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.model.gmf import GMF, grown_capacity
from shared.model.optim import extend_optimizer_state


def _model(users: int = 20, items: int = 30, d: int = 8, std: float = 0.5) -> GMF:
    model = GMF(users, items, d, growth_factor=0.10, init_std=std, seed=1)
    with torch.no_grad():
        model.item_bias.normal_(0, 0.3, generator=torch.Generator().manual_seed(2))
        model.h.normal_(1, 0.5, generator=torch.Generator().manual_seed(3))
        model.global_bias.fill_(-0.2)
    return model


def test_grown_capacity_is_ten_percent_and_at_least_one_row() -> None:
    assert grown_capacity(100, 101, 0.10) == 110
    assert grown_capacity(100, 100, 0.10) == 100
    assert grown_capacity(5, 6, 0.10) == 6  # 10% of 5 rounds down to 0: one row
    assert grown_capacity(100, 111, 0.10) == 121  # repeated until it fits
    assert grown_capacity(1, 1_000, 0.10) >= 1_000


def test_growth_keeps_old_rows_bit_for_bit_and_old_scores() -> None:
    model = _model(users=20, items=30)
    users, items = np.arange(20).repeat(30), np.tile(np.arange(30), 20)
    before_scores = model.score(users, items)
    before_user = model.user_embedding.detach().clone()
    before_item = model.item_embedding.detach().clone()
    before_bias = model.item_bias.detach().clone()
    params_before = [id(p) for p in model.parameters()]

    assert model.ensure_user_capacity(21) is True
    assert model.ensure_item_capacity(31) is True
    assert model.user_capacity == 22 and model.item_capacity == 33
    assert model.ensure_user_capacity(22) is False

    assert torch.equal(model.user_embedding[:20], before_user)
    assert torch.equal(model.item_embedding[:30], before_item)
    assert torch.equal(model.item_bias[:30], before_bias)
    np.testing.assert_array_equal(model.score(users, items), before_scores)
    assert torch.all(model.item_bias[30:] == 0)
    assert model.user_embedding[20:].abs().max() < 5 * model.init_std
    assert [id(p) for p in model.parameters()] == params_before  # optimizers stay valid


def test_query_item_inner_product_ranks_like_the_score() -> None:
    model = _model(users=10, items=200)
    items = np.arange(200)
    queries = model.query_vectors(np.arange(10))
    vectors = model.item_vectors(items)
    assert queries.dtype == np.float32 and queries.shape == (10, 9)
    assert vectors.dtype == np.float32 and vectors.shape == (200, 9)
    np.testing.assert_array_equal(queries[:, -1], 1.0)
    for u in range(10):
        with torch.no_grad():
            logits = model(torch.full((200,), u), torch.from_numpy(items)).numpy()
        inner = vectors @ queries[u]
        np.testing.assert_allclose(inner + float(model.global_bias.detach()), logits, atol=1e-5)
        np.testing.assert_array_equal(np.argsort(-inner, kind="stable"),
                                      np.argsort(-logits, kind="stable"))


def test_adam_state_is_extended_after_growth() -> None:
    # Regression: growing by assigning ``param.data`` kept autograd's cached shape, and the
    # next backward failed with "IndexBackward0 returned an invalid gradient".
    model = _model(users=5, items=5, d=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss = model(torch.tensor([0, 4]), torch.tensor([1, 4])).sum()
    loss.backward()
    optimizer.step()
    old_avg = optimizer.state[model.user_embedding]["exp_avg"].clone()
    model.ensure_user_capacity(9)
    model.ensure_item_capacity(6)
    assert extend_optimizer_state(optimizer) == 6  # two moments of three grown tensors
    state = optimizer.state[model.user_embedding]
    assert state["exp_avg"].shape == model.user_embedding.shape
    assert torch.equal(state["exp_avg"][:5], old_avg)
    assert torch.all(state["exp_avg"][5:] == 0)
    model(torch.tensor([8]), torch.tensor([5])).sum().backward()
    optimizer.step()  # no shape error


def test_from_arrays_round_trip_and_bad_shapes() -> None:
    model = _model()
    again = GMF.from_arrays(model.to_arrays())
    users, items = np.arange(20), np.arange(20)
    np.testing.assert_array_equal(again.score(users, items), model.score(users, items))
    arrays = model.to_arrays()
    arrays["item_bias"] = arrays["item_bias"][:-1]
    with pytest.raises(ValueError):
        GMF.from_arrays(arrays)
