"""The share-group pages' pure parts: the lag the console shows and Kafka error names."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from riverbed.console import wire
from riverbed.console.app import _share_lag


@given(st.integers(-1, 1 << 40), st.integers(-1, 1 << 40))
def test_share_lag_is_end_minus_start_or_unknown(start: int, end: int) -> None:
    lag = _share_lag(start, end)
    if start < 0 or end < 0:
        assert lag is None
    else:
        assert lag == max(0, end - start)


def test_error_names() -> None:
    assert wire.error_name(69) == "GROUP_ID_NOT_FOUND"
    assert wire.error_name(30) == "GROUP_AUTHORIZATION_FAILED"
    assert wire.error_name(31337) == "error code 31337"
    err = wire.GroupError("g", 69, "Group g not found.")
    assert str(err) == "GROUP_ID_NOT_FOUND: Group g not found." and err.code == 69
