"""Replay an interaction log into Kafka at a steady rate, as producers in production would.

    python -m scripts.replay_stream --stream data/stream.csv --rate 200

Each row becomes an `interactions` message keyed by user_id (so a user's events stay in order on
one partition). Timestamps are restamped to the moment of sending by default, so that the
trainer's freshness figures measure this run rather than the log's history.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
from confluent_kafka import Producer
from tqdm import tqdm

from shared.events import Interaction, InvalidEvent, from_dict
from shared.kafka import ensure_topics, flush_or_raise, make_producer, produce_blocking
from shared.startup import load_settings

REQUIRED_COLUMNS = ("user_id", "item_id", "event", "ts")


def read_stream(path: Path) -> pd.DataFrame:
    """The log as a DataFrame with at least user_id, item_id, event, ts (ms), oldest first."""
    frame = pd.read_csv(path, dtype={"user_id": str, "item_id": str, "event": str})
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {', '.join(missing)}")
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def events_from(frame: pd.DataFrame, restamp: bool) -> Iterator[Interaction | str]:
    """Validated events; a row that fails validation is yielded as its error message."""
    for row in frame.itertuples(index=False):
        raw = {"user_id": row.user_id, "item_id": row.item_id, "event": row.event,
               "ts": int(time.time() * 1000) if restamp else int(row.ts)}
        try:
            yield from_dict(raw)
        except InvalidEvent as exc:
            yield str(exc)


class Pacer:
    """Sleeps just enough to hold ``rate`` events per second (0 = no limit)."""

    def __init__(self, rate: float):
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()

    def wait(self, stop: threading.Event) -> None:
        if not self._interval:
            return
        self._next += self._interval
        delay = self._next - time.monotonic()
        if delay > 0:
            stop.wait(delay)


def replay(
    producer: Producer,
    topic: str,
    events: Iterable[Interaction | str],
    rate: float,
    stop: threading.Event,
    progress: bool = True,
) -> tuple[int, int]:
    """Produce ``events`` until exhausted or ``stop`` is set; returns (sent, skipped)."""
    sent = skipped = 0
    pacer = Pacer(rate)
    with tqdm(desc="replay", unit="ev", disable=not progress) as bar:
        for event in events:
            if stop.is_set():
                break
            if isinstance(event, str):
                skipped += 1
                continue
            produce_blocking(producer, topic, event.user_id, event.to_bytes())
            producer.poll(0)
            sent += 1
            bar.update()
            pacer.wait(stop)
    return sent, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.replay_stream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stream", type=Path, default=Path("data/stream.csv"),
                        help="CSV with user_id,item_id,event,ts (default: data/stream.csv)")
    parser.add_argument("--rate", type=float, default=200.0,
                        help="events per second, 0 for as fast as possible (default: 200)")
    parser.add_argument("--limit", type=int, default=0,
                        help="stop after this many rows, 0 for all (default: 0)")
    parser.add_argument("--keep-timestamps", action="store_true",
                        help="send the log's own ts instead of the time of sending")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)

    settings = load_settings("replay_stream")
    frame = read_stream(args.stream)
    if args.limit:
        frame = frame.head(args.limit)
    ensure_topics(settings.kafka)
    producer = make_producer(settings.kafka)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        sent, skipped = replay(producer, settings.kafka.interactions_topic,
                               events_from(frame, restamp=not args.keep_timestamps),
                               args.rate, stop, progress=not args.no_progress)
    except KeyboardInterrupt:
        sent, skipped = -1, -1
    finally:
        flush_or_raise(producer, 30)
    print(f"replay: sent {sent}, skipped {skipped} invalid rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
