"""The trainer's half of ``DELETE /users/{id}`` (the design: :mod:`shared.forgotten_users`).

- Where each forgotten user's forget record sits (partition → offset) is read from MongoDB
  ``forgotten_users`` at start and extended by every forget record the trainer meets.
- An event of a forgotten user below their record's offset in its partition was sent before
  the deletion: it is dropped, which matters when a restart replays it from an older snapshot.
- Meeting a record, and at start or on assignment when the model's position in the record's
  partition is not past it (the model predates the deletion), the user starts again: a fresh
  row, no seen set, no recent items, and their serving copies removed once more (anything a
  lagging trainer published for their earlier events after the API had removed them).
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable, Mapping

import redis
from pymongo.database import Database
from pymongo.errors import PyMongoError

from services.incremental_trainer.learner import Learner
from services.incremental_trainer.user_writer import UserVectorWriter
from shared.forgotten_users import Offsets, load_forgotten, record_forgotten
from shared.ranking.signals import RecentItems
from shared.storage.catalogue import remove_user_copies

log = logging.getLogger(__name__)


class UserForgetting:
    """Forgotten users as one trainer process sees them."""

    def __init__(
        self,
        db: Database,
        r: redis.Redis,
        learner: Learner,
        users: UserVectorWriter,
        recent: RecentItems | None = None,
    ) -> None:
        self._db = db
        self._redis = r
        self._learner = learner
        self._users = users
        self._recent = recent
        self.offsets: dict[str, Offsets] = load_forgotten(db)
        self.forgotten = 0  # forget records applied by this process
        self.dropped = 0  # events dropped as sent before their user's deletion

    def stale(self, user_id: str, partition: int, offset: int) -> bool:
        """True for an event sent before its user's latest deletion (counted as dropped)."""
        offsets = self.offsets.get(user_id)
        if offsets is None or offset >= offsets.get(partition, -1):
            return False
        self.dropped += 1
        return True

    def note(self, user_id: str, partition: int, offset: int) -> None:
        """A forget record met in the stream: remember (and persist) where it is."""
        offsets = self.offsets.setdefault(user_id, {})
        offsets[partition] = max(offsets.get(partition, -1), offset)
        try:  # the API wrote it already; again in case it died between the ack and its write
            record_forgotten(self._db, user_id, partition, offset)
        except PyMongoError as exc:
            log.warning("forget record of %s not persisted (the API's copy stands): %s",
                        user_id, exc)

    def forget(self, user_ids: Iterable[str]) -> int:
        """Start the users again: fresh rows, no seen sets, serving copies removed."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return 0
        self._learner.forget_users(ids)
        if self._recent is not None:
            for user_id in ids:
                self._recent.forget(user_id)
        self._users.forget(ids)  # MongoDB, in order with the vectors written behind
        remove_user_copies(None, self._redis, ids)
        self.forgotten += len(ids)
        log.info("forgot %d users", len(ids))
        return len(ids)

    def predating(self, positions: Mapping[int, int], partitions: Container[int] | None = None
                  ) -> list[str]:
        """Users whose forget record the model has not passed in ``partitions`` (all if None):
        a model at ``positions`` still holds their rows from before the deletion."""
        return [
            user_id
            for user_id, offsets in self.offsets.items()
            if any(
                (partitions is None or p in partitions) and positions.get(p, 0) <= o
                for p, o in offsets.items()
            )
        ]
