"""riverbed's own DescribeLogStats request and response: round trips and garbage."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from riverbed.protocol.errors import DecodeError
from riverbed.protocol.extensions import (
    DescribeLogStatsRequest,
    DescribeLogStatsResponse,
    PartitionStats,
)

names = st.text(max_size=20)
i32 = st.integers(-(2**31), 2**31 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
requests = st.builds(DescribeLogStatsRequest, st.none() | st.lists(st.builds(DescribeLogStatsRequest.Topic, names, st.lists(i32, max_size=5)), max_size=4))
stats = st.builds(PartitionStats, i32, st.integers(-32768, 32767), i64, i64, i64, i64, i32, i64, i32, st.floats(allow_nan=False), i64)
responses = st.builds(DescribeLogStatsResponse, i32, st.lists(st.builds(DescribeLogStatsResponse.Topic, names, st.lists(stats, max_size=4)), max_size=3))


@given(requests)
def test_request_round_trip(req: DescribeLogStatsRequest) -> None:
    assert DescribeLogStatsRequest.decode(req.encode(0), 0) == req


@given(responses)
def test_response_round_trip(resp: DescribeLogStatsResponse) -> None:
    assert DescribeLogStatsResponse.decode(resp.encode(0), 0) == resp


def test_nan_dirty_ratio_survives() -> None:
    resp = DescribeLogStatsResponse(0, [DescribeLogStatsResponse.Topic("t", [PartitionStats(partition=1)])])
    back = DescribeLogStatsResponse.decode(resp.encode(0), 0)
    assert isinstance(back, DescribeLogStatsResponse)
    assert math.isnan(back.topics[0].partitions[0].dirty_ratio)


@given(st.binary(max_size=64))
def test_garbage_is_a_decode_error_or_a_message(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        DescribeLogStatsRequest.decode(data, 0)


def test_truncated_request() -> None:
    data = DescribeLogStatsRequest([DescribeLogStatsRequest.Topic("topic", [1, 2, 3])]).encode(0)
    with pytest.raises(DecodeError):
        DescribeLogStatsRequest.decode(data[:-3], 0)
