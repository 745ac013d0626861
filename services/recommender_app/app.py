"""Build the recommender's Falcon app from settings and (optionally) swapped dependencies.

gunicorn -w 2 --threads 4 -b 127.0.0.1:8080 services.recommender_app.wsgi:app
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import falcon
from pymongo.errors import PyMongoError
from redis import RedisError

from services.recommender_app.access import ApiKeys
from services.recommender_app.catalogue_resources import CATALOGUE_ROUTES, CatalogueApi
from services.recommender_app.deps import Deps
from services.recommender_app.errors import add_error_handlers
from services.recommender_app.handover import HandOver
from services.recommender_app.health import Readiness
from services.recommender_app.middleware import BodyLimit, RequestMetrics
from services.recommender_app.publisher import EventPublisher
from services.recommender_app.ranking import ServingRanking
from services.recommender_app.recommender import Recommender
from services.recommender_app.resilience import Guard
from services.recommender_app.resources import (
    DependenciesResource,
    EventsResource,
    HealthResource,
    OpenApiResource,
    ReadyResource,
    RecommendResource,
)
from services.recommender_app.space_candidates import ServingSpaceSources
from services.recommender_app.spool import Spool
from services.recommender_app.spool_sender import SpoolSender
from services.recommender_app.two_tower import (
    NewItemVectors,
    TwoTowerCandidates,
    TwoTowerModel,
    faiss_search,
)
from services.recommender_app.unserved_spaces import UnservedSpaces
from shared.config import RecommenderSettings, Settings
from shared.faiss_client import FaissError
from shared.fast_json import use_orjson_answers
from shared.logs import setup_logging
from shared.request_ids import RequestIdMiddleware
from shared.storage import redis_deadline

log = logging.getLogger(__name__)

ROUTES = (
    "/recommend",
    "/events",
    "/healthz",
    "/readyz",
    "/healthz/dependencies",
    "/openapi.json",
    *CATALOGUE_ROUTES,
)


def open_spool(rec: RecommenderSettings) -> Spool | None:
    """The worker's spool, or None when it is turned off or its folder is unusable."""
    if rec.spool_max_bytes <= 0:
        return None
    try:
        return Spool(Path(rec.spool_dir), rec.spool_max_bytes)
    except OSError as exc:
        log.error("no event spool (%s): POST /events answers 503 while Kafka is away", exc)
        return None


def make_guard(settings: Settings, deps: Deps) -> Guard:
    """The one Guard of an app: each dependency's timeout cap and what counts as it failing."""
    return Guard(
        caps={
            "mongo": settings.mongo.timeout_ms / 1000.0,
            "redis": settings.redis.timeout_s,
            "faiss": settings.faiss.timeout_s,
        },
        errors={
            "mongo": (PyMongoError, OSError),  # TimeoutError (hard deadline) is an OSError
            "redis": (RedisError, OSError),
            "faiss": (FaissError,),
        },
        metrics=deps.metrics,
        cooldown_s=settings.recommender.breaker_cooldown_s,
        clock=deps.clock,
        hard_deadline={"mongo"},
        scopes={"redis": redis_deadline.within},
    )


def create_app(settings: Settings, deps: Deps | None = None) -> falcon.App:
    """The WSGI app; ``deps`` defaults to real clients built from ``settings``."""
    if deps is None:
        setup_logging("recommender_app", settings.logging)
        deps = Deps.from_settings(settings)
    rec = settings.recommender
    guard = make_guard(settings, deps)
    spool = open_spool(rec)
    sender = handover = None
    if spool is not None:
        handover = HandOver(spool, rec.publish_timeout_s)
        sender = SpoolSender(
            spool, deps.producer, settings.kafka.interactions_topic, rec.publish_timeout_s,
            deps.metrics, handover=handover,
        )  # fmt: skip
        sender.start()  # gunicorn imports the app in each worker (no preload): post-fork
        deps.closers.extend([spool.close, sender.stop])
    publisher = EventPublisher(
        deps.producer,
        settings.kafka.interactions_topic,
        rec.publish_timeout_s,
        deps.clock,
        spool=spool,
        on_spooled=sender.wake if sender is not None else None,
        handover=handover,
        direct_wait_s=rec.events_direct_wait_s,
    )
    middleware: list[Any] = [
        RequestIdMiddleware(),
        RequestMetrics(deps.metrics),
        BodyLimit(rec.max_body_bytes),
    ]
    access = settings.access
    if access.api_keys or access.events_rate_per_s:  # nothing to check: no per-request cost
        middleware.append(ApiKeys(access, clock=deps.clock))
    app = falcon.App(middleware=tuple(middleware))
    two_tower = TwoTowerModel(settings.model.models_dir, deps.clock)
    catalogue = CatalogueApi(settings, deps, NewItemVectors(
        two_tower, deps.producer, settings.kafka.item_vectors_topic,
        settings.catalogue.tombstone_timeout_s))
    # One record per worker of the spaces faiss_app does not serve, for every caller.
    unserved = UnservedSpaces(clock=deps.clock)
    spaces = (
        ServingSpaceSources(settings.ranking.space_sources, deps.faiss, two_tower, unserved)
        if settings.ranking.space_sources else None
    )
    ranking = (
        ServingRanking(deps.redis, settings.ranking, guard, spaces=spaces)
        if settings.ranking.enabled else None
    )
    if rec.local_search and deps.local_index is None:
        from services.recommender_app.local_index import LocalIndex  # FAISS: only when used

        deps.local_index = LocalIndex(settings, deps.faiss)
        deps.local_index.start()  # post-fork, like the spool sender
        deps.closers.append(deps.local_index.stop)
    recommender = Recommender(
        deps, rec, guard, catalogue.deleted, catalogue.new_items, ranking=ranking,
        two_tower=TwoTowerCandidates(two_tower, faiss_search(deps.faiss), now_ms=deps.now_ms),
        local_index=deps.local_index,
        unserved=unserved,
    )
    app.add_route("/recommend", RecommendResource(recommender, rec))
    app.add_route("/events", EventsResource(publisher, rec, deps.metrics, deps.now_ms))
    app.add_route("/healthz", HealthResource())
    readiness = Readiness(deps)
    app.add_route("/readyz", ReadyResource(readiness))
    app.add_route("/healthz/dependencies", DependenciesResource(readiness))
    app.add_route("/openapi.json", OpenApiResource(rec, settings.access, deps.now_ms))
    catalogue.add_routes(app)
    add_error_handlers(app, deps.metrics)
    use_orjson_answers(app)
    return app
