"""The catalogue API: ``PUT/GET/DELETE /items/{item_id}`` and ``DELETE /users/{user_id}``.

Writes need an API key (``KEYED_ROUTES`` in :mod:`services.recommender_app.access`). What each write changes in the
stores: :mod:`shared.storage.catalogue`. A store that does not answer gives 503 (retry: every
write is idempotent), never a half-silent success.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import falcon
from confluent_kafka import KafkaError, KafkaException, Message
from pymongo.database import Database
from pymongo.errors import PyMongoError
from redis import Redis, RedisError

from services.recommender_app.deps import Deps
from services.recommender_app.new_items import NewItems
from shared.config import Settings
from shared.deleted_items import DeletedItems
from shared.events import InvalidEvent, validate_id, validate_metadata
from shared.forgotten_users import Headers, forget_record
from shared.json_limits import JSONLimitError, JSONLimits, loads_bounded
from shared.kafka import DeliveryError
from shared.recovering_producer import RecoveringProducer
from shared.request_body import read_body
from shared.storage.catalogue import delete_item, forget_user, get_item, put_item

MAX_ITEM_BODY_BYTES = 4096  # three metadata fields of at most 256 characters each
_STORE_ERRORS = (PyMongoError, RedisError, OSError, KafkaException, DeliveryError)


def produce_confirmed(producers: RecoveringProducer, topic: str, key: bytes, value: bytes | None,
                      timeout_s: float, what: str,
                      headers: Headers | None = None) -> Message:
    """Produce one record and wait until Kafka acknowledges it; the acknowledged message (its
    partition and offset) or DeliveryError."""
    done = threading.Event()
    errors: list[KafkaError] = []
    acked: list[Message] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            acked.append(msg)
        done.set()

    producer, generation = producers.current()
    producer.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered)
    producer.flush(timeout_s)
    if not done.is_set() or errors:
        # A producer that failed a delivery may be fenced for good: use a fresh one next.
        producers.failed(generation, errors[0] if errors else "no acknowledgement")
    if not done.is_set():
        raise DeliveryError(f"{what} not confirmed within {timeout_s}s")
    if errors:
        raise DeliveryError(f"{what} failed: {errors[0]}")
    return acked[0]


class Tombstones:
    """Publishes the ``item-vectors`` delete of an item and waits until Kafka confirms it."""

    def __init__(self, producers: RecoveringProducer, topic: str, timeout_s: float) -> None:
        self._producers = producers
        self._topic = topic
        self._timeout_s = timeout_s

    def __call__(self, item_id: str) -> None:
        produce_confirmed(self._producers, self._topic, item_id.encode(), None, self._timeout_s,
                          f"item-vectors tombstone for {item_id}")


class ForgetRecords:
    """Puts a user's forget record in their place on ``interactions`` (shared.forgotten_users)
    and returns its acknowledged ``(partition, offset)``."""

    def __init__(self, producers: RecoveringProducer, topic: str, timeout_s: float,
                 now_ms: Callable[[], int]) -> None:
        self._producers = producers
        self._topic = topic
        self._timeout_s = timeout_s
        self._now_ms = now_ms

    def __call__(self, user_id: str) -> tuple[int, int]:
        key, value, headers = forget_record(user_id, self._now_ms())
        msg = produce_confirmed(self._producers, self._topic, key, value, self._timeout_s,
                                f"forget record of {user_id}", headers)
        return int(msg.partition() or 0), int(msg.offset() or 0)


def _unavailable(exc: Exception) -> falcon.HTTPServiceUnavailable:
    return falcon.HTTPServiceUnavailable(
        title="Store unavailable",
        description=f"the change could not be completed; retry ({type(exc).__name__})",
        retry_after=1,
    )


class ItemResource:
    endpoint = "items"

    def __init__(self, db: Database, r: Redis, deleted: DeletedItems,
                 tombstone: Callable[[str], None], now_ms: Callable[[], int],
                 new_vectors: Callable[[str, dict[str, Any]], Any] | None = None) -> None:
        self._db = db
        self._redis = r
        self._deleted = deleted
        self._tombstone = tombstone
        self._now_ms = now_ms
        self._new_vectors = new_vectors  # feature-based vectors (two-tower), if any

    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        validate_id("item_id", item_id)
        try:
            item = None if item_id in self._deleted.current() else get_item(self._db, item_id)
        except _STORE_ERRORS as exc:
            raise _unavailable(exc) from None
        if item is None:
            raise falcon.HTTPNotFound(title="Unknown item",
                                      description=f"no item {item_id!r} in the catalogue")
        resp.media = item

    def on_put(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        validate_id("item_id", item_id)
        fields = validate_metadata(_json_object(req))
        try:
            created = put_item(self._db, self._redis, item_id, fields, self._now_ms())
            if self._new_vectors is not None:
                self._new_vectors(item_id, fields)
        except _STORE_ERRORS as exc:
            raise _unavailable(exc) from None
        self._deleted.remove_local(item_id)
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_200
        resp.media = {"item_id": item_id, **fields, "created": created}

    def on_delete(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        validate_id("item_id", item_id)
        self._deleted.add_local(item_id)  # this worker stops showing it before anything else
        try:
            existed = delete_item(self._db, self._redis, item_id, self._tombstone)
        except _STORE_ERRORS as exc:
            raise _unavailable(exc) from None
        resp.media = {"item_id": item_id, "deleted": True, "had_metadata": existed}


class UserResource:
    endpoint = "users"

    def __init__(self, db: Database, r: Redis,
                 announce: Callable[[str], tuple[int, int]]) -> None:
        self._db = db
        self._redis = r
        self._announce = announce

    def on_delete(self, req: falcon.Request, resp: falcon.Response, user_id: str) -> None:
        validate_id("user_id", user_id)
        try:
            existed = forget_user(self._db, self._redis, user_id, self._announce)
        except _STORE_ERRORS as exc:
            raise _unavailable(exc) from None
        resp.media = {"user_id": user_id, "deleted": True, "existed": existed}


def _json_object(req: falcon.Request) -> Any:
    raw = read_body(req, MAX_ITEM_BODY_BYTES)
    if len(raw) > MAX_ITEM_BODY_BYTES:
        raise falcon.HTTPContentTooLarge(
            title="Body too large",
            description=f"item metadata may be at most {MAX_ITEM_BODY_BYTES} bytes")
    if not raw.strip():
        raise falcon.HTTPBadRequest(title="Empty body",
                                    description='send the metadata: {"title": ..., '
                                                '"category": ..., "price": ...}')
    try:
        body = loads_bounded(raw, JSONLimits(max_bytes=MAX_ITEM_BODY_BYTES))
    except JSONLimitError as exc:
        raise falcon.HTTPBadRequest(title="Invalid JSON",
                                    description=f"the body is not valid JSON: {exc}"[:300]) from None
    if not isinstance(body, dict):
        raise InvalidEvent("the body must be a JSON object of item metadata")
    return body


CATALOGUE_ROUTES = ("/items/{item_id}", "/users/{user_id}")


class CatalogueApi:
    """The catalogue's shared pieces for one worker: the deny-list and new-item views that the
    Recommender filters with, and the routes that change them."""

    def __init__(self, settings: Settings, deps: Deps,
                 new_vectors: Callable[[str, dict[str, Any]], Any] | None = None) -> None:
        cat = settings.catalogue
        self.deleted = DeletedItems(deps.redis, deps.db, cat.deleted_refresh_s, deps.clock)
        self.new_items = NewItems(deps.redis, cat, deps.clock, deps.now_ms)
        tombstone = Tombstones(deps.producer, settings.kafka.item_vectors_topic,
                               cat.tombstone_timeout_s)
        self._items = ItemResource(deps.db, deps.redis, self.deleted, tombstone, deps.now_ms,
                                   new_vectors)
        forget = ForgetRecords(deps.producer, settings.kafka.interactions_topic,
                               cat.tombstone_timeout_s, deps.now_ms)
        self._users = UserResource(deps.db, deps.redis, forget)

    def add_routes(self, app: falcon.App) -> None:
        app.add_route(CATALOGUE_ROUTES[0], self._items)
        app.add_route(CATALOGUE_ROUTES[1], self._users)
