"""The PartitionLog contract: every storage engine must pass these tests unchanged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from storage_helpers import headers, make_batch, make_memory_log, read_all

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.records.batch import TIMESTAMP_TYPE_MASK
from riverbed.storage import AppendInfo, LogConfig, OffsetOutOfRange, PartitionLog, SegmentLog

LogFactory = Callable[..., PartitionLog]


@pytest.fixture(params=["memory", "segment"])
def new_log(request: pytest.FixtureRequest, tmp_path: Path) -> LogFactory:
    made: list[SegmentLog] = []

    def make(config: LogConfig | None = None) -> PartitionLog:
        if request.param == "memory":
            return make_memory_log(config)
        log = SegmentLog.create(tmp_path / f"t-{len(made)}", "t", len(made), config or LogConfig())
        made.append(log)
        return log

    def close_all() -> None:
        for log in made:
            log.close()

    request.addfinalizer(close_all)
    return make


def put(log: PartitionLog, batch: bytearray, now_ms: int = 5_000, **kwargs: bool) -> AppendInfo:
    """Append and make it visible (durable) the way the engine requires."""
    info = log.append(batch, now_ms=now_ms, **kwargs)
    log.flush()
    return info


def fill(log: PartitionLog, counts: list[int], timestamps: list[int] | None = None) -> None:
    for i, count in enumerate(counts):
        ts = timestamps[i] if timestamps else 1_000 + 100 * i
        put(log, make_batch(count, timestamp=ts, max_timestamp=ts))


def test_empty_log(new_log: LogFactory) -> None:
    log = new_log()
    assert (log.log_start_offset, log.high_watermark, log.log_end_offset) == (0, 0, 0)
    assert log.size_bytes == 0
    result = log.read(0, 1024)
    assert len(result.records) == 0
    assert (result.high_watermark, result.log_start_offset, result.last_stable_offset) == (0, 0, 0)
    with pytest.raises(OffsetOutOfRange):
        log.read(1, 1024)
    assert log.max_timestamp() == (-1, -1)
    assert log.offset_for_timestamp(0) is None


def test_append_assigns_offsets_and_patches_in_place(new_log: LogFactory) -> None:
    log = new_log()
    first = make_batch(3, base_offset=77)
    info = put(log, first)
    assert info == AppendInfo(0, 2, -1, 0)
    assert headers(first)[0].base_offset == 0  # patched in the caller's buffer
    second = make_batch(2)
    assert put(log, second) == AppendInfo(3, 4, -1, 0)
    assert log.log_end_offset == log.high_watermark == 5
    assert log.size_bytes == len(first) + len(second)
    assert read_all(log) == bytes(first) + bytes(second)


def test_read_starts_at_the_batch_containing_the_offset(new_log: LogFactory) -> None:
    log = new_log()
    fill(log, [3, 4, 2])  # offsets 0-2, 3-6, 7-8
    for offset, expected_base in [(0, 0), (2, 0), (3, 3), (5, 3), (6, 3), (7, 7), (8, 7)]:
        data = log.read(offset, 1 << 20).records
        assert headers(data)[0].base_offset == expected_base
    assert len(log.read(9, 1 << 20).records) == 0  # offset == high watermark


def test_read_returns_whole_batches_within_max_bytes(new_log: LogFactory) -> None:
    log = new_log()
    fill(log, [2] * 6)
    size = len(make_batch(2))
    data = log.read(0, size * 3 + size // 2).records
    assert [h.base_offset for h in headers(data)] == [0, 2, 4]
    data = log.read(0, size * 3).records
    assert len(data) == size * 3


def test_kip74_first_batch_even_when_larger_than_max_bytes(new_log: LogFactory) -> None:
    log = new_log()
    big = make_batch(5, value_size=500)
    put(log, big)
    put(log, make_batch(1))
    data = log.read(0, 100).records
    assert bytes(data) == bytes(big)
    assert len(log.read(0, 100, min_one_batch=False).records) == 0
    assert len(log.read(0, 0, min_one_batch=False).records) == 0
    assert headers(log.read(2, 0).records)[0].base_offset == 0


def test_isolation_upper_caps_the_read(new_log: LogFactory) -> None:
    log = new_log()
    fill(log, [2, 2, 2])
    data = log.read(0, 1 << 20, isolation_upper=4).records
    assert [h.base_offset for h in headers(data)] == [0, 2]
    assert len(log.read(4, 1 << 20, isolation_upper=4).records) == 0
    # The batch straddling the bound is not returned.
    assert [h.base_offset for h in headers(log.read(0, 1 << 20, isolation_upper=3).records)] == [0]


def test_offset_out_of_range(new_log: LogFactory) -> None:
    log = new_log()
    fill(log, [5, 5])
    with pytest.raises(OffsetOutOfRange) as info:
        log.read(11, 1024)
    assert info.value.code == ErrorCode.OFFSET_OUT_OF_RANGE
    with pytest.raises(OffsetOutOfRange):
        log.read(-1, 1024)
    assert log.delete_records(5) == 5
    with pytest.raises(OffsetOutOfRange):
        log.read(4, 1024)
    assert headers(log.read(5, 1024).records)[0].base_offset == 5
    assert len(log.read(10, 1024).records) == 0


def test_offset_for_timestamp(new_log: LogFactory) -> None:
    log = new_log()
    fill(log, [2, 2, 2, 2], timestamps=[100, 300, 200, 400])
    assert log.offset_for_timestamp(0) == (0, 100)
    assert log.offset_for_timestamp(100) == (0, 100)
    assert log.offset_for_timestamp(101) == (2, 300)
    assert log.offset_for_timestamp(250) == (2, 300)  # first batch whose max >= ts
    assert log.offset_for_timestamp(301) == (6, 400)
    assert log.offset_for_timestamp(401) is None
    log.delete_records(3)
    assert log.offset_for_timestamp(0) == (3, 300)  # never below the log start


def test_max_timestamp(new_log: LogFactory) -> None:
    log = new_log()
    fill(log, [2, 2, 2, 2], timestamps=[100, 300, 200, 300])
    assert log.max_timestamp() == (2, 300)  # the first batch holding the maximum
    fill(log, [1], timestamps=[-1])
    assert log.max_timestamp() == (2, 300)


def test_delete_records(new_log: LogFactory) -> None:
    log = new_log()
    fill(log, [3, 3, 3])
    assert log.delete_records(4) == 4
    assert log.log_start_offset == 4
    assert log.delete_records(2) == 4  # never moves back
    result = log.read(4, 1 << 20)
    assert result.log_start_offset == 4
    assert headers(result.records)[0].base_offset == 3  # the batch containing 4
    with pytest.raises(OffsetOutOfRange):
        log.delete_records(10)
    assert log.delete_records(-1) == 9  # -1 = the high watermark
    assert len(log.read(9, 1024).records) == 0
    info = put(log, make_batch(1))
    assert (info.base_offset, info.log_start_offset) == (9, 9)
    assert read_all(log) == bytes(log.read(9, 1024).records)


def test_truncate_to(new_log: LogFactory) -> None:
    log = new_log()
    fill(log, [3, 3, 3])  # 0-2, 3-5, 6-8
    log.truncate_to(20)  # beyond the end: nothing happens
    assert log.log_end_offset == 9
    log.truncate_to(7)  # inside the last batch: it goes whole
    assert log.log_end_offset == log.high_watermark == 6
    assert [h.base_offset for h in headers(read_all(log))] == [0, 3]
    log.truncate_to(3)
    assert log.log_end_offset == 3
    assert put(log, make_batch(2)).base_offset == 3
    assert [h.base_offset for h in headers(read_all(log))] == [0, 3]


def test_truncate_below_log_start_restarts_the_log(new_log: LogFactory) -> None:
    log = new_log()
    fill(log, [3, 3])
    log.delete_records(4)
    log.truncate_to(2)
    assert (log.log_start_offset, log.log_end_offset, log.high_watermark) == (2, 2, 2)
    assert put(log, make_batch(1)).base_offset == 2
    # A truncation that would leave nothing at or above the log start restarts there.
    fill(log, [3])
    log.delete_records(4)
    log.truncate_to(5)
    assert (log.log_start_offset, log.log_end_offset) == (4, 4)


def test_log_append_time(new_log: LogFactory) -> None:
    log = new_log()
    batch = make_batch(2, timestamp=10)
    info = put(log, batch, now_ms=123_456, log_append_time=True)
    assert info.log_append_time == 123_456
    header = headers(log.read(0, 1024).records)[0]  # CRC checked
    assert header.max_timestamp == 123_456
    assert header.attributes & TIMESTAMP_TYPE_MASK
    assert log.max_timestamp() == (0, 123_456)


def test_append_rejects_more_than_one_batch(new_log: LogFactory) -> None:
    log = new_log()
    with pytest.raises(KafkaError) as info:
        log.append(make_batch(1) + make_batch(1), now_ms=0)
    assert info.value.code == ErrorCode.CORRUPT_MESSAGE
    assert log.log_end_offset == 0


def test_update_config(new_log: LogFactory) -> None:
    log = new_log()
    config = LogConfig(retention_ms=5, flush_messages=10)
    log.update_config(config)
    assert log.config == config
    put(log, make_batch(1))
    assert log.high_watermark == 1
