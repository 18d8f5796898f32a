"""Failed-authentication slow-down: thresholds, exponential growth, cap, window, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.security.throttle import FailedAuthThrottle, ThrottleConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**kwargs: float) -> tuple[FailedAuthThrottle, Clock]:
    clock = Clock()
    return FailedAuthThrottle(ThrottleConfig(**kwargs), clock=clock), clock  # type: ignore[arg-type]


def test_no_delay_until_threshold_then_exponential_and_capped() -> None:
    throttle, _ = make(threshold=3, base_delay=0.5, max_delay=4.0)
    delays = [throttle.record_failure("a") for _ in range(8)]
    assert delays == [0.0, 0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert throttle.delay_for("a") == 4.0
    assert throttle.delay_for("b") == 0.0  # per address


def test_threshold_one_delays_from_the_first_failure() -> None:
    throttle, _ = make(threshold=1, base_delay=1.0, max_delay=10.0)
    assert throttle.delay_for("a") == 0.0
    assert throttle.record_failure("a") == 1.0
    assert throttle.failures("a") == 1


def test_failures_expire_after_the_window() -> None:
    throttle, clock = make(threshold=1, window=60.0, base_delay=1.0)
    throttle.record_failure("a")
    clock.now += 30
    assert throttle.record_failure("a") == 2.0
    clock.now += 31  # the first failure is now older than the window
    assert throttle.failures("a") == 1
    assert throttle.delay_for("a") == 1.0
    clock.now += 60
    assert throttle.failures("a") == 0
    assert len(throttle) == 0  # forgotten entirely


def test_success_clears_the_address() -> None:
    throttle, _ = make(threshold=1)
    for _ in range(5):
        throttle.record_failure("a")
    assert throttle.delay_for("a") > 0
    throttle.record_success("a")
    assert throttle.delay_for("a") == 0.0
    throttle.record_success("never-seen")


def test_table_is_bounded() -> None:
    throttle, clock = make(max_addresses=3, threshold=1)
    for i in range(10):
        clock.now += 1
        throttle.record_failure(f"10.0.0.{i}")
    assert len(throttle) == 3
    assert throttle.failures("10.0.0.0") == 0  # oldest evicted
    assert throttle.failures("10.0.0.9") == 1


def test_many_failures_do_not_overflow_or_grow_memory() -> None:
    throttle, _ = make(threshold=2, base_delay=0.1, max_delay=30.0)
    for _ in range(10_000):
        delay = throttle.record_failure("a")
    assert delay == 30.0
    assert throttle.failures("a") <= 2 + 64


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0},
        {"window": 0},
        {"base_delay": -1},
        {"base_delay": 5, "max_delay": 1},
        {"max_addresses": 0},
    ],
)
def test_config_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ThrottleConfig(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 100), st.booleans()), max_size=50))
def test_delay_is_monotone_in_failures_and_bounded(
    events: list[tuple[str, float, bool]],
) -> None:
    throttle, clock = make(threshold=2, window=50.0, base_delay=0.25, max_delay=8.0)
    for address, step, success in events:
        clock.now += step
        if success:
            throttle.record_success(address)
            assert throttle.delay_for(address) == 0.0
        else:
            before = throttle.delay_for(address)
            after = throttle.record_failure(address)
            assert before <= after <= 8.0
