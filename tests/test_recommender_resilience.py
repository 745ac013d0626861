"""Budgets, breakers and the dependency guard (no servers: a fake clock and plain functions)."""

from __future__ import annotations

import time

import pytest

from services.recommender_app.resilience import (
    BREAKER_THRESHOLD,
    Breaker,
    Budget,
    DependencyDown,
    Guard,
)
from shared.config import StatsdSettings
from shared.metrics import Metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_guard(clock: FakeClock, cap: float = 1.0, **kwargs: object) -> Guard:
    return Guard(
        caps={"mongo": cap},
        errors={"mongo": (ConnectionError, TimeoutError)},
        metrics=Metrics(StatsdSettings(enabled=False)),
        cooldown_s=2.0,
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )


def test_each_call_gets_the_smaller_of_its_cap_and_the_budget_left_minus_the_reserve():
    clock = FakeClock()
    guard = make_guard(clock, cap=0.25)
    budget = Budget(0.3, clock)
    assert guard.call("mongo", budget, lambda t: t) == pytest.approx(0.25)
    clock.now += 0.2
    assert guard.call("mongo", budget, lambda t: t, reserve_s=0.05) == pytest.approx(0.05)
    clock.now += 0.1
    with pytest.raises(DependencyDown, match="no time left"):
        guard.call("mongo", budget, lambda t: t)


def test_breaker_fails_fast_after_consecutive_failures_then_lets_one_trial_through():
    clock = FakeClock()
    guard = make_guard(clock)
    calls = []

    def down(_t: float) -> None:
        calls.append(1)
        raise ConnectionError("refused")

    for _ in range(BREAKER_THRESHOLD):
        with pytest.raises(DependencyDown, match="refused"):
            guard.call("mongo", Budget(1.0, clock), down)
    with pytest.raises(DependencyDown, match="circuit open"):
        guard.call("mongo", Budget(1.0, clock), down)
    assert len(calls) == BREAKER_THRESHOLD
    clock.now += 2.5  # cooldown over: one trial call, which succeeds and closes the breaker
    assert guard.call("mongo", Budget(1.0, clock), lambda _t: "up") == "up"
    assert not guard.breakers["mongo"].is_open


def test_a_success_resets_the_count_of_consecutive_failures():
    breaker = Breaker(1.0, FakeClock(), threshold=2)
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert not breaker.is_open
    breaker.failure()
    assert breaker.is_open


def test_half_open_breaker_admits_a_single_trial_and_reopens_on_its_failure():
    clock = FakeClock()
    breaker = Breaker(1.0, clock, threshold=1)
    breaker.failure()
    clock.now += 1.5
    assert breaker.allow() is True
    assert breaker.allow() is False  # the trial is still running
    breaker.failure()
    assert breaker.allow() is False
    clock.now += 1.5
    assert breaker.allow() is True


def test_hard_deadline_stops_waiting_even_when_the_client_overruns():
    guard = Guard(
        caps={"mongo": 1.0},
        errors={"mongo": (TimeoutError,)},
        metrics=Metrics(StatsdSettings(enabled=False)),
        cooldown_s=1.0,
        hard_deadline={"mongo"},
    )
    started = time.monotonic()
    with pytest.raises(DependencyDown, match="no answer within"):
        guard.call("mongo", Budget(0.1), lambda _t: time.sleep(0.5))
    assert time.monotonic() - started < 0.4


def test_errors_that_are_not_outages_propagate_and_do_not_open_the_breaker():
    clock = FakeClock()
    guard = make_guard(clock)
    with pytest.raises(KeyError):
        guard.call("mongo", Budget(1.0, clock), lambda _t: {}["missing"])
    assert not guard.breakers["mongo"].is_open
