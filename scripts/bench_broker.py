"""The local Kafka broker's CPU as a followed topic grows: why the load's batching matters here.

The local stack's Kafka is Tansu with its memory engine (:mod:`scripts.localstack`). Its cost of
serving a fetch grows with the record batches stored in the partition, so a sustained stream
that a consumer follows loads the broker more every second, while the same stream with nobody
fetching costs a flat amount. A production Kafka finds a fetch offset through its offset index
and does not slow down as a topic grows. This benchmark makes the effect visible, so that a
sustained benchmark on the local stack (``scripts.bench_trainer``'s freshness probes) can be read
for what it is: for each ``--linger-ms`` a fresh private broker, a producer of ``--rate``
events/s (keyed as the trainer's interactions, ``--partitions`` partitions) batching up to that
linger, and a consumer with the services' configuration following the topic (or nobody:
``--follow no``); the broker's cores busy in each window of ``--window`` seconds.

    python -m scripts.bench_broker --rate 10000 --linger-ms 5 20 100 --follow both --seconds 45

Writes ``reports/bench_broker.md`` and ``.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from tqdm import tqdm

from scripts import process_cpu
from scripts.private_kafka import PrivateKafka
from shared.config import KafkaSettings
from shared.kafka import make_consumer, make_producer

log = logging.getLogger("bench_broker")
TOPIC = "bench-broker"
EVENT = b'{"user_id":"u-0000000","item_id":"i-00000","event":"click","ts":1796695958043}'


@dataclass
class Window:
    end_s: float  # seconds since the producer started
    broker_cores: float  # the broker's CPU seconds over the window's wall seconds
    produced: int  # events produced so far
    consumed: int  # events the follower had received by the window's end (0 without one)


@dataclass
class Run:
    linger_ms: int
    rate: int
    partitions: int
    followed: bool
    windows: list[Window] = field(default_factory=list)


def measure(
    bootstrap: str,
    broker_pid: int,
    rate: int,
    linger_ms: int,
    seconds: float,
    window_s: float,
    partitions: int,
    followed: bool = True,
) -> Run:
    """Produce ``rate`` events/s for ``seconds`` to a new topic that one consumer follows (none
    unless ``followed``); the broker's cores busy per window. Each event's key is one of 20,000
    users."""
    settings = KafkaSettings(bootstrap_servers=bootstrap)
    topic = f"{TOPIC}-{linger_ms}-{time.monotonic_ns()}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions)]).values():
        future.result(timeout=10)
    run = Run(linger_ms, rate, partitions, followed)
    consumed = [0]
    stop = threading.Event()
    follower = threading.Thread(
        target=_follow,
        args=(settings, topic, partitions, stop, consumed),
        name="follower",
        daemon=True,
    )
    if followed:
        follower.start()
    producer = make_producer(settings, **{"linger.ms": linger_ms})
    roots = {"broker": broker_pid}
    started = time.perf_counter()
    window_start, cpu_before = started, process_cpu.sample(roots)
    produced = 0
    try:
        while True:
            now = time.perf_counter()
            produced = _produce_until(producer, topic, produced, int((now - started) * rate))
            ended = now - started >= seconds
            if now - window_start >= window_s or (ended and now - window_start >= window_s / 2):
                cpu_after = process_cpu.sample(roots)
                used = process_cpu.used(cpu_before, cpu_after)
                run.windows.append(Window(
                    round(now - started, 1), round(used["broker"] / used["wall_s"], 3),
                    produced, consumed[0],
                ))  # fmt: skip
                log.warning(
                    "linger %d ms, %.0f s: broker %.3f cores",
                    linger_ms,
                    now - started,
                    run.windows[-1].broker_cores,
                )
                window_start, cpu_before = now, cpu_after
            if ended:
                break
            time.sleep(0.005)
        producer.flush(10)
    finally:
        stop.set()
        if followed:
            follower.join(10)
    return run


def _produce_until(producer: Producer, topic: str, produced: int, due: int) -> int:
    """Produce events numbered ``produced`` up to ``due``; returns ``due``."""
    while produced < due:
        try:
            producer.produce(topic, key=b"u-%d" % (produced % 20_000), value=EVENT)
        except BufferError:  # local queue full: serve delivery reports, then retry
            producer.poll(0.05)
            continue
        produced += 1
    producer.poll(0)
    return produced


def _follow(
    settings: KafkaSettings, topic: str, partitions: int, stop: threading.Event, consumed: list[int]
) -> None:
    consumer = make_consumer(settings, f"{topic}.follower")
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    try:
        while not stop.is_set():
            consumed[0] += sum(m.error() is None for m in consumer.consume(1000, 0.2))
    finally:
        consumer.close()


def markdown(runs: list[Run], command: str) -> str:
    lines = [
        "# The local broker's CPU as a followed topic grows (scripts/bench_broker.py)",
        "",
        f"Command: `{command}`",
        "",
        "Tansu (memory engine), one fresh private broker per run; one producer at the rate "
        "below (`shared.kafka` producer settings, the linger given) and, where followed, one "
        "consumer following the topic with the services' consumer settings. Cores busy: the "
        "broker's CPU seconds over each window's wall seconds (2 shared cores).",
        "",
        "| linger ms | events/s | partitions | followed | window ends at s | broker cores | "
        "events produced | events consumed |",
        "|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for run in runs:
        for w in run.windows:
            followed = "yes" if run.followed else "no"
            lines.append(
                f"| {run.linger_ms} | {run.rate} | {run.partitions} | {followed} | {w.end_s} | "
                f"{w.broker_cores} | {w.produced} | {w.consumed} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=int, default=10_000, help="events/s produced (10000)")
    p.add_argument(
        "--linger-ms",
        type=int,
        nargs="+",
        default=[5, 20, 100],
        help="producer linger values, a fresh broker each (5 20 100)",
    )
    p.add_argument("--seconds", type=float, default=60.0, help="seconds per run (60)")
    p.add_argument("--window", type=float, default=15.0, help="seconds per CPU window (15)")
    p.add_argument("--partitions", type=int, default=4, help="topic partitions (4)")
    p.add_argument(
        "--follow",
        choices=("yes", "no", "both"),
        default="yes",
        help="whether a consumer follows the topic; no: the cost of producing alone (yes)",
    )
    p.add_argument("--out", type=Path, default=Path("reports"), help="report folder (reports)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_broker-") as work:
        follows = {"yes": [True], "no": [False], "both": [True, False]}[args.follow]
        plan = list(itertools.product(args.linger_ms, follows))
        for linger_ms, followed in tqdm(plan, desc="broker runs", unit="run"):
            broker = PrivateKafka(Path(work) / f"kafka-{linger_ms}-{followed}")
            broker.start()
            try:
                assert broker.proc is not None
                runs.append(
                    measure(
                        broker.bootstrap,
                        broker.proc.pid,
                        args.rate,
                        linger_ms,
                        args.seconds,
                        args.window,
                        args.partitions,
                        followed,
                    )
                )
            finally:
                broker.kill()
    command = "python -m scripts.bench_broker " + " ".join(sys.argv[1:] if argv is None else argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_broker.json").write_text(
        json.dumps({"command": command, "runs": [asdict(r) for r in runs]}, indent=2) + "\n"
    )
    text = markdown(runs, command)
    (args.out / "bench_broker.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
