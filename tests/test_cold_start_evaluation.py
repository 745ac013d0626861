"""Cold-start slices, the served blend rule, and the replay that compares the rankers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from services.incremental_trainer.cold_start_replay import RANKERS, replay
from services.incremental_trainer.learner import Learner, ModelState
from services.incremental_trainer.stream_slices import SliceScores, TwoTowerRanker
from shared.cold_start_blend import BlendRule, blend
from shared.config import ModelSettings, TrainerSettings
from shared.data import SyntheticConfig, generate
from shared.data.split import chronological_split
from shared.evaluation import cold_start
from shared.events import Interaction
from shared.model.offline import run_experiment, split_for_evaluation, train, unique_pairs
from shared.model.training import TrainConfig
from shared.model.two_tower import TwoTowerConfig
from shared.model.two_tower_cli import train_two_tower
from shared.model.two_tower_features import FeatureSpace
from shared.model.two_tower_offline import add_two_tower
from shared.model.two_tower_snapshot import TwoTowerEncoder
from shared.ranking.candidates import UserContext


def test_earlier_counts_and_slices() -> None:
    items = ["a", "b", "a", "a", "c", "a", "a", "a"]
    counts = cold_start.earlier_counts(items)
    assert counts.tolist() == [0, 0, 1, 2, 0, 3, 4, 5]
    masks = cold_start.slice_masks(counts, np.zeros(8, dtype=np.int64))
    assert masks["cold_items"].tolist() == [True] * 7 + [False]
    assert masks["cold_users"].all()


def test_metrics_from_ranks_known_answer() -> None:
    ranks = cold_start.rank_in(np.array([[5, 6, 7], [1, 2, 3], [9, 8, 7]]), np.array([6, 4, 9]))
    assert ranks.tolist() == [1, cold_start.MISS, 0]
    m = cold_start.metrics(ranks, ks=(3,))
    assert m["n"] == 3 and m["recall@3"] == pytest.approx(2 / 3)
    assert m["ndcg@3"] == pytest.approx((1 / np.log2(3) + 1.0) / 3)
    report = cold_start.report({"x": ranks}, {"cold_items": np.array([True, True, False])}, (3,))
    assert report["cold_items"]["x"]["recall@3"] == pytest.approx(0.5)


def test_blend_moves_from_two_tower_to_gmf_as_history_grows() -> None:
    rule = BlendRule(switch_events=10, start_share=1.0, min_share=0.2)
    assert rule.share(0) == 1.0 and rule.share(5) == pytest.approx(0.6)
    assert rule.share(50) == pytest.approx(0.2)
    assert BlendRule().share(0) == 0.5 and BlendRule().share(10) == pytest.approx(0.2)
    tt = ["t1", "t2", "t3", "t4", "t5"]
    gmf = ["g1", "t1", "g2", "g3", "g4", "g5"]
    assert blend(tt, gmf, 1.0, 4) == ["t1", "t2", "t3", "t4"]
    assert blend(tt, gmf, 0.0, 4) == ["g1", "t1", "g2", "g3"]
    half = blend(tt, gmf, 0.5, 4)
    assert half == ["t1", "g1", "t2", "g2"]  # interleaved, the shared t1 taken once
    assert blend(["t1"], gmf, 0.5, 4) == ["t1", "g1", "g2", "g3"]  # one dry: the other fills
    with pytest.raises(ValueError):
        BlendRule(switch_events=0)
    with pytest.raises(ValueError):
        BlendRule(start_share=0.1, min_share=0.2)


def test_replay_reports_every_ranker_overall_and_on_both_slices() -> None:
    frame, items = generate(SyntheticConfig(n_users=250, n_items=150, n_events=6000,
                                            n_clusters=5, initial_item_fraction=0.5, seed=9))
    prefix, stream = chronological_split(frame, 0.7)
    metadata = {str(r["item_id"]): r for r in items.to_dict("records")}
    pairs = unique_pairs(prefix)
    _, fit_index, val_index = split_for_evaluation(pairs)
    settings = ModelSettings(embedding_dim=8, initial_capacity=64, seed=1)
    trained = train(pairs, fit_index, settings, TrainConfig(epochs=3), validation=val_index)
    space = FeatureSpace(id_buckets=2048, user_buckets=2048, category_buckets=64,
                         token_buckets=1024, history=8)
    encoder, _, _ = train_two_tower(prefix, metadata, TwoTowerConfig(dim=8, hidden=16, epochs=2),
                                    space)
    state = ModelState(trained.model, trained.user_map, trained.item_map, "v", {}, True)
    learner = Learner(state, dataclasses.replace(TrainerSettings(), eval_sample_rate=0.0),
                      3600.0, seed=1)
    result = replay(learner, encoder, prefix, stream, metadata, batch_size=200)
    report = result.report()
    tested = len(result.ranks["gmf"])
    # repeats of a (user, item) pair are not tested: at most every stream event
    assert 0 < tested <= len(stream)
    assert set(report["rankers"]) == set(RANKERS)
    assert set(report["slices"]) == {"cold_items", "cold_users"}
    for part in report["slices"].values():
        assert set(part) == set(RANKERS)
    n_cold = report["slices"]["cold_items"]["two_tower"]["n"]
    assert 0 < n_cold < tested
    # an item first seen in the stream has no GMF row: GMF cannot retrieve it before
    # learning it, while the two-tower space can
    first = cold_start.earlier_counts(frame["item_id"].astype(str))[len(prefix):]
    assert (first == 0).any()
    assert learner.events_learned == len(stream)


def test_offline_evaluator_adds_two_tower_and_cold_slices() -> None:
    frame, items = generate(SyntheticConfig(n_users=200, n_items=120, n_events=4000,
                                            n_clusters=4, seed=4))
    metadata = {str(r["item_id"]): r for r in items.to_dict("records")}
    pairs = unique_pairs(frame)
    trained, report = run_experiment(pairs, ModelSettings(embedding_dim=8, initial_capacity=64),
                                     TrainConfig(epochs=2))
    add_two_tower(report, trained, pairs, metadata, TwoTowerConfig(dim=8, hidden=16, epochs=2))
    assert set(report["two_tower"]) == {"full", "sampled"}
    assert report["two_tower"]["full"]["n"] == report["gmf"]["full"]["n"]
    for part in report["slices"].values():
        assert set(part) == {"gmf", "popularity", "two_tower"}
    n_users = report["slices"]["cold_users"]["gmf"]["n"]
    assert 0 < n_users <= report["gmf"]["full"]["n"]
    assert report["training"]["two_tower"]["parameters"] > 0


def test_stream_slice_scores_count_hits_only_in_the_slices_an_event_falls_in() -> None:
    scores = SliceScores(threshold=2)
    first = Interaction("u1", "a", "view", 1)
    scores.record("gmf", ["b", "a"], first)  # a and u1 both new: both slices, rank 1
    for _ in range(2):
        scores.observe(Interaction("u1", "a", "view", 2))
    scores.record("gmf", ["a"], Interaction("u2", "a", "view", 3))  # a warm now, u2 cold
    report = scores.report()
    assert report["cold_items"]["gmf"] == {"recall_at_10": 1.0,
                                           "ndcg_at_10": pytest.approx(1 / np.log2(3), abs=1e-5),
                                           "tested": 1}
    assert report["cold_users"]["gmf"]["tested"] == 2
    assert report["cold_users"]["gmf"]["recall_at_10"] == 1.0


def test_two_tower_ranker_embeds_new_items_and_leaves_seen_ones_out() -> None:
    frame, items = generate(SyntheticConfig(n_users=100, n_items=60, n_events=1500, seed=3))
    metadata = {str(r["item_id"]): r for r in items.to_dict("records")}
    space = FeatureSpace(id_buckets=1024, user_buckets=1024, category_buckets=64,
                         token_buckets=512, history=8)
    encoder, _, _ = train_two_tower(frame, metadata, TwoTowerConfig(dim=8, hidden=16, epochs=1),
                                    space)
    ranker = TwoTowerRanker(encoder, metadata, ["i000001", "i000002"], [0, 0])
    ranker.add(["i000003", "i000001"])
    ranked = ranker.rank("u000001", ["i000001"], {"i000001"}, 1_704_067_200_000, k=5)
    assert sorted(ranked) == ["i000002", "i000003"]


def test_two_tower_ranker_retrains_on_the_log_and_re_embeds_items_at_their_age() -> None:
    frame, items = generate(SyntheticConfig(n_users=100, n_items=60, n_events=1500, seed=3))
    metadata = {str(r["item_id"]): r for r in items.to_dict("records")}
    space = FeatureSpace(id_buckets=1024, user_buckets=1024, category_buckets=64,
                         token_buckets=512, history=8)
    config = TwoTowerConfig(dim=8, hidden=16, epochs=1)
    encoder, _, _ = train_two_tower(frame, metadata, config, space)
    day = 86_400_000
    start = 1_704_067_200_000
    prefix = [Interaction("u000001", "i000001", "view", start)]
    logs: list[int] = []

    def retrain(log: list[Interaction]) -> TwoTowerEncoder:
        logs.append(len(log))
        return encoder  # same weights: only the ages move the vectors

    ranker = TwoTowerRanker(encoder, metadata, ["i000001"], [start], retrain, 2 * day, prefix)
    ranker.add(["i000002"], start + day)  # first seen a day later: embedded at age 0
    query = encoder.query_vectors(["u000002"], [[]], [start + day])[0]
    source = ranker.source(lambda: start + day)
    before = dict(source.fetch(UserContext("u000002", (), frozenset()), 2))
    ranker.learn([Interaction("u000002", "i000002", "view", start + day)])
    assert ranker.retrained == 0  # less than two days since the last training
    ranker.learn([Interaction("u000003", "i000002", "view", start + 40 * day)])
    assert ranker.retrained == 1 and logs == [3]  # the prefix and both streamed events
    after = dict(source.fetch(UserContext("u000002", (), frozenset()), 2))
    table = encoder.item_table(["i000001", "i000002"], metadata)
    aged = encoder.candidate_vectors(table, np.array([40 * day, 39 * day]))
    expected = dict(zip(["i000001", "i000002"], (aged @ query).tolist(), strict=True))
    assert after == pytest.approx(expected)
    assert after != pytest.approx(before)  # 39 days older than when first embedded
