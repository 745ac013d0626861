"""``python -m services.incremental_trainer``: the Kafka consumer that keeps the model current.

Settings come from RECSYS_* environment variables (see the README); --help needs none of them.
At start it says which snapshot it loaded from RECSYS_MODELS_DIR, or that it starts from an
empty model and why.

SIGTERM and SIGINT set the stop flag that ``shared.kafka.poll_batches`` checks: the current
batch is finished, the state is flushed and snapshotted, offsets are committed, and the
process exits 0. A bad setting exits 2 with one line naming every bad variable; any other
failure exits 1 after logging (the supervisor restarts it and the restart resumes from the last
snapshot).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from services.incremental_trainer.startup_timing import StartupTiming
from shared.startup import load_settings

SERVICE = "incremental_trainer"
log = logging.getLogger("services.incremental_trainer")


def main(argv: list[str] | None = None) -> int:
    timing = StartupTiming()
    parser = argparse.ArgumentParser(
        prog="python -m services.incremental_trainer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    settings = load_settings(SERVICE)

    # Imported after the settings are known good: torch alone takes seconds to import.
    from services.incremental_trainer.service import Trainer
    from shared.gc_tuning import freeze_startup_heap
    from shared.kafka import KafkaUnavailable
    from shared.logs import setup_logging
    from shared.threads import one_math_thread

    setup_logging(SERVICE, settings.logging)
    one_math_thread()  # the update touches a few rows at a time: threads only add overhead
    timing.mark("imports")
    try:
        trainer = Trainer(settings, timing=timing)
    except KafkaUnavailable as exc:
        log.error("trainer could not start: %s", exc)
        return 1
    except Exception:
        log.exception("trainer could not start")
        return 1

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: finishing the batch, snapshotting and committing", signum)
        trainer.stop.set()

    freeze_startup_heap()  # the loaded model is long-lived: keep it out of the collector
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
