"""scripts.train_triplet once: the triplet space's snapshot, features for unseen items."""

from __future__ import annotations

from pathlib import Path

from scripts import train_triplet
from shared.model.triplet_space import load_triplet_space
from shared.snapshots import read_item_vectors, read_manifest, resolve
from shared.spaces import space_models_dir
from tests.test_model_triplet import grouped_log, items_frame


def test_initial_training_writes_the_space(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    data.mkdir()
    grouped_log(n_users=120, events=8).to_csv(data / "interactions.csv", index=False)
    items = items_frame()
    items.loc[len(items)] = ["unseen-1", "garden item spare", "garden"]  # no events yet
    items.to_csv(data / "items.csv", index=False)
    models = tmp_path / "models"
    code = train_triplet.main(["--data-dir", str(data), "--models-dir", str(models),
                               "--epochs", "3", "--dim", "8", "--no-progress", "--threads", "1"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    folder = resolve(space_models_dir(models, "triplet"))
    ids, vectors = read_item_vectors(folder)
    manifest = read_manifest(folder)
    assert manifest["space"] == "triplet" and manifest["normalized"] is True
    assert manifest["feature_only_items"] == 1 and ids[-1] == "unseen-1"
    assert vectors.shape == (41, 8)
    assert load_triplet_space(models).version == manifest["version"]
    assert "triplet space" in capsys.readouterr().out
