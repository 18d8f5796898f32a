"""OffsetCommit, OffsetFetch, OffsetDelete and offset expiry."""

from __future__ import annotations

from group_helpers import SESSION, START, Harness, protocols

from riverbed.coordinator.group import (
    GroupConfig,
    GroupDeleted,
    OffsetAndMetadata,
    OffsetsCommitted,
    OffsetsDeleted,
)
from riverbed.protocol.errors import ErrorCode

DAY = 24 * 3600 * 1000
RETENTION = 7 * DAY


def test_member_commit_with_generation_checks() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    gen = a.generation_id
    commit = h.coord.commit_offsets
    ok = commit("g", a.member_id, None, gen, [("t", 0, 42, 3, "meta"), ("t", 1, 7, -1, None)])
    assert ok == [("t", 0, ErrorCode.NONE), ("t", 1, ErrorCode.NONE)]
    assert h.events[-1] == OffsetsCommitted(
        "g",
        [
            ("t", 0, OffsetAndMetadata(42, 3, "meta", START)),
            ("t", 1, OffsetAndMetadata(7, -1, "", START)),
        ],
    )
    assert commit("g", a.member_id, None, gen + 1, [("t", 0, 1, -1, "")]) == [
        ("t", 0, ErrorCode.ILLEGAL_GENERATION)
    ]
    assert commit("g", "nobody", None, gen, [("t", 0, 1, -1, "")]) == [
        ("t", 0, ErrorCode.UNKNOWN_MEMBER_ID)
    ]
    # generation -1 without a member id only works while the group is Empty
    assert commit("g", "", None, -1, [("t", 0, 1, -1, "")]) == [
        ("t", 0, ErrorCode.UNKNOWN_MEMBER_ID)
    ]
    h.join(a.member_id)  # PreparingRebalance: the current generation may still commit
    assert commit("g", b.member_id, None, gen, [("t", 2, 9, -1, "")]) == [("t", 2, ErrorCode.NONE)]
    jb = h.join(b.member_id)  # CompletingRebalance
    new_gen = jb.value.generation_id
    assert commit("g", b.member_id, None, new_gen, [("t", 0, 1, -1, "")]) == [
        ("t", 0, ErrorCode.REBALANCE_IN_PROGRESS)
    ]
    err, fetched = h.coord.fetch_offsets("g", [("t", 0), ("t", 1), ("t", 2), ("t", 3)])
    assert err == ErrorCode.NONE
    assert fetched == [
        ("t", 0, 42, 3, "meta", ErrorCode.NONE),
        ("t", 1, 7, -1, "", ErrorCode.NONE),
        ("t", 2, 9, -1, "", ErrorCode.NONE),
        ("t", 3, -1, -1, "", ErrorCode.NONE),
    ]


def test_standalone_commits_create_an_empty_group() -> None:
    h = Harness()
    commit = h.coord.commit_offsets
    assert commit("solo", "", None, -1, [("t", 0, 5, -1, "x")]) == [("t", 0, ErrorCode.NONE)]
    assert h.state("solo") == "Empty"
    assert h.coord.list_groups(None) == [("solo", "", "Empty")]
    assert commit("solo", "", None, -1, [("t", 0, 6, -1, "")]) == [("t", 0, ErrorCode.NONE)]
    assert h.coord.fetch_offsets("solo", None) == (
        ErrorCode.NONE,
        [("t", 0, 6, -1, "", ErrorCode.NONE)],
    )
    # a generation >= 0 for a group nobody knows is from a member of a forgotten group
    assert commit("ghost", "m", None, 3, [("t", 0, 1, -1, "")]) == [
        ("t", 0, ErrorCode.ILLEGAL_GENERATION)
    ]
    assert h.state("ghost") is None


def test_metadata_too_large_is_refused_per_partition() -> None:
    h = Harness(GroupConfig(max_metadata_size=4))
    result = h.coord.commit_offsets(
        "g", "", None, -1, [("t", 0, 1, -1, "12345"), ("t", 1, 1, -1, "1234")]
    )
    assert result == [("t", 0, ErrorCode.OFFSET_METADATA_TOO_LARGE), ("t", 1, ErrorCode.NONE)]
    assert h.coord.fetch_offsets("g", None)[1] == [("t", 1, 1, -1, "1234", ErrorCode.NONE)]


def test_a_commit_from_a_member_counts_as_a_heartbeat() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    for _ in range(3):
        h.advance(SESSION - 1)
        h.heartbeat(a.member_id, a.generation_id)
        commit = h.coord.commit_offsets("g", b.member_id, None, b.generation_id, [])
        assert commit == []
    assert h.state() == "Stable"


def test_fetch_of_unknown_group_and_all_partitions() -> None:
    h = Harness()
    assert h.coord.fetch_offsets("nope", None) == (ErrorCode.NONE, [])
    assert h.coord.fetch_offsets("nope", [("t", 0)]) == (
        ErrorCode.NONE,
        [("t", 0, -1, -1, "", ErrorCode.NONE)],
    )


def test_delete_offsets() -> None:
    h = Harness()
    assert h.coord.delete_offsets("nope", [("t", 0)]) == (ErrorCode.GROUP_ID_NOT_FOUND, [])
    h.coord.commit_offsets("g", "", None, -1, [("t1", 0, 1, -1, ""), ("t2", 0, 1, -1, "")])
    h.events.clear()
    assert h.coord.delete_offsets("g", [("t1", 0), ("t3", 0)]) == (
        ErrorCode.NONE,
        [("t1", 0, ErrorCode.NONE), ("t3", 0, ErrorCode.NONE)],
    )
    assert h.events == [OffsetsDeleted("g", [("t1", 0)])]
    # A Stable consumer group keeps the offsets of topics its members subscribe to.
    boxes = [h.join(protos=protocols("t1")), h.join(protos=protocols("t1", "t4"))]
    ja = h.join(boxes[0].value.member_id, protos=protocols("t1"))
    h.sync(ja.value.member_id, ja.value.generation_id, {})
    assert h.coord.delete_offsets("g", [("t1", 0), ("t4", 0), ("t2", 0)]) == (
        ErrorCode.NONE,
        [
            ("t1", 0, ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC),
            ("t4", 0, ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC),
            ("t2", 0, ErrorCode.NONE),
        ],
    )


def test_delete_offsets_treats_undecodable_subscriptions_as_subscribed() -> None:
    h = Harness()
    h.join(protos=[("range", b"\x00")])
    assert h.coord.delete_offsets("g", [("t", 0)]) == (
        ErrorCode.NONE,
        [("t", 0, ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC)],
    )


def test_delete_offsets_of_an_active_non_consumer_group_is_refused() -> None:
    h = Harness()
    h.join(protocol_type="connect", protos=[("default", b"")])
    assert h.coord.delete_offsets("g", [("t", 0)]) == (ErrorCode.NON_EMPTY_GROUP, [])


def test_standalone_offsets_expire_retention_after_their_commit() -> None:
    h = Harness()
    h.coord.commit_offsets("solo", "", None, -1, [("t", 0, 1, -1, "")])
    h.advance(DAY)
    h.coord.commit_offsets("solo", "", None, -1, [("t", 1, 1, -1, "")])
    h.events.clear()
    h.advance(RETENTION - DAY - 1)
    assert h.events == []
    h.advance(1)
    assert h.events == [OffsetsDeleted("solo", [("t", 0)])]
    h.advance(DAY)
    assert h.events[1:] == [OffsetsDeleted("solo", [("t", 1)]), GroupDeleted("solo")]
    assert h.state("solo") is None


def test_offsets_of_an_empty_group_expire_retention_after_it_became_empty() -> None:
    h = Harness()
    (a,) = h.stable_group(1)
    h.coord.commit_offsets("g", a.member_id, None, a.generation_id, [("t", 0, 1, -1, "")])
    for _ in range(5):
        h.advance(SESSION - 1000)
        h.heartbeat(a.member_id, a.generation_id)
    h.coord.leave_group("g", [(a.member_id, None)], None)  # Empty from now on
    h.events.clear()
    h.advance(RETENTION - 1)
    assert h.events == []
    h.advance(1)
    assert h.events == [OffsetsDeleted("g", [("t", 0)]), GroupDeleted("g")]


def test_stable_consumer_group_expires_only_unsubscribed_topics() -> None:
    h = Harness()
    long_session = 1_800_000
    a = h.join(protos=protocols("t"), session=long_session).value
    h.sync(a.member_id, a.generation_id, {})
    h.coord.commit_offsets(
        "g", a.member_id, None, a.generation_id, [("t", 0, 1, -1, ""), ("old", 0, 1, -1, "")]
    )
    h.events.clear()
    for _ in range(RETENTION // (long_session - 1000) + 1):
        assert h.heartbeat(a.member_id, a.generation_id) == ErrorCode.NONE
        h.advance(long_session - 1000)
    assert h.events == [OffsetsDeleted("g", [("old", 0)])]
    assert h.coord.fetch_offsets("g", [("t", 0)])[1][0][2] == 1


def test_an_empty_group_without_offsets_is_deleted_after_the_check_interval() -> None:
    h = Harness(
        GroupConfig(initial_rebalance_delay_ms=0, offsets_retention_check_interval_ms=60_000)
    )
    (a,) = h.stable_group(1)
    h.coord.leave_group("g", [(a.member_id, None)], None)
    h.advance(59_999)
    assert h.state() == "Empty"
    h.advance(1)
    assert h.state() is None
    assert h.events[-1] == GroupDeleted("g")
