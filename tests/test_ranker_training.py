"""What bounds the trainer's ranker training: the time budget, the batched co-engagement read
and the batched GMF scores give the same candidates as one-by-one reads, for a fraction of
the cost; with no budget the ranker never trains."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from services.incremental_trainer.learner import Learner
from services.incremental_trainer.ranker_training import (
    LearnerSearch,
    PrefetchedNeighbours,
    RankerBudget,
    sample_where,
)
from services.incremental_trainer.ranking_signals import TrainerRankingStage
from shared.config import Settings
from shared.model.two_tower import TwoTowerConfig
from shared.model.two_tower_cli import catalogue_vectors, train_two_tower
from shared.model.two_tower_features import FeatureSpace
from shared.model.two_tower_snapshot import save_two_tower
from shared.ranking.candidates import UserContext
from shared.ranking.ranker import PRIOR_WEIGHTS
from shared.ranking.signals import RecentItems, signal_batch
from shared.ranking.stores import GlobalLists, MemoryRankingStore, store_limits
from shared.snapshots import write_space_snapshot
from shared.storage import redis_store
from tests.conftest import replace
from tests.test_ranking_redis import stream


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_budget_refills_at_its_share_of_the_wall_clock_and_adapts_to_the_cost() -> None:
    clock = Clock()
    budget = RankerBudget(0.05, clock)  # 50 ms per second, starts full
    assert budget.affordable(16) == 16  # 50 ms at the initial 1 ms guess
    budget.spend(0.040, 4)  # 10 ms per event measured: the guess moves towards it
    assert budget.cost_s > 0.001
    left = budget.affordable(16)
    assert 1 <= left < 16
    budget.spend(0.200, 2)  # overspent: nothing until the bucket refills
    assert budget.affordable(16) == 0
    clock.now += 60.0  # a long idle stretch refills it to its capacity only
    assert budget.affordable(16) >= 1
    assert budget.seconds == 0.05
    assert RankerBudget(0.0, clock).affordable(16) == 0  # share 0: never


def test_sample_where_is_uniform_among_the_accepted_and_asks_only_what_it_needs() -> None:
    rng = np.random.default_rng(3)
    asked: list[int] = []

    def even(index: int) -> bool:
        asked.append(index)
        return index % 2 == 0

    picked = sample_where(100, 10, even, rng)
    assert len(set(picked)) == 10 and picked == sorted(picked)
    assert all(i % 2 == 0 for i in picked)
    assert len(asked) < 100  # stopped once it had ten
    assert sample_where(6, 10, even, rng) == [0, 2, 4]  # fewer accepted than wanted
    assert sample_where(6, 0, even, rng) == []
    counts = np.zeros(100)
    for _ in range(2000):
        counts[sample_where(100, 10, lambda i: i % 2 == 0, rng)] += 1
    assert counts[50:].sum() / counts.sum() > 0.45  # not the head of the batch only
    assert counts[1::2].sum() == 0


class CountingStore:
    """A ranking store counting its neighbour reads (the Redis round trips)."""

    def __init__(self, inner: MemoryRankingStore) -> None:
        self.inner = inner
        self.reads = 0

    def neighbours(self, item_ids: Sequence[str], n: int) -> list[list[tuple[str, float]]]:
        self.reads += 1
        return self.inner.neighbours(item_ids, n)

    def lists(self) -> GlobalLists:
        return self.inner.lists()


def test_prefetched_neighbours_answer_like_the_store_in_one_read(settings: Settings) -> None:
    memory = MemoryRankingStore(store_limits(settings.ranking, 3600.0))
    memory.apply(signal_batch(stream(steps=6), RecentItems(), lambda _item: True))
    counting = CountingStore(memory)
    prefetched = PrefetchedNeighbours(counting)
    prefetched.prefetch(["i0", "i1", "i2", "i0"], 20)
    assert counting.reads == 1
    for anchors, n in ((["i0"], 20), (["i2", "i1"], 5), (["i1"], 1)):
        assert prefetched.neighbours(anchors, n) == memory.neighbours(anchors, n)
    assert counting.reads == 1  # all answered from the one read
    assert prefetched.neighbours(["i9"], 5) == memory.neighbours(["i9"], 5)  # not prefetched
    assert prefetched.neighbours(["i0"], 40) == memory.neighbours(["i0"], 40)  # longer list
    assert counting.reads == 3
    prefetched.clear()
    prefetched.neighbours(["i0"], 5)
    assert counting.reads == 4


def test_prepared_gmf_scores_give_the_same_candidates_as_one_by_one(settings: Settings) -> None:
    learner = Learner.from_settings(settings.model, settings.trainer, settings.redis)
    learner.learn(stream(steps=6))
    users = [UserContext.of(f"u{n}", ()) for n in range(6)] + [UserContext.of("nobody", ())]
    one_by_one = LearnerSearch(learner)
    expected = [one_by_one(user, 8) for user in users]
    prepared = LearnerSearch(learner)
    prepared.prepare([u.user_id or "" for u in users])
    assert [prepared(user, 8) for user in users] == expected
    assert expected[0] and expected[-1] == []
    seen = {i for i, _ in learner.item_ids_of_rows(sorted(learner.seen[0]))}
    assert not seen & {i for i, _ in expected[0]}  # the user's seen items are left out


def test_without_budget_the_ranker_never_trains_and_with_it_it_does(
    settings: Settings, tmp_path: Path
) -> None:
    r = redis_store.connect(settings.redis)
    limits = store_limits(settings.ranking, settings.redis.popularity_half_life_s)
    steps = {}
    for share in (0.0, 1.0):
        ranking = replace(settings, "ranking", ranker_train_share=share).ranking
        learner = Learner.from_settings(settings.model, settings.trainer, settings.redis)
        stage = TrainerRankingStage(learner, r, ranking, limits, tmp_path / str(share))
        events = stream(steps=8)
        for start in range(0, len(events), 40):
            chunk = events[start : start + 40]
            fresh = stage.before_learning(chunk)
            learner.learn(chunk)
            stage.after_publishing(chunk, fresh)
        steps[share] = (stage.ranker.ranked, stage.ranker.steps)
    assert steps[0.0] == (0, 0)
    ranked, learned = steps[1.0]
    assert 0 < learned <= ranked <= 16 * 8  # at most the per-batch cap, 8 batches


def test_with_space_sources_the_trainer_ranks_them_and_learns_their_weights(
    settings: Settings, tmp_path: Path
) -> None:
    events = stream(steps=8)  # each user walks the items i0 → i1 → … (mod 30)
    models_dir = tmp_path / "models"
    ids = [f"i{j}" for j in range(30)]
    angle = 2 * np.pi * np.arange(30) / 30  # on a circle: an item's nearest is the next one
    write_space_snapshot(models_dir, "triplet", ids,
                         np.stack([np.cos(angle), np.sin(angle)], 1).astype(np.float32),
                         normalized=True)  # fmt: skip
    frame = pd.DataFrame([(e.user_id, e.item_id, e.ts) for e in events],
                         columns=["user_id", "item_id", "ts"])  # fmt: skip
    space = FeatureSpace(id_buckets=256, user_buckets=256, category_buckets=16,
                         token_buckets=16, history=4)
    encoder, _, _ = train_two_tower(frame, {}, TwoTowerConfig(dim=8, hidden=16, epochs=1), space)
    catalogue, vectors = catalogue_vectors(encoder, frame, {})
    save_two_tower(models_dir, encoder.weights, encoder.space, encoder.known_items,
                   encoder.known_users, catalogue, vectors)  # fmt: skip

    r = redis_store.connect(settings.redis)
    limits = store_limits(settings.ranking, settings.redis.popularity_half_life_s)
    ranking = replace(settings, "ranking", ranker_train_share=1.0,
                      space_sources=("two_tower", "triplet")).ranking  # fmt: skip
    learner = Learner.from_settings(settings.model, settings.trainer, settings.redis)
    stage = TrainerRankingStage(learner, r, ranking, limits, models_dir)
    assert stage.ranker.pipeline.source_names[-2:] == ["two_tower", "triplet"]  # as served
    for start in range(0, len(events), 40):
        chunk = events[start : start + 40]
        fresh = stage.before_learning(chunk)
        learner.learn(chunk)
        stage.after_publishing(chunk, fresh)
    assert stage.ranker.steps > 0
    stage.ranker.publish_if_due(force=True)
    published = json.loads((models_dir / "ranker.json").read_text())
    weights = dict(zip(published["features"], published["weights"], strict=True))
    assert {"rank:two_tower", "rank:triplet"} <= set(weights)
    assert weights["rank:two_tower"] != PRIOR_WEIGHTS["rank:two_tower"]  # learned, not the prior
    # the triplet space names each user's next item here: the ranker learns to trust it more
    assert weights["rank:triplet"] > PRIOR_WEIGHTS["rank:triplet"]
