"""The record format of the internal ``__transaction_state`` topic, Kafka's own (so Kafka's
tools can read it): key and value are each an int16 schema version followed by the struct of
that version (``protocol/internal``, generated from Kafka's transaction-coordinator specs).

* key: version 0 = TransactionLogKey (transactional id); Kafka has no other key type here.
* value: TransactionLogValue. Version 0 is what Kafka writes on a cluster at
  ``transaction.version`` 0; version 1 (flexible, adds the tagged fields previous producer id,
  next producer id and client transaction version) at ``transaction.version`` >= 1. Kafka picks
  by the cluster's feature level, not by the client; this broker does not run the feature, so
  it writes version 0 unless the snapshot says a transactions-v2 client (or the caller asks).
* state (transaction_status) = TxnState's value. PrepareEpochFence is never written (a fence
  is persisted as PrepareAbort with the bumped epoch) and Dead neither (a tombstone is).
* partitions: null for Empty, else grouped by topic (sorted here, for stable bytes).
* the last producer epoch (KIP-360 retry detection) is not in the record: it reads back as -1.
* a null value is a tombstone: the id expired.

An id lives in partition ``abs(java_string_hash(id)) % partitions`` (50 by default,
``transaction.state.log.num.partitions``), as in Kafka.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import replace

from riverbed.coordinator import offsets_log
from riverbed.coordinator.txn_types import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    TxnSnapshot,
    TxnState,
)
from riverbed.protocol.errors import DecodeError
from riverbed.protocol.internal.transaction_log_key import TransactionLogKey
from riverbed.protocol.internal.transaction_log_value import TransactionLogValue
from riverbed.protocol.primitives import Message, Writer

TRANSACTION_STATE_TOPIC = "__transaction_state"
#: transaction.state.log.num.partitions
DEFAULT_PARTITIONS = 50
KEY_VERSION = 0

_VERSION = struct.Struct(">h")


@functools.lru_cache(maxsize=8192)  # every state record of a transaction asks again
def partition_for(transactional_id: str, partitions: int = DEFAULT_PARTITIONS) -> int:
    return offsets_log.partition_for(transactional_id, partitions)


def _encode(version: int, msg: Message) -> bytes:
    w = Writer()
    w.int16(version)
    msg.write(w, version)
    return w.getvalue()


@functools.lru_cache(maxsize=8192)
def txn_key(transactional_id: str) -> bytes:
    return _encode(KEY_VERSION, TransactionLogKey(transactional_id=transactional_id))


def value_version(snapshot: TxnSnapshot) -> int:
    """The value version written when the caller does not choose: 1 for a client of
    transactions version >= 1 (its cluster would be at transaction.version >= 1), else 0."""
    return 1 if snapshot.client_transaction_version >= 1 else 0


def txn_value(snapshot: TxnSnapshot, version: int | None = None) -> bytes:
    """The TransactionLogValue for `snapshot` (version 0 or 1; default: `value_version`)."""
    v = value_version(snapshot) if version is None else version
    if v not in (0, 1):
        raise ValueError(f"TransactionLogValue version {v} is not 0 or 1")
    state = snapshot.state
    if state is TxnState.PREPARE_EPOCH_FENCE:
        state = TxnState.PREPARE_ABORT
    if state is TxnState.DEAD:
        raise ValueError("a Dead transactional id is written as a tombstone")
    if v == 0:
        return _value_v0(snapshot, state)
    partitions: list[TransactionLogValue.PartitionsSchema] | None = None
    if state is not TxnState.EMPTY:
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(snapshot.partitions):
            by_topic.setdefault(topic, []).append(partition)
        partitions = [
            TransactionLogValue.PartitionsSchema(topic=t, partition_ids=ps)
            for t, ps in by_topic.items()
        ]
    value = TransactionLogValue(
        producer_id=snapshot.producer_id,
        producer_epoch=snapshot.producer_epoch,
        transaction_timeout_ms=snapshot.timeout_ms,
        transaction_status=int(state),
        transaction_partitions=partitions,
        transaction_last_update_timestamp_ms=snapshot.last_update_ms,
        transaction_start_timestamp_ms=snapshot.start_ms,
    )
    if v >= 1:  # tagged fields exist from version 1 only
        value.previous_producer_id = snapshot.previous_producer_id
        value.next_producer_id = snapshot.next_producer_id
        value.client_transaction_version = snapshot.client_transaction_version
    return _encode(v, value)


_V0_HEAD = struct.Struct(">hqhib")  # value version, producer id, epoch, timeout, status
_V0_TAIL = struct.Struct(">qq")  # last update, start
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")


def _value_v0(snapshot: TxnSnapshot, state: TxnState) -> bytes:
    """``_encode(0, TransactionLogValue(...))`` by hand: every transaction writes three of
    these (Ongoing, Prepare*, Complete*), and the generic writer costs several times more."""
    out = bytearray(
        _V0_HEAD.pack(0, snapshot.producer_id, snapshot.producer_epoch, snapshot.timeout_ms, int(state))
    )
    if state is TxnState.EMPTY:
        out += _INT32.pack(-1)  # null partitions
    else:
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(snapshot.partitions):
            by_topic.setdefault(topic, []).append(partition)
        out += _INT32.pack(len(by_topic))
        for topic, ids in by_topic.items():
            name = topic.encode()
            out += _INT16.pack(len(name))
            out += name
            out += struct.pack(f">i{len(ids)}i", len(ids), *ids)
    out += _V0_TAIL.pack(snapshot.last_update_ms, snapshot.start_ms)
    return bytes(out)


def persisted(snapshot: TxnSnapshot, version: int | None = None) -> TxnSnapshot:
    """What `decode` gives back for the record `txn_value(snapshot, version)`: the fields the
    record does not carry reset to their defaults."""
    v = value_version(snapshot) if version is None else version
    state = (
        TxnState.PREPARE_ABORT if snapshot.state is TxnState.PREPARE_EPOCH_FENCE else snapshot.state
    )
    out = replace(snapshot, state=state, last_producer_epoch=NO_PRODUCER_EPOCH)
    if state is TxnState.EMPTY:
        out = replace(out, partitions=frozenset())
    if v == 0:
        out = replace(
            out,
            previous_producer_id=NO_PRODUCER_ID,
            next_producer_id=NO_PRODUCER_ID,
            client_transaction_version=0,
        )
    return out


def decode(key: bytes, value: bytes | None) -> tuple[str, TxnSnapshot | None]:
    """One __transaction_state record -> (transactional id, snapshot or None for a
    tombstone). Raises DecodeError for anything else: a short or unknown key or value
    version, truncated or trailing bytes, an unknown state id."""
    if len(key) < 2:
        raise DecodeError("transaction log key too short")
    (kv,) = _VERSION.unpack_from(key)
    if kv != KEY_VERSION:
        raise DecodeError(f"unknown transaction log key version {kv}")
    k = TransactionLogKey.decode(memoryview(key)[2:], kv)
    assert isinstance(k, TransactionLogKey)
    tid = k.transactional_id
    if value is None:
        return tid, None
    if len(value) < 2:
        raise DecodeError(f"transaction log value of {tid!r} too short")
    (vv,) = _VERSION.unpack_from(value)
    if not TransactionLogValue.MIN_VERSION <= vv <= TransactionLogValue.MAX_VERSION:
        raise DecodeError(f"unknown transaction log value version {vv} for {tid!r}")
    v = TransactionLogValue.decode(memoryview(value)[2:], vv)
    assert isinstance(v, TransactionLogValue)
    try:
        state = TxnState(v.transaction_status)
    except ValueError:
        raise DecodeError(f"unknown transaction state {v.transaction_status} for {tid!r}") from None
    partitions: frozenset[tuple[str, int]] = frozenset()
    if state is not TxnState.EMPTY and v.transaction_partitions is not None:
        partitions = frozenset(
            (p.topic, pid) for p in v.transaction_partitions for pid in p.partition_ids
        )
    return tid, TxnSnapshot(
        transactional_id=tid,
        producer_id=v.producer_id,
        previous_producer_id=v.previous_producer_id,
        next_producer_id=v.next_producer_id,
        producer_epoch=v.producer_epoch,
        last_producer_epoch=NO_PRODUCER_EPOCH,
        timeout_ms=v.transaction_timeout_ms,
        state=state,
        partitions=partitions,
        start_ms=v.transaction_start_timestamp_ms,
        last_update_ms=v.transaction_last_update_timestamp_ms,
        client_transaction_version=v.client_transaction_version,
    )
