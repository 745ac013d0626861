"""Generate a synthetic interaction stream and item catalogue (seeded, reproducible).

    python -m scripts.generate_data --out data --users 2000 --items 1000 --events 60000

Writes <out>/interactions.csv (user_id,item_id,event,ts in Unix ms, time ordered) and
<out>/items.csv (item_id,title,category,price,genres). See shared/data/synthetic.py for the model of
users, items, popularity, arrivals and drift.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from shared.data.loaders import write_interactions_csv
from shared.data.movielens_writer import write_movielens_100k
from shared.data.synthetic import SyntheticConfig, generate
from shared.logs import setup_logging
from shared.model.cli import INTERACTIONS_FILE, ITEMS_FILE

log = logging.getLogger("generate_data")


def build_parser() -> argparse.ArgumentParser:
    d = SyntheticConfig()
    p = argparse.ArgumentParser(prog="python -m scripts.generate_data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data"),
                   help="output folder (default: data)")
    p.add_argument("--users", type=int, default=d.n_users,
                   help=f"number of users (default: {d.n_users})")
    p.add_argument("--items", type=int, default=d.n_items,
                   help=f"number of items (default: {d.n_items})")
    p.add_argument("--events", type=int, default=d.n_events,
                   help=f"number of interaction events (default: {d.n_events})")
    p.add_argument("--clusters", type=int, default=d.n_clusters,
                   help=f"taste clusters = item categories (default: {d.n_clusters})")
    p.add_argument("--days", type=float, default=d.days,
                   help=f"time span of the events in days (default: {d.days})")
    p.add_argument("--start-ms", type=int, default=d.start_ms,
                   help=f"timestamp of the first moment, Unix ms (default: {d.start_ms}, "
                        "2024-01-01)")
    p.add_argument("--popularity-exponent", type=float, default=d.popularity_exponent,
                   help="Zipf exponent of item appeal; higher = more concentrated "
                        f"(default: {d.popularity_exponent})")
    p.add_argument("--initial-users", type=float, default=d.initial_user_fraction,
                   help="share of users present from the start, the rest arrive over time "
                        f"(default: {d.initial_user_fraction})")
    p.add_argument("--initial-items", type=float, default=d.initial_item_fraction,
                   help=f"share of items present from the start (default: "
                        f"{d.initial_item_fraction})")
    p.add_argument("--drift", type=float, default=d.drift,
                   help="how far users' primary and secondary tastes swap weight by the end, "
                        f"0..1 (default: {d.drift})")
    p.add_argument("--noise", type=float, default=d.noise,
                   help=f"share of events in a random category (default: {d.noise})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default: {d.seed})")
    p.add_argument("--movielens", action="store_true",
                   help="write MovieLens 100k files (u.data, u.item: integer ids, ratings, "
                        "genres as the only item feature) instead of the CSVs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("generate_data")
    try:
        cfg = SyntheticConfig(
            n_users=args.users, n_items=args.items, n_events=args.events,
            n_clusters=args.clusters, days=args.days, start_ms=args.start_ms,
            popularity_exponent=args.popularity_exponent,
            initial_user_fraction=args.initial_users, initial_item_fraction=args.initial_items,
            drift=args.drift, noise=args.noise, seed=args.seed)
    except ValueError as exc:
        print(f"generate_data: {exc}", file=sys.stderr)
        return 2
    try:
        interactions, items = generate(cfg)
        args.out.mkdir(parents=True, exist_ok=True)
        if args.movielens:
            write_movielens_100k(interactions, items, args.out, seed=args.seed)
            print(f"wrote {len(interactions)} ratings to {args.out / 'u.data'} and "
                  f"{len(items)} items to {args.out / 'u.item'}")
            return 0
        write_interactions_csv(interactions, args.out / INTERACTIONS_FILE)
        items.to_csv(args.out / ITEMS_FILE, index=False)
    except KeyboardInterrupt:
        print("generate_data: interrupted", file=sys.stderr)
        return 130
    print(f"wrote {len(interactions)} events of {interactions.user_id.nunique()} users on "
          f"{interactions.item_id.nunique()} items to {args.out / INTERACTIONS_FILE}, "
          f"{len(items)} items to {args.out / ITEMS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
