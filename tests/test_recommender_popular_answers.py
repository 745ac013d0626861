"""A whole popular answer is kept for a moment and dropped when what it was built from changes
(deleted items, a Redis failure, its time). Real Redis and MongoDB."""

from __future__ import annotations

import redis

from scripts.localstack import free_port
from services.recommender_app.app import make_guard
from services.recommender_app.deps import Deps
from services.recommender_app.recommender import NO_FILTERS, Filters, Recommender
from services.recommender_app.resilience import Budget
from shared.config import Settings
from shared.deleted_items import DeletedItems
from tests.test_recommender_support import World, seed


def ids(answer) -> list[str]:  # noqa: ANN001
    return [item["item_id"] for item in answer.items]


def test_popular_answer_is_kept_until_it_expires_or_its_sources_change(
    settings: Settings, world: World
) -> None:
    now = [500.0]
    seed(settings, world)
    deps = Deps.from_settings(settings, clock=lambda: now[0])
    guard = make_guard(settings, deps)
    deleted = DeletedItems(deps.redis, None, refresh_s=60.0, clock=lambda: now[0])
    recommender = Recommender(deps, settings.recommender, guard, deleted)
    ttl = settings.recommender.popular_cache_s

    def popular(filters: Filters = NO_FILTERS):  # noqa: ANN202
        return recommender.popular(3, Budget(3.0, lambda: now[0]), filters)

    try:
        first = popular()
        assert ids(first)[:1] == world.popular[:1] and not first.degraded
        assert popular() is first  # kept: not rebuilt
        assert popular(Filters(exclude=frozenset({world.popular[0]}))) is not first  # filters

        deleted.add_local(world.popular[0])  # a DELETE handled by this worker
        after_delete = popular()
        assert after_delete is not first and world.popular[0] not in ids(after_delete)
        assert popular() is after_delete

        guard.breakers["redis"].failure()  # any failed Redis call of this worker
        guard.breakers["redis"].success()
        assert popular() is not after_delete

        kept = popular()
        now[0] += ttl + 0.01
        assert popular() is not kept  # expired
    finally:
        deps.close()


def test_degraded_popular_answers_are_not_kept(settings: Settings, world: World) -> None:
    dead_redis = redis.Redis(port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2)
    deps = Deps.from_settings(settings, redis=dead_redis)
    recommender = Recommender(deps, settings.recommender, make_guard(settings, deps))
    try:
        first = recommender.popular(3, Budget(3.0))
        assert first.degraded == ("redis",)
        assert recommender.popular(3, Budget(3.0)) is not first
    finally:
        deps.close()
