"""The ranking stage on known-answer data: each candidate source, the ranker, the reranker."""

from __future__ import annotations

import numpy as np
import pytest

from shared.events import Interaction
from shared.ranking.candidates import (
    CoEngagementCandidates,
    GMFCandidates,
    NewItemCandidates,
    PopularCandidates,
    TrendingCandidates,
    UserContext,
)
from shared.ranking.co_engagement import CoEngagement
from shared.ranking.features import build_pool, feature_names
from shared.ranking.pipeline import RankingPipeline
from shared.ranking.ranker import (
    LISTWISE,
    PAIRWISE,
    PRIOR_WEIGHTS,
    LinearRanker,
    RankerParams,
)
from shared.ranking.rerank import RerankRules, rerank
from shared.ranking.signals import RecentItems, signal_batch
from shared.ranking.space_sources import (
    InMemorySpace,
    TripletSpaceCandidates,
    TwoTowerSpaceCandidates,
)
from shared.ranking.stores import GlobalLists, MemoryRankingStore, StoreLimits

HOUR_MS = 3_600_000
T0 = 1_700_000_000_000
LIMITS = StoreLimits(
    popular_half_life_s=30 * 24 * 3600.0,
    trending_half_life_s=3600.0,
    co_engagement_half_life_s=7 * 24 * 3600.0,
    co_engagement_per_item=3,
    list_length=50,
    new_items_kept=3,
)


def feed(store: MemoryRankingStore, recent: RecentItems, events: list[Interaction],
         known: set[str] | None = None) -> None:
    """Apply events one at a time, as the trainer's batches would."""
    known = set() if known is None else known
    for event in events:
        fresh = event.item_id not in known
        known.add(event.item_id)
        store.apply(signal_batch([event], recent, lambda _i, fresh=fresh: fresh))


def ev(user: str, item: str, ts: int, event: str = "view") -> Interaction:
    return Interaction(user, item, event, ts)


# -- candidate sources -------------------------------------------------------------------------


def test_co_engagement_ranks_the_items_engaged_right_after_the_users_last_item():
    store, recent = MemoryRankingStore(LIMITS), RecentItems()
    # a is followed by b for three users, by c for one; d follows b (two steps after a).
    feed(store, recent, [
        ev("u1", "a", T0), ev("u1", "b", T0 + 1), ev("u1", "d", T0 + 2),
        ev("u2", "a", T0 + 3), ev("u2", "b", T0 + 4),
        ev("u3", "a", T0 + 5), ev("u3", "b", T0 + 6),
        ev("u4", "a", T0 + 7), ev("u4", "c", T0 + 8),
    ])
    followers = dict(store.co_engagement.neighbours("a", 10))
    assert followers["b"] == pytest.approx(3.0)
    assert followers["c"] == pytest.approx(1.0)
    assert followers["d"] == pytest.approx(0.5)  # second previous item counts half
    source = CoEngagementCandidates(store)
    hits = source.fetch(UserContext.of("new", ["a"]), 10)
    assert [i for i, _ in hits] == ["b", "c", "d"]
    assert sum(s for _, s in hits) == pytest.approx(1.0)  # shares of a's followers
    # The newest recent item weighs most: after [c, a] (c newest), c's followers lead.
    feed(store, recent, [ev("u5", "c", T0 + 9), ev("u5", "e", T0 + 10)])
    hits = source.fetch(UserContext.of("x", ["c", "a"]), 10)
    assert hits[0][0] == "e"


def test_co_engagement_is_bounded_per_item_and_decays():
    counts = CoEngagement(half_life_s=3600.0, max_per_item=2)
    counts.add({("a", "old"): 4.0}, T0)
    for i in range(10):
        counts.add({("a", f"x{i}"): 1.0}, T0 + 1)
    assert len(counts.followers["a"]) < 2 * 2
    # Same weight, ten half-lives later: the recent pair outranks a 4× stronger old one.
    counts.add({("b", "old"): 4.0}, T0)
    counts.add({("b", "new"): 1.0}, T0 + 10 * HOUR_MS)
    assert [i for i, _ in counts.neighbours("b", 2)] == ["new", "old"]


def test_trending_follows_the_recent_burst_while_popular_keeps_the_long_run_leader():
    store, recent = MemoryRankingStore(LIMITS), RecentItems()
    old = [ev(f"u{i}", "classic", T0 + i) for i in range(20)]
    burst = [ev(f"v{i}", "hit", T0 + 48 * HOUR_MS + i) for i in range(5)]
    feed(store, recent, old + burst)
    user = UserContext.of("someone", [])
    assert TrendingCandidates(store).fetch(user, 2)[0][0] == "hit"
    assert PopularCandidates(store).fetch(user, 2)[0][0] == "classic"


def test_new_items_are_the_most_recently_first_seen_and_stay_bounded():
    store, recent = MemoryRankingStore(LIMITS), RecentItems()
    feed(store, recent, [ev("u", f"i{n}", T0 + n * HOUR_MS) for n in range(8)]
         + [ev("w", "i0", T0 + 9 * HOUR_MS)])  # an old item engaged again is not new
    hits = NewItemCandidates(store).fetch(UserContext.of("x", []), 10)
    assert [i for i, _ in hits] == ["i7", "i6", "i5"]  # new_items_kept = 3


def test_gmf_source_passes_the_search_answer_through():
    source = GMFCandidates(lambda user, n: [("a", 2.0), ("b", 1.0), ("c", 0.5)][:n])
    assert source.fetch(UserContext.of("u", []), 2) == [("a", 2.0), ("b", 1.0)]


def test_recent_items_keep_the_newest_and_forget_the_least_active_users():
    recent = RecentItems(depth=2, max_users=2)
    recent.push("u1", "a")
    recent.push("u1", "b")
    assert recent.push("u1", "c") == ("b", "a")
    assert recent.of("u1") == ("c", "b")
    recent.push("u2", "x")
    recent.push("u3", "y")
    assert not recent.known("u1") and recent.known("u3")


# -- features and ranker -----------------------------------------------------------------------


def test_features_merge_duplicates_and_mark_every_source():
    lists = GlobalLists.of([("p", 10.0), ("a", 5.0)], [("a", 2.0)], [("n", float(T0))])
    pool = build_pool(
        UserContext.of("u", ["s"]),
        {"gmf": [("a", 3.0), ("b", 1.0)], "popular": [("p", 10.0), ("a", 5.0)],
         "new_items": [("n", float(T0))]},
        ["gmf", "popular", "new_items"], lists, {"a": "x", "s": "x"}, T0,
    )
    assert pool.item_ids == ["a", "b", "p", "n"]
    assert pool.found_by[0] == {"gmf": 0, "popular": 1}
    row = dict(zip(pool.names, pool.features[0], strict=True))
    assert row["rank:gmf"] == pytest.approx(1.0)
    assert row["rank:popular"] == pytest.approx(1 / np.log2(3))
    assert row["popularity"] == pytest.approx(0.5)
    assert row["trending"] == pytest.approx(1.0)
    assert row["category_affinity"] == pytest.approx(1.0)
    newest = dict(zip(pool.names, pool.features[3], strict=True))
    assert newest["newness"] == pytest.approx(1.0)


@pytest.mark.parametrize("loss", [LISTWISE, PAIRWISE])
def test_ranker_learns_a_planted_preference(loss):
    """Chosen items are those with the highest hidden feature; the source ranks are noise."""
    rng = np.random.default_rng(0)
    names = feature_names(["gmf", "popular"])
    hidden = names.index("category_affinity")
    ranker = LinearRanker(names)

    def pool() -> tuple[np.ndarray, int]:
        x = rng.random((40, len(names))).astype(np.float32)
        return x, int(np.argmax(x[:, hidden]))

    def top1_accuracy() -> float:
        trials = [pool() for _ in range(200)]
        return float(np.mean([np.argmax(ranker.scores(x)) == c for x, c in trials]))

    before = top1_accuracy()
    for _ in range(2000):
        x, chosen = pool()
        ranker.learn(x, chosen, rng, RankerParams(learning_rate=0.1, loss=loss))
    assert top1_accuracy() > 0.6 > before + 0.3
    assert int(np.argmax(ranker.weights)) == hidden


def test_ranker_json_round_trip_onto_another_feature_layout():
    ranker = LinearRanker(["a", "b"], np.array([0.5, -1.0]), "v1", pairs=7)
    loaded = LinearRanker.from_json(ranker.to_json(), ["b", "c"])
    assert loaded.version == "v1" and loaded.pairs == 7
    assert loaded.weights.tolist() == [-1.0, 0.0]  # unknown feature starts at 0
    with_source = LinearRanker.from_json(ranker.to_json(), ["a", "rank:triplet"])
    assert with_source.weights.tolist() == [0.5, PRIOR_WEIGHTS["rank:triplet"]]  # its prior
    with pytest.raises(ValueError, match="malformed"):
        LinearRanker.from_json("{not json", ["a"])
    with pytest.raises(ValueError, match="non-finite"):
        LinearRanker.from_json('{"version": "x", "features": ["a"], "weights": [NaN]}', ["a"])


def test_contributions_name_the_largest_terms():
    ranker = LinearRanker(["a", "b", "c"], np.array([1.0, -3.0, 0.1]))
    parts = ranker.contributions(np.array([1.0, 1.0, 1.0], dtype=np.float32), top=2)
    assert parts == [("b", -3.0), ("a", 1.0)]


# -- rerank ------------------------------------------------------------------------------------

IDS = ["a", "b", "c", "d", "e", "f"]
SCORES = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0], dtype=np.float32)
CATS = {"a": "x", "b": "x", "c": "x", "d": "y", "e": "y"}  # f: unknown


def served(rules: RerankRules, seen: set[str] = frozenset()) -> list[str]:
    return [IDS[i] for i in rerank(IDS, SCORES, seen, CATS, rules)]


def test_rerank_drops_seen_and_excluded_items_and_keeps_score_order():
    assert served(RerankRules(k=3), seen={"a"}) == ["b", "c", "d"]
    assert served(RerankRules(k=3, exclude=frozenset({"b", "d"}))) == ["a", "c", "e"]


def test_rerank_category_filter_keeps_only_items_known_in_it():
    assert served(RerankRules(k=5, category="y")) == ["d", "e"]


def test_rerank_caps_items_per_category_and_fills_from_the_deferred():
    assert served(RerankRules(k=4, max_per_category=1)) == ["a", "d", "f", "b"]
    assert served(RerankRules(k=6, max_per_category=2)) == ["a", "b", "d", "e", "f", "c"]


def test_rerank_mmr_trades_relevance_for_categories_not_shown_yet():
    # relevance min-max scaled: a 1, b .8, c .6, d .4, e .2, f 0; same category = similarity 1
    assert served(RerankRules(k=4, mmr_lambda=1.0)) == ["a", "b", "c", "d"]  # off
    # λ .5: after a, b gains .4 - .5 < d's .2; after d, f (unknown category, never redundant)
    # beats b; then b
    assert served(RerankRules(k=4, mmr_lambda=0.5)) == ["a", "d", "f", "b"]
    # λ .9: a second item of a category costs only .1, so b and c keep their places
    assert served(RerankRules(k=3, mmr_lambda=0.9)) == ["a", "b", "c"]
    # the other rules still apply first
    assert served(RerankRules(k=3, mmr_lambda=0.5), seen={"a"}) == ["b", "d", "f"]
    assert served(RerankRules(k=5, mmr_lambda=0.0, category="x")) == ["a", "b", "c"]


# -- the pipeline ------------------------------------------------------------------------------


class _Broken:
    name = "co_engagement"

    def fetch(self, user: UserContext, n: int) -> list[tuple[str, float]]:
        raise ConnectionError("store down")


def test_pipeline_ranks_the_remaining_sources_when_one_fails_and_explains():
    store = MemoryRankingStore(LIMITS)
    store.apply(signal_batch([ev("u", "p1", T0), ev("u", "p2", T0 + 1)], RecentItems(),
                             lambda _i: False))
    gmf = GMFCandidates(lambda user, n: [("g1", 1.0), ("seen", 0.9), ("g2", 0.5)])
    pipeline = RankingPipeline(
        [gmf, _Broken(), PopularCandidates(store)], store, lambda: LinearRanker(names), {}
    )
    names = pipeline.names
    user = UserContext.of("u", ["seen"])
    ranking = pipeline.rank(user, 3, T0 + 2, explain=True, exclude={"g2"})
    assert ranking.failed == ["co_engagement"]
    served_ids = [item.item_id for item in ranking.items]
    assert served_ids[0] == "g1" and "seen" not in served_ids and "g2" not in served_ids
    assert set(served_ids) <= {"g1", "p1", "p2"} and len(served_ids) == 3
    first = ranking.items[0]
    assert first.sources == {"gmf": 0}
    assert first.contributions and first.contributions[0][0] == "rank:gmf"


def test_pipeline_applies_mmr_with_the_categories_it_looks_up():
    store = MemoryRankingStore(LIMITS)
    hits = [("x1", 1.0), ("x2", 0.9), ("x3", 0.8), ("y1", 0.7)]
    categories = {"x1": "x", "x2": "x", "x3": "x", "y1": "y"}
    looked_up: list[set[str]] = []

    def lookup(ids):
        looked_up.append(set(ids))
        return {i: categories[i] for i in ids if i in categories}

    def served(mmr_lambda: float) -> list[str]:
        pipeline = RankingPipeline([GMFCandidates(lambda user, n: hits[:n])], store,
                                   lambda: LinearRanker(pipeline.names), {},
                                   mmr_lambda=mmr_lambda)
        ranking = pipeline.rank(UserContext.of("u", []), 3, T0, categories=lookup)
        return [item.item_id for item in ranking.items]

    assert served(1.0) == ["x1", "x2", "x3"]
    assert served(0.5) == ["x1", "y1", "x2"]
    assert looked_up[-1] == set(categories)


# -- vector-space sources -----------------------------------------------------------------------


def _space() -> InMemorySpace:
    space = InMemorySpace(2)
    s = 2 ** -0.5
    space.add(["east", "north", "north_east", "west"],
              np.array([[1, 0], [0, 1], [s, s], [-1, 0]], dtype=np.float32))
    return space


def test_in_memory_space_answers_nearest_items_and_similar_items_without_the_item_itself():
    space = _space()
    assert [i for i, _ in space.search(np.array([1.0, 0.0]), 2)] == ["east", "north_east"]
    assert [i for i, _ in space.similar("east", 3)] == ["north_east", "north", "west"]
    assert space.similar("unknown", 3) == []
    space.add(["west"], np.array([[0.0, 1.0]]))  # a re-embedded item replaces its vector
    assert len(space) == 4 and space.similar("north", 1)[0][0] == "west"


def test_triplet_source_proposes_neighbours_of_the_newest_items():
    space = _space()
    newest_only = TripletSpaceCandidates(space.similar)
    assert [i for i, _ in newest_only.fetch(UserContext.of("u", ["east", "north"]), 2)] == [
        "north_east", "north"]
    both = TripletSpaceCandidates(space.similar, anchors=2)
    # west's nearest is north (cosine 0); north's is north_east (0.71, counted 1/2)
    assert both.fetch(UserContext.of("u", ["west", "north"]), 1)[0][0] == "north_east"
    assert newest_only.fetch(UserContext.of("u", ["west", "north"]), 1)[0][0] == "north"
    assert newest_only.fetch(UserContext.of("u", []), 5) == []
    assert newest_only.fetch(UserContext.of("u", ["not in the space"]), 5) == []


def test_space_sources_missing_space_is_no_answer_and_an_outage_is_a_failed_source():
    store = MemoryRankingStore(LIMITS)
    store.apply(signal_batch([ev("v", "p1", T0)], RecentItems(), lambda _i: False))
    space = _space()
    no_model = TwoTowerSpaceCandidates(lambda user: None, space.search)

    def down(query: np.ndarray, n: int) -> list[tuple[str, float]]:
        raise ConnectionError("faiss_app down")

    for two_tower, failed in ((no_model, []), (TwoTowerSpaceCandidates(
            lambda user: np.array([0.0, 1.0]), down), ["two_tower"])):
        names = feature_names(["popular", "two_tower"])
        pipeline = RankingPipeline([PopularCandidates(store), two_tower], store,
                                   lambda names=names: LinearRanker(names), {})
        ranking = pipeline.rank(UserContext.of("u", ["east"]), 3, T0 + 1)
        assert ranking.failed == failed
        assert [item.item_id for item in ranking.items] == ["p1"]
    working = TwoTowerSpaceCandidates(lambda user: np.array([0.0, 1.0]), space.search)
    assert [i for i, _ in working.fetch(UserContext.of("u", ["east"]), 2)] == [
        "north", "north_east"]
