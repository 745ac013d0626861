"""A vector space faiss_app does not serve is asked at most once a second by the ranking
stage's space sources (regression: with RECSYS_RANKING_SPACE_SOURCES on by default, a
deployment without a triplet snapshot paid one faiss_app round trip on every personalized
request, 0.7 ms of 4.9 ms unloaded at 1M items)."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.recommender_app.space_candidates import ServingSpaceSources
from services.recommender_app.unserved_spaces import UnservedSpaces
from shared.faiss_client import SpaceNotReady, UnknownItem, UnknownSpace
from shared.ranking.candidates import UserContext
from tests.test_access import Clock


class CountingFaiss:
    """faiss_app's answers for the two spaces, each call counted."""

    def __init__(self, similar: BaseException | list[tuple[str, float]]) -> None:
        self.answer = similar
        self.calls: list[str] = []

    def similar(self, item_id: str, n: int, timeout_s: float, space: str) -> Any:
        self.calls.append(space)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer[:n]

    def search(self, query: np.ndarray, n: int, timeout_s: float, space: str) -> Any:
        self.calls.append(space)
        raise UnknownSpace(404, "Unknown space", space)


class NoTwoTower:
    def query_vector(self, *args: Any) -> np.ndarray:
        return np.ones(4, dtype=np.float32)


class DirectGuard:
    def call(self, name: str, budget: Any, fn: Any, reserve_s: float = 0.0) -> Any:
        return fn(0.1)


def fetch_all(sources: ServingSpaceSources) -> dict[str, list]:
    user = UserContext("u1", ("i1", "i2"), frozenset({"i1", "i2"}))
    built = sources.sources(DirectGuard(), None, 0)  # type: ignore[arg-type]
    return {source.name: source.fetch(user, 5) for source in built}


def test_unserved_space_is_asked_once_a_second_then_used_when_served() -> None:
    clock = Clock()
    faiss = CountingFaiss(SpaceNotReady("triplet: no snapshot"))
    sources = ServingSpaceSources(
        ["two_tower", "triplet"], faiss, NoTwoTower(), UnservedSpaces(clock=clock)  # type: ignore[arg-type]
    )
    for _ in range(20):
        assert fetch_all(sources) == {"two_tower": [], "triplet": []}
    assert sorted(faiss.calls) == ["triplet", "two_tower"]  # once each, not 20 times

    clock.now += 0.5
    fetch_all(sources)
    assert len(faiss.calls) == 2

    faiss.answer = [("i9", 0.9), ("i8", 0.5)]  # faiss_app loaded the triplet snapshot
    clock.now += 0.6
    assert fetch_all(sources)["triplet"] == [("i9", 0.9), ("i8", 0.5)]
    assert faiss.calls.count("triplet") == 2 and faiss.calls.count("two_tower") == 2


def test_an_unknown_item_does_not_mark_the_space_unserved() -> None:
    clock = Clock()
    faiss = CountingFaiss(UnknownItem("i1"))
    sources = ServingSpaceSources(
        ["triplet"], faiss, NoTwoTower(), UnservedSpaces(clock=clock)  # type: ignore[arg-type]
    )
    for _ in range(3):
        assert fetch_all(sources) == {"triplet": []}
    assert faiss.calls == ["triplet"] * 3


def test_unserved_spaces_expire() -> None:
    clock = Clock()
    spaces = UnservedSpaces(retry_s=1.0, clock=clock)
    assert not spaces.skipped("triplet")
    spaces.mark("triplet")
    assert spaces.skipped("triplet") and not spaces.skipped("two_tower")
    clock.now += 1.0
    assert not spaces.skipped("triplet")


def test_a_space_found_unserved_by_another_caller_is_not_asked() -> None:
    """One record per worker: the similar-items path and the ranking sources share it."""
    clock = Clock()
    unserved = UnservedSpaces(clock=clock)
    unserved.mark("triplet")  # as the similar-items path does on "not loaded"
    faiss = CountingFaiss([("i9", 0.9)])
    sources = ServingSpaceSources(["triplet"], faiss, NoTwoTower(), unserved)  # type: ignore[arg-type]
    assert fetch_all(sources) == {"triplet": []} and faiss.calls == []
    clock.now += 1.0
    assert fetch_all(sources) == {"triplet": [("i9", 0.9)]} and faiss.calls == ["triplet"]
