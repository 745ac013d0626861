"""What keeps the trainer's ranker training a small, bounded side job of each micro-batch.

:class:`~services.incremental_trainer.ranking_signals.OnlineRankerTraining` ranks a few of a
batch's events with the recommender's own :class:`~shared.ranking.pipeline.RankingPipeline`
(the code path ``scripts.evaluate_stream`` measures) before the batch is learned, and the
ranker takes one pairwise step per event whose item was among the candidates. Ranking one
event costs far more than learning it (about 180 candidates and their features, a GMF pass
over the catalogue), so ranking a fixed share of the events would set the trainer's pace.
Instead:

- **bounded by time**: :class:`RankerBudget` lets ranker training use at most
  ``RECSYS_RANKING_RANKER_TRAIN_SHARE`` of the trainer's wall time, and at most
  ``RANKER_EVENTS_PER_BATCH`` events per batch. A trainer catching up at full speed ranks a
  small sample; a trainer that keeps up easily ranks up to the cap of every batch;
- **sampled uniformly** among the batch's eligible events (:func:`sample_where`, which checks
  eligibility only until it has enough): a batch arrives partition by partition, so its first
  events are a few users', not a sample;
- **batched**: the sampled events' co-engagement neighbours come from Redis in one round trip
  (:class:`PrefetchedNeighbours`) and their GMF scores from one matrix product over the
  learner's tables (:class:`LearnerSearch`), instead of a round trip and a product per event.
  The users' seen and recent items are the trainer's in-memory copies.

The features stay the served ones: co-engagement, popular, trending and new items are read from
the Redis keys the recommender reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from services.incremental_trainer.learner import Learner
from services.incremental_trainer.popularity import top_k
from shared.model.isgd_batch import model_scores
from shared.ranking.candidates import UserContext
from shared.ranking.stores import GlobalLists, RankingStore

# Budget the bucket may hold, in seconds of wall time at the configured share: a trainer that
# idled does not save up for a burst longer than this.
BUDGET_WINDOW_S = 1.0
# What one ranked event is assumed to cost before the first one is measured.
INITIAL_COST_S = 0.001
Hit = tuple[str, float]


class RankerBudget:
    """A bucket of seconds refilled at ``share`` of the wall clock, spent by ranker training.

    Parameters
    ----------
    share : fraction of the trainer's wall time ranker training may use (0 = never)
    clock : monotonic seconds, swappable for tests
    """

    def __init__(self, share: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.share = share
        self._clock = clock
        self._capacity = share * BUDGET_WINDOW_S
        self.seconds = self._capacity  # starts full: a fresh trainer trains at once
        self._at = clock()
        self.cost_s = INITIAL_COST_S  # moving average of one ranked event's cost

    def affordable(self, cap: int) -> int:
        """How many events may be ranked now (at most ``cap``)."""
        now = self._clock()
        self.seconds = min(self._capacity, self.seconds + self.share * (now - self._at))
        self._at = now
        if self.seconds <= 0.0:
            return 0
        return max(1, min(cap, int(self.seconds / self.cost_s)))

    def spend(self, seconds: float, events: int) -> None:
        self.seconds -= seconds
        if events:
            self.cost_s = 0.8 * self.cost_s + 0.2 * (seconds / events)


class PrefetchedNeighbours:
    """A :class:`RankingStore` whose co-engagement answers come from one batched read.

    :meth:`prefetch` reads the neighbours of every anchor of a batch's sampled users in one
    call of the underlying store (one Redis round trip); :meth:`neighbours` then answers from
    them (the top ``n`` of a longer top list is its prefix) and asks the store for anything not
    prefetched. The global lists are the store's.
    """

    def __init__(self, store: RankingStore) -> None:
        self._store = store
        self._hits: dict[str, list[Hit]] = {}
        self._n = 0

    def prefetch(self, item_ids: Sequence[str], n: int) -> None:
        anchors = list(dict.fromkeys(item_ids))
        self._n = n
        self._hits = dict(zip(anchors, self._store.neighbours(anchors, n), strict=True))

    def clear(self) -> None:
        self._hits = {}

    def neighbours(self, item_ids: Sequence[str], n: int) -> list[list[Hit]]:
        if n <= self._n and all(i in self._hits for i in item_ids):
            return [self._hits[i][:n] for i in item_ids]
        return self._store.neighbours(item_ids, n)

    def lists(self) -> GlobalLists:
        return self._store.lists()


class LearnerSearch:
    """GMF candidates from the learner's own tables: the inner products faiss_app serves.

    :meth:`prepare` scores several users against the catalogue in one matrix product; a call
    for a prepared user then takes its row instead of a product of its own (the scores are the
    model's as of :meth:`prepare`). Unprepared users are scored one by one.
    """

    def __init__(self, learner: Learner) -> None:
        self._learner = learner
        self._prepared: dict[str, np.ndarray] = {}

    def prepare(self, user_ids: Sequence[str]) -> None:
        learner = self._learner
        ids = list(dict.fromkeys(user_ids))
        rows = learner.state.user_map.rows(ids, create=False)
        known = rows >= 0
        if not known.any():
            return
        scores = model_scores(learner.tables, rows[known], learner.n_item_rows)
        kept = [user_id for user_id, ok in zip(ids, known.tolist(), strict=True) if ok]
        self._prepared = dict(zip(kept, scores, strict=True))

    def clear(self) -> None:
        self._prepared = {}

    def __call__(self, user: UserContext, n: int) -> list[Hit]:
        learner = self._learner
        user_row = learner.state.user_map.row(user.user_id or "", create=False)
        if user_row is None:
            return []
        scores = self._prepared.get(user.user_id or "")
        if scores is None:
            scores = learner.tables.scores(user_row, learner.n_item_rows)
        rows = [int(r) for r in top_k(scores, n, learner.seen.get(user_row, ()))]
        return [(item_id, float(scores[row])) for item_id, row in learner.item_ids_of_rows(rows)]


def sample_where(n: int, wanted: int, accept: Callable[[int], bool],
                 rng: np.random.Generator) -> list[int]:
    """Up to ``wanted`` of ``range(n)`` drawn uniformly without replacement among those
    ``accept`` takes, in increasing order; ``accept`` is asked only until enough are found."""
    picked: list[int] = []
    if wanted <= 0:
        return picked
    for index in rng.permutation(n).tolist():
        if accept(index):
            picked.append(index)
            if len(picked) == wanted:
                break
    return sorted(picked)
