"""The event-by-event learner: the reference the vectorized :class:`Learner` is measured against.

Each event is tested (when sampled, known and not yet seen) against the model as it stands
after every earlier event of the stream, then learned with ``shared.model.isgd.update_event``
before the next event is looked at. That is ISGD as published (Vinagre et al. 2014) and the
strictest prequential order; it runs at a few thousand events/s because every event is a
handful of small numpy calls. Tests compare the micro-batch learner's recall against it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from services.incremental_trainer.learner import (
    ITEMS,
    NEGATIVE_POWER,
    USERS,
    BatchResult,
    Learner,
    _event_scale,
    _rows_needed,
)
from services.incremental_trainer.popularity import sample_rows, top_k
from shared.events import Interaction
from shared.model.errors import ModelFitError
from shared.model.isgd import update_event


class SequentialLearner(Learner):
    """:class:`Learner` whose :meth:`learn` tests and trains one event at a time, in order."""

    def _test(self, user_row: int, item_row: int) -> None:
        n_items = self.n_item_rows
        k = self.evaluator.k
        exclude = self.seen.get(user_row, ())
        model_top = top_k(self.tables.scores(user_row, n_items), k, exclude)
        popular_top = self.popularity.top(k, exclude, n_items)
        self.evaluator.record(
            bool(np.any(model_top == item_row)), bool(np.any(popular_top == item_row))
        )

    def learn(self, events: Sequence[Interaction]) -> BatchResult:
        result = BatchResult()
        if not events:
            return result
        k_neg = self.settings.negatives_per_positive
        n_items_start = self.n_item_rows
        cdf = self.popularity.sampler(n_items_start, NEGATIVE_POWER) if k_neg else None
        negatives = (
            sample_rows(cdf, n_items_start, (len(events), k_neg), self.rng) if k_neg else None
        )
        draws = self.rng.random(len(events))
        user_map, item_map = self.state.user_map, self.state.item_map
        self._ensure_capacity(USERS, _rows_needed(user_map, (e.user_id for e in events)), result)
        self._ensure_capacity(ITEMS, _rows_needed(item_map, (e.item_id for e in events)), result)
        for e, event in enumerate(events):
            user_known = user_map.row(event.user_id, create=False)
            item_known = item_map.row(event.item_id, create=False)
            if (
                user_known is not None
                and item_known is not None
                and draws[e] < self.settings.eval_sample_rate
                and item_known not in self.seen.get(user_known, ())
            ):
                self._test(user_known, item_known)
                result.tested += 1
            user_row = user_map.row(event.user_id, create=True)
            item_row = int(self._item_rows([event.item_id], np.array([-1]))[0])
            negs = () if negatives is None else negatives[e]
            prob = update_event(
                self.tables, user_row, item_row, _event_scale(event.weight), self.params, negs
            )
            if not math.isfinite(prob):
                raise ModelFitError(f"non-finite score for {event.user_id}/{event.item_id}")
            added = self.popularity.bump(item_row, event.weight, event.ts)
            self.seen[user_row].add(item_row)
            result.user_events[event.user_id] = result.user_events.get(event.user_id, 0) + 1
            result.item_rows.add(item_row)
            result.positive_rows.add(item_row)
            result.item_rows.update(int(r) for r in negs)
            result.seen.setdefault(event.user_id, []).append(event.item_id)
            result.popularity[event.item_id] = result.popularity.get(event.item_id, 0.0) + added
            result.ts_ms = max(result.ts_ms, event.ts)
        self.events_learned += len(events)
        self._express_popularity_at(result)
        return result
