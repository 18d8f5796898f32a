"""The record format of the internal ``__consumer_offsets`` topic (Kafka's own, so Kafka's
tools can read it): every key and value is an int16 schema version followed by the struct
of that version (``protocol/internal``, generated from Kafka's group-coordinator specs).

* key version 0/1 = OffsetCommitKey (group, topic, partition); value = OffsetCommitValue
  (written at version 3: offset, leader epoch, metadata, commit timestamp);
* key version 2 = GroupMetadataKey (group); value = GroupMetadataValue (written at version 3);
* a null value is a tombstone (the offset or group was deleted).

A group lives in partition ``abs(java_string_hash(group_id)) % partitions``, as in Kafka.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from riverbed.protocol.errors import DecodeError
from riverbed.protocol.internal.group_metadata_key import GroupMetadataKey
from riverbed.protocol.internal.group_metadata_value import GroupMetadataValue
from riverbed.protocol.internal.offset_commit_key import OffsetCommitKey
from riverbed.protocol.internal.offset_commit_value import OffsetCommitValue
from riverbed.protocol.primitives import Reader, Writer

OFFSETS_TOPIC = "__consumer_offsets"
OFFSET_KEY_VERSION = 1
OFFSET_VALUE_VERSION = 3
GROUP_KEY_VERSION = 2
GROUP_VALUE_VERSION = 3

_VERSION = struct.Struct(">h")


def java_string_hash(text: str) -> int:
    """Java's String.hashCode (over UTF-16 code units), as a signed 32-bit int."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(group_id: str, partitions: int) -> int:
    h = java_string_hash(group_id)
    # Kafka's Utils.abs maps Integer.MIN_VALUE to 0
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def _encode(
    version: int, msg: OffsetCommitKey | OffsetCommitValue | GroupMetadataKey | GroupMetadataValue
) -> bytes:
    w = Writer()
    w.int16(version)
    msg.write(w, version)
    return w.getvalue()


def offset_key(group: str, topic: str, partition: int) -> bytes:
    return _encode(
        OFFSET_KEY_VERSION, OffsetCommitKey(group=group, topic=topic, partition=partition)
    )


def offset_value(offset: int, leader_epoch: int, metadata: str, commit_timestamp: int) -> bytes:
    return _encode(
        OFFSET_VALUE_VERSION,
        OffsetCommitValue(
            offset=offset,
            leader_epoch=leader_epoch,
            metadata=metadata,
            commit_timestamp=commit_timestamp,
        ),
    )


def group_key(group: str) -> bytes:
    return _encode(GROUP_KEY_VERSION, GroupMetadataKey(group=group))


def group_value(value: GroupMetadataValue) -> bytes:
    return _encode(GROUP_VALUE_VERSION, value)


@dataclass(frozen=True, slots=True)
class OffsetRecord:
    group: str
    topic: str
    partition: int
    value: OffsetCommitValue | None  # None: tombstone


@dataclass(frozen=True, slots=True)
class GroupRecord:
    group: str
    value: GroupMetadataValue | None  # None: tombstone


def decode(key: bytes, value: bytes | None) -> OffsetRecord | GroupRecord | None:
    """Decode one record; None for key versions this broker does not use (e.g. the
    KIP-848 consumer-group records). Raises DecodeError for garbage."""
    if len(key) < 2:
        raise DecodeError("record key too short")
    (kv,) = _VERSION.unpack_from(key)
    if kv in (0, 1):
        k = OffsetCommitKey.read(Reader(key, 2), kv)
        if value is None:
            return OffsetRecord(k.group, k.topic, k.partition, None)
        (vv,) = _VERSION.unpack_from(value)
        if not 0 <= vv <= OffsetCommitValue.MAX_VERSION:
            raise DecodeError(f"unknown offset value version {vv}")
        return OffsetRecord(
            k.group, k.topic, k.partition, OffsetCommitValue.read(Reader(value, 2), vv)
        )
    if kv == 2:
        g = GroupMetadataKey.read(Reader(key, 2), kv)
        if value is None:
            return GroupRecord(g.group, None)
        (vv,) = _VERSION.unpack_from(value)
        if not 0 <= vv <= GroupMetadataValue.MAX_VERSION:
            raise DecodeError(f"unknown group value version {vv}")
        return GroupRecord(g.group, GroupMetadataValue.read(Reader(value, 2), vv))
    return None
