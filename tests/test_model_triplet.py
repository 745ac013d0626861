"""The triplet item embedding on known-answer data: co-engaged groups, features, snapshots."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from services.faiss_app.catalog import Catalog
from shared.config import FaissSettings
from shared.model.item_features import FeatureVocabulary
from shared.model.next_item import next_item_metrics, next_item_pairs
from shared.model.triplet import TripletConfig, next_item_hits
from shared.model.triplet_offline import train_triplet_on
from shared.model.triplet_space import TripletSpace, load_triplet_space
from shared.snapshots import read_item_vectors, read_manifest, resolve
from shared.spaces import space_models_dir

GROUPS, PER_GROUP = 4, 10
GROUP_NAMES = ["garden", "kitchen", "toys", "books"]


def grouped_log(n_users: int = 300, events: int = 12, seed: int = 0) -> pd.DataFrame:
    """Each user browses one group (items g*10..g*10+9) in random order, an hour apart, with
    one in ten events a random item: the neighbours of an item are its group."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        group = user % GROUPS
        for step in range(events):
            item = group * PER_GROUP + int(rng.integers(PER_GROUP))
            if rng.random() < 0.1:
                item = int(rng.integers(GROUPS * PER_GROUP))
            rows.append((f"u{user}", f"i{item}", "view", 1_700_000_000_000 + step * 3_600_000))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event", "ts"])


def items_frame() -> pd.DataFrame:
    rows = [(f"i{j}", f"{GROUP_NAMES[j // PER_GROUP]} item {j}", GROUP_NAMES[j // PER_GROUP])
            for j in range(GROUPS * PER_GROUP)]  # fmt: skip
    return pd.DataFrame(rows, columns=["item_id", "title", "category"])


FAST = TripletConfig(dim=8, epochs=12, batch_size=256, hard_after_epoch=3, patience=4,
                     learning_rate=0.05, negatives=4, hard_pool=16, loss="margin")  # fmt: skip


def test_pairs_are_next_items_of_the_same_user_within_the_window() -> None:
    users = np.array([0, 0, 0, 0, 1, 1])
    items = np.array([1, 2, 2, 3, 4, 5])
    hour = 3_600_000
    ts = np.array([0, hour, 2 * hour, 100 * hour, 0, hour])
    anchors, positives = next_item_pairs(users, items, ts, window_items=2, window_s=3 * 3600)
    pairs = sorted(zip(anchors.tolist(), positives.tolist(), strict=True))
    # 2→2 is a repeat, 2→3 and 1→3 are outside the window, user 1 never pairs with user 0
    assert pairs == [(1, 2), (1, 2), (4, 5)]


def test_metrics_rank_every_item_but_the_query_and_count_ties_against_the_target() -> None:
    table = np.eye(4, dtype=np.float32)
    table[1] = table[0]  # item 1 is item 0's only neighbour
    hr, ndcg = next_item_hits(table, np.array([0, 0]), np.array([1, 2]), k=1)
    assert hr == 0.5 and ndcg == 0.5
    flat = next_item_metrics(lambda prev: torch.zeros(len(prev), 4), np.array([0]),
                             np.array([1]), k=2)  # fmt: skip
    assert flat == (0.0, 0.0)  # a constant scorer finds nothing, not a lucky order


def test_neighbours_are_the_co_engaged_group_and_new_items_land_by_features(
    tmp_path: Path,
) -> None:
    log = grouped_log()
    catalogue = pd.Index(sorted(log["item_id"].unique(), key=lambda i: int(i[1:])))
    model, info, vocabulary = train_triplet_on(log, catalogue, FAST, items_frame())
    assert info["features"] and info["epochs_run"] >= FAST.hard_after_epoch
    assert any(entry["hard_negatives"] for entry in info["history"])
    vectors = model.item_vectors()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    same_group = []
    for j in range(len(catalogue)):
        order = np.argsort(-(vectors @ vectors[j]))
        top = [int(catalogue[i][1:]) // PER_GROUP for i in order if i != j][:5]
        same_group.append(np.mean([g == j // PER_GROUP for g in top]))
    assert np.mean(same_group) >= 0.9, np.mean(same_group)

    space = TripletSpace(model, list(catalogue), vocabulary)
    new_item = {"new-k": {"title": "kitchen item fresh", "category": "kitchen"}}
    version = space.write(tmp_path, new_items=new_item)
    folder = resolve(space_models_dir(tmp_path, "triplet"), None)
    ids, stored = read_item_vectors(folder)
    assert read_manifest(folder)["normalized"] is True and ids[-1] == "new-k"
    kitchen = [j for j, i in enumerate(ids[:-1]) if int(i[1:]) // PER_GROUP == 1]
    nearest = np.argsort(-(stored[:-1] @ stored[-1]))[:5]
    assert set(nearest.tolist()) <= set(kitchen)  # a new item sits among its category

    loaded = load_triplet_space(tmp_path)
    assert loaded.version == version and loaded.item_ids == list(catalogue)
    again = loaded.embed_new(new_item)["new-k"]
    assert np.allclose(again, stored[-1], atol=1e-5)
    assert loaded.embed_new({"x": {"title": "", "category": "unheard-of"}}) == {}

    # faiss_app serves the snapshot as a normalized space with one IVF-capable index
    served = Catalog(version, ids, stored, stored.shape[1], FaissSettings(), normalized=True)
    hits, _ = served.similar("new-k", 5)
    assert {int(h[1:]) // PER_GROUP for h in hits} == {1}


def group_precision_at_5(vectors: np.ndarray, catalogue: pd.Index) -> float:
    """Mean share of each item's 5 nearest (cosine) items that are in its own group."""
    groups = np.array([int(i[1:]) // PER_GROUP for i in catalogue])
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    top = np.argsort(-scores, axis=1)[:, :5]
    return float((groups[top] == groups[:, None]).mean())


@pytest.mark.parametrize("shared", [16, 2048])  # sampled from 40 items / the whole catalogue
def test_softmax_loss_learns_the_groups_from_ids_alone(shared: int) -> None:
    log = grouped_log()
    catalogue = pd.Index(sorted(log["item_id"].unique(), key=lambda i: int(i[1:])))
    config = dataclasses.replace(FAST, loss="softmax", shared_negatives=shared)
    model, info, _ = train_triplet_on(log, catalogue, config)  # no features: ids only
    assert not info["features"] and np.isfinite(info["history"][-1]["loss"])
    assert group_precision_at_5(model.item_vectors(), catalogue) >= 0.9


def test_feature_vocabulary_hashes_tokens_and_knows_its_categories() -> None:
    vocabulary = FeatureVocabulary.fit({"a": {"category": "toys"}, "b": {"category": "books"}})
    category, tokens = vocabulary.encode([{"category": "toys", "title": "Red Ball!"}, None])
    assert category.tolist() == [2, 0]  # sorted: books=1, toys=2; none=0
    assert (tokens[0, :2] > 0).all() and (tokens[0, 2:] == 0).all() and (tokens[1] == 0).all()
    assert FeatureVocabulary.from_dict(vocabulary.as_dict()) == vocabulary


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        TripletConfig(negatives=8, hard_pool=4)
    with pytest.raises(ValueError):
        TripletConfig(feature_dropout=1.0)
    with pytest.raises(ValueError, match="loss must be one of"):
        TripletConfig(loss="hinge")
    with pytest.raises(ValueError):
        TripletConfig(loss="softmax", temperature=0.0)
