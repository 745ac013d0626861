"""The trainer's Redis pipelines executed off the consume path, against the real server:
in order, bounded, and a failure stops everything after it and reaches the caller."""

from __future__ import annotations

import pytest
import redis

from services.incremental_trainer.redis_writer import PipelineWriter
from shared.config import Settings
from shared.storage import redis_store


def test_pipelines_run_in_submission_order_and_flush_waits_for_them(settings: Settings):
    r = redis_store.connect(settings.redis)
    writer = PipelineWriter(max_pending=2)
    for n in range(50):
        pipe = r.pipeline(transaction=False)
        pipe.rpush("order", n)
        pipe.set("last", n)
        writer.submit(pipe)
    assert writer.flush(timeout_s=10)
    assert writer.pending == 0
    assert [int(v) for v in r.lrange("order", 0, -1)] == list(range(50))
    assert r.get("last") == "49"
    writer.close()


def test_a_failed_pipeline_is_raised_to_the_caller_and_nothing_after_it_runs(
    settings: Settings,
):
    r = redis_store.connect(settings.redis)
    r.rpush("a-list", "x")
    writer = PipelineWriter(max_pending=1)
    bad = r.pipeline(transaction=False)
    bad.incr("a-list")  # WRONGTYPE: the server refuses it
    writer.submit(bad)
    with pytest.raises(redis.ResponseError):
        writer.flush(timeout_s=10)
    after = r.pipeline(transaction=False)
    after.set("after", 1)
    with pytest.raises(redis.ResponseError):
        writer.submit(after)
    assert r.get("after") is None
    writer.close()
