"""Prequential quality: the incremental trainer against a streaming-popularity baseline.

Known-answer setting: a small synthetic stream (taste clusters, Zipf appeal, drift, new users
and items arriving), a GMF batch-trained on its first 60%, then test-then-train over the rest.
Offline (no broker): the Learner is the same object the service drives from Kafka.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from services.incremental_trainer.learner import Learner, ModelState
from services.incremental_trainer.offline import replay, summary, warm_start
from services.incremental_trainer.sequential import SequentialLearner
from shared.config import ModelSettings, TrainerSettings
from shared.data.split import chronological_split
from shared.data.synthetic import SyntheticConfig, generate
from shared.model.isgd import ISGDParams, Tables, update_event
from shared.model.offline import Trained, train, unique_pairs
from shared.model.training import TrainConfig


@pytest.fixture(scope="module")
def stream_and_model() -> tuple[pd.DataFrame, pd.DataFrame, Trained]:
    frame, _ = generate(SyntheticConfig(n_users=400, n_items=250, n_events=12_000, seed=11))
    prefix, stream = chronological_split(frame, 0.6)
    pairs = unique_pairs(prefix)
    settings = ModelSettings(embedding_dim=32, initial_capacity=64, seed=3)
    trained = train(pairs, np.arange(len(pairs)), settings, TrainConfig(epochs=15, seed=3))
    return prefix, stream, trained


def _replayed(
    stream_and_model: tuple[pd.DataFrame, pd.DataFrame, Trained],
    kind: type[Learner],
    batch_size: int,
) -> tuple[list[dict], Learner]:
    prefix, stream, trained = stream_and_model
    trained = copy.deepcopy(trained)  # each learner moves its own copy of the rows
    state = ModelState(trained.model, trained.user_map, trained.item_map, "test", {}, True)
    learner = kind(state, TrainerSettings(eval_sample_rate=1.0, eval_window=10_000), 6 * 3600.0)
    warm_start(learner, prefix)
    return replay(learner, stream, batch_size=batch_size), learner


@pytest.fixture(scope="module")
def curve_and_learner(stream_and_model) -> tuple[list[dict], Learner]:
    return _replayed(stream_and_model, Learner, 512)


def test_micro_batches_keep_the_sequential_learners_recall(
    stream_and_model, curve_and_learner
) -> None:
    """The vectorized learner (trainer's default batch of 512) against event-by-event ISGD."""
    sequential = summary(_replayed(stream_and_model, SequentialLearner, 512)[0])
    vectorized = summary(curve_and_learner[0])
    assert sequential["tested"] > 1000 and vectorized["tested"] > 1000
    assert vectorized["recall"] >= 0.97 * sequential["recall"], (vectorized, sequential)


def test_beats_streaming_popularity_on_prequential_recall(curve_and_learner) -> None:
    curve, learner = curve_and_learner
    figures = summary(curve)
    assert figures["tested"] > 1000
    # A clear margin, not a tie: at least 1.3x the baseline and 3 points above it.
    assert figures["recall"] >= 1.3 * figures["popularity_recall"], figures
    assert figures["recall"] - figures["popularity_recall"] >= 0.03, figures
    assert abs(curve[-1]["precision_at_k"] - curve[-1]["recall_at_k"] / 10) < 1e-4


def test_new_users_and_items_grew_the_tables(curve_and_learner) -> None:
    _, learner = curve_and_learner
    model, users, items = learner.state.model, learner.state.user_map, learner.state.item_map
    assert model.user_capacity >= len(users) and model.item_capacity >= len(items)


def test_isgd_moves_only_the_event_rows_and_raises_the_pair_score() -> None:
    rng = np.random.default_rng(0)
    tables = Tables(
        user_embedding=rng.normal(0, 0.1, (5, 4)).astype(np.float32),
        item_embedding=rng.normal(0, 0.1, (6, 4)).astype(np.float32),
        item_bias=np.zeros(6, dtype=np.float32),
        h=np.full(4, 2.0, dtype=np.float32),
        global_bias=0.0,
    )
    before = {k: v.copy() for k, v in vars(tables).items() if isinstance(v, np.ndarray)}
    score = tables.scores(1, 6)[2]
    params = ISGDParams(learning_rate=0.5, l2=0.01)
    for _ in range(5):
        update_event(tables, 1, 2, 1.0, params, negatives=[4])
    assert tables.scores(1, 6)[2] > score
    assert tables.scores(1, 6)[2] > tables.scores(1, 6)[4]
    untouched_users = [0, 2, 3, 4]
    untouched_items = [0, 1, 3, 5]
    assert np.array_equal(
        tables.user_embedding[untouched_users], before["user_embedding"][untouched_users]
    )
    assert np.array_equal(
        tables.item_embedding[untouched_items], before["item_embedding"][untouched_items]
    )
    assert np.array_equal(tables.h, before["h"])  # the output layer is frozen
