"""The recommender's dependencies, built once per worker and swappable in tests.

``create_app(settings)`` builds real clients from the settings; tests pass a :class:`Deps` with
some clients pointing elsewhere (a stopped server, another faiss_app) instead of patching.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from pymongo.database import Database

from shared.config import Settings
from shared.faiss_client import FaissClient
from shared.kafka import make_producer
from shared.metrics import Metrics
from shared.recovering_producer import RecoveringProducer
from shared.storage import mongo, redis_deadline

if TYPE_CHECKING:  # FAISS is imported only by workers that hold a copy of the index
    from services.recommender_app.local_index import LocalIndex


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Deps:
    """Clients and clocks the app uses; every field can be replaced.

    ``clock`` is monotonic seconds (budgets, breakers); ``now_ms`` is wall-clock Unix
    milliseconds (event timestamp validation).
    """

    db: Database
    redis: redis.Redis
    faiss: FaissClient
    producer: RecoveringProducer
    metrics: Metrics
    clock: Callable[[], float] = time.monotonic
    now_ms: Callable[[], int] = _now_ms
    # Background work started by create_app (the spool sender), stopped by close().
    closers: list[Callable[[], None]] = field(default_factory=list)
    # This worker's copy of the gmf index (RECSYS_RECOMMENDER_LOCAL_SEARCH), built by create_app.
    local_index: LocalIndex | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Deps:
        """Real clients for ``settings``; keyword arguments replace individual fields.

        Only the clients not overridden are built. Redis calls inside a request end within
        what is left of its budget (:mod:`shared.storage.redis_deadline`); outside one (health
        checks, catalogue writes) they get a socket timeout no longer than the whole budget.
        """
        factories: dict[str, Callable[[], Any]] = {
            "db": lambda: mongo.connect(settings.mongo),
            "redis": lambda: redis_deadline.connect(
                dataclasses.replace(
                    settings.redis,
                    timeout_s=min(settings.redis.timeout_s, settings.recommender.request_budget_s),
                )
            ),
            "faiss": lambda: FaissClient(settings.faiss.url, settings.faiss.timeout_s),
            "producer": lambda: RecoveringProducer(
                lambda: make_producer(
                    settings.kafka,
                    **{
                        "message.timeout.ms": int(settings.recommender.publish_timeout_s * 1000),
                        # librdkafka's own log lines go through logging (request ids, levels).
                        "logger": logging.getLogger("services.recommender_app.kafka"),
                    },
                ),
                # Threads poll a producer for at most these timeouts after taking it.
                retire_after_s=1.0
                + max(settings.recommender.publish_timeout_s, settings.catalogue.tombstone_timeout_s),
            ),
            "metrics": lambda: Metrics(settings.statsd),
        }
        values = {
            name: overrides.pop(name) if name in overrides else build()
            for name, build in factories.items()
        }
        return cls(**values, **overrides)

    def close(self) -> None:
        """Release connections (tests; gunicorn workers simply exit)."""
        self.db.client.close()
        self.redis.close()
        self.faiss.close()
        for close in reversed(self.closers):
            close()
        self.producer.close()
