"""A Trainer run in a thread of the test process, and stopped the way SIGTERM stops it."""

from __future__ import annotations

import threading

from services.incremental_trainer.service import Trainer
from shared.config import Settings
from shared.metrics import Metrics


def run_in_thread(trainer: Trainer) -> threading.Thread:
    thread = threading.Thread(target=trainer.run, daemon=True)
    thread.start()
    return thread


def start_trainer(s: Settings) -> tuple[Trainer, threading.Thread]:
    trainer = Trainer(s, metrics=Metrics(s.statsd))
    return trainer, run_in_thread(trainer)


def stop_trainer(trainer: Trainer, thread: threading.Thread) -> None:
    trainer.stop.set()
    thread.join(30)
    assert not thread.is_alive(), "the trainer did not stop within 30 s"
