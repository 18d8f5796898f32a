"""Idempotent-producer sequence rules (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.storage.producer_state import BatchMeta, Duplicate, ProducerStateTable


def append(t: ProducerStateTable, pid: int, epoch: int, first: int, count: int, offset: int) -> BatchMeta:
    last = (first + count - 1) % (1 << 31)
    t.check(pid, epoch, first, last)
    meta = BatchMeta(first, last, offset, offset + count - 1, 1000)
    t.record(pid, epoch, meta)
    return meta


def code_of(fn: object, *args: int) -> int:
    with pytest.raises(KafkaError) as exc:
        fn(*args)  # type: ignore[operator]
    return int(exc.value.code)


def test_in_order_sequences_are_accepted() -> None:
    t = ProducerStateTable()
    append(t, 7, 0, 0, 5, 0)
    append(t, 7, 0, 5, 3, 5)
    assert t.producers[7].last_seq == 7


def test_gap_is_out_of_order() -> None:
    t = ProducerStateTable()
    append(t, 7, 0, 0, 5, 0)
    assert code_of(t.check, 7, 0, 6, 8) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_retry_of_a_recent_batch_is_a_duplicate_with_original_offsets() -> None:
    t = ProducerStateTable()
    first = append(t, 7, 0, 0, 5, 100)
    for i in range(1, 5):
        append(t, 7, 0, 5 * i, 5, 100 + 5 * i)
    with pytest.raises(Duplicate) as dup:
        t.check(7, 0, 0, 4)
    assert dup.value.batch == first
    append(t, 7, 0, 25, 5, 125)  # the sixth batch pushes the first out of the cache
    assert code_of(t.check, 7, 0, 0, 4) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_old_epoch_is_fenced_and_new_epoch_restarts_at_zero() -> None:
    t = ProducerStateTable()
    append(t, 7, 3, 0, 5, 0)
    assert code_of(t.check, 7, 2, 5, 9) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert code_of(t.check, 7, 4, 5, 9) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    append(t, 7, 4, 0, 1, 5)
    assert t.producers[7].epoch == 4


def test_unknown_producer_accepts_any_sequence() -> None:
    t = ProducerStateTable()
    t.check(9, 0, 1234, 1235)  # no state for producer 9: any first sequence is accepted
    append(t, 9, 0, 1234, 2, 0)
    append(t, 9, 0, 1236, 1, 2)
    # from then on the sequence is tracked: the next batch must start at 1237
    assert t.producers[9].last_seq == 1236
    assert code_of(t.check, 9, 0, 1238, 1238) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    t.check(9, 0, 1237, 1237)


def test_sequence_wraps() -> None:
    t = ProducerStateTable()
    append(t, 1, 0, 2**31 - 2, 2, 0)
    assert t.producers[1].last_seq == 2**31 - 1
    # after Integer.MAX_VALUE the next sequence is 0 (Kafka's DefaultRecordBatch.incrementSequence)
    assert code_of(t.check, 1, 0, 2**31, 2**31) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    append(t, 1, 0, 0, 1, 2)
    assert t.producers[1].last_seq == 0
    assert code_of(t.check, 1, 0, 2, 2) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    t.check(1, 0, 1, 1)


def test_restore_and_expire() -> None:
    t = ProducerStateTable()
    append(t, 1, 0, 0, 5, 0)
    saved = t.entry_copy(1)
    append(t, 1, 0, 5, 5, 5)
    t.restore(1, saved)  # undo the second batch
    assert t.producers[1].last_seq == 4
    t.restore(1, None)
    assert 1 not in t.producers
    append(t, 2, 0, 0, 1, 0)
    assert t.expire(now_ms=1000 + 10, expiration_ms=5) == 1
    assert not t.producers


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(1, 10)), max_size=40))
def test_snapshot_round_trip(ops: list[tuple[int, int, int]]) -> None:
    t = ProducerStateTable()
    offset = 0
    for pid, epoch, count in ops:
        entry = t.producers.get(pid)
        if entry is not None and epoch < entry.epoch:
            continue
        first = 0 if entry is None or epoch != entry.epoch else (entry.last_seq + 1)
        append(t, pid, epoch, first, count, offset)
        offset += count
    offset_back, back = ProducerStateTable.from_bytes(t.to_bytes(offset))
    assert offset_back == offset
    assert back.producers == t.producers
