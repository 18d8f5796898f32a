"""The PartitionLog contract: every storage engine must pass these tests unchanged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from storage_helpers import headers, make_batch, make_memory_log, producer_batch, read_all

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.records.batch import TIMESTAMP_TYPE_MASK
from riverbed.protocol.records.records import (
    build_batch,
    build_control_batch,
    decode_records,
    parse_control_record,
)
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
    assert log.offset_for_timestamp(0) == (3, 301)  # never below the log start: record 3


def test_max_timestamp(new_log: LogFactory) -> None:
    log = new_log()
    fill(log, [2, 2, 2, 2], timestamps=[100, 300, 200, 300])
    assert log.max_timestamp() == (2, 300)  # the first batch holding the maximum
    fill(log, [1], timestamps=[-1])
    assert log.max_timestamp() == (2, 300)


def test_offset_for_timestamp_scans_inside_the_batch(new_log: LogFactory) -> None:
    # Kafka answers with the first *record* whose timestamp is >= the target, not the
    # base offset of the batch holding it
    log = new_log()
    put(log, make_batch(5, timestamp=1_000))  # offsets 0-4, timestamps 1000-1004
    put(log, build_batch([(b"k", b"v", [], ts) for ts in (2_000, 2_500, 2_100)]))  # 5-7
    assert log.offset_for_timestamp(1_000) == (0, 1_000)
    assert log.offset_for_timestamp(1_003) == (3, 1_003)
    assert log.offset_for_timestamp(1_004) == (4, 1_004)
    assert log.offset_for_timestamp(1_005) == (5, 2_000)
    assert log.offset_for_timestamp(2_050) == (6, 2_500)  # not ordered inside a batch
    assert log.offset_for_timestamp(2_501) is None
    log.delete_records(2)
    assert log.offset_for_timestamp(0) == (2, 1_002)


def test_max_timestamp_is_the_record_holding_it(new_log: LogFactory) -> None:
    log = new_log()
    put(log, build_batch([(b"k", b"v", [], ts) for ts in (10, 50, 30, 50)]))  # 0-3
    put(log, build_batch([(b"k", b"v", [], ts) for ts in (20, 40)]))  # 4-5
    assert log.max_timestamp() == (1, 50)  # the first record with the largest timestamp
    log.delete_records(2)
    assert log.max_timestamp() == (3, 50)  # never below the log start


def test_timestamps_in_compressed_batches(new_log: LogFactory) -> None:
    log = new_log()
    for codec in (1, 2, 3, 4):  # gzip, snappy, lz4, zstd
        put(log, build_batch([(b"k", b"v" * 50, [], 1_000 * codec + i) for i in range(4)], compression=codec))
    assert log.offset_for_timestamp(2_002) == (6, 2_002)
    assert log.offset_for_timestamp(4_001) == (13, 4_001)
    assert log.max_timestamp() == (15, 4_003)


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


# -- transactions ---------------------------------------------------------------------------


def code_of(fn: Callable[[], object]) -> int:
    with pytest.raises(KafkaError) as info:
        fn()
    return int(info.value.code)


def marker(log: PartitionLog, pid: int, commit: bool, *, epoch: int = 0, coordinator_epoch: int = 0) -> int:
    """Append a marker and make it durable; returns its offset."""
    info = log.append_marker(pid, epoch, commit, coordinator_epoch, now_ms=9_000)
    assert info.base_offset == info.last_offset
    log.flush()
    return info.base_offset


def txn_of(log: PartitionLog, pid: int) -> int:
    return next(v.current_txn_start_offset for v in log.producer_states() if v.producer_id == pid)


def test_transactional_batches_hold_back_the_lso(new_log: LogFactory) -> None:
    log = new_log()
    fill(log, [1])  # offset 0, not transactional
    assert log.last_stable_offset == log.high_watermark == 1
    assert put(log, producer_batch(7, 0, 2)).base_offset == 1  # 1-2: starts the transaction
    assert put(log, producer_batch(7, 2)).base_offset == 3  # 3: same transaction
    fill(log, [1])  # 4: others may still write
    assert (log.high_watermark, log.last_stable_offset) == (5, 1)
    assert txn_of(log, 7) == 1
    result = log.read(0, 1 << 20, isolation_upper=log.last_stable_offset)
    assert result.last_stable_offset == 1
    assert [h.base_offset for h in headers(result.records)] == [0]  # never at or after the LSO
    assert len(log.read(1, 1 << 20, isolation_upper=log.last_stable_offset).records) == 0
    assert marker(log, 7, commit=True, coordinator_epoch=3) == 5
    assert log.last_stable_offset == log.high_watermark == 6
    assert log.read(0, 1 << 20).last_stable_offset == 6
    (view,) = log.producer_states()
    assert (view.producer_id, view.producer_epoch, view.last_sequence) == (7, 0, 2)
    assert (view.coordinator_epoch, view.current_txn_start_offset) == (3, -1)
    assert view.last_timestamp == 9_000  # the marker's
    assert log.aborted_transactions(0, 6) == []  # committed


def test_marker_is_a_kafka_control_batch(new_log: LogFactory) -> None:
    log = new_log()
    put(log, producer_batch(7, 0, epoch=2))
    marker(log, 7, commit=False, epoch=2, coordinator_epoch=11)
    data = log.read(1, 1 << 20).records
    (header,) = headers(data)
    assert header.is_control and header.is_transactional
    assert (header.base_offset, header.records_count, header.last_offset_delta) == (1, 1, 0)
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (7, 2, -1)
    (record,) = decode_records(data)
    assert record.key == bytes([0, 0, 0, 0])  # version 0, type 0 = ABORT
    assert record.value == bytes([0, 0, 0, 0, 0, 11])  # version 0, coordinator epoch 11
    assert parse_control_record(record) == (False, 11)
    assert bytes(data[16:]) == bytes(build_control_batch(7, 2, False, 11, 1, 9_000)[16:])


def test_non_transactional_batch_during_a_transaction_is_refused(new_log: LogFactory) -> None:
    log = new_log()
    put(log, producer_batch(7, 0))
    for batch in (producer_batch(7, 1, transactional=False), producer_batch(7, 0, epoch=1, transactional=False)):
        assert code_of(lambda b=batch: log.append(b, now_ms=1)) == ErrorCode.INVALID_TXN_STATE
    assert log.log_end_offset == 1
    marker(log, 7, commit=True)
    assert put(log, producer_batch(7, 1, transactional=False)).base_offset == 2  # idempotent write
    assert txn_of(log, 7) == -1
    assert log.last_stable_offset == log.high_watermark == 3


def test_clients_may_not_write_control_batches(new_log: LogFactory) -> None:
    log = new_log()
    control = build_control_batch(7, 0, True, 0, 0, 1_000)
    assert code_of(lambda: log.append(control, now_ms=1)) == ErrorCode.INVALID_RECORD
    no_pid = producer_batch(-1, -1)
    assert code_of(lambda: log.append(no_pid, now_ms=1)) == ErrorCode.INVALID_RECORD
    assert log.log_end_offset == 0
    assert code_of(lambda: log.append_marker(-1, 0, True, 0, now_ms=1)) == ErrorCode.INVALID_RECORD
    assert log.log_end_offset == 0


def test_retried_transactional_batch_returns_the_original_offsets(new_log: LogFactory) -> None:
    log = new_log()
    first = put(log, producer_batch(7, 0, 3))
    put(log, producer_batch(7, 3))
    again = log.append(producer_batch(7, 0, 3), now_ms=1)
    assert (again.base_offset, again.last_offset) == (first.base_offset, first.last_offset)
    assert log.log_end_offset == 4
    assert txn_of(log, 7) == 0


def test_marker_epoch_rules(new_log: LogFactory) -> None:
    log = new_log()
    put(log, producer_batch(7, 0, 2, epoch=3))
    assert code_of(lambda: log.append_marker(7, 2, True, 0, now_ms=1)) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert log.log_end_offset == 2
    assert txn_of(log, 7) == 0  # still open
    # A marker with a newer epoch (the coordinator bumped it, e.g. on abort after a timeout)
    # ends the transaction and moves the producer to that epoch.
    marker(log, 7, commit=False, epoch=4, coordinator_epoch=5)
    (view,) = log.producer_states()
    assert (view.producer_epoch, view.last_sequence, view.current_txn_start_offset) == (4, -1, -1)
    assert log.aborted_transactions(0, 10) == [(7, 0)]
    # the new epoch starts at sequence 0
    late = producer_batch(7, 2, epoch=4)
    assert code_of(lambda: log.append(late, now_ms=1)) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    old = producer_batch(7, 2, epoch=3)
    assert code_of(lambda: log.append(old, now_ms=1)) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert put(log, producer_batch(7, 0, epoch=4)).base_offset == 3
    # an older coordinator is fenced
    stale = lambda: log.append_marker(7, 4, True, 4, now_ms=1)  # noqa: E731
    assert code_of(stale) == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    assert log.log_end_offset == 4


def test_marker_without_a_transaction_is_still_written(new_log: LogFactory) -> None:
    log = new_log()
    assert marker(log, 9, commit=False, epoch=1) == 0
    assert marker(log, 9, commit=True, epoch=1) == 1
    assert (log.log_end_offset, log.last_stable_offset) == (2, 2)
    assert log.aborted_transactions(0, 2) == []
    (view,) = log.producer_states()
    assert (view.producer_id, view.producer_epoch, view.current_txn_start_offset) == (9, 1, -1)
    # a producer first seen through a marker starts at sequence 0
    assert code_of(lambda: log.append(producer_batch(9, 5, epoch=1), now_ms=1)) == (
        ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    )


def test_interleaved_transactions_and_aborted_ranges(new_log: LogFactory) -> None:
    log = new_log()
    put(log, producer_batch(1, 0))  # 0: pid 1 begins
    put(log, producer_batch(2, 0))  # 1: pid 2 begins
    put(log, producer_batch(1, 1))  # 2
    assert log.last_stable_offset == 0
    assert marker(log, 1, commit=False) == 3  # abort pid 1: [0, 3]
    assert log.last_stable_offset == 1  # pid 2 still open
    put(log, producer_batch(3, 0))  # 4: pid 3 begins
    assert marker(log, 2, commit=True) == 5
    assert log.last_stable_offset == 4
    assert marker(log, 3, commit=False) == 6  # abort pid 3: [4, 6]
    assert log.last_stable_offset == log.high_watermark == 7
    assert log.aborted_transactions(0, 7) == [(1, 0), (3, 4)]
    assert log.aborted_transactions(3, 7) == [(1, 0), (3, 4)]  # marker 3 >= start 3
    assert log.aborted_transactions(4, 7) == [(3, 4)]
    assert log.aborted_transactions(0, 4) == [(1, 0)]  # first offset 4 is not below 4
    assert log.aborted_transactions(0, 5) == [(1, 0), (3, 4)]
    assert log.aborted_transactions(2, 1) == [(1, 0)]
    assert log.aborted_transactions(7, 100) == []
    assert log.aborted_transactions(0, 0) == []


def test_lso_waits_for_the_high_watermark(new_log: LogFactory) -> None:
    log = new_log()  # flush.messages = 1: the high watermark waits for fsync
    log.append(producer_batch(7, 0), now_ms=1)
    assert log.last_stable_offset == 0  # the HW (segment) or the open transaction (memory)
    log.flush()
    assert (log.high_watermark, log.last_stable_offset) == (1, 0)
    log.append_marker(7, 0, True, 0, now_ms=1)
    # Until the marker is below the high watermark, the transaction still holds the LSO
    # back: committed data must not be visible before its marker is durable.
    if log.high_watermark == 1:  # the segment log: not fsynced yet
        assert log.last_stable_offset == 0
        assert log.read(0, 1 << 20).last_stable_offset == 0
    else:
        assert log.last_stable_offset == 2
    log.flush()
    assert log.high_watermark == log.last_stable_offset == 2


def test_lso_when_appends_are_visible_at_once(new_log: LogFactory) -> None:
    log = new_log(LogConfig(flush_messages=100))
    log.append(producer_batch(7, 0), now_ms=1)
    assert (log.high_watermark, log.last_stable_offset) == (1, 0)
    log.append_marker(7, 0, False, 0, now_ms=1)
    assert log.high_watermark == log.last_stable_offset == 2
    assert log.aborted_transactions(0, 2) == [(7, 0)]


def test_expiry_spares_producers_with_an_ongoing_transaction(new_log: LogFactory) -> None:
    log = new_log()
    put(log, producer_batch(1, 0, timestamp=1_000))  # transactional, open
    put(log, producer_batch(2, 0, timestamp=1_000, transactional=False))  # idempotent
    assert log.expire_producers(now_ms=100_000, expiration_ms=10) == 1
    assert [v.producer_id for v in log.producer_states()] == [1]
    assert log.last_stable_offset == 0
    marker(log, 1, commit=True)  # timestamp 9_000
    assert log.expire_producers(now_ms=9_005, expiration_ms=10) == 0
    assert log.expire_producers(now_ms=100_000, expiration_ms=10) == 1
    assert log.producer_states() == []


def test_truncation_reopens_and_forgets_transactions(new_log: LogFactory) -> None:
    log = new_log()
    put(log, producer_batch(1, 0))  # 0
    marker(log, 1, commit=False)  # 1: aborts [0, 1]
    put(log, producer_batch(1, 1))  # 2: a new transaction
    put(log, producer_batch(2, 0))  # 3
    assert log.aborted_transactions(0, 4) == [(1, 0)]
    assert log.last_stable_offset == 2
    log.truncate_to(3)
    assert log.last_stable_offset == 2
    assert [v.current_txn_start_offset for v in log.producer_states()] == [2]
    log.truncate_to(1)  # the marker goes: the first transaction is open again
    assert log.aborted_transactions(0, 4) == []
    assert log.last_stable_offset == 0
    assert txn_of(log, 1) == 0
    assert code_of(lambda: log.append(producer_batch(1, 1, transactional=False), now_ms=1)) == (
        ErrorCode.INVALID_TXN_STATE
    )
    assert marker(log, 1, commit=False) == 1
    assert log.aborted_transactions(0, 4) == [(1, 0)]
    log.truncate_to(0)
    assert log.producer_states() == []
    assert log.last_stable_offset == log.high_watermark == 0


def test_delete_records_keeps_the_lso_at_or_above_the_log_start(new_log: LogFactory) -> None:
    log = new_log()
    put(log, producer_batch(1, 0))  # 0: open
    fill(log, [2])  # 1-2
    assert log.last_stable_offset == 0
    log.delete_records(2)
    assert log.last_stable_offset == 2
    marker(log, 1, commit=False)  # 3
    assert log.last_stable_offset == 4
    assert log.aborted_transactions(2, 4) == [(1, 0)]


def test_coordinator_batches_have_no_sequence_numbers(new_log: LogFactory) -> None:
    """TxnOffsetCommit: the broker writes transactional batches for the producer, with its
    id and epoch but without sequences (Kafka's AppendOrigin.COORDINATOR)."""
    log = new_log()
    first = log.append(producer_batch(4, -1, epoch=2), now_ms=1, origin_coordinator=True)
    second = log.append(producer_batch(4, -1, epoch=2), now_ms=1, origin_coordinator=True)
    log.flush()
    assert (first.base_offset, second.base_offset) == (0, 1)  # not a duplicate
    assert txn_of(log, 4) == 0 and log.last_stable_offset == 0
    stale = producer_batch(4, -1, epoch=1)
    assert code_of(lambda: log.append(stale, now_ms=1, origin_coordinator=True)) == ErrorCode.INVALID_PRODUCER_EPOCH
    plain = producer_batch(4, -1, epoch=2, transactional=False)
    assert code_of(lambda: log.append(plain, now_ms=1, origin_coordinator=True)) == ErrorCode.INVALID_TXN_STATE
    assert marker(log, 4, commit=True, epoch=2) == 2
    assert log.last_stable_offset == log.high_watermark == 3
    (view,) = log.producer_states()
    assert (view.producer_epoch, view.last_sequence, view.current_txn_start_offset) == (2, -1, -1)
