"""The record format of the internal ``__consumer_offsets`` topic (Kafka's own, so Kafka's
tools can read it): every key and value is an int16 schema version followed by the struct
of that version (``protocol/internal``, generated from Kafka's group-coordinator specs).

* key version 0/1 = OffsetCommitKey (group, topic, partition); value = OffsetCommitValue
  (written at version 3: offset, leader epoch, metadata, commit timestamp);
* key version 2 = GroupMetadataKey (group); value = GroupMetadataValue (written at version 3);
* key versions 3..8 = the KIP-848 consumer groups, as Kafka's GroupCoordinatorRecordHelpers
  writes them (every value at version 0, the only valid one; all flexible):

  - 3 ConsumerGroupMetadata (group): the group epoch;
  - 4 ConsumerGroupPartitionMetadata (group): the subscribed topics as last seen (id, name,
    partition count; no per-partition racks);
  - 5 ConsumerGroupMemberMetadata (group, member): the member's ids and subscription;
  - 6 ConsumerGroupTargetAssignmentMetadata (group): the assignment epoch;
  - 7 ConsumerGroupTargetAssignmentMember (group, member): the member's target assignment;
  - 8 ConsumerGroupCurrentMemberAssignment (group, member): the member's epochs, state
    (Kafka's MemberState byte) and the partitions it owns or must revoke.

  Resolved subscription regexes (Kafka's ConsumerGroupRegularExpression, key version 16)
  are not written: they are re-resolved at the group's next heartbeat.
* a null value is a tombstone (the offset, group or member was deleted).

A group lives in partition ``abs(java_string_hash(group_id)) % partitions``, as in Kafka.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from riverbed.coordinator.consumer_group_types import (
    ConsumerGroupSnapshot,
    ConsumerMemberSnapshot,
    FrozenAssignment,
    MemberState,
)
from riverbed.protocol.errors import DecodeError
from riverbed.protocol.internal.consumer_group_current_member_assignment_key import (
    ConsumerGroupCurrentMemberAssignmentKey,
)
from riverbed.protocol.internal.consumer_group_current_member_assignment_value import (
    ConsumerGroupCurrentMemberAssignmentValue,
)
from riverbed.protocol.internal.consumer_group_member_metadata_key import (
    ConsumerGroupMemberMetadataKey,
)
from riverbed.protocol.internal.consumer_group_member_metadata_value import (
    ConsumerGroupMemberMetadataValue,
)
from riverbed.protocol.internal.consumer_group_metadata_key import ConsumerGroupMetadataKey
from riverbed.protocol.internal.consumer_group_metadata_value import ConsumerGroupMetadataValue
from riverbed.protocol.internal.consumer_group_partition_metadata_key import (
    ConsumerGroupPartitionMetadataKey,
)
from riverbed.protocol.internal.consumer_group_partition_metadata_value import (
    ConsumerGroupPartitionMetadataValue,
)
from riverbed.protocol.internal.consumer_group_target_assignment_member_key import (
    ConsumerGroupTargetAssignmentMemberKey,
)
from riverbed.protocol.internal.consumer_group_target_assignment_member_value import (
    ConsumerGroupTargetAssignmentMemberValue,
)
from riverbed.protocol.internal.consumer_group_target_assignment_metadata_key import (
    ConsumerGroupTargetAssignmentMetadataKey,
)
from riverbed.protocol.internal.consumer_group_target_assignment_metadata_value import (
    ConsumerGroupTargetAssignmentMetadataValue,
)
from riverbed.protocol.internal.group_metadata_key import GroupMetadataKey
from riverbed.protocol.internal.group_metadata_value import GroupMetadataValue
from riverbed.protocol.internal.offset_commit_key import OffsetCommitKey
from riverbed.protocol.internal.offset_commit_value import OffsetCommitValue
from riverbed.protocol.primitives import ZERO_UUID, Message, Reader, Writer

OFFSETS_TOPIC = "__consumer_offsets"
OFFSET_KEY_VERSION = 1
OFFSET_VALUE_VERSION = 3
GROUP_KEY_VERSION = 2
GROUP_VALUE_VERSION = 3
# KIP-848 key versions (each key spec has exactly one valid version: the record type)
CONSUMER_GROUP_METADATA_KEY_VERSION = 3
CONSUMER_GROUP_PARTITION_METADATA_KEY_VERSION = 4
CONSUMER_GROUP_MEMBER_METADATA_KEY_VERSION = 5
CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY_VERSION = 6
CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY_VERSION = 7
CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION = 8
_CONSUMER_GROUP_KEY_VERSIONS = range(
    CONSUMER_GROUP_METADATA_KEY_VERSION, CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION + 1
)
#: Every KIP-848 value is written at version 0, the latest (and only) valid one.
CONSUMER_GROUP_VALUE_VERSION = 0

#: Kafka's MemberState bytes (ConsumerGroupCurrentMemberAssignmentValue.State).
MEMBER_STATE_BYTES: dict[MemberState, int] = {
    MemberState.STABLE: 0,
    MemberState.UNREVOKED_PARTITIONS: 1,
    MemberState.UNRELEASED_PARTITIONS: 2,
}
_MEMBER_STATES = {b: s for s, b in MEMBER_STATE_BYTES.items()}

_VERSION = struct.Struct(">h")
_M = TypeVar("_M", bound=Message)


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


def _encode(version: int, msg: Message) -> bytes:
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


# ------------------------------------------------------------------------------------------
# KIP-848 consumer groups: one encoder per key and value
# ------------------------------------------------------------------------------------------


def _cg_value(value: Message) -> bytes:
    return _encode(CONSUMER_GROUP_VALUE_VERSION, value)


def consumer_group_metadata_key(group: str) -> bytes:
    return _encode(CONSUMER_GROUP_METADATA_KEY_VERSION, ConsumerGroupMetadataKey(group_id=group))


def consumer_group_metadata_value(group_epoch: int) -> bytes:
    return _cg_value(ConsumerGroupMetadataValue(epoch=group_epoch))


def consumer_group_partition_metadata_key(group: str) -> bytes:
    return _encode(
        CONSUMER_GROUP_PARTITION_METADATA_KEY_VERSION,
        ConsumerGroupPartitionMetadataKey(group_id=group),
    )


def consumer_group_partition_metadata_value(
    topics: Iterable[tuple[str, uuid.UUID | None, int]],
) -> bytes:
    """The subscribed topics as (name, topic id or None, partitions). A subscribed topic that
    does not exist (no id) is written with the zero UUID and 0 partitions; Kafka's own
    coordinator leaves such topics out, and reads the zero UUID back as "no id" here."""
    V = ConsumerGroupPartitionMetadataValue
    return _cg_value(
        V(
            topics=[
                V.TopicMetadata(
                    topic_id=ZERO_UUID if tid is None else tid,
                    topic_name=name,
                    num_partitions=count,
                    partition_metadata=[],
                )
                for name, tid, count in topics
            ]
        )
    )


def consumer_group_member_metadata_key(group: str, member_id: str) -> bytes:
    return _encode(
        CONSUMER_GROUP_MEMBER_METADATA_KEY_VERSION,
        ConsumerGroupMemberMetadataKey(group_id=group, member_id=member_id),
    )


def consumer_group_member_metadata_value(member: ConsumerMemberSnapshot) -> bytes:
    # ClassicMemberMetadata (tagged, for members upgraded from the classic protocol) is left
    # at its default: not written.
    return _cg_value(
        ConsumerGroupMemberMetadataValue(
            instance_id=member.instance_id,
            rack_id=member.rack_id,
            client_id=member.client_id,
            client_host=member.client_host,
            subscribed_topic_names=sorted(member.subscribed_topic_names),
            subscribed_topic_regex=member.subscribed_topic_regex,
            rebalance_timeout_ms=member.rebalance_timeout_ms,
            server_assignor=member.server_assignor,
        )
    )


def consumer_group_target_assignment_metadata_key(group: str) -> bytes:
    return _encode(
        CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY_VERSION,
        ConsumerGroupTargetAssignmentMetadataKey(group_id=group),
    )


def consumer_group_target_assignment_metadata_value(assignment_epoch: int) -> bytes:
    return _cg_value(ConsumerGroupTargetAssignmentMetadataValue(assignment_epoch=assignment_epoch))


def consumer_group_target_assignment_member_key(group: str, member_id: str) -> bytes:
    return _encode(
        CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY_VERSION,
        ConsumerGroupTargetAssignmentMemberKey(group_id=group, member_id=member_id),
    )


def consumer_group_target_assignment_member_value(target: FrozenAssignment) -> bytes:
    V = ConsumerGroupTargetAssignmentMemberValue
    return _cg_value(
        V(topic_partitions=[V.TopicPartition(tid, list(ps)) for tid, ps in target if ps])
    )


def consumer_group_current_member_assignment_key(group: str, member_id: str) -> bytes:
    return _encode(
        CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION,
        ConsumerGroupCurrentMemberAssignmentKey(group_id=group, member_id=member_id),
    )


def consumer_group_current_member_assignment_value(member: ConsumerMemberSnapshot) -> bytes:
    V = ConsumerGroupCurrentMemberAssignmentValue

    def parts(
        assignment: FrozenAssignment,
    ) -> list[ConsumerGroupCurrentMemberAssignmentValue.TopicPartitions]:
        return [V.TopicPartitions(tid, list(ps)) for tid, ps in assignment if ps]

    return _cg_value(
        V(
            member_epoch=member.member_epoch,
            previous_member_epoch=member.previous_member_epoch,
            state=MEMBER_STATE_BYTES[member.state],
            assigned_partitions=parts(member.assigned),
            partitions_pending_revocation=parts(member.pending_revocation),
        )
    )


KeyValue = tuple[bytes, bytes | None]


def consumer_member_tombstones(group: str, member_ids: Iterable[str]) -> list[KeyValue]:
    """Tombstones of members' records, in Kafka's order (current assignment, target
    assignment, member metadata)."""
    out: list[KeyValue] = []
    for member_id in member_ids:
        out.append((consumer_group_current_member_assignment_key(group, member_id), None))
        out.append((consumer_group_target_assignment_member_key(group, member_id), None))
        out.append((consumer_group_member_metadata_key(group, member_id), None))
    return out


def consumer_group_records(
    group: str, snapshot: ConsumerGroupSnapshot, removed: Iterable[str] = ()
) -> list[KeyValue]:
    """Every record describing the group as `snapshot` has it, preceded by the tombstones of
    the `removed` members. The order follows Kafka's coordinator: subscriptions, subscription
    metadata, group epoch, target assignment, assignment epoch, current assignments."""
    out = consumer_member_tombstones(group, removed)
    for m in snapshot.members:
        key = consumer_group_member_metadata_key(group, m.member_id)
        out.append((key, consumer_group_member_metadata_value(m)))
    out.append(
        (
            consumer_group_partition_metadata_key(group),
            consumer_group_partition_metadata_value(snapshot.subscribed_metadata),
        )
    )
    out.append(
        (consumer_group_metadata_key(group), consumer_group_metadata_value(snapshot.group_epoch))
    )
    for m in snapshot.members:
        key = consumer_group_target_assignment_member_key(group, m.member_id)
        out.append((key, consumer_group_target_assignment_member_value(m.target)))
    out.append(
        (
            consumer_group_target_assignment_metadata_key(group),
            consumer_group_target_assignment_metadata_value(snapshot.assignment_epoch),
        )
    )
    for m in snapshot.members:
        key = consumer_group_current_member_assignment_key(group, m.member_id)
        out.append((key, consumer_group_current_member_assignment_value(m)))
    return out


def consumer_group_tombstones(group: str, member_ids: Iterable[str]) -> list[KeyValue]:
    """Tombstones for every record of a deleted group with these members (Kafka's order)."""
    ids = list(member_ids)
    out: list[KeyValue] = [
        (consumer_group_current_member_assignment_key(group, m), None) for m in ids
    ]
    out += [(consumer_group_target_assignment_member_key(group, m), None) for m in ids]
    out.append((consumer_group_target_assignment_metadata_key(group), None))
    out += [(consumer_group_member_metadata_key(group, m), None) for m in ids]
    out.append((consumer_group_partition_metadata_key(group), None))
    out.append((consumer_group_metadata_key(group), None))
    return out


# ------------------------------------------------------------------------------------------
# Decoding
# ------------------------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class ConsumerGroupMetadataRecord:
    """Key version 3: the group epoch."""

    group: str
    value: ConsumerGroupMetadataValue | None  # None: tombstone


@dataclass(frozen=True, slots=True)
class ConsumerGroupPartitionMetadataRecord:
    """Key version 4: the subscribed topics' metadata."""

    group: str
    value: ConsumerGroupPartitionMetadataValue | None


@dataclass(frozen=True, slots=True)
class ConsumerGroupMemberMetadataRecord:
    """Key version 5: one member's ids and subscription."""

    group: str
    member_id: str
    value: ConsumerGroupMemberMetadataValue | None


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMetadataRecord:
    """Key version 6: the assignment epoch."""

    group: str
    value: ConsumerGroupTargetAssignmentMetadataValue | None


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMemberRecord:
    """Key version 7: one member's target assignment."""

    group: str
    member_id: str
    value: ConsumerGroupTargetAssignmentMemberValue | None


@dataclass(frozen=True, slots=True)
class ConsumerGroupCurrentMemberAssignmentRecord:
    """Key version 8: one member's epochs, state and owned / pending partitions."""

    group: str
    member_id: str
    value: ConsumerGroupCurrentMemberAssignmentValue | None


ConsumerGroupRecord = (
    ConsumerGroupMetadataRecord
    | ConsumerGroupPartitionMetadataRecord
    | ConsumerGroupMemberMetadataRecord
    | ConsumerGroupTargetAssignmentMetadataRecord
    | ConsumerGroupTargetAssignmentMemberRecord
    | ConsumerGroupCurrentMemberAssignmentRecord
)


class ConsumerGroupDecodeError(DecodeError):
    """A KIP-848 record whose key could be read but not its value (unknown version,
    garbage): that key's state is unknown (see ConsumerGroupRecords.mark_unreadable)."""

    def __init__(self, key_version: int, group: str, member_id: str | None, message: str) -> None:
        where = f"group {group!r}" + ("" if member_id is None else f", member {member_id!r}")
        super().__init__(f"{where}: {message}")
        self.key_version = key_version
        self.group = group
        self.member_id = member_id


def _read_value(
    cls: type[_M], value: bytes, kv: int, group: str, member_id: str | None = None
) -> _M:
    def error(message: str) -> ConsumerGroupDecodeError:
        return ConsumerGroupDecodeError(kv, group, member_id, message)

    if len(value) < 2:
        raise error(f"{cls.__name__} too short")
    (vv,) = _VERSION.unpack_from(value)
    if not cls.MIN_VERSION <= vv <= cls.MAX_VERSION:
        raise error(f"unknown {cls.__name__} version {vv}")
    try:
        msg = cls.read(Reader(value, 2), vv)
    except DecodeError as exc:
        raise error(f"unreadable {cls.__name__}: {exc}") from exc
    assert isinstance(msg, cls)
    return msg


def _decode_consumer_group(kv: int, key: bytes, value: bytes | None) -> ConsumerGroupRecord:
    r = Reader(key, 2)
    if kv == CONSUMER_GROUP_METADATA_KEY_VERSION:
        g = ConsumerGroupMetadataKey.read(r, kv).group_id
        v3 = None if value is None else _read_value(ConsumerGroupMetadataValue, value, kv, g)
        return ConsumerGroupMetadataRecord(g, v3)
    if kv == CONSUMER_GROUP_PARTITION_METADATA_KEY_VERSION:
        g = ConsumerGroupPartitionMetadataKey.read(r, kv).group_id
        v4 = (
            None
            if value is None
            else _read_value(ConsumerGroupPartitionMetadataValue, value, kv, g)
        )
        return ConsumerGroupPartitionMetadataRecord(g, v4)
    if kv == CONSUMER_GROUP_MEMBER_METADATA_KEY_VERSION:
        k5 = ConsumerGroupMemberMetadataKey.read(r, kv)
        v5 = (
            None
            if value is None
            else _read_value(ConsumerGroupMemberMetadataValue, value, kv, k5.group_id, k5.member_id)
        )
        return ConsumerGroupMemberMetadataRecord(k5.group_id, k5.member_id, v5)
    if kv == CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY_VERSION:
        g = ConsumerGroupTargetAssignmentMetadataKey.read(r, kv).group_id
        v6 = (
            None
            if value is None
            else _read_value(ConsumerGroupTargetAssignmentMetadataValue, value, kv, g)
        )
        return ConsumerGroupTargetAssignmentMetadataRecord(g, v6)
    if kv == CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY_VERSION:
        k7 = ConsumerGroupTargetAssignmentMemberKey.read(r, kv)
        v7 = (
            None
            if value is None
            else _read_value(
                ConsumerGroupTargetAssignmentMemberValue, value, kv, k7.group_id, k7.member_id
            )
        )
        return ConsumerGroupTargetAssignmentMemberRecord(k7.group_id, k7.member_id, v7)
    assert kv == CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION
    k8 = ConsumerGroupCurrentMemberAssignmentKey.read(r, kv)
    v8 = (
        None
        if value is None
        else _read_value(
            ConsumerGroupCurrentMemberAssignmentValue, value, kv, k8.group_id, k8.member_id
        )
    )
    return ConsumerGroupCurrentMemberAssignmentRecord(k8.group_id, k8.member_id, v8)


def decode(
    key: bytes, value: bytes | None
) -> OffsetRecord | GroupRecord | ConsumerGroupRecord | None:
    """Decode one record; None for key versions this broker does not use (e.g. share groups
    or KIP-848 regular expressions). Raises DecodeError for garbage (ConsumerGroupDecodeError
    when the key of a KIP-848 record could be read but not its value)."""
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
    if kv in _CONSUMER_GROUP_KEY_VERSIONS:
        return _decode_consumer_group(kv, key, value)
    return None


# ------------------------------------------------------------------------------------------
# Replay: records -> ConsumerGroupSnapshot
# ------------------------------------------------------------------------------------------


class IncompleteGroup(ValueError):
    """The replayed records do not describe a whole group (missing or unknown data)."""


def _frozen(parts: Iterable[tuple[uuid.UUID, Iterable[int]]]) -> FrozenAssignment:
    merged: dict[uuid.UUID, set[int]] = {}
    for tid, ps in parts:
        merged.setdefault(tid, set()).update(ps)
    return tuple((tid, tuple(sorted(ps))) for tid, ps in sorted(merged.items()) if ps)


@dataclass
class ConsumerGroupRecords:
    """The live KIP-848 records of one group during replay: a later record of the same key
    replaces an earlier one, a tombstone removes it. `snapshot()` rebuilds the group."""

    metadata: ConsumerGroupMetadataValue | None = None
    partition_metadata: ConsumerGroupPartitionMetadataValue | None = None
    target_metadata: ConsumerGroupTargetAssignmentMetadataValue | None = None
    members: dict[str, ConsumerGroupMemberMetadataValue] = field(default_factory=dict)
    targets: dict[str, ConsumerGroupTargetAssignmentMemberValue] = field(default_factory=dict)
    current: dict[str, ConsumerGroupCurrentMemberAssignmentValue] = field(default_factory=dict)
    #: (key version, member id or None) -> why: keys whose latest record could not be read.
    unreadable: dict[tuple[int, str | None], str] = field(default_factory=dict)

    def mark_unreadable(self, key_version: int, member_id: str | None, reason: str) -> None:
        """The latest record of this key could not be decoded (ConsumerGroupDecodeError):
        the group cannot be rebuilt unless a later record of the key replaces it."""
        self.unreadable[(key_version, member_id)] = reason

    def apply(self, rec: ConsumerGroupRecord) -> None:
        self.unreadable.pop(_key_of(rec), None)
        if isinstance(rec, ConsumerGroupMetadataRecord):
            self.metadata = rec.value
        elif isinstance(rec, ConsumerGroupPartitionMetadataRecord):
            self.partition_metadata = rec.value
        elif isinstance(rec, ConsumerGroupTargetAssignmentMetadataRecord):
            self.target_metadata = rec.value
        elif isinstance(rec, ConsumerGroupMemberMetadataRecord):
            _put(self.members, rec.member_id, rec.value)
        elif isinstance(rec, ConsumerGroupTargetAssignmentMemberRecord):
            _put(self.targets, rec.member_id, rec.value)
        else:
            _put(self.current, rec.member_id, rec.value)

    def empty(self) -> bool:
        """No live record: the group was deleted (or never existed)."""
        return (
            self.metadata is None
            and self.partition_metadata is None
            and self.target_metadata is None
            and not self.members
            and not self.targets
            and not self.current
            and not self.unreadable
        )

    def member_ids(self) -> set[str]:
        """Every member id with a live record (a later change must tombstone the stale)."""
        ids = set(self.members) | set(self.targets) | set(self.current)
        return ids | {m for _, m in self.unreadable if m is not None}

    def snapshot(self) -> ConsumerGroupSnapshot:
        """The group the records describe. Raises IncompleteGroup when the group epoch or the
        assignment epoch is missing, when a member has only one of its metadata and current
        assignment records, or when a member state is unknown. A target assignment of a
        member that has neither is left out (Kafka may keep one briefly)."""
        if self.unreadable:
            raise IncompleteGroup("unreadable records: " + "; ".join(self.unreadable.values()))
        if self.metadata is None:
            raise IncompleteGroup("no ConsumerGroupMetadata record (group epoch)")
        if self.target_metadata is None:
            raise IncompleteGroup("no ConsumerGroupTargetAssignmentMetadata record")
        half = set(self.members) ^ set(self.current)
        if half:
            raise IncompleteGroup(
                f"members without both metadata and current assignment: {sorted(half)}"
            )
        members = []
        for member_id, meta in self.members.items():
            cur = self.current[member_id]
            state = _MEMBER_STATES.get(cur.state)
            if state is None:
                raise IncompleteGroup(f"member {member_id}: unknown member state {cur.state}")
            target = self.targets.get(member_id)
            members.append(
                ConsumerMemberSnapshot(
                    member_id=member_id,
                    instance_id=meta.instance_id,
                    rack_id=meta.rack_id,
                    client_id=meta.client_id,
                    client_host=meta.client_host,
                    rebalance_timeout_ms=meta.rebalance_timeout_ms,
                    subscribed_topic_names=tuple(sorted(set(meta.subscribed_topic_names))),
                    subscribed_topic_regex=meta.subscribed_topic_regex or None,
                    server_assignor=meta.server_assignor,
                    state=state,
                    member_epoch=cur.member_epoch,
                    previous_member_epoch=cur.previous_member_epoch,
                    assigned=_frozen((t.topic_id, t.partitions) for t in cur.assigned_partitions),
                    pending_revocation=_frozen(
                        (t.topic_id, t.partitions) for t in cur.partitions_pending_revocation
                    ),
                    target=(
                        ()
                        if target is None
                        else _frozen((t.topic_id, t.partitions) for t in target.topic_partitions)
                    ),
                )
            )
        topics = self.partition_metadata.topics if self.partition_metadata is not None else []
        return ConsumerGroupSnapshot(
            group_epoch=self.metadata.epoch,
            assignment_epoch=self.target_metadata.assignment_epoch,
            members=tuple(members),
            subscribed_metadata=tuple(
                (t.topic_name, None if t.topic_id == ZERO_UUID else t.topic_id, t.num_partitions)
                for t in topics
            ),
        )


_V = TypeVar("_V")


def _key_of(rec: ConsumerGroupRecord) -> tuple[int, str | None]:
    """(key version, member id or None): what identifies the record's key within its group."""
    if isinstance(rec, ConsumerGroupMetadataRecord):
        return CONSUMER_GROUP_METADATA_KEY_VERSION, None
    if isinstance(rec, ConsumerGroupPartitionMetadataRecord):
        return CONSUMER_GROUP_PARTITION_METADATA_KEY_VERSION, None
    if isinstance(rec, ConsumerGroupTargetAssignmentMetadataRecord):
        return CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY_VERSION, None
    if isinstance(rec, ConsumerGroupMemberMetadataRecord):
        return CONSUMER_GROUP_MEMBER_METADATA_KEY_VERSION, rec.member_id
    if isinstance(rec, ConsumerGroupTargetAssignmentMemberRecord):
        return CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY_VERSION, rec.member_id
    return CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION, rec.member_id


def _put(table: dict[str, _V], member_id: str, value: _V | None) -> None:
    if value is None:
        table.pop(member_id, None)
    else:
        table[member_id] = value
