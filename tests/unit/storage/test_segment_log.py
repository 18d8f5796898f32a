"""SegmentLog specifics: segment rolling, sparse indexes, reads across segments, retention."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from storage_helpers import headers, make_batch, read_all

from riverbed.storage import LogConfig, OffsetOutOfRange, SegmentLog

MakeLog = Callable[..., SegmentLog]
BATCH = len(make_batch(2))


def append(log: SegmentLog, count: int = 2, *, now_ms: int = 5_000, ts: int = 1_000) -> int:
    info = log.append(make_batch(count, timestamp=ts, max_timestamp=ts), now_ms=now_ms)
    log.flush()
    return info.base_offset


def test_roll_by_size(make_segment_log: MakeLog) -> None:
    log = make_segment_log(LogConfig(segment_bytes=3 * BATCH))
    for _ in range(10):
        append(log)
    assert log.segment_base_offsets() == [0, 6, 12, 18]
    names = sorted(p.name for p in log.directory.glob("*.log"))
    assert names == [f"{b:020d}.log" for b in (0, 6, 12, 18)]
    assert [h.base_offset for h in headers(read_all(log))] == list(range(0, 20, 2))
    assert log.size_bytes == 10 * BATCH


def test_a_batch_larger_than_segment_bytes_gets_a_segment_of_its_own(
    make_segment_log: MakeLog,
) -> None:
    log = make_segment_log(LogConfig(segment_bytes=BATCH))
    append(log)
    log.append(make_batch(3, value_size=400), now_ms=0)
    append(log)
    log.flush()
    assert log.segment_base_offsets() == [0, 2, 5]


def test_roll_by_age(make_segment_log: MakeLog) -> None:
    log = make_segment_log(LogConfig(segment_ms=1_000))
    append(log, now_ms=10_000)
    append(log, now_ms=10_500)
    append(log, now_ms=11_000)  # exactly segment.ms after the first append: not yet
    assert log.segment_base_offsets() == [0]
    append(log, now_ms=11_001)
    assert log.segment_base_offsets() == [0, 6]
    append(log, now_ms=11_002)
    assert log.segment_base_offsets() == [0, 6]


def test_sparse_index_finds_the_batch_containing_every_offset(make_segment_log: MakeLog) -> None:
    log = make_segment_log(LogConfig(index_interval_bytes=3 * BATCH, segment_bytes=40 * BATCH))
    bases = []
    for i in range(100):
        bases.append(log.append(make_batch(1 + i % 4), now_ms=0).base_offset)
    log.flush()
    for offset in range(log.log_end_offset):
        first = headers(log.read(offset, 1).records)[0]
        assert first.base_offset <= offset <= first.last_offset
    segments = log._segments
    assert len(segments) > 1
    for segment in segments[:-1]:
        # one entry for the first batch, then one per ~3 batches
        assert len(segment.index) in range(10, 16)
        assert list(segment.index.positions) == sorted(set(segment.index.positions))


def test_reads_stop_at_segment_boundaries(make_segment_log: MakeLog) -> None:
    log = make_segment_log(LogConfig(segment_bytes=2 * BATCH))
    for _ in range(5):
        append(log)
    data = log.read(2, 1 << 20).records
    assert [h.base_offset for h in headers(data)] == [2]
    data = log.read(4, 1 << 20).records
    assert [h.base_offset for h in headers(data)] == [4, 6]


def test_time_index_lookup_over_many_segments(make_segment_log: MakeLog) -> None:
    log = make_segment_log(LogConfig(segment_bytes=10 * BATCH, index_interval_bytes=BATCH))
    for i in range(50):
        append(log, ts=1_000 + 10 * i)
    for i in range(50):
        assert log.offset_for_timestamp(1_000 + 10 * i) == (2 * i, 1_000 + 10 * i)
        assert log.offset_for_timestamp(1_000 + 10 * i - 5) == (2 * i, 1_000 + 10 * i)
    assert log.offset_for_timestamp(2_000) is None
    assert log.max_timestamp() == (98, 1_490)


def test_high_watermark_waits_for_flush(make_segment_log: MakeLog) -> None:
    log = make_segment_log()
    log.append(make_batch(2), now_ms=0)
    assert (log.log_end_offset, log.high_watermark) == (2, 0)
    assert len(log.read(0, 1024).records) == 0
    assert log.offset_for_timestamp(0) is None
    assert log.max_timestamp() == (-1, -1)
    assert log.flush() is True
    assert log.max_timestamp() == (1, 1_001)  # the record holding it (records 1000, 1001)
    assert log.high_watermark == log.durable_offset == 2
    assert log.flush() is False


def test_flush_messages_above_one_makes_appends_visible_at_once(make_segment_log: MakeLog) -> None:
    log = make_segment_log(LogConfig(flush_messages=1000))
    log.append(make_batch(2), now_ms=0)
    assert log.high_watermark == 2
    assert log.durable_offset == 0
    assert len(log.read(0, 1024).records) > 0


def test_retention_by_time(make_segment_log: MakeLog) -> None:
    log = make_segment_log(LogConfig(segment_bytes=2 * BATCH, retention_ms=1_000))
    for i in range(6):
        append(log, ts=10_000 + 100 * i)  # segments [0,2] [4,6] [8,10]
    assert log.segment_base_offsets() == [0, 4, 8]
    assert log.enforce_retention(now_ms=11_000) == 0  # newest in segment 0 is 10_100
    assert log.enforce_retention(now_ms=11_101) == 1
    assert log.log_start_offset == 4
    assert log.enforce_retention(now_ms=20_000) == 2  # the expired active segment rolls too
    assert log.segment_base_offsets() == [12]
    assert (log.log_start_offset, log.log_end_offset) == (12, 12)
    with pytest.raises(OffsetOutOfRange):
        log.read(11, 1024)
    assert list(log.directory.glob("*.log")) == [log.directory / f"{12:020d}.log"]


def test_retention_by_size(make_segment_log: MakeLog) -> None:
    log = make_segment_log(LogConfig(segment_bytes=2 * BATCH, retention_bytes=3 * BATCH))
    for _ in range(7):
        append(log)
    assert log.segment_base_offsets() == [0, 4, 8, 12]
    assert log.enforce_retention(now_ms=5_000) == 2  # 7 batches - 2*2 = 3 batches left
    assert log.segment_base_offsets() == [8, 12]
    assert log.log_start_offset == 8
    assert log.size_bytes == 3 * BATCH
    assert log.enforce_retention(now_ms=5_000) == 0


def test_retention_never_deletes_above_the_high_watermark(make_segment_log: MakeLog) -> None:
    log = make_segment_log(LogConfig(segment_bytes=2 * BATCH, retention_bytes=0))
    for _ in range(4):
        log.append(make_batch(2), now_ms=0)  # not flushed: high watermark stays 0
    assert log.enforce_retention(now_ms=0) == 0
    log.flush()
    assert log.enforce_retention(now_ms=0) == 1
    assert log.segment_base_offsets() == [4]


def test_retention_rolls_by_segment_ms(make_segment_log: MakeLog) -> None:
    log = make_segment_log(LogConfig(segment_ms=1_000, retention_ms=-1))
    append(log, now_ms=0)
    log.enforce_retention(now_ms=500)
    assert log.segment_base_offsets() == [0]
    log.enforce_retention(now_ms=1_001)
    assert log.segment_base_offsets() == [0, 2]
    log.enforce_retention(now_ms=5_000)  # an empty active segment never rolls
    assert log.segment_base_offsets() == [0, 2]


def test_delete_records_removes_whole_segments_only(make_segment_log: MakeLog) -> None:
    log = make_segment_log(LogConfig(segment_bytes=2 * BATCH))
    for _ in range(6):
        append(log)  # [0,2] [4,6] [8,10]
    log.delete_records(5)
    assert log.segment_base_offsets() == [4, 8]
    log.delete_records(-1)
    assert log.segment_base_offsets() == [8]  # the active segment stays
    assert log.log_start_offset == 12
    assert append(log) == 12


def test_truncate_across_segments(make_segment_log: MakeLog) -> None:
    log = make_segment_log(LogConfig(segment_bytes=2 * BATCH, index_interval_bytes=0))
    for i in range(6):
        append(log, ts=100 + i)  # [0,2] [4,6] [8,10]
    log.truncate_to(5)
    assert log.segment_base_offsets() == [0, 4]
    assert log.log_end_offset == log.high_watermark == 4
    assert log.max_timestamp() == (2, 101)
    assert len(log._segments[-1].index) == 0
    assert append(log, ts=50) == 4
    assert [h.base_offset for h in headers(read_all(log))] == [0, 2, 4]
    assert log.offset_for_timestamp(102) is None
