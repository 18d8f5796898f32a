"""__transaction_state record format: Kafka's bytes, round trips, and garbage input."""

from __future__ import annotations

import contextlib
import struct
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.coordinator.txn_log import (
    TRANSACTION_STATE_TOPIC,
    decode,
    partition_for,
    persisted,
    txn_key,
    txn_value,
    value_version,
)
from riverbed.coordinator.txn_types import TxnSnapshot, TxnState
from riverbed.protocol.errors import DecodeError
from riverbed.protocol.internal.transaction_log_value import TransactionLogValue
from riverbed.protocol.primitives import Writer

S = TxnState
WRITABLE = [s for s in TxnState if s is not S.DEAD]

BASE = TxnSnapshot(
    transactional_id="my-txn",
    producer_id=4242,
    previous_producer_id=4241,
    next_producer_id=-1,
    producer_epoch=7,
    last_producer_epoch=6,
    timeout_ms=60_000,
    state=S.ONGOING,
    partitions=frozenset({("b", 1), ("a", 0), ("a", 2)}),
    start_ms=1_700_000_000_000,
    last_update_ms=1_700_000_000_500,
)

snapshots = st.builds(
    TxnSnapshot,
    transactional_id=st.text(min_size=1, max_size=20),
    producer_id=st.integers(0, 2**63 - 1),
    previous_producer_id=st.integers(-1, 2**63 - 1),
    next_producer_id=st.integers(-1, 2**63 - 1),
    producer_epoch=st.integers(0, 32767),
    last_producer_epoch=st.integers(-1, 32767),
    timeout_ms=st.integers(1, 2**31 - 1),
    state=st.sampled_from(WRITABLE),
    partitions=st.frozensets(
        st.tuples(st.sampled_from(["a", "b", "__consumer_offsets"]), st.integers(0, 99))
    ),
    start_ms=st.integers(-1, 2**62),
    last_update_ms=st.integers(0, 2**62),
    client_transaction_version=st.sampled_from([0, 2]),
)


def test_topic_and_partitioning_match_kafka() -> None:
    assert TRANSACTION_STATE_TOPIC == "__transaction_state"
    # abs(String.hashCode) % 50, as Kafka's TransactionStateManager.partitionFor
    assert partition_for("my-txn") == abs(_java_hash("my-txn")) % 50
    assert partition_for("x", 3) == ord("x") % 3


def _java_hash(s: str) -> int:
    h = 0
    for ch in s:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def test_key_bytes() -> None:
    assert txn_key("t1") == b"\x00\x00" + b"\x00\x02t1"


def test_value_v0_bytes() -> None:
    raw = txn_value(BASE)
    expected = (
        struct.pack(">hqhib", 0, 4242, 7, 60_000, 1)
        + struct.pack(">i", 2)  # two topics, sorted
        + struct.pack(">h", 1) + b"a" + struct.pack(">iii", 2, 0, 2)
        + struct.pack(">h", 1) + b"b" + struct.pack(">ii", 1, 1)
        + struct.pack(">qq", 1_700_000_000_500, 1_700_000_000_000)
    )  # fmt: skip
    assert raw == expected


def test_empty_state_writes_null_partitions() -> None:
    raw = txn_value(replace(BASE, state=S.EMPTY, partitions=frozenset(), start_ms=-1))
    assert raw[2 + 8 + 2 + 4 + 1 :][:4] == struct.pack(">i", -1)


def test_value_v1_carries_tagged_fields() -> None:
    snap = replace(BASE, client_transaction_version=2, next_producer_id=99)
    assert value_version(snap) == 1 and value_version(BASE) == 0
    raw = txn_value(snap)
    assert raw[:2] == b"\x00\x01"
    _, back = decode(txn_key("my-txn"), raw)
    assert back == persisted(snap)
    assert back is not None and (back.previous_producer_id, back.next_producer_id) == (4241, 99)
    # version 0 drops them
    _, back0 = decode(txn_key("my-txn"), txn_value(snap, 0))
    assert back0 is not None and (back0.previous_producer_id, back0.client_transaction_version) == (
        -1,
        0,
    )


def test_prepare_epoch_fence_is_written_as_prepare_abort() -> None:
    _, back = decode(txn_key("my-txn"), txn_value(replace(BASE, state=S.PREPARE_EPOCH_FENCE)))
    assert back is not None and back.state is S.PREPARE_ABORT


def test_dead_and_bad_versions_are_not_written() -> None:
    with pytest.raises(ValueError):
        txn_value(replace(BASE, state=S.DEAD))
    with pytest.raises(ValueError):
        txn_value(BASE, 2)


def test_tombstone() -> None:
    assert decode(txn_key("gone"), None) == ("gone", None)


@settings(max_examples=200, deadline=None)
@given(snapshots)
def test_value_v0_by_hand_equals_the_generated_writer(snap: TxnSnapshot) -> None:
    state = S.PREPARE_ABORT if snap.state is S.PREPARE_EPOCH_FENCE else snap.state
    partitions = None
    if state is not S.EMPTY:
        by_topic: dict[str, list[int]] = {}
        for topic, p in sorted(snap.partitions):
            by_topic.setdefault(topic, []).append(p)
        partitions = [TransactionLogValue.PartitionsSchema(topic=t, partition_ids=ps) for t, ps in by_topic.items()]
    w = Writer()
    w.int16(0)
    TransactionLogValue(
        producer_id=snap.producer_id, producer_epoch=snap.producer_epoch, transaction_timeout_ms=snap.timeout_ms,
        transaction_status=int(state), transaction_partitions=partitions,
        transaction_last_update_timestamp_ms=snap.last_update_ms, transaction_start_timestamp_ms=snap.start_ms,
    ).write(w, 0)  # fmt: skip
    assert txn_value(snap, 0) == w.getvalue()


@settings(max_examples=200, deadline=None)
@given(snapshots, st.sampled_from([None, 0, 1]))
def test_round_trip(snap: TxnSnapshot, version: int | None) -> None:
    tid, back = decode(txn_key(snap.transactional_id), txn_value(snap, version))
    assert tid == snap.transactional_id
    assert back == persisted(snap, version)
    assert back is not None and back.last_producer_epoch == -1


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"", None),
        (b"\x00", None),
        (b"\x00\x01\x00\x01a", None),  # other key version
        (b"\x00\x00\x00\x05ab", None),  # truncated id
        (b"\x00\x00\x00\x01ab", None),  # trailing bytes
        (txn_key("t"), b""),
        (txn_key("t"), b"\x00"),
        (txn_key("t"), b"\x00\x02" + txn_value(BASE)[2:]),  # unknown value version
        (txn_key("t"), txn_value(BASE)[:-1]),
        (txn_key("t"), txn_value(BASE) + b"\x00"),
        (txn_key("t"), txn_value(BASE)[:16] + b"\x09" + txn_value(BASE)[17:]),  # state 9
    ],
)
def test_garbage_raises_decode_error(key: bytes, value: bytes | None) -> None:
    with pytest.raises(DecodeError):
        decode(key, value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.one_of(st.none(), st.binary(max_size=120)))
def test_fuzz_only_decode_errors(key: bytes, value: bytes | None) -> None:
    with contextlib.suppress(DecodeError):
        decode(key, value)


@settings(max_examples=200, deadline=None)
@given(snapshots, st.data())
def test_fuzz_mutated_values(snap: TxnSnapshot, data: st.DataObject) -> None:
    raw = bytearray(txn_value(snap, data.draw(st.sampled_from([0, 1]))))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    with contextlib.suppress(DecodeError):
        decode(txn_key("t"), bytes(raw[:cut]))
