"""Each batch's Redis pipeline executed by a thread of its own, a few batches behind at most.

A batch's Redis writes (seen lists, query vectors, popularity, the ranking stage's signals)
are one pipeline; the server's work on it (a few thousand sorted-set and list updates inside
the scripts) took as long as learning the batch, and the consume loop used to wait for it.
:class:`PipelineWriter` executes the pipelines in order on its own thread while the loop
learns the next batch, so the server's time overlaps the learner's instead of adding to it.

Guarantees: pipelines run in submission order; at most ``max_pending`` wait (a slower Redis
slows the loop down instead of queueing without bound); a failed pipeline is raised in the
loop's thread by the next :meth:`PipelineWriter.submit` or :meth:`PipelineWriter.flush`, and
nothing after it is executed, so the trainer stops as it did when it executed the pipeline
itself. The trainer flushes before every snapshot: a snapshot's offsets never cover a batch
whose Redis writes are not done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from redis.client import Pipeline

log = logging.getLogger(__name__)

MAX_PENDING = 2


class PipelineWriter:
    """Executes submitted pipelines in order on a background thread."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._max_pending = max_pending
        self._queue: deque[Pipeline] = deque()
        self._running = 0  # pipelines taken from the queue and not done yet
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._closed = False
        self.busy_s = 0.0  # seconds spent executing (the Redis share of the work)
        self.waited_s = 0.0  # seconds the loop waited for room or for a flush
        self._thread = threading.Thread(target=self._run, name="redis-writer", daemon=True)
        self._thread.start()

    def submit(self, pipe: Pipeline) -> None:
        """Queue ``pipe`` (waits while ``max_pending`` are queued); raises an earlier failure."""
        started = time.perf_counter()
        with self._cond:
            while len(self._queue) >= self._max_pending and self._error is None:
                self._cond.wait()
            self._raise_error()
            if self._closed:
                raise RuntimeError("the Redis writer is closed")
            self._queue.append(pipe)
            self._cond.notify_all()
        self.waited_s += time.perf_counter() - started

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every submitted pipeline ran; False on timeout, raises a failure."""
        started = time.perf_counter()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            with self._cond:
                while (self._queue or self._running) and self._error is None:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                self._raise_error()
            return True
        finally:
            self.waited_s += time.perf_counter() - started

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._running

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread once the queue is done (or after ``timeout_s``); never raises."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout_s)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue or self._error is not None:
                    return  # closed, or failed: nothing after a failure runs
                pipe = self._queue.popleft()
                self._running = 1
            started = time.perf_counter()
            try:
                pipe.execute()
            except BaseException as exc:  # noqa: BLE001 - handed to the loop's thread
                log.warning("a batch's Redis writes failed: %s", exc)
                with self._cond:
                    self._error = exc
                    self._queue.clear()
                    self._running = 0
                    self._cond.notify_all()
                return
            finally:
                self.busy_s += time.perf_counter() - started
            with self._cond:
                self._running = 0
                self._cond.notify_all()
