"""__consumer_offsets record format."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from riverbed.coordinator.consumer_group_reconcile import frozen
from riverbed.coordinator.consumer_group_types import (
    ConsumerGroupSnapshot,
    ConsumerMemberSnapshot,
    FrozenAssignment,
    MemberState,
)
from riverbed.coordinator.offsets_log import (
    MEMBER_STATE_BYTES,
    ConsumerGroupCurrentMemberAssignmentRecord,
    ConsumerGroupDecodeError,
    ConsumerGroupMemberMetadataRecord,
    ConsumerGroupMetadataRecord,
    ConsumerGroupPartitionMetadataRecord,
    ConsumerGroupRecords,
    ConsumerGroupTargetAssignmentMemberRecord,
    ConsumerGroupTargetAssignmentMetadataRecord,
    GroupRecord,
    IncompleteGroup,
    OffsetRecord,
    consumer_group_current_member_assignment_key,
    consumer_group_current_member_assignment_value,
    consumer_group_member_metadata_key,
    consumer_group_member_metadata_value,
    consumer_group_metadata_key,
    consumer_group_metadata_value,
    consumer_group_partition_metadata_key,
    consumer_group_partition_metadata_value,
    consumer_group_records,
    consumer_group_target_assignment_member_key,
    consumer_group_target_assignment_member_value,
    consumer_group_target_assignment_metadata_key,
    consumer_group_target_assignment_metadata_value,
    consumer_group_tombstones,
    decode,
    group_key,
    group_value,
    java_string_hash,
    offset_key,
    offset_value,
    partition_for,
)
from riverbed.protocol.errors import DecodeError
from riverbed.protocol.internal.consumer_group_metadata_value import ConsumerGroupMetadataValue
from riverbed.protocol.internal.consumer_group_target_assignment_metadata_value import (
    ConsumerGroupTargetAssignmentMetadataValue,
)
from riverbed.protocol.internal.group_metadata_value import GroupMetadataValue

# (text, String.hashCode(), Kafka's partitionFor with 50 partitions) computed once by Java 17
# (OpenJDK 17.0.15), not by riverbed: a 10-line program printing s.hashCode() and
# (h == Integer.MIN_VALUE ? 0 : Math.abs(h)) % 50 -- Kafka's Utils.abs(groupId.hashCode) %
# groupMetadataTopicPartitionCount -- for each string below.
JAVA_HASHES = [
    ("", 0, 0),
    ("abc", 96354, 4),
    ("email-service-group", -883003146, 46),
    ("polygenelubricants", -2147483648, 0),  # Integer.MIN_VALUE: Utils.abs maps it to 0
    ("\u00e9t\u00e9", 227742, 42),
    ("my-group", -1906497762, 12),
    ("console-consumer-12345", 158455506, 6),
    ("\U0001f600grp", 1276929186, 36),  # a surrogate pair: Java hashes UTF-16 code units
    ("Aa", 2112, 12),
    ("BB", 2112, 12),
    ("payments.v2/consumers", 1495191691, 41),
    ("riverbed", -1009469707, 7),
]


@pytest.mark.parametrize(("text", "java_hash", "partition"), JAVA_HASHES)
def test_java_string_hash_matches_java(text: str, java_hash: int, partition: int) -> None:
    assert java_string_hash(text) == java_hash
    assert partition_for(text, 50) == partition


@given(st.text(max_size=20), st.text(max_size=20), st.integers(0, 2**31 - 1), st.integers(-1, 2**62), st.text(max_size=30))
def test_offset_records_round_trip(group: str, topic: str, partition: int, offset: int, metadata: str) -> None:
    rec = decode(offset_key(group, topic, partition), offset_value(offset, -1, metadata, 1234))
    assert isinstance(rec, OffsetRecord)
    assert (rec.group, rec.topic, rec.partition) == (group, topic, partition)
    assert rec.value is not None and (rec.value.offset, rec.value.metadata, rec.value.commit_timestamp) == (offset, metadata, 1234)
    tomb = decode(offset_key(group, topic, partition), None)
    assert isinstance(tomb, OffsetRecord) and tomb.value is None


def test_group_record_round_trip() -> None:
    value = GroupMetadataValue(
        protocol_type="consumer",
        generation=3,
        protocol="range",
        leader="m1",
        current_state_timestamp=99,
        members=[GroupMetadataValue.MemberMetadata("m1", None, "c", "/127.0.0.1", 60000, 10000, b"sub", b"asg")],
    )
    rec = decode(group_key("g"), group_value(value))
    assert isinstance(rec, GroupRecord) and rec.value == value


# ------------------------------------------------------------------------------------------
# KIP-848 consumer groups (key versions 3..8)
# ------------------------------------------------------------------------------------------

_names = st.text(max_size=12)
_ids = st.uuids()
_epochs = st.integers(-(2**31), 2**31 - 1)
_assignments = st.dictionaries(
    _ids, st.frozensets(st.integers(0, 2**31 - 1), min_size=1, max_size=6), max_size=4
).map(frozen)


@st.composite
def _members(draw: st.DrawFn, member_id: str | None = None) -> ConsumerMemberSnapshot:
    return ConsumerMemberSnapshot(
        member_id=draw(_names) if member_id is None else member_id,
        instance_id=draw(st.none() | _names),
        rack_id=draw(st.none() | _names),
        client_id=draw(_names),
        client_host=draw(_names),
        rebalance_timeout_ms=draw(_epochs),
        subscribed_topic_names=tuple(sorted(draw(st.sets(_names, max_size=4)))),
        subscribed_topic_regex=draw(st.none() | st.text(min_size=1, max_size=8)),
        server_assignor=draw(st.none() | st.sampled_from(["uniform", "range"])),
        state=draw(st.sampled_from(list(MemberState))),
        member_epoch=draw(_epochs),
        previous_member_epoch=draw(_epochs),
        assigned=draw(_assignments),
        pending_revocation=draw(_assignments),
        target=draw(_assignments),
    )


@st.composite
def _groups(draw: st.DrawFn) -> ConsumerGroupSnapshot:
    member_ids = draw(st.lists(_names, unique=True, max_size=4))
    return ConsumerGroupSnapshot(
        group_epoch=draw(_epochs),
        assignment_epoch=draw(_epochs),
        members=tuple(draw(_members(member_id=m)) for m in member_ids),
        subscribed_metadata=tuple(
            draw(
                st.lists(
                    st.tuples(_names, st.none() | _ids, st.integers(0, 2**31 - 1)),
                    max_size=4,
                    unique_by=lambda t: t[0],
                )
            )
        ),
    )


def _value_version(value: bytes | None) -> int:
    assert value is not None
    return int.from_bytes(value[:2], "big", signed=True)


@given(_names, _epochs)
def test_consumer_group_metadata_round_trip(group: str, epoch: int) -> None:
    key = consumer_group_metadata_key(group)
    assert key[:2] == b"\x00\x03"
    value = consumer_group_metadata_value(epoch)
    assert _value_version(value) == 0
    assert decode(key, value) == ConsumerGroupMetadataRecord(
        group, ConsumerGroupMetadataValue(epoch=epoch)
    )
    assert decode(key, None) == ConsumerGroupMetadataRecord(group, None)


@given(
    _names,
    st.lists(st.tuples(_names, st.none() | _ids, st.integers(0, 2**31 - 1)), max_size=5),
)
def test_consumer_group_partition_metadata_round_trip(
    group: str, topics: list[tuple[str, uuid.UUID | None, int]]
) -> None:
    key = consumer_group_partition_metadata_key(group)
    assert key[:2] == b"\x00\x04"
    rec = decode(key, consumer_group_partition_metadata_value(topics))
    assert isinstance(rec, ConsumerGroupPartitionMetadataRecord) and rec.group == group
    assert rec.value is not None
    # a topic without an id is written with the zero UUID, as Kafka's Uuid.ZERO_UUID
    assert [(t.topic_name, t.topic_id, t.num_partitions) for t in rec.value.topics] == [
        (name, tid or uuid.UUID(int=0), n) for name, tid, n in topics
    ]
    assert all(t.partition_metadata == [] for t in rec.value.topics)
    assert decode(key, None) == ConsumerGroupPartitionMetadataRecord(group, None)


@given(_names, _members())
def test_consumer_group_member_metadata_round_trip(
    group: str, member: ConsumerMemberSnapshot
) -> None:
    key = consumer_group_member_metadata_key(group, member.member_id)
    assert key[:2] == b"\x00\x05"
    rec = decode(key, consumer_group_member_metadata_value(member))
    assert isinstance(rec, ConsumerGroupMemberMetadataRecord)
    assert (rec.group, rec.member_id) == (group, member.member_id)
    v = rec.value
    assert v is not None
    assert (v.instance_id, v.rack_id, v.client_id, v.client_host) == (
        member.instance_id,
        member.rack_id,
        member.client_id,
        member.client_host,
    )
    assert v.subscribed_topic_names == list(member.subscribed_topic_names)
    assert v.subscribed_topic_regex == member.subscribed_topic_regex
    assert (v.rebalance_timeout_ms, v.server_assignor) == (
        member.rebalance_timeout_ms,
        member.server_assignor,
    )
    tomb = decode(key, None)
    assert tomb == ConsumerGroupMemberMetadataRecord(group, member.member_id, None)


def test_member_metadata_value_bytes_are_kafkas() -> None:
    """A hand-made encoding of ConsumerGroupMemberMetadataValue v0 (flexible: compact
    strings, no tagged fields) equals ours."""
    member = ConsumerMemberSnapshot(
        "m", None, "r", "c", "h", 300, ("t",), None, "uniform", MemberState.STABLE, 1, 0, (), (), ()
    )
    expected = (
        b"\x00\x00"  # value version 0
        + b"\x00"  # InstanceId: null
        + b"\x02r"  # RackId
        + b"\x02c"  # ClientId
        + b"\x02h"  # ClientHost
        + b"\x02\x02t"  # SubscribedTopicNames: 1 element
        + b"\x00"  # SubscribedTopicRegex: null
        + (300).to_bytes(4, "big")  # RebalanceTimeoutMs
        + b"\x08uniform"  # ServerAssignor
        + b"\x00"  # no tagged fields (ClassicMemberMetadata is not written)
    )
    assert consumer_group_member_metadata_value(member) == expected


@given(_names, _epochs)
def test_consumer_group_target_assignment_metadata_round_trip(group: str, epoch: int) -> None:
    key = consumer_group_target_assignment_metadata_key(group)
    assert key[:2] == b"\x00\x06"
    rec = decode(key, consumer_group_target_assignment_metadata_value(epoch))
    assert rec == ConsumerGroupTargetAssignmentMetadataRecord(
        group, ConsumerGroupTargetAssignmentMetadataValue(assignment_epoch=epoch)
    )
    assert decode(key, None) == ConsumerGroupTargetAssignmentMetadataRecord(group, None)


@given(_names, _names, _assignments)
def test_consumer_group_target_assignment_member_round_trip(
    group: str, member_id: str, target: FrozenAssignment
) -> None:
    key = consumer_group_target_assignment_member_key(group, member_id)
    assert key[:2] == b"\x00\x07"
    rec = decode(key, consumer_group_target_assignment_member_value(target))
    assert isinstance(rec, ConsumerGroupTargetAssignmentMemberRecord)
    assert (rec.group, rec.member_id) == (group, member_id)
    assert rec.value is not None
    assert tuple((t.topic_id, tuple(t.partitions)) for t in rec.value.topic_partitions) == target
    tomb = decode(key, None)
    assert tomb == ConsumerGroupTargetAssignmentMemberRecord(group, member_id, None)


@given(_names, _members())
def test_consumer_group_current_member_assignment_round_trip(
    group: str, member: ConsumerMemberSnapshot
) -> None:
    key = consumer_group_current_member_assignment_key(group, member.member_id)
    assert key[:2] == b"\x00\x08"
    rec = decode(key, consumer_group_current_member_assignment_value(member))
    assert isinstance(rec, ConsumerGroupCurrentMemberAssignmentRecord)
    assert (rec.group, rec.member_id) == (group, member.member_id)
    v = rec.value
    assert v is not None
    assert (v.member_epoch, v.previous_member_epoch) == (
        member.member_epoch,
        member.previous_member_epoch,
    )
    assert v.state == MEMBER_STATE_BYTES[member.state]
    assert tuple((t.topic_id, tuple(t.partitions)) for t in v.assigned_partitions) == (
        member.assigned
    )
    assert tuple((t.topic_id, tuple(t.partitions)) for t in v.partitions_pending_revocation) == (
        member.pending_revocation
    )
    tomb = decode(key, None)
    assert tomb == ConsumerGroupCurrentMemberAssignmentRecord(group, member.member_id, None)


def test_member_states_are_kafkas_bytes() -> None:
    # Kafka's MemberState: STABLE 0, UNREVOKED_PARTITIONS 1, UNRELEASED_PARTITIONS 2
    assert MEMBER_STATE_BYTES == {
        MemberState.STABLE: 0,
        MemberState.UNREVOKED_PARTITIONS: 1,
        MemberState.UNRELEASED_PARTITIONS: 2,
    }


def _replay(records: list[tuple[bytes, bytes | None]]) -> dict[str, ConsumerGroupRecords]:
    out: dict[str, ConsumerGroupRecords] = {}
    for key, value in records:
        rec = decode(key, value)
        assert rec is not None and not isinstance(rec, OffsetRecord | GroupRecord)
        out.setdefault(rec.group, ConsumerGroupRecords()).apply(rec)
    return out


def _unordered(s: ConsumerGroupSnapshot) -> ConsumerGroupSnapshot:
    # the order of members is not meaningful (replay keeps the order they first appeared in)
    return replace(s, members=tuple(sorted(s.members, key=lambda m: m.member_id)))


def _without_regexes(s: ConsumerGroupSnapshot) -> ConsumerGroupSnapshot:
    # resolved regexes are not persisted (re-resolved at the next heartbeat)
    return replace(s, resolved_regexes=(), resolved_at_ms=-1)


@given(_groups())
def test_group_snapshot_round_trips_through_records(snapshot: ConsumerGroupSnapshot) -> None:
    replayed = _replay(consumer_group_records("g", snapshot))
    assert replayed["g"].snapshot() == _without_regexes(snapshot)
    assert replayed["g"].member_ids() == {m.member_id for m in snapshot.members}


@given(_groups(), _groups())
def test_later_records_and_member_tombstones_override(
    first: ConsumerGroupSnapshot, second: ConsumerGroupSnapshot
) -> None:
    gone = {m.member_id for m in first.members} - {m.member_id for m in second.members}
    log = consumer_group_records("g", first) + consumer_group_records("g", second, sorted(gone))
    assert _unordered(_replay(log)["g"].snapshot()) == _unordered(second)


@given(_groups())
def test_group_tombstones_delete_everything(snapshot: ConsumerGroupSnapshot) -> None:
    ids = [m.member_id for m in snapshot.members]
    replayed = _replay(consumer_group_records("g", snapshot) + consumer_group_tombstones("g", ids))
    assert replayed["g"].empty()


def test_records_follow_kafkas_order() -> None:
    member = ConsumerMemberSnapshot(
        "m1", None, None, "c", "h", 1, ("t",), None, None, MemberState.STABLE, 2, 1, (), (), ()
    )
    keys = [k[:2] for k, _ in consumer_group_records("g", ConsumerGroupSnapshot(2, 2, (member,)), ["old"])]
    assert [int.from_bytes(k, "big") for k in keys] == [8, 7, 5, 5, 4, 3, 7, 6, 8]
    tombs = consumer_group_tombstones("g", ["m1"])
    assert [int.from_bytes(k[:2], "big") for k, _ in tombs] == [8, 7, 6, 5, 4, 3]
    assert all(v is None for _, v in tombs)


def _snapshot_with(*members: ConsumerMemberSnapshot) -> ConsumerGroupSnapshot:
    return ConsumerGroupSnapshot(group_epoch=3, assignment_epoch=3, members=members)


_M1 = ConsumerMemberSnapshot(
    "m1", "i1", None, "c", "h", 1000, ("a", "b"), None, "range", MemberState.STABLE, 3, 2,
    ((uuid.UUID(int=7), (0, 1)),), (), ((uuid.UUID(int=7), (0, 1)),),
)  # fmt: skip


@pytest.mark.parametrize(
    "drop",
    [3, 6, 5, 8],
    ids=["no-group-epoch", "no-assignment-epoch", "no-member-metadata", "no-current-assignment"],
)
def test_incomplete_groups_are_refused(drop: int) -> None:
    log = [(k, v) for k, v in consumer_group_records("g", _snapshot_with(_M1)) if k[1] != drop]
    with pytest.raises(IncompleteGroup):
        _replay(log)["g"].snapshot()


def test_optional_records_may_be_missing() -> None:
    # no partition metadata (recomputed at the next heartbeat), no target (empty)
    log = [(k, v) for k, v in consumer_group_records("g", _snapshot_with(_M1)) if k[1] not in (4, 7)]
    got = _replay(log)["g"].snapshot()
    assert got == replace(_snapshot_with(replace(_M1, target=())), subscribed_metadata=())


def test_a_stale_target_of_a_departed_member_is_ignored() -> None:
    log = consumer_group_records("g", _snapshot_with(_M1))
    log.append((consumer_group_target_assignment_member_key("g", "gone"), consumer_group_target_assignment_member_value(())))
    records = _replay(log)["g"]
    assert records.snapshot() == _snapshot_with(_M1)
    assert records.member_ids() == {"m1", "gone"}  # so the next change tombstones it


def test_unknown_member_state_is_refused() -> None:
    log = consumer_group_records("g", _snapshot_with(_M1))
    key = consumer_group_current_member_assignment_key("g", "m1")
    bad = bytearray(consumer_group_current_member_assignment_value(_M1))
    bad[2 + 8] = 99  # State follows the value version and the two int32 epochs
    log.append((key, bytes(bad)))
    with pytest.raises(IncompleteGroup, match="unknown member state 99"):
        _replay(log)["g"].snapshot()


def test_unreadable_values_name_their_group_until_replaced() -> None:
    key = consumer_group_current_member_assignment_key("g", "m1")
    with pytest.raises(ConsumerGroupDecodeError) as info:
        decode(key, b"\x00\x05garbage")  # a value version this broker does not know
    exc = info.value
    assert isinstance(exc, DecodeError)
    assert (exc.group, exc.member_id, exc.key_version) == ("g", "m1", 8)
    with pytest.raises(ConsumerGroupDecodeError):
        decode(key, b"\x00\x00\x01")  # truncated
    with pytest.raises(ConsumerGroupDecodeError):
        decode(consumer_group_metadata_key("g"), b"\x00")

    records = ConsumerGroupRecords()
    for k, v in consumer_group_records("g", _snapshot_with(_M1)):
        rec = decode(k, v)
        assert rec is not None and not isinstance(rec, OffsetRecord | GroupRecord)
        records.apply(rec)
    records.mark_unreadable(exc.key_version, exc.member_id, str(exc))
    assert not records.empty()
    with pytest.raises(IncompleteGroup, match="unreadable"):
        records.snapshot()
    # a later record of the same key replaces the unreadable one
    rec = decode(key, consumer_group_current_member_assignment_value(_M1))
    assert isinstance(rec, ConsumerGroupCurrentMemberAssignmentRecord)
    records.apply(rec)
    assert records.snapshot() == _snapshot_with(_M1)


def test_other_key_versions_are_still_ignored() -> None:
    assert decode(b"\x00\x09" + b"\x00\x01g", b"\x00\x00") is None  # a share group record
    assert decode(b"\x00\x10" + b"\x00\x01g", None) is None  # KIP-848 regular expression
