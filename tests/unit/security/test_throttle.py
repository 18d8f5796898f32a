"""Failed-login delays: Kafka's fixed delay for every failure, exponential backoff per address
and per user on top, cap, window, bounded memory; successes are never counted or delayed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.security.throttle import MAX_USER_CHARS, FailedAuthThrottle, ThrottleConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**kwargs: float) -> tuple[FailedAuthThrottle, Clock]:
    clock = Clock()
    return FailedAuthThrottle(ThrottleConfig(**kwargs), clock=clock), clock  # type: ignore[arg-type]


def test_every_failure_waits_kafkas_delay_then_backs_off_exponentially_and_capped() -> None:
    throttle, _ = make(failure_delay=0.1, threshold=3, base_delay=0.5, max_delay=4.0)
    delays = [throttle.record_failure("a", "alice") for _ in range(8)]
    assert delays == [0.1, 0.1, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert throttle.delay_for("a", "alice") == 4.0
    assert throttle.delay_for("b", "bob") == 0.1  # another host, another user: Kafka's delay only


def test_kafkas_default_is_100_ms() -> None:
    assert ThrottleConfig().failure_delay == 0.1
    assert FailedAuthThrottle().record_failure("a", "alice") == 0.1


def test_backoff_counts_per_address_and_per_user() -> None:
    throttle, _ = make(failure_delay=0.0, threshold=2, base_delay=1.0, max_delay=100.0)
    # one host trying many user names is slowed down by its address...
    assert [throttle.record_failure("10.0.0.1", f"u{i}") for i in range(4)] == [0.0, 1.0, 2.0, 4.0]
    # ...many hosts guessing one user by the user name
    assert [throttle.record_failure(f"10.1.0.{i}", "root") for i in range(4)] == [0.0, 1.0, 2.0, 4.0]
    assert throttle.failures("10.0.0.1") == 4
    assert throttle.failures("10.1.0.9", "root") == 4
    assert throttle.delay_for("10.9.9.9", "nobody") == 0.0


def test_a_success_neither_waits_nor_clears_the_record() -> None:
    """There is no success hook: nothing is delayed before a check, and a guesser that also
    holds one valid login cannot wipe its failures by logging in."""
    throttle, _ = make(threshold=1)
    for _ in range(5):
        throttle.record_failure("a", "alice")
    assert not hasattr(throttle, "record_success")
    assert throttle.failures("a") == 5


def test_failures_expire_after_the_window() -> None:
    throttle, clock = make(failure_delay=0.0, threshold=1, window=60.0, base_delay=1.0)
    throttle.record_failure("a")
    clock.now += 30
    assert throttle.record_failure("a") == 2.0
    clock.now += 31  # the first failure is now older than the window
    assert throttle.failures("a") == 1
    assert throttle.delay_for("a") == 1.0
    clock.now += 60
    assert throttle.failures("a") == 0
    assert len(throttle) == 0  # forgotten entirely


def test_table_is_bounded() -> None:
    throttle, clock = make(max_keys=3, threshold=1)
    for i in range(10):
        clock.now += 1
        throttle.record_failure(f"10.0.0.{i}")
    assert len(throttle) == 3
    assert throttle.failures("10.0.0.0") == 0  # oldest evicted
    assert throttle.failures("10.0.0.9") == 1
    for i in range(10):  # user names count against the same bound
        throttle.record_failure("10.0.0.9", f"user-{i}")
    assert len(throttle) == 3


def test_many_failures_and_long_user_names_do_not_grow_memory() -> None:
    throttle, _ = make(threshold=2, base_delay=0.1, max_delay=30.0)
    for _ in range(10_000):
        delay = throttle.record_failure("a", "x" * 100_000)
    assert delay == 30.0
    kept = throttle.config.max_failures_kept
    assert kept == 2 + 9  # 0.1 * 2**9 >= 30
    assert throttle.failures("a") == kept
    assert throttle.failures("a", "x" * MAX_USER_CHARS) == kept  # the name was cut
    assert len(throttle) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0},
        {"window": 0},
        {"base_delay": -1},
        {"failure_delay": -0.1},
        {"base_delay": 5, "max_delay": 1},
        {"max_keys": 0},
    ],
)
def test_config_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ThrottleConfig(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(["u", "v", None]), st.floats(0, 100)), max_size=50))
def test_delay_is_monotone_in_failures_and_bounded(events: list[tuple[str, str | None, float]]) -> None:
    throttle, clock = make(failure_delay=0.05, threshold=2, window=50.0, base_delay=0.25, max_delay=8.0)
    for address, user, step in events:
        clock.now += step
        before = throttle.delay_for(address, user)
        after = throttle.record_failure(address, user)
        assert 0.05 <= before <= after <= 8.0
