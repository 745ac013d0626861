"""Benchmark event ingestion under failure: the three target scenarios of issue 17.

    python -m scripts.bench_ingestion outage --mode stall    # Kafka SIGSTOPped for 60 s
    python -m scripts.bench_ingestion outage --mode kill     # Kafka killed, restarted after 60 s
    python -m scripts.bench_ingestion kills                  # trainer SIGKILLed 20 times
    python -m scripts.bench_ingestion pills                  # 10,000 malformed records

Each run starts its own local stack (scripts.localstack) in a temporary folder and stops it.

- ``outage``: the recommender under gunicorn (its gunicorn.conf.py) with Kafka on a broker of
  the bench's own (scripts.private_kafka). A poster sends ``--rate`` events/s, one per
  ``POST /events``, numbered per user; after ``--before-s`` the broker is stopped for
  ``--outage-s`` (``stall``: SIGSTOP then SIGCONT; ``kill``: SIGKILL, then a new broker on the
  same port and the topics created again), posting goes on for ``--after-s``, then the bench
  waits for the spool to drain and reads ``interactions``: events lost, duplicates, order per
  user, 5xx answers, and the time from the broker's return to the first event delivered
  directly again (``"spooled": 0``). The broker keeps topics in memory: events it acknowledged
  before a kill die with it; they are counted apart, not as lost by the platform.
- ``kills``: ``--rate`` events/s of ``--users`` users produced to ``interactions`` while a
  trainer process is SIGKILLed ``--kills`` times (each incarnation is killed a random 1-4 s
  after its first learned batch), then one last trainer drains the topic and stops with
  SIGTERM. Checked against what was sent: events lost (an item missing from its user's Redis
  seen list, a user missing from MongoDB), duplicate seen-list entries, inflated counters
  (``users.n_events``, Redis ``popular`` and ``trending``, half-lives set far beyond the run so
  a score reads the number of events), and each restart's time to its first learned batch with
  where it went (the trainer's start-up milestones since process birth). The floor beside it:
  a bare ``python -c "import torch"`` measured in the same run.
- ``pills``: ``--pills`` malformed records cycling the kinds of scripts/poison_pills.py (the
  10 MB one once) shuffled among ``--valid`` valid events; one trainer drains them. Checked:
  share of pills in the DLQ, share of valid events learned, trainer exits.

Results are merged into reports/bench_ingestion.json and the whole report is rendered to
reports/bench_ingestion.md (a scenario not run yet is shown as such). Run it under the
benchmark lock: ``flock /work/bench.lock .venv/bin/python -m scripts.bench_ingestion ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, cast

import redis
import requests
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from tqdm import tqdm

from scripts import localstack, poison_pills
from scripts.private_kafka import PrivateKafka
from scripts.processes import ManagedProcess, start_gunicorn
from shared.config import Settings
from shared.events import Interaction
from shared.kafka import ensure_topics, flush_or_raise, make_producer
from shared.storage import mongo, ranking_store, redis_store

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "bench_ingestion"
SCENARIOS = ("outage", "kills", "pills")
FAR_HALF_LIFE_S = "1e12"  # counters then read the number of (weight-1 "view") events
STATUS_POLL_S = 0.05


# ------------------------------------------------------------------------------ common
def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def base_env(stack: localstack.StackInfo, work: Path, kafka_bootstrap: str | None = None) -> dict:
    env = dict(os.environ)
    env.update(stack.env())
    if kafka_bootstrap:
        env["RECSYS_KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    env.update(
        {
            "RECSYS_MODELS_DIR": str(work / "models"),
            "RECSYS_RECOMMENDER_SPOOL_DIR": str(work / "spool"),
            "RECSYS_MONGO_DATABASE": "bench_ingestion",
            "RECSYS_STATSD_ENABLED": "false",
            "RECSYS_LOG_LEVEL": "INFO",
            "RECSYS_POPULARITY_HALF_LIFE_S": FAR_HALF_LIFE_S,
            "RECSYS_RANKING_TRENDING_HALF_LIFE_S": FAR_HALF_LIFE_S,
        }
    )
    return env


@contextmanager
def local_stack() -> Iterator[tuple[localstack.StackInfo, Path]]:
    with tempfile.TemporaryDirectory(prefix="bench_ingestion-") as tmp:
        work = Path(tmp)
        stack = localstack.start(work / "stack", metrics=False)
        try:
            yield stack, work
        finally:
            kill_trainers()
            localstack.stop(work / "stack")


def read_topic(bootstrap: str, topic: str, partitions: int, idle_s: float = 3.0) -> list[Any]:
    """Every message of ``topic`` (values, keys, partitions), until ``idle_s`` brings nothing."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-reader",
                         "enable.auto.commit": False})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out: list[Any] = []
    try:
        while batch := consumer.consume(1000, timeout=idle_s):
            out += [m for m in batch if m.error() is None]
    finally:
        consumer.close()
    return out


# ------------------------------------------------------------------------------ outage
class Poster:
    """POSTs one event per slot at ``rate``/s from a thread pool (a slow answer delays no slot)."""

    def __init__(self, url: str, rate: float, users: int, threads: int = 32) -> None:
        self.url = url
        self.rate = rate
        self.users = users
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(threads)
        self._local = threading.local()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _post(self, n: int) -> None:
        user = f"u{n % self.users}"
        body: dict[str, Any] = {"user_id": user, "item_id": f"s{n}", "event": "view",
                                "ts": int(time.time() * 1000)}  # fmt: skip
        sent = time.time()
        record: dict[str, Any] = {"n": n, "user": user, "sent": sent}
        try:
            answer = self._session().post(self.url + "/events", json=body, timeout=10)
            record["status"] = answer.status_code
            if answer.status_code == 202:
                record["spooled"] = answer.json().get("spooled", 0)
        except requests.RequestException as exc:
            record["status"] = type(exc).__name__
        record["answered"] = time.time()
        with self._lock:
            self.records.append(record)

    def _run(self) -> None:
        started = time.monotonic()
        n = 0
        while not self._stop.is_set():
            due = started + n / self.rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            self._pool.submit(self._post, n)
            n += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)


def outage(args: argparse.Namespace) -> dict[str, Any]:
    with local_stack() as (stack, work):
        broker = PrivateKafka(work / "kafka")
        broker.start()
        env = base_env(stack, work, broker.bootstrap)
        settings = Settings.from_env(env)
        ensure_topics(settings.kafka)
        port = localstack.free_port()
        api: ManagedProcess | None = None
        load_before = load_average()
        try:
            api = start_gunicorn(
                "services.recommender_app.wsgi:app", port, env, work / "recommender_app.log",
                workers=None, threads=None, config="services/recommender_app/gunicorn.conf.py",
            )  # fmt: skip
            poster = Poster(f"http://127.0.0.1:{port}", args.rate, args.users)
            poster.start()
            print(f"posting {args.rate:g} events/s; broker {args.mode} in {args.before_s:g} s",
                  flush=True)  # fmt: skip
            time.sleep(args.before_s)
            down_at = time.time()
            if args.mode == "stall":
                broker.pause()
            else:
                broker.kill()
            for _ in tqdm(range(int(args.outage_s)), desc=f"broker {args.mode}", unit="s"):
                time.sleep(1.0)
            if args.mode == "stall":
                broker.resume()
            else:
                broker.start()
                ensure_topics(settings.kafka)
            back_at = time.time()
            time.sleep(args.after_s)
            poster.stop()
            stopped_at = time.time()
            records = sorted(poster.records, key=lambda r: r["n"])
            accepted = {r["n"]: r for r in records if r.get("status") == 202}
            # A directly delivered 202 before a kill was acknowledged by the broker that died.
            held_by_dead_broker = {
                n for n, r in accepted.items()
                if args.mode == "kill" and r.get("spooled") == 0 and r["answered"] < down_at
            }  # fmt: skip
            expected = set(accepted) - held_by_dead_broker
            found: list[int] = []
            deadline = time.monotonic() + args.drain_s
            while True:
                messages = read_topic(broker.bootstrap, settings.kafka.interactions_topic,
                                      settings.kafka.interactions_partitions)  # fmt: skip
                found = [int(json.loads(m.value())["item_id"][1:]) for m in messages]
                missing = expected - set(found)
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(2.0)
            drained_at = time.time()
            by_partition_order = messages
        finally:
            if api is not None:
                api.stop()
            broker.kill()
        load_after = load_average()

    per_user: dict[str, list[int]] = defaultdict(list)
    seen_once: set[int] = set()
    for m in by_partition_order:  # within a partition, in offset order
        n = int(json.loads(m.value())["item_id"][1:])
        if n in seen_once:
            continue
        seen_once.add(n)
        per_user[f"u{n % args.users}"].append(n)
    out_of_order = sum(1 for seq in per_user.values() if seq != sorted(seq))
    statuses = Counter(str(r.get("status")) for r in records)
    first_direct = min(
        (r["answered"] for r in records if r["sent"] >= back_at and r.get("spooled") == 0),
        default=None,
    )
    answer_s = [r["answered"] - r["sent"] for r in records]
    return {
        "mode": args.mode,
        "rate_per_s": args.rate,
        "outage_s": args.outage_s,
        "posted": len(records),
        "accepted_202": len(accepted),
        "status_counts": dict(statuses),
        "server_errors_5xx": sum(n for s, n in statuses.items() if s.isdigit() and int(s) >= 500),
        "spooled": sum(1 for r in accepted.values() if r.get("spooled")),
        "held_by_killed_broker": len(held_by_dead_broker),
        "expected_in_topic": len(expected),
        "lost": len(expected - set(found)),
        "duplicates_in_topic": len(found) - len(set(found)),
        "users_out_of_order": out_of_order,
        "direct_delivery_again_s": (
            None if first_direct is None else round(first_direct - back_at, 3)
        ),
        "spool_drained_after_return_s": round(drained_at - back_at, 1),
        "posting_stopped_after_return_s": round(stopped_at - back_at, 1),
        "answer_ms_p50": percentile([s * 1000 for s in answer_s], 0.5),
        "answer_ms_p99": percentile([s * 1000 for s in answer_s], 0.99),
        "answer_ms_max": percentile([s * 1000 for s in answer_s], 1.0),
        "load_before": load_before,
        "load_after": load_after,
    }


# ------------------------------------------------------------------------------ trainer runs
def read_status(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


TRAINERS: list[subprocess.Popen] = []  # every trainer started, killed when the stack stops


def start_trainer(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.incremental_trainer"], cwd=ROOT, env=env,
        stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115 - child owns it
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    TRAINERS.append(proc)
    return proc


def kill_trainers() -> None:
    while TRAINERS:
        proc = TRAINERS.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_until(check: Callable[[], bool], timeout_s: float, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(STATUS_POLL_S)
    return False


def drain_and_stop(env: dict[str, str], work: Path, status: Path, total: int) -> dict[str, Any]:
    """A last trainer learns everything there is, then stops cleanly (SIGTERM)."""
    proc = start_trainer(env, work / "trainer.log")
    try:
        done = wait_until(
            lambda: (read_status(status).get("pid") == proc.pid
                     and sum(read_status(status).get("positions", {}).values()) >= total),
            600, proc,
        )  # fmt: skip
        if not done:
            raise RuntimeError(f"the last trainer did not drain the topic; see {work}")
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return read_status(status) | {"exit_code": proc.returncode}


def produce_events(settings: Settings, events: list[Interaction], rate: float | None,
                   raw: Sequence[tuple[int, bytes]] = ()) -> None:  # fmt: skip
    """Produce ``events`` (keyed by user) at ``rate``/s (None: at once); ``raw`` records are
    inserted before the event of their index. A record the broker did not take is sent again
    (the stream must hold every record the figures count)."""
    # Room for the 10 MB pill (the broker takes it; librdkafka's default limit is 1 MB).
    producer = make_producer(settings.kafka, **{"message.max.bytes": poison_pills.TEN_MB << 1})
    topic = settings.kafka.interactions_topic
    failed: list[tuple[bytes, bytes, str]] = []

    def sent(key: bytes, value: bytes) -> Callable[[KafkaError | None, Message], None]:
        def report(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failed.append((key, value, str(err)))
        return report

    def send(key: bytes, value: bytes) -> None:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=sent(key, value))
                return
            except BufferError:
                producer.poll(0.05)

    raw_at: dict[int, list[bytes]] = defaultdict(list)
    for index, value in raw:
        raw_at[index].append(value)
    started = time.monotonic()
    for n, event in enumerate(events):
        for value in raw_at.get(n, ()):
            send(b"pill", value)
        if rate:
            pause = started + n / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        send(event.user_id.encode(), event.to_bytes())
        producer.poll(0)
    flush_or_raise(producer, 60.0)
    for _ in range(3):
        if not failed:
            return
        again, failed[:] = list(failed), []
        print(f"{len(again)} records not taken by the broker ({again[0][2]}): sending again",
              flush=True)  # fmt: skip
        for key, value, _ in again:
            send(key, value)
        flush_or_raise(producer, 60.0)
    if failed:
        raise RuntimeError(f"{len(failed)} records could not be produced: {failed[0][2]}")


def scores(r: redis.Redis, key: str) -> dict[str, float]:
    pairs = cast("list[tuple[str, float]]", r.zrange(key, 0, -1, withscores=True))
    return {str(member): float(score) for member, score in pairs}


def counters_check(settings: Settings, events: list[Interaction]) -> dict[str, Any]:
    """Stores against what was sent: lost events, duplicate seen entries, inflated counters."""
    r = redis_store.connect(settings.redis)
    db = mongo.connect(settings.mongo)
    by_user: dict[str, set[str]] = defaultdict(set)
    for event in events:
        by_user[event.user_id].add(event.item_id)
    sent_per_user = Counter(e.user_id for e in events)
    sent_per_item = Counter(e.item_id for e in events)
    n_events = {d["_id"]: d.get("n_events", 0) for d in db[mongo.USERS].find({}, {"n_events": 1})}
    lost = duplicates = checked_pairs = 0
    cap = settings.redis.seen_list_length
    for user, items in by_user.items():
        seen = redis_store.get_seen(r, user)
        duplicates += len(seen) - len(set(seen))
        if len(items) <= cap:  # a longer history is trimmed to the cap by design
            lost += len(items - set(seen))
            checked_pairs += len(items)
    popular = scores(r, redis_store.POPULAR_KEY)
    trending = scores(r, ranking_store.TRENDING_KEY)

    def excess(store: dict[str, float], sent: Counter) -> dict[str, float]:
        diff = {k: store.get(k, 0.0) - v for k, v in sent.items()}
        return {
            "sum_minus_sent": round(sum(store.values()) - sum(sent.values()), 3),
            "keys_over": sum(1 for d in diff.values() if d > 0.5),
            "keys_under": sum(1 for d in diff.values() if d < -0.5),
        }

    return {
        "events_sent": len(events),
        "users": len(by_user),
        "users_missing_in_mongo": sum(1 for u in by_user if u not in n_events),
        "user_item_pairs_checked": checked_pairs,
        "events_lost_from_seen_lists": lost,
        "duplicate_seen_entries": duplicates,
        "n_events": excess({u: float(n) for u, n in n_events.items()}, sent_per_user),
        "popular": excess(popular, sent_per_item),
        "trending": excess(trending, sent_per_item),
    }


def import_floor_s() -> float:
    """Seconds for a bare interpreter to import torch: the floor of any trainer start."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True, cwd=ROOT)
    return round(time.perf_counter() - started, 3)


def first_batch_learned(status: Path, pid: int) -> bool:
    current = read_status(status)
    return current.get("pid") == pid and "first_batch" in current.get("startup", {})


def kills(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    with local_stack() as (stack, work):
        env = base_env(stack, work)
        settings = Settings.from_env(env)
        ensure_topics(settings.kafka)
        status = Path(settings.model.models_dir) / "trainer_status.json"
        events = [
            Interaction(f"u{rng.randrange(args.users)}", f"i{rng.randrange(args.items)}", "view",
                        int(time.time() * 1000))
            for _ in range(args.events)
        ]  # fmt: skip
        load_before = load_average()
        floors = [import_floor_s() for _ in range(2)]
        stream = threading.Thread(target=produce_events, args=(settings, events, args.rate),
                                  daemon=True)  # fmt: skip
        stream.start()
        restarts: list[dict[str, Any]] = []
        for _ in tqdm(range(args.kills), desc="SIGKILL the trainer", unit="kill"):
            proc = start_trainer(env, work / "trainer.log")
            learned = wait_until(partial(first_batch_learned, status, proc.pid), 60, proc)
            if learned:
                restarts.append(read_status(status)["startup"])
                time.sleep(rng.uniform(args.kill_min_s, args.kill_max_s))
            proc.kill()
            proc.wait()
            if not learned:
                restarts.append({"first_batch": None, "exit_code": proc.returncode})
        stream.join()
        final = drain_and_stop(env, work, status, len(events))
        checked = counters_check(settings, events)
        load_after = load_average()

    firsts = [r["first_batch"] for r in restarts if r.get("first_batch") is not None]
    return {
        "kills": args.kills,
        "events": args.events,
        "rate_per_s": args.rate,
        "users": args.users,
        "items": args.items,
        **checked,
        "restart_to_first_batch_s": {
            "p50": percentile(firsts, 0.5), "p95": percentile(firsts, 0.95),
            "max": percentile(firsts, 1.0), "never_learned": len(restarts) - len(firsts),
        },  # fmt: skip
        "restart_milestones_median_s": {
            name: percentile([r[name] for r in restarts if name in r], 0.5)
            for name in ("imports", "snapshot_loaded", "initialised", "assigned", "first_batch")
        },
        "import_torch_floor_s": floors,
        "last_trainer_exit_code": final.get("exit_code"),
        "last_trainer_replayed_not_recounted": final.get("replayed_not_recounted"),
        "load_before": load_before,
        "load_after": load_after,
    }


def pills(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    now = int(time.time() * 1000)
    kinds = poison_pills.pills(now, include_huge=True)
    huge = [name for name, value in kinds.items() if len(value) >= poison_pills.TEN_MB]
    small = [name for name in kinds if name not in huge]
    chosen = huge + [small[n % len(small)] for n in range(args.pills - len(huge))]
    with local_stack() as (stack, work):
        env = base_env(stack, work)
        settings = Settings.from_env(env)
        ensure_topics(settings.kafka)
        status = Path(settings.model.models_dir) / "trainer_status.json"
        events = [
            Interaction(f"u{rng.randrange(args.users)}", f"i{rng.randrange(args.items)}", "view",
                        now + n)
            for n in range(args.valid)
        ]  # fmt: skip
        raw = sorted((rng.randrange(len(events) + 1), kinds[name]) for name in chosen)
        load_before = load_average()
        print(f"producing {len(events)} valid events and {len(raw)} malformed records "
              f"of {len(set(chosen))} kinds", flush=True)  # fmt: skip
        produce_events(settings, events, None, raw)
        proc = start_trainer(env, work / "trainer.log")
        started = time.monotonic()
        try:
            total = len(events) + len(raw)
            drained = wait_until(
                lambda: sum(read_status(status).get("positions", {}).values()) >= total,
                240, proc,
            )  # fmt: skip
            drain_s = time.monotonic() - started
            alive = proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        final = read_status(status)
        dead = read_topic(stack.kafka_bootstrap, settings.kafka.dead_letter_topic,
                          settings.kafka.interactions_partitions)  # fmt: skip
        reasons = Counter(json.loads(m.value())["reason"].split(":")[0][:60] for m in dead)
        checked = counters_check(settings, events)
        load_after = load_average()
    pairs = max(1, checked["user_item_pairs_checked"])
    return {
        "pills": len(raw),
        "kinds": len(set(chosen)),
        "valid": len(events),
        "dead_lettered": len(dead),
        "dlq_share": round(len(dead) / len(raw), 4),
        "valid_learned_share": round(1 - checked["events_lost_from_seen_lists"] / pairs, 4),
        "trainer_events": final.get("events"),
        "trainer_dlq": final.get("dlq"),
        "drained": drained,
        "drain_s": round(drain_s, 1),
        "trainer_alive_until_stopped": alive,
        "trainer_exit_code": proc.returncode,
        "trainer_restarts": 0 if alive else 1,
        "top_reasons": dict(reasons.most_common(8)),
        **checked,
        "load_before": load_before,
        "load_after": load_after,
    }


# ------------------------------------------------------------------------------ report
def render(report: dict[str, Any]) -> str:
    lines = [
        "# bench_ingestion: issue 17's target scenarios",
        "",
        "Written by `scripts/bench_ingestion.py` (its docstring says what each scenario does). "
        "Local stack: Tansu (memory storage), nx-27017 (MongoDB over SQLite), Valkey; 2 shared "
        "cores with other work running: load averages (1, 5, 15 min) are beside every run.",
        "",
    ]
    for key in ("outage_stall", "outage_kill", "kills", "pills"):
        run = report.get(key)
        lines += [f"## {key}", ""]
        if run is None:
            lines += ["Not run yet.", ""]
            continue
        lines += [f"Command: `{run['command']}`  ", f"Run at {run['at']} UTC; load average "
                  f"before {run['result']['load_before']}, after {run['result']['load_after']}.",
                  "", "| figure | value |", "|---|---|"]  # fmt: skip
        for name, value in run["result"].items():
            if name.startswith("load_"):
                continue
            lines.append(f"| {name} | {json.dumps(value) if isinstance(value, dict) else value} |")
        lines.append("")
    return "\n".join(lines)


def save(key: str, result: dict[str, Any], argv: list[str]) -> None:
    path = REPORT.with_suffix(".json")
    report = json.loads(path.read_text()) if path.exists() else {}
    report[key] = {
        "command": "python -m scripts.bench_ingestion " + shlex.join(argv),
        "at": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "result": result,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    REPORT.with_suffix(".md").write_text(render(report))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_ingestion",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="scenario", required=True)
    one = sub.add_parser("outage", help="Kafka stalled or killed while events are posted")
    one.add_argument("--mode", choices=("stall", "kill"), default="stall")
    one.add_argument("--rate", type=float, default=100.0, help="events/s (default: %(default)s)")
    one.add_argument("--users", type=int, default=50)
    one.add_argument("--before-s", type=float, default=10.0)
    one.add_argument("--outage-s", type=float, default=60.0)
    one.add_argument("--after-s", type=float, default=15.0)
    one.add_argument("--drain-s", type=float, default=90.0, help="wait for the spool at most")
    two = sub.add_parser("kills", help="the trainer SIGKILLed during a stream")
    two.add_argument("--kills", type=int, default=20)
    two.add_argument("--events", type=int, default=20_000)
    two.add_argument("--rate", type=float, default=200.0)
    two.add_argument("--users", type=int, default=2_000)
    two.add_argument("--items", type=int, default=500)
    two.add_argument("--kill-min-s", type=float, default=1.0)
    two.add_argument("--kill-max-s", type=float, default=4.0)
    two.add_argument("--seed", type=int, default=17)
    three = sub.add_parser("pills", help="malformed records mixed with valid ones")
    three.add_argument("--pills", type=int, default=10_000)
    three.add_argument("--valid", type=int, default=10_000)
    three.add_argument("--users", type=int, default=1_000)
    three.add_argument("--items", type=int, default=500)
    three.add_argument("--seed", type=int, default=17)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.scenario == "outage":
        result, key = outage(args), f"outage_{args.mode}"
    elif args.scenario == "kills":
        result, key = kills(args), "kills"
    else:
        result, key = pills(args), "pills"
    print(json.dumps(result, indent=2))
    save(key, result, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
