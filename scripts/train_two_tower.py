"""Initial training of the two-tower cold-start model and its snapshot beside GMF's.

    python -m scripts.train_two_tower --data-dir data
    python -m scripts.train_two_tower --input ml-100k/u.data      # u.item found beside it

Trains on the same earliest --train-fraction of events as scripts/initial_training.py (early
stopping on the latest tenth of them), embeds every item of the training events and of the
item file with the candidate tower, and writes <models-dir>/spaces/two_tower/<version>/ (weights as
np.savez without pickle, item ids and vectors, manifest with training time and model size),
then switches <models-dir>/spaces/two_tower/LATEST atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.config import Settings
from shared.data.split import chronological_split
from shared.logs import setup_logging
from shared.model.cli import add_source_arguments, add_training_arguments
from shared.model.two_tower_cli import (
    add_two_tower_arguments,
    catalogue_vectors,
    load_with_items,
    train_two_tower,
    two_tower_config,
)
from shared.model.two_tower_snapshot import save_two_tower, space_dir


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.train_two_tower", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(p)
    add_training_arguments(p, settings)
    add_two_tower_arguments(p)
    out = p.add_argument_group("output")
    out.add_argument("--models-dir", type=Path, default=settings.model.models_dir,
                     help=f"snapshot root; the two-tower snapshots go to its spaces/two_tower/ folder "
                          f"(default: RECSYS_MODELS_DIR = {settings.model.models_dir})")
    out.add_argument("--keep", type=int, default=settings.trainer.snapshots_kept,
                     help="two-tower snapshots kept after writing (default: "
                          f"RECSYS_TRAINER_SNAPSHOTS_KEPT = {settings.trainer.snapshots_kept})")
    return p


def run(args: argparse.Namespace) -> int:
    frame, items, items_source = load_with_items(args)
    prefix, _ = chronological_split(frame, args.train_fraction)
    metadata = {str(r["item_id"]): r for r in items.to_dict("records")} if items is not None else {}
    config = two_tower_config(args)
    encoder, fit, size = train_two_tower(prefix, metadata, config)
    ids, vectors = catalogue_vectors(encoder, prefix, metadata)
    metrics = {"epochs_run": fit.epochs_run, "best_epoch": fit.best_epoch,
               "best_val_recall@10": fit.best_recall, "train_seconds": round(fit.seconds, 2),
               "train_events": len(prefix), "items_source": items_source, **size}
    version = save_two_tower(args.models_dir, encoder.weights, encoder.space,
                             encoder.known_items, encoder.known_users, ids, vectors,
                             config={k: v for k, v in vars(config).items() if k != "progress"},
                             metrics=metrics, keep=args.keep)
    print(f"two-tower: {fit.epochs_run} epochs (best {fit.best_epoch}, validation recall@10 "
          f"{fit.best_recall}) in {fit.seconds:.1f}s; {size['parameters']} parameters "
          f"({size['bytes_float32'] / 2**20:.1f} MiB float32)")
    print(f"snapshot {version} with {len(ids)} item vectors written to "
          f"{space_dir(args.models_dir)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    args = build_parser(settings).parse_args(argv)
    setup_logging("train_two_tower")
    try:
        return run(args)
    except KeyboardInterrupt:
        print("train_two_tower: interrupted; the two-tower LATEST is unchanged", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as exc:
        print(f"train_two_tower: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
