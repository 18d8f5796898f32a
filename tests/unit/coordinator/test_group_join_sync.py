"""JoinGroup and SyncGroup: rebalances, KIP-394, protocol selection, join/sync errors."""

from __future__ import annotations

from group_helpers import REBALANCE, SESSION, Harness, protocols, subscription

from riverbed.coordinator.group import (
    GroupConfig,
    GroupMetadataChanged,
    GroupState,
    JoinMember,
)
from riverbed.protocol.errors import ErrorCode

DELAYED = GroupConfig(initial_rebalance_delay_ms=3000)


def test_three_members_one_rebalance_leader_gets_members_followers_wait_for_leader() -> None:
    h = Harness(DELAYED)
    a = h.join(client_id="a")
    h.advance(100)
    b = h.join(client_id="b", protos=protocols("t2"))
    h.advance(100)
    c = h.join(client_id="c")
    assert not (a.done or b.done or c.done)
    assert h.state() == "PreparingRebalance"

    h.advance(2800)  # first delay over, but members kept arriving: extended by one delay
    assert not a.done
    h.advance(3000)
    results = [a.value, b.value, c.value]
    assert [r.error for r in results] == [ErrorCode.NONE] * 3
    assert {r.generation_id for r in results} == {1}
    assert {r.protocol_name for r in results} == {"range"}
    assert {r.protocol_type for r in results} == {"consumer"}
    leader = a.value.member_id
    assert a.value.member_id == "a-u1" and b.value.member_id == "b-u2"
    assert {r.leader for r in results} == {leader}
    assert a.value.members == [
        JoinMember("a-u1", None, subscription("t")),
        JoinMember("b-u2", None, subscription("t2")),
        JoinMember("c-u3", None, subscription("t")),
    ]
    assert b.value.members == [] and c.value.members == []
    assert h.state() == "CompletingRebalance"

    # Followers' SyncGroup waits for the leader's.
    sb = h.sync("b-u2", 1)
    sc = h.sync("c-u3", 1, protocol_name="range")
    assert not sb.done and not sc.done
    sa = h.sync(leader, 1, {"a-u1": b"A", "b-u2": b"B"})  # c left out: gets b""
    assert (sa.value.error, sa.value.assignment) == (ErrorCode.NONE, b"A")
    assert (sb.value.error, sb.value.assignment) == (ErrorCode.NONE, b"B")
    assert (sc.value.error, sc.value.assignment) == (ErrorCode.NONE, b"")
    assert (sb.value.protocol_type, sb.value.protocol_name) == ("consumer", "range")
    assert h.state() == "Stable"
    stored = [e for e in h.events if isinstance(e, GroupMetadataChanged)]
    assert len(stored) == 1
    snap = stored[0].snapshot
    assert (snap.generation, snap.protocol, snap.leader) == (1, "range", leader)
    assert [(m.member_id, m.assignment) for m in snap.members] == [
        ("a-u1", b"A"),
        ("b-u2", b"B"),
        ("c-u3", b""),
    ]
    # In Stable a SyncGroup just returns the member's assignment.
    assert h.sync("b-u2", 1).value.assignment == b"B"


def test_initial_delay_is_waited_out_even_when_everyone_joined() -> None:
    h = Harness(DELAYED)
    box = h.join()
    h.advance(2999)
    assert not box.done
    h.advance(1)
    assert box.value.error == ErrorCode.NONE and box.value.generation_id == 1


def test_initial_delay_extensions_stop_at_the_rebalance_timeout() -> None:
    h = Harness(DELAYED)
    a = h.join(rebalance=5000)
    h.advance(1000)
    b = h.join(rebalance=5000)
    h.advance(2000)  # t=3000: b arrived, extend by min(3000, 5000-3000) = 2000
    assert not a.done
    h.advance(1000)
    c = h.join(rebalance=5000)  # t=4000: arrives in the extension
    h.advance(1000)  # t=5000: nothing remains of the rebalance timeout: complete
    assert a.done and b.done and c.done
    assert a.value.generation_id == 1 and len(a.value.members) == 3


def test_initial_delay_only_applies_to_an_empty_group() -> None:
    h = Harness(DELAYED)
    a = h.join()
    h.advance(3000)
    h.sync(a.value.member_id, 1, {})
    again = h.join(a.value.member_id)  # leader rejoins a Stable group: no delay
    assert again.value.generation_id == 2


def test_member_id_required_then_rejoin_with_the_given_id() -> None:
    h = Harness()
    first = h.join(client_id="rdkafka", require_known=True)
    assert first.value.error == ErrorCode.MEMBER_ID_REQUIRED
    member_id = first.value.member_id
    assert member_id == "rdkafka-u1"
    assert h.state() == "Empty"
    assert h.heartbeat(member_id, 0) == ErrorCode.UNKNOWN_MEMBER_ID  # not a member yet
    second = h.join(member_id, client_id="rdkafka", require_known=True)
    assert second.value.error == ErrorCode.NONE
    assert second.value.member_id == member_id == second.value.leader


def test_pending_member_expires_after_its_session_timeout() -> None:
    h = Harness()
    first = h.join(require_known=True, session=7000)
    h.advance(7000)
    late = h.join(first.value.member_id)
    assert late.value.error == ErrorCode.UNKNOWN_MEMBER_ID


def test_a_pending_member_holds_the_rebalance_until_it_expires() -> None:
    h = Harness()
    (a,) = h.stable_group(1)
    pending = h.join(require_known=True, session=6000)
    assert pending.value.error == ErrorCode.MEMBER_ID_REQUIRED
    rejoin = h.join(a.member_id)  # leader rejoins: rebalance, but the pending member may come
    assert not rejoin.done
    h.advance(6000)  # it never does
    assert rejoin.value.generation_id == a.generation_id + 1


def test_join_request_errors() -> None:
    h = Harness()
    assert h.join(group="").value.error == ErrorCode.INVALID_GROUP_ID
    assert h.join(session=5999).value.error == ErrorCode.INVALID_SESSION_TIMEOUT
    assert h.join(session=1_800_001).value.error == ErrorCode.INVALID_SESSION_TIMEOUT
    unknown = h.join("nobody", group="other")
    assert (unknown.value.error, unknown.value.member_id) == (ErrorCode.UNKNOWN_MEMBER_ID, "nobody")
    assert h.join(protocol_type="").value.error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert h.join(protos=[]).value.error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL

    a, _b = h.stable_group(2)
    assert h.join("nobody").value.error == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.join(protocol_type="connect").value.error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    roundrobin = protocols(names=("roundrobin",))
    assert h.join(protos=roundrobin).value.error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert h.join(a.member_id, protos=roundrobin).value.error == (
        ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    )
    assert h.state() == "Stable"  # refused joins do not disturb the group


def test_group_max_size_refuses_newcomers_to_a_full_group() -> None:
    h = Harness(GroupConfig(initial_rebalance_delay_ms=0, max_group_size=2))
    _a, b = h.stable_group(2)
    full = h.join()
    assert (full.value.error, full.value.member_id) == (ErrorCode.GROUP_MAX_SIZE_REACHED, "")
    assert h.join(b.member_id).value.error == ErrorCode.NONE  # members are always let back
    assert h.state() == "Stable"


def test_max_group_size_counts_members_that_rejoined() -> None:
    h = Harness(GroupConfig(initial_rebalance_delay_ms=0, max_group_size=2))
    a, b = h.stable_group(2)
    ja = h.join(a.member_id)  # rebalance starts; a is in
    newcomer = h.join()  # one more awaiting: 2 awaiting = the limit
    late_b = h.join(b.member_id)  # b is a member but over the limit now: refused and removed
    assert late_b.value.error == ErrorCode.GROUP_MAX_SIZE_REACHED
    assert ja.value.error == ErrorCode.NONE and newcomer.value.error == ErrorCode.NONE
    assert len(ja.value.members) == 2
    assert b.member_id not in {m.member_id for m in ja.value.members}


def test_dead_group_answers_coordinator_not_available() -> None:
    h = Harness()
    a, _ = h.stable_group(2)
    h.coord._groups["g"].state = GroupState.DEAD  # transient in Kafka; forced here
    assert h.join(a.member_id).value.error == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert h.join().value.error == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert h.sync(a.member_id, a.generation_id).value.error == (ErrorCode.COORDINATOR_NOT_AVAILABLE)
    assert h.heartbeat(a.member_id, a.generation_id) == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert h.coord.leave_group("g", [(a.member_id, None)], None)[0] == (
        ErrorCode.COORDINATOR_NOT_AVAILABLE
    )
    commit = h.coord.commit_offsets("g", a.member_id, None, a.generation_id, [("t", 0, 1, -1, "")])
    assert commit == [("t", 0, ErrorCode.COORDINATOR_NOT_AVAILABLE)]


def test_protocol_is_the_most_voted_among_those_everyone_supports() -> None:
    h = Harness(DELAYED)
    meta = subscription("t")
    h.join(protos=[("range", meta), ("roundrobin", meta), ("sticky", meta)])
    h.join(protos=[("roundrobin", meta), ("range", meta)])
    c = h.join(protos=[("sticky", meta), ("roundrobin", meta), ("range", meta)])
    h.advance(6000)
    # sticky is not supported by the second member; votes: range 1, roundrobin 2.
    assert c.value.protocol_name == "roundrobin"


def test_follower_rejoin_with_same_metadata_in_stable_returns_current_generation() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    again = h.join(b.member_id)
    assert again.value.error == ErrorCode.NONE
    assert (again.value.generation_id, again.value.leader) == (b.generation_id, a.member_id)
    assert again.value.members == []
    assert h.state() == "Stable"


def test_leader_rejoin_in_stable_triggers_a_rebalance() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    ja = h.join(a.member_id)
    assert not ja.done and h.state() == "PreparingRebalance"
    assert h.heartbeat(b.member_id, b.generation_id) == ErrorCode.REBALANCE_IN_PROGRESS
    jb = h.join(b.member_id)
    assert ja.value.generation_id == jb.value.generation_id == a.generation_id + 1
    assert ja.value.leader == a.member_id  # the leader that rejoined stays leader


def test_changed_metadata_triggers_a_rebalance() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    jb = h.join(b.member_id, protos=protocols("t", "u"))
    assert not jb.done and h.state() == "PreparingRebalance"
    ja = h.join(a.member_id)
    assert ja.value.members[1].metadata == subscription("t", "u")


def test_rejoin_with_same_metadata_in_completing_rebalance_repeats_the_answer() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    ja, jb = h.join(a.member_id), h.join(b.member_id)
    gen = ja.value.generation_id
    assert h.state() == "CompletingRebalance"
    again_a = h.join(a.member_id)
    again_b = h.join(b.member_id)
    assert again_a.value.generation_id == again_b.value.generation_id == gen
    assert len(again_a.value.members) == 2 and again_b.value.members == []
    assert h.state() == "CompletingRebalance"
    assert jb.value.generation_id == gen


def test_a_second_parked_join_of_the_same_member_answers_the_first() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    first = h.join(a.member_id)
    second = h.join(a.member_id)
    assert first.value.error == ErrorCode.REBALANCE_IN_PROGRESS
    h.join(b.member_id)
    assert second.value.error == ErrorCode.NONE


def test_sync_errors() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    gen = a.generation_id
    assert h.sync(a.member_id, gen, group="").value.error == ErrorCode.INVALID_GROUP_ID
    assert h.sync(a.member_id, gen, group="nope").value.error == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.sync("nobody", gen).value.error == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.sync(a.member_id, gen + 1).value.error == ErrorCode.ILLEGAL_GENERATION
    wrong_type = h.sync(a.member_id, gen, protocol_type="connect")
    assert wrong_type.value.error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    wrong_name = h.sync(a.member_id, gen, protocol_name="roundrobin")
    assert wrong_name.value.error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    h.join(a.member_id)  # rebalance
    assert h.sync(b.member_id, gen).value.error == ErrorCode.REBALANCE_IN_PROGRESS


def test_parked_syncs_are_released_when_a_rebalance_starts() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    _ja, jb = h.join(a.member_id), h.join(b.member_id)
    sb = h.sync(b.member_id, jb.value.generation_id)
    assert not sb.done
    h.join()  # a newcomer: the leader's assignment would miss it
    assert sb.value.error == ErrorCode.REBALANCE_IN_PROGRESS
    assert h.state() == "PreparingRebalance"


def test_member_that_neither_syncs_nor_heartbeats_is_removed_at_its_session_timeout() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    ja, jb = h.join(a.member_id), h.join(b.member_id)
    h.sync(a.member_id, ja.value.generation_id, {})
    for _ in range(3):
        h.advance(3000)
        assert h.heartbeat(a.member_id, ja.value.generation_id) == ErrorCode.NONE
    h.advance(1000)  # b's session (10 s from the end of the join) is over
    assert h.state() == "PreparingRebalance"
    assert h.heartbeat(b.member_id, jb.value.generation_id) == ErrorCode.UNKNOWN_MEMBER_ID


def test_member_that_heartbeats_but_never_syncs_is_removed_at_the_rebalance_timeout() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    ja, _jb = h.join(a.member_id), h.join(b.member_id)
    gen = ja.value.generation_id
    h.sync(a.member_id, gen, {})
    for _ in range(REBALANCE // 3000):
        assert h.heartbeat(b.member_id, gen) == ErrorCode.NONE
        assert h.heartbeat(a.member_id, gen) == ErrorCode.NONE
        h.advance(3000)
    assert h.state() == "PreparingRebalance"
    assert h.heartbeat(b.member_id, gen) == ErrorCode.UNKNOWN_MEMBER_ID


def test_new_member_whose_client_gave_up_is_dropped_after_the_join_timeout() -> None:
    cfg = GroupConfig(initial_rebalance_delay_ms=0, new_member_join_timeout_ms=60_000)
    h = Harness(cfg)
    a = h.join(rebalance=120_000)
    h.sync(a.value.member_id, 1, {})
    newcomer = h.join(rebalance=120_000)  # rebalance: waits up to 120 s for a to rejoin
    for _ in range(20):  # a is alive but slow to rejoin
        h.advance(3000)
        h.heartbeat(a.value.member_id, 1)
    assert newcomer.value.error == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.join(a.value.member_id).value.members == [
        JoinMember(a.value.member_id, None, subscription("t"))
    ]


def test_next_deadline_is_the_earliest_member_session() -> None:
    h = Harness()
    (_a,) = h.stable_group(1)
    assert h.coord.next_deadline() == h.clock.now + SESSION
