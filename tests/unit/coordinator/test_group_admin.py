"""ListGroups, DescribeGroups, DeleteGroups, and recovery from __consumer_offsets."""

from __future__ import annotations

from group_helpers import SESSION, START, Harness, protocols, subscription

from riverbed.coordinator.group import (
    GroupDeleted,
    GroupDescription,
    GroupSnapshot,
    MemberDescription,
    MemberSnapshot,
    OffsetAndMetadata,
    OffsetsDeleted,
)
from riverbed.protocol.errors import ErrorCode

DAY = 24 * 3600 * 1000


def test_list_groups_filters_by_state_and_type() -> None:
    h = Harness()
    h.stable_group(1, group="stable")
    h.join(group="preparing", protocol_type="connect", protos=[("default", b"")])
    h.coord.commit_offsets("solo", "", None, -1, [("t", 0, 1, -1, "")])
    assert sorted(h.coord.list_groups(None)) == [
        ("preparing", "connect", "CompletingRebalance"),
        ("solo", "", "Empty"),
        ("stable", "consumer", "Stable"),
    ]
    assert h.coord.list_groups({"stable", "EMPTY"}) == [
        ("stable", "consumer", "Stable"),
        ("solo", "", "Empty"),
    ]
    assert h.coord.list_groups(set()) == h.coord.list_groups(None)
    assert h.coord.list_groups(None, {"Classic"}) == h.coord.list_groups(None)
    assert h.coord.list_groups(None, {"consumer"}) == []


def test_describe_group() -> None:
    h = Harness()
    assert h.coord.describe_group("nope") == GroupDescription(
        "nope", ErrorCode.NONE, "Dead", "", "", []
    )
    a, b = h.stable_group(2)
    desc = h.coord.describe_group("g")
    assert (desc.error, desc.state, desc.protocol_type, desc.protocol) == (
        ErrorCode.NONE,
        "Stable",
        "consumer",
        "range",
    )
    assert desc.members == [
        MemberDescription(a.member_id, None, "c0", "/127.0.0.1", subscription("t"), b"c0-u1"),
        MemberDescription(b.member_id, None, "c1", "/127.0.0.1", subscription("t"), b"c1-u2"),
    ]
    h.join(a.member_id)  # not Stable: no protocol, metadata or assignment (as Kafka)
    desc = h.coord.describe_group("g")
    assert (desc.state, desc.protocol) == ("PreparingRebalance", "")
    assert [(m.member_id, m.metadata, m.assignment) for m in desc.members] == [
        (a.member_id, b"", b""),
        (b.member_id, b"", b""),
    ]


def test_delete_groups() -> None:
    h = Harness()
    (a,) = h.stable_group(1)
    h.coord.commit_offsets("g", a.member_id, None, a.generation_id, [("t", 0, 1, -1, "")])
    assert h.coord.delete_groups(["g", "nope"]) == [
        ("g", ErrorCode.NON_EMPTY_GROUP),
        ("nope", ErrorCode.GROUP_ID_NOT_FOUND),
    ]
    h.coord.leave_group("g", [(a.member_id, None)], None)
    h.events.clear()
    assert h.coord.delete_groups(["g"]) == [("g", ErrorCode.NONE)]
    assert h.events == [GroupDeleted("g", [("t", 0)])]  # one batch: all or nothing
    assert h.coord.describe_group("g").state == "Dead"
    assert h.coord.delete_groups(["g"]) == [("g", ErrorCode.GROUP_ID_NOT_FOUND)]
    assert h.coord.fetch_offsets("g", [("t", 0)])[1][0][2] == -1
    fresh = h.join()  # a new group under the same name starts over
    assert fresh.value.generation_id == 1


def test_snapshot_round_trip_restores_a_stable_group() -> None:
    h = Harness()
    a, _b = h.stable_group(2)
    h.coord.commit_offsets("g", a.member_id, None, a.generation_id, [("t", 0, 5, 2, "m")])
    snap = h.coord.group_snapshot("g")
    assert snap is not None and snap.leader == a.member_id and len(snap.members) == 2

    r = Harness()  # a restarted broker replays __consumer_offsets
    r.clock.now = START + 5000
    r.coord.load_offset("g", "t", 0, OffsetAndMetadata(5, 2, "m", START))
    r.coord.load_offset("g", "t", 9, OffsetAndMetadata(1))
    r.coord.load_offset("g", "t", 9, None)  # tombstone
    r.coord.load_group("g", snap)
    assert r.coord.describe_group("g") == h.coord.describe_group("g")
    assert r.coord.fetch_offsets("g", None)[1] == [("t", 0, 5, 2, "m", ErrorCode.NONE)]
    assert r.heartbeat(a.member_id, a.generation_id) == ErrorCode.NONE
    r.advance(SESSION - 1)
    assert r.heartbeat(a.member_id, a.generation_id) == ErrorCode.NONE
    r.advance(1)  # b did not come back after the restart
    assert r.state() == "PreparingRebalance"
    rejoin = r.join(a.member_id)
    assert rejoin.value.generation_id == a.generation_id + 1
    assert rejoin.value.leader == a.member_id


def test_loaded_static_members_are_known_by_instance_id() -> None:
    h = Harness()
    meta = subscription("t")
    snap = GroupSnapshot(
        protocol_type="consumer",
        generation=4,
        protocol="range",
        leader="s-1",
        state_timestamp=START,
        members=[MemberSnapshot("s-1", "inst", "c", "/h", 60_000, SESSION, meta, b"A")],
    )
    h.coord.load_group("g", snap)
    assert h.heartbeat("old-id", 4, instance="inst") == ErrorCode.FENCED_INSTANCE_ID
    again = h.join(instance="inst", protos=protocols("t"))
    assert (again.value.generation_id, again.value.error) == (4, ErrorCode.NONE)
    assert h.sync(again.value.member_id, 4, instance="inst").value.assignment == b"A"


def test_loading_an_empty_group_and_tombstones() -> None:
    h = Harness()
    empty = GroupSnapshot("consumer", 7, None, None, START - DAY)
    h.coord.load_offset("g", "t", 0, OffsetAndMetadata(3, -1, "", START - 2 * DAY))
    h.coord.load_group("g", empty)
    assert h.state() == "Empty"
    assert h.join().value.generation_id == 8
    h.coord.load_group("gone", empty)
    h.coord.load_group("gone", None)
    assert h.state("gone") is None
    h.coord.load_offset("kept", "t", 0, OffsetAndMetadata(1, -1, "", START))
    h.coord.load_group("kept", empty)
    h.coord.load_group("kept", None)  # the group record is gone, its offsets are not
    assert h.state("kept") == "Empty"
    assert h.coord.fetch_offsets("kept", [("t", 0)])[1][0][2] == 1
    h.coord.load_offset("nothing", "t", 0, None)
    assert h.state("nothing") is None


def test_loaded_empty_group_offsets_expire_from_the_state_timestamp() -> None:
    h = Harness()
    h.clock.now = now = 10**12
    retention = h.coord.config.offsets_retention_ms
    became_empty = now - retention + 1000
    h.coord.load_offset("g", "t", 0, OffsetAndMetadata(3, -1, "", became_empty - DAY))
    h.coord.load_group("g", GroupSnapshot("consumer", 7, None, None, became_empty))
    h.advance(999)
    assert h.coord.fetch_offsets("g", None)[1] != []
    h.advance(1)
    assert h.state() is None
    assert h.events == [OffsetsDeleted("g", [("t", 0)]), GroupDeleted("g")]


def test_reloading_a_group_answers_its_parked_requests() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    snap = h.coord.group_snapshot("g")
    parked = h.join(a.member_id)
    h.coord.load_group("g", snap)
    assert parked.value.error == ErrorCode.REBALANCE_IN_PROGRESS
    assert h.state() == "Stable"
    assert h.heartbeat(b.member_id, b.generation_id) == ErrorCode.NONE
