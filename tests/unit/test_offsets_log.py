"""__consumer_offsets record format."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from riverbed.coordinator.offsets_log import (
    GroupRecord,
    OffsetRecord,
    decode,
    group_key,
    group_value,
    java_string_hash,
    offset_key,
    offset_value,
    partition_for,
)
from riverbed.protocol.internal.group_metadata_value import GroupMetadataValue


def test_java_string_hash_matches_java() -> None:
    # values of "abc".hashCode() etc. as computed by Java
    assert java_string_hash("") == 0
    assert java_string_hash("abc") == 96354
    assert java_string_hash("email-service-group") == java_string_hash("email-service-group")
    assert java_string_hash("polygenelubricants") == -2147483648  # Integer.MIN_VALUE
    assert partition_for("polygenelubricants", 50) == 0
    assert java_string_hash("\u00e9t\u00e9") == (233 * 31 * 31 + 116 * 31 + 233)


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
