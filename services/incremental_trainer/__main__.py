"""Entry point: ``python -m services.incremental_trainer``.

SIGTERM and SIGINT set the stop flag that ``shared.kafka.poll_batches`` checks: the current
batch is finished, the state is flushed and snapshotted, offsets are committed, and the
process exits 0. Any other failure exits non-zero after logging; the supervisor restarts it and
the restart resumes from the last snapshot.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import torch

from services.incremental_trainer.service import Trainer
from shared.config import Settings
from shared.logs import setup_logging

log = logging.getLogger("services.incremental_trainer")


def main() -> int:
    setup_logging("incremental_trainer")
    torch.set_num_threads(1)  # the update touches a few rows at a time: threads only add overhead
    settings = Settings.from_env()
    trainer = Trainer(settings)

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: finishing the batch, snapshotting and committing", signum)
        trainer.stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        trainer.run()
    except Exception:
        log.exception("trainer failed; a restart resumes from the last snapshot")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
