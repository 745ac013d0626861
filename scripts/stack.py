"""Start, stop and inspect the local stack of real servers.

    python -m scripts.stack up [--data-dir .stack] [--kafka-port 9092] ...
    python -m scripts.stack status
    python -m scripts.stack env      # prints export lines for a shell
    python -m scripts.stack down

With node present, statsd and carbon-cache start too (metrics in <data>/whisper; read them
with `python -m scripts.metrics`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scripts import localstack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--data-dir", type=Path, default=Path(".stack"),
                        help="folder for server data, logs and the state file (default: .stack)")
    for name, port in localstack.DEFAULT_PORTS.items():
        parser.add_argument(f"--{name}-port", type=int, default=port,
                            help=f"port for {name} on 127.0.0.1 (default: {port}; 0 = any free)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for each server to answer (default: 30)")
    args = parser.parse_args(argv)

    if args.command == "up":
        try:
            info = localstack.start(args.data_dir, args.kafka_port or None,
                                    args.mongo_port or None, args.redis_port or None,
                                    timeout_s=args.timeout)
        except localstack.StackError as exc:
            print(f"stack: {exc}", file=sys.stderr)
            return 1
        print(f"kafka  {info.kafka_bootstrap}\nmongo  {info.mongo_uri}\nredis  {info.redis_url}")
        if info.statsd_port:
            print(f"statsd udp://127.0.0.1:{info.statsd_port} → carbon 127.0.0.1:"
                  f"{info.carbon_port} → whisper {info.whisper_dir}")
        else:
            print(f"metrics: not started ({info.metrics_missing})")
        print(f"addresses written to {Path(info.data_dir) / localstack.ENV_FILE}")
        return 0
    if args.command == "down":
        stopped = localstack.stop(args.data_dir)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    if args.command == "status":
        states = localstack.status(args.data_dir)
        if not states:
            print("no stack recorded in", args.data_dir)
            return 1
        for name, alive in states.items():
            print(f"{name:6} {'running' if alive else 'stopped'}")
        return 0 if all(states.values()) else 1
    recorded = localstack.read_state(args.data_dir)
    if recorded is None:
        print("no stack recorded in", args.data_dir, file=sys.stderr)
        return 1
    for key, value in recorded.env().items():
        print(f"export {key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
