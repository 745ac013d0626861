"""Batch training and offline evaluation: GMF learns structure popularity cannot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.config import ModelSettings
from shared.data import SyntheticConfig, generate
from shared.model.errors import ModelFitError
from shared.model.evaluation import (
    PopularityScorer,
    full_ranks,
    leave_last_out,
    ranking_metrics,
    sampled_ranks,
)
from shared.model.gmf import GMF
from shared.model.offline import run_experiment, unique_pairs
from shared.model.training import TrainConfig, fit


def test_gmf_beats_popularity_on_synthetic_data() -> None:
    frame, _ = generate(SyntheticConfig(n_users=400, n_items=300, n_events=15_000,
                                        n_clusters=10, seed=3))
    settings = ModelSettings(embedding_dim=16, initial_capacity=64, seed=3)
    config = TrainConfig(epochs=20, batch_size=512, learning_rate=0.02, patience=4, seed=3)
    trained, report = run_experiment(unique_pairs(frame), settings, config)
    gmf, pop = report["gmf"], report["popularity"]
    assert gmf["full"]["hr@10"] >= pop["full"]["hr@10"] + 0.05
    assert gmf["full"]["hr@10"] >= 1.3 * pop["full"]["hr@10"]
    assert gmf["sampled"]["hr@10"] >= pop["sampled"]["hr@10"] + 0.05
    assert gmf["full"]["ndcg@10"] > pop["full"]["ndcg@10"]
    assert report["data"]["n_test"] > 300
    assert trained.fit.best_epoch >= 1


def test_nan_loss_raises_model_fit_error() -> None:
    model = GMF(4, 4, 2, seed=0)
    with torch.no_grad():
        model.h.fill_(float("nan"))
    with pytest.raises(ModelFitError):
        fit(model, np.array([0, 1, 2]), np.array([1, 2, 3]), TrainConfig(epochs=1))


def test_leave_last_out_holds_the_latest_per_user() -> None:
    users = np.array([0, 0, 1, 0, 2, 1])
    ts = np.array([1, 5, 2, 3, 4, 9])
    split = leave_last_out(users, ts)
    assert split.test.tolist() == [1, 5]  # user 0 at ts 5, user 1 at ts 9; user 2 has one
    assert split.train.tolist() == [0, 2, 3, 4]


def test_known_answer_ranks_and_metrics() -> None:
    counts = np.array([10.0, 8.0, 6.0, 4.0, 2.0])
    scorer = PopularityScorer(counts)
    # user 0 trained on item 0, so item 1 is now first; user 1's item 4 is fourth of four
    ranks = full_ranks(scorer, np.array([0, 1]), np.array([0, 0]), np.array([0, 1]),
                       np.array([1, 4]), n_items=5)
    assert ranks.tolist() == [0, 3]
    m = ranking_metrics(ranks, ks=(1, 10))
    assert m["hr@1"] == 0.5 and m["hr@10"] == 1.0 and m["precision@1"] == 0.5
    assert m["ndcg@10"] == pytest.approx((1.0 + 1.0 / np.log2(5)) / 2)
    sampled = sampled_ranks(scorer, np.array([0, 0]), np.array([0, 4]), np.array([0]),
                            np.array([4]), n_items=5, n_negatives=3)
    assert sampled.tolist() == [3]  # negatives drawn from 1, 2, 3: all more popular
