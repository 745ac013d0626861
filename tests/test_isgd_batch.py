"""The vectorized ISGD update and the batched prequential ranking against their per-event forms."""

from __future__ import annotations

import numpy as np

from services.incremental_trainer.popularity import top_k
from shared.model.isgd import ISGDParams, Tables, update_event
from shared.model.isgd_batch import model_scores, rank_hits, update_batch

PARAMS = ISGDParams(learning_rate=0.3, l2=0.01)


def _tables(seed: int = 0, users: int = 6, items: int = 9, d: int = 4) -> Tables:
    rng = np.random.default_rng(seed)
    return Tables(
        user_embedding=rng.normal(0, 0.3, (users, d)).astype(np.float32),
        item_embedding=rng.normal(0, 0.3, (items, d)).astype(np.float32),
        item_bias=rng.normal(0, 0.1, items).astype(np.float32),
        h=rng.normal(1.0, 0.5, d).astype(np.float32),
        global_bias=0.1,
    )


def _copy(tables: Tables) -> Tables:
    return Tables(
        tables.user_embedding.copy(),
        tables.item_embedding.copy(),
        tables.item_bias.copy(),
        tables.h.copy(),
        tables.global_bias,
    )


def test_disjoint_events_update_exactly_like_the_sequential_rule() -> None:
    batch, reference = _tables(), _tables()
    users, items = np.array([0, 1, 2]), np.array([0, 1, 2])
    negatives = np.array([[3, 3], [4, 1], [5, 6]])  # a repeat and the positive itself: ignored
    scales = np.array([1.0, 2.0, 3.0])
    probs = update_batch(batch, users, items, scales, PARAMS, negatives)
    expected = [
        update_event(reference, 0, 0, 1.0, PARAMS, [3]),
        update_event(reference, 1, 1, 2.0, PARAMS, [4]),
        update_event(reference, 2, 2, 3.0, PARAMS, [5, 6]),
    ]
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    np.testing.assert_allclose(batch.user_embedding, reference.user_embedding, atol=1e-6)
    np.testing.assert_allclose(batch.item_embedding, reference.item_embedding, atol=1e-6)
    np.testing.assert_allclose(batch.item_bias, reference.item_bias, atol=1e-6)


def test_a_row_repeated_in_a_batch_receives_the_sum_of_its_steps() -> None:
    start = _tables(1)
    batch = _copy(start)
    users, items = np.array([2, 2, 4]), np.array([5, 5, 5])
    update_batch(batch, users, items, np.ones(3), PARAMS, np.array([[1], [1], [7]]))
    # Each event's step taken alone from the batch-start rows, then summed per row.
    steps = []
    for e in range(3):
        alone = _copy(start)
        update_event(alone, int(users[e]), int(items[e]), 1.0, PARAMS, [[1], [1], [7]][e])
        steps.append(
            (
                alone.user_embedding - start.user_embedding,
                alone.item_embedding - start.item_embedding,
            )
        )
    np.testing.assert_allclose(
        batch.user_embedding, start.user_embedding + sum(s[0] for s in steps), atol=1e-6
    )
    np.testing.assert_allclose(
        batch.item_embedding, start.item_embedding + sum(s[1] for s in steps), atol=1e-6
    )
    untouched = [0, 1, 3, 5]
    np.testing.assert_array_equal(batch.user_embedding[untouched], start.user_embedding[untouched])
    np.testing.assert_array_equal(batch.h, start.h)  # the output layer is frozen


def test_rank_hits_agrees_with_top_k_with_exclusions() -> None:
    rng = np.random.default_rng(3)
    scores = rng.normal(0, 1, (40, 30)).astype(np.float32)
    targets = rng.integers(0, 30, 40)
    exclude = [
        [int(r) for r in rng.choice(30, rng.integers(0, 8), replace=False) if r != targets[t]]
        for t in range(40)
    ]
    hits = rank_hits(scores, targets, 5, exclude)
    expected = [targets[t] in top_k(scores[t], 5, exclude[t]) for t in range(40)]
    assert hits.tolist() == expected
    assert 0 < hits.sum() < 40  # the case is not degenerate
    shared_row = rank_hits(scores[0], targets, 5, exclude)
    assert shared_row.tolist() == [targets[t] in top_k(scores[0], 5, exclude[t]) for t in range(40)]


def test_model_scores_are_the_per_user_serving_scores() -> None:
    tables = _tables(2)
    np.testing.assert_allclose(
        model_scores(tables, np.array([3, 0]), 7),
        np.stack([tables.scores(3, 7), tables.scores(0, 7)]),
        rtol=1e-6,
    )


def test_rank_hits_puts_the_lower_row_first_among_equal_scores() -> None:
    scores = np.array([1.0, 2.0, 2.0, 2.0, 0.0])
    assert rank_hits(scores, np.array([1, 3, 3]), 2, [[], [], [2]]).tolist() == [True, False, True]


def _top_rows(scores: np.ndarray, k: int, exclude: list[int]) -> list[int]:
    """The k best rows, higher score first and the lower row first among equal scores."""
    order = np.lexsort((np.arange(scores.shape[0]), -scores)).tolist()
    return [r for r in order if r not in set(exclude)][:k]


def test_rank_hits_on_a_shared_row_with_many_ties_agrees_with_a_full_sort() -> None:
    rng = np.random.default_rng(5)
    for n, zeros in ((2000, 0.7), (2000, 0.0), (300, 0.99)):
        scores = np.round(rng.random(n) * 20)  # few distinct values: many ties
        scores[rng.random(n) < zeros] = 0.0  # rows never engaged, as in popularity
        targets = np.concatenate([np.argsort(-scores, kind="stable")[:30], rng.integers(0, n, 30)])
        exclude = [
            [int(r) for r in rng.choice(n, rng.integers(0, 12), replace=False) if r != t]
            for t in targets
        ]
        hits = rank_hits(scores, targets, 10, exclude)
        expected = [t in _top_rows(scores, 10, e) for t, e in zip(targets, exclude, strict=True)]
        assert hits.tolist() == expected
        assert 0 < hits.sum() < len(targets)
