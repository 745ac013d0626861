"""What bounds the trainer's ranker training: the time budget, the batched co-engagement read
and the batched GMF scores give the same candidates as one-by-one reads, for a fraction of
the cost; with no budget the ranker never trains."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from services.incremental_trainer.learner import Learner
from services.incremental_trainer.ranker_training import (
    LearnerSearch,
    PrefetchedNeighbours,
    RankerBudget,
    sample_where,
)
from services.incremental_trainer.ranking_signals import TrainerRankingStage
from shared.config import Settings
from shared.ranking.candidates import UserContext
from shared.ranking.signals import RecentItems, signal_batch
from shared.ranking.stores import GlobalLists, MemoryRankingStore, store_limits
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
