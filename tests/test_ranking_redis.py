"""The ranking stage's Redis half against the real local server: what the trainer writes is
what the in-memory evaluator holds, and the trainer's stage trains and publishes the ranker."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.incremental_trainer.learner import Learner
from services.incremental_trainer.ranking_signals import RANKER_FILE, TrainerRankingStage
from shared.config import Settings
from shared.events import Interaction
from shared.ranking.ranker import LinearRanker
from shared.ranking.signals import RecentItems, signal_batch
from shared.ranking.stores import MemoryRankingStore, store_limits
from shared.storage import ranking_store, redis_store
from tests.conftest import replace

T0 = 1_700_000_000_000


def stream(n_users: int = 40, steps: int = 5, seed: int = 1) -> list[Interaction]:
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, 30, n_users)
    events, ts = [], T0
    for step in range(steps):
        for user in range(n_users):
            item = f"i{(starts[user] + step) % 30}"
            events.append(Interaction(f"u{user}", item, "view", ts))
            ts += 60_000
    return events


def test_redis_store_answers_like_the_in_memory_store_for_the_same_batches(settings: Settings):
    settings = replace(settings, "ranking", co_engagement_per_item=5, new_items_kept=10)
    limits = store_limits(settings.ranking, settings.redis.popularity_half_life_s)
    r = redis_store.connect(settings.redis)
    memory = MemoryRankingStore(limits)
    recent_memory, recent_redis = RecentItems(), RecentItems()
    seen: set[str] = set()
    events = stream()
    for start in range(0, len(events), 16):
        chunk = events[start:start + 16]
        fresh = {e.item_id for e in chunk} - seen
        seen |= fresh
        memory.apply(signal_batch(chunk, recent_memory, fresh.__contains__))
        batch = signal_batch(chunk, recent_redis, fresh.__contains__)
        ranking_store.write_signals(r, batch, limits)
        redis_store.bump_popularity(r, batch.engagement, batch.ts_ms,
                                    limits.popular_half_life_s)
    served = ranking_store.RedisRankingStore(r, limits.list_length, cache_s=0.0)
    anchors = ["i0", "i7", "i29"]
    for from_redis, from_memory in zip(served.neighbours(anchors, 5),
                                       memory.neighbours(anchors, 5), strict=True):
        assert [i for i, _ in from_redis] == [i for i, _ in from_memory]
        assert len(from_redis) <= 5
    assert r.zcard(ranking_store.coeng_key("i0")) <= 5  # trimmed in Redis too
    lists, expected = served.lists(), memory.lists()
    assert [i for i, _ in lists.trending[:5]] == [i for i, _ in expected.trending[:5]]
    assert [i for i, _ in lists.popular[:5]] == [i for i, _ in expected.popular[:5]]
    assert [i for i, _ in lists.new_items] == [i for i, _ in expected.new_items]
    assert len(lists.new_items) == 10


def test_trainer_stage_trains_the_ranker_and_publishes_it_beside_the_snapshots(
        settings: Settings, tmp_path: Path):
    models = Path(settings.model.models_dir)
    models.mkdir(parents=True, exist_ok=True)
    learner = Learner.from_settings(settings.model, settings.trainer, settings.redis)
    r = redis_store.connect(settings.redis)
    limits = store_limits(settings.ranking, settings.redis.popularity_half_life_s)
    stage = TrainerRankingStage(learner, r, settings.ranking, limits, models)
    events = stream(steps=8)
    for start in range(0, len(events), 20):
        chunk = events[start:start + 20]
        fresh = stage.before_learning(chunk)
        learner.learn(chunk)
        stage.after_publishing(chunk, fresh)
    assert r.exists(ranking_store.coeng_key("i0"))
    assert stage.ranker.steps > 0
    stage.snapshot()
    published = json.loads((models / RANKER_FILE).read_text())
    assert published["version"].startswith("ranker-") and published["pairs"] > 0
    from_redis = ranking_store.read_ranker(r)
    assert from_redis is not None and json.loads(from_redis)["version"] == published["version"]
    # A restarted trainer continues from the file.
    again = TrainerRankingStage(learner, r, settings.ranking, limits, models)
    assert again.ranker.ranker.version == published["version"]
    loaded = LinearRanker.from_json(from_redis, again.ranker.pipeline.names)
    assert loaded.weights == pytest.approx(again.ranker.ranker.weights)
