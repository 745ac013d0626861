"""The index layer without HTTP or Kafka: exactness, ANN recall, updates, similarity."""

from __future__ import annotations

import numpy as np
import pytest

from services.faiss_app.catalog import REBUILD_MIN_DEAD, Catalog, normalize_rows
from services.faiss_app.errors import BadQuery, UnknownItemError
from services.faiss_app.index import IndexParams, VectorIndex, default_nlist, default_nprobe
from shared.config import FaissSettings
from shared.item_vectors import ItemVectorUpdate
from tests.faiss_helpers import clustered, exact_top_k, recall

K = 10


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clustered(20_000, 32, n_queries=300, seed=1)


def test_exact_index_is_numpy_brute_force(data: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = data
    index = VectorIndex.build(IndexParams("flat"), items)
    scores, labels = index.search(queries, K)
    truth = exact_top_k(items, queries, K)
    np.testing.assert_array_equal(labels, truth)
    expected = np.take_along_axis(queries @ items.T, truth, axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "params",
    [IndexParams("ivf", nprobe=16), IndexParams("hnsw", hnsw_m=16, ef_construction=40)],
    ids=["ivf", "hnsw"],
)
def test_ann_recall_at_10_against_exact(
    data: tuple[np.ndarray, np.ndarray], params: IndexParams
) -> None:
    items, queries = data
    index = VectorIndex.build(params, items)
    _, labels = index.search(queries, K)
    assert recall(labels.tolist(), exact_top_k(items, queries, K)) >= 0.95


def test_default_nprobe_is_a_share_of_the_cells_with_a_floor() -> None:
    # 1% of 4·√n cells: about the 128 measured at 10M, 40 at 1M, the floor of 32 below
    assert default_nprobe(default_nlist(10_000_000)) == 126
    assert default_nprobe(default_nlist(1_000_000)) == 40
    assert default_nprobe(default_nlist(100_000)) == 32
    assert default_nprobe(5) == 5  # never more cells than there are


def test_an_ivf_index_built_with_nprobe_0_probes_the_default_share(
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    items, queries = data
    index = VectorIndex.build(IndexParams("ivf", nlist=2000, nprobe=0), items)
    assert index.params.nprobe == default_nprobe(2000) == 32
    assert index.describe()["nprobe"] == 32
    _, labels = index.search(queries, K)  # searches with it, not with 0 cells
    assert recall(labels.tolist(), exact_top_k(items, queries, K)) >= 0.9
    explicit = VectorIndex.build(IndexParams("ivf", nlist=2000, nprobe=7), items)
    assert explicit.params.nprobe == 7  # a configured value is kept


def make_catalog(n: int, ann: str | None, seed: int = 2) -> tuple[Catalog, np.ndarray, list[str]]:
    items, _ = clustered(n, 17, n_clusters=16, seed=seed)
    ids = [f"item-{j}" for j in range(n)]
    settings = FaissSettings(
        exact_max_items=n if ann is None else n - 1, ann_type=ann or "hnsw", hnsw_m=16
    )
    return Catalog("v1", ids, items, 16, settings, {0: 3}), items, ids


@pytest.mark.parametrize("ann", [None, "ivf", "hnsw"])
def test_upserts_deletes_and_exclusions(ann: str | None) -> None:
    catalog, items, ids = make_catalog(3000, ann)
    assert catalog.index_type == (ann or "flat")
    query = items[:1] * 3
    before = catalog.search(query, 5)[0][0]
    # Move the best item far away, delete the second, add a new winner.
    winner = (query[0] * 10).astype(np.float32)
    applied = catalog.apply(
        [
            ItemVectorUpdate(before[0], "v2", -query[0]),
            ItemVectorUpdate(before[1], "v2", None),
            ItemVectorUpdate("brand-new", "v2", winner),
        ],
        {0: 6},
        (0, 5),
    )
    assert applied == 3
    after_ids, after_scores = catalog.search(query, 5)[0]
    assert after_ids[0] == "brand-new"
    assert before[0] not in after_ids and before[1] not in after_ids
    assert after_scores == sorted(after_scores, reverse=True)
    excluded = catalog.search(query, 5, [["brand-new", "not-an-item"]])[0][0]
    assert "brand-new" not in excluded and len(excluded) == 5
    assert catalog.count == 3000
    described = catalog.describe()
    assert described["updates"]["offsets"] == {"0": 6}
    assert described["updates"]["last"]["item_id"] == "brand-new"
    with pytest.raises(UnknownItemError):
        catalog.similar(before[1], 5)


def test_similar_is_cosine_over_similarity_dims_after_updates() -> None:
    catalog, items, ids = make_catalog(2000, None)
    moved = np.ones(17, dtype=np.float32)
    catalog.apply([ItemVectorUpdate("item-7", "v2", moved)], {0: 4})
    live = items.copy()
    live[7] = moved
    unit = normalize_rows(live[:, :16])
    truth = np.argsort(-(unit @ unit[7]), kind="stable")
    truth = [ids[j] for j in truth if j != 7][:10]
    got_ids, got_scores = catalog.similar("item-7", 10)
    assert got_ids == truth
    assert "item-7" not in got_ids
    assert all(-1.0001 <= s <= 1.0001 for s in got_scores)


def test_compaction_keeps_answers_and_drops_dead_rows() -> None:
    catalog, items, ids = make_catalog(3000, None)
    deleted = ids[: REBUILD_MIN_DEAD + 10]
    catalog.apply([ItemVectorUpdate(i, "v2", None) for i in deleted], {0: 9})
    assert catalog.needs_rebuild()
    queries = items[2000:2020]
    fresh = catalog.rebuilt()
    assert fresh.count == catalog.count == 3000 - len(deleted)
    assert fresh.describe()["dead_labels"] == 0
    assert fresh.updates.offsets == {0: 9}
    assert [r[0] for r in fresh.search(queries, K)] == [r[0] for r in catalog.search(queries, K)]


def test_wrong_dimension_is_a_bad_query() -> None:
    catalog, _, _ = make_catalog(100, None)
    with pytest.raises(BadQuery):
        catalog.search(np.zeros((1, 5), dtype=np.float32), 3)
