"""Heartbeats, sessions, LeaveGroup, rebalance timeouts and static membership (KIP-345)."""

from __future__ import annotations

from group_helpers import REBALANCE, SESSION, Harness, protocols

from riverbed.coordinator.group import GroupMetadataChanged, JoinMember
from riverbed.protocol.errors import ErrorCode


def test_heartbeat_errors_by_state() -> None:
    h = Harness()
    assert h.heartbeat("m", 0, group="") == ErrorCode.INVALID_GROUP_ID
    assert h.heartbeat("m", 0, group="unknown") == ErrorCode.UNKNOWN_MEMBER_ID
    a, b = h.stable_group(2)
    gen = a.generation_id
    assert h.heartbeat(a.member_id, gen) == ErrorCode.NONE  # Stable
    assert h.heartbeat(a.member_id, gen - 1) == ErrorCode.ILLEGAL_GENERATION
    assert h.heartbeat("nobody", gen) == ErrorCode.UNKNOWN_MEMBER_ID
    ja = h.join(a.member_id)
    assert h.heartbeat(b.member_id, gen) == ErrorCode.REBALANCE_IN_PROGRESS  # Preparing
    h.join(b.member_id)
    new_gen = ja.value.generation_id
    assert h.heartbeat(b.member_id, new_gen) == ErrorCode.NONE  # CompletingRebalance
    assert h.heartbeat(b.member_id, gen) == ErrorCode.ILLEGAL_GENERATION
    h.coord.leave_group("g", [(a.member_id, None), (b.member_id, None)], None)
    assert h.state() == "Empty"
    assert h.heartbeat(a.member_id, new_gen) == ErrorCode.UNKNOWN_MEMBER_ID  # Empty


def test_heartbeats_keep_a_member_alive_and_silence_removes_it() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    for _ in range(5):
        h.advance(SESSION - 1)
        assert h.heartbeat(a.member_id, a.generation_id) == ErrorCode.NONE
        assert h.heartbeat(b.member_id, b.generation_id) == ErrorCode.NONE
    h.advance(SESSION - 1)
    assert h.heartbeat(a.member_id, a.generation_id) == ErrorCode.NONE
    h.advance(1)  # b's session is over
    assert h.state() == "PreparingRebalance"
    assert h.heartbeat(a.member_id, a.generation_id) == ErrorCode.REBALANCE_IN_PROGRESS
    rejoin = h.join(a.member_id)  # the only member left: completes at once
    assert rejoin.value.generation_id == a.generation_id + 1
    assert [m.member_id for m in rejoin.value.members] == [a.member_id]
    assert h.heartbeat(b.member_id, b.generation_id) == ErrorCode.UNKNOWN_MEMBER_ID


def test_heartbeats_during_preparing_rebalance_count_as_liveness() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    h.join(a.member_id)  # b must rejoin within the rebalance timeout
    for _ in range(3):
        h.advance(SESSION - 1)
        assert h.heartbeat(b.member_id, b.generation_id) == ErrorCode.REBALANCE_IN_PROGRESS
    assert h.state() == "PreparingRebalance"
    jb = h.join(b.member_id)
    assert jb.value.error == ErrorCode.NONE


def test_rebalance_timeout_removes_a_member_that_does_not_rejoin() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    ja = h.join(a.member_id)
    for _ in range(REBALANCE // 3000 - 1):
        h.advance(3000)
        assert h.heartbeat(b.member_id, b.generation_id) == ErrorCode.REBALANCE_IN_PROGRESS
    assert not ja.done
    h.advance(3000)  # the rebalance timeout (max of the members') is over
    assert ja.value.generation_id == a.generation_id + 1
    assert [m.member_id for m in ja.value.members] == [a.member_id]
    assert h.heartbeat(b.member_id, b.generation_id) == ErrorCode.UNKNOWN_MEMBER_ID


def test_a_client_that_vanishes_mid_rebalance_stalls_the_group_at_most_its_session() -> None:
    h = Harness()
    a, _b = h.stable_group(2)
    ja = h.join(a.member_id)
    h.advance(SESSION)  # b neither rejoins nor heartbeats
    assert ja.value.error == ErrorCode.NONE
    assert [m.member_id for m in ja.value.members] == [a.member_id]


def test_a_static_leader_that_does_not_rejoin_loses_leadership_to_one_that_did() -> None:
    h = Harness()
    s = h.join(instance="lead", client_id="s").value.member_id
    jb = h.join(client_id="b")
    gen = h.join(s, instance="lead").value.generation_id
    b = jb.value.member_id
    h.sync(s, gen, {s: b"S", b: b"B"}, instance="lead")
    h.sync(b, gen)
    again = h.join(b, protos=protocols("t", "u"))  # b's change starts a rebalance
    for _ in range(REBALANCE // 3000):
        h.advance(3000)  # the static leader is alive but does not rejoin
        h.heartbeat(s, gen, instance="lead")
    assert again.value.leader == b
    assert [m.member_id for m in again.value.members] == [s, b]


def test_leave_group_rebalances_and_the_last_leave_empties_the_group() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    err, results = h.coord.leave_group("g", [(b.member_id, None)], "closing")
    assert (err, results) == (ErrorCode.NONE, [(b.member_id, None, ErrorCode.NONE)])
    assert h.state() == "PreparingRebalance"
    ja = h.join(a.member_id)
    assert ja.value.generation_id == a.generation_id + 1
    h.sync(a.member_id, ja.value.generation_id, {a.member_id: b"x"})
    h.events.clear()
    h.coord.leave_group("g", [(a.member_id, None)], None)
    assert h.state() == "Empty"
    snap = h.coord.group_snapshot("g")
    assert snap is not None
    assert (snap.generation, snap.members, snap.protocol, snap.leader) == (
        ja.value.generation_id + 1,
        [],
        None,
        None,
    )
    assert h.events == [GroupMetadataChanged("g", snap)]


def test_leave_answers_the_parked_join_of_the_leaving_member() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    ja = h.join(a.member_id)
    h.coord.leave_group("g", [(a.member_id, None)], None)
    assert (ja.value.error, ja.value.member_id) == (ErrorCode.UNKNOWN_MEMBER_ID, "")
    jb = h.join(b.member_id)
    assert jb.value.leader == b.member_id


def test_leave_errors_and_batches() -> None:
    h = Harness()
    assert h.coord.leave_group("", [("m", None)], None) == (ErrorCode.INVALID_GROUP_ID, [])
    assert h.coord.leave_group("nope", [("m", None)], None) == (
        ErrorCode.NONE,
        [("m", None, ErrorCode.UNKNOWN_MEMBER_ID)],
    )
    a, _b = h.stable_group(2)
    pending = h.join(require_known=True).value.member_id
    err, results = h.coord.leave_group(
        "g",
        [("nobody", None), (pending, None), (a.member_id, None), ("", "no-such-instance")],
        None,
    )
    assert err == ErrorCode.NONE
    assert results == [
        ("nobody", None, ErrorCode.UNKNOWN_MEMBER_ID),
        (pending, None, ErrorCode.NONE),
        (a.member_id, None, ErrorCode.NONE),
        ("", "no-such-instance", ErrorCode.UNKNOWN_MEMBER_ID),
    ]
    assert h.join(pending).value.error == ErrorCode.UNKNOWN_MEMBER_ID


# -- static membership (KIP-345) ----------------------------------------------------------------


def static_pair(h: Harness) -> tuple[str, str, int]:
    """A dynamic leader and a static follower "inst", Stable; (leader, static id, gen)."""
    a = h.join(client_id="a")
    s = h.join(instance="inst", client_id="s", require_known=True)  # no MEMBER_ID_REQUIRED
    ja = h.join(a.value.member_id)
    gen = ja.value.generation_id
    sid = s.value.member_id
    assert sid == "inst-u2" and s.value.error == ErrorCode.NONE
    assert ja.value.members[1] == JoinMember(sid, "inst", protocols()[0][1])
    h.sync(a.value.member_id, gen, {a.value.member_id: b"A", sid: b"S"})
    assert h.sync(sid, gen, instance="inst").value.assignment == b"S"
    return a.value.member_id, sid, gen


def test_static_member_restart_takes_over_without_rebalance_and_fences_the_old_id() -> None:
    h = Harness()
    leader, old, gen = static_pair(h)
    h.events.clear()
    again = h.join(instance="inst", client_id="s")  # restarted: no member id
    new = again.value.member_id
    assert new != old and new.startswith("inst-")
    assert (again.value.error, again.value.generation_id) == (ErrorCode.NONE, gen)
    assert again.value.leader == leader and again.value.members == []
    assert h.state() == "Stable"
    assert h.sync(new, gen, instance="inst").value.assignment == b"S"  # kept its assignment
    assert [type(e) for e in h.events] == [GroupMetadataChanged]

    fenced = ErrorCode.FENCED_INSTANCE_ID
    assert h.heartbeat(old, gen, instance="inst") == fenced
    assert h.sync(old, gen, instance="inst").value.error == fenced
    assert h.join(old, instance="inst").value.error == fenced
    commit = h.coord.commit_offsets("g", old, "inst", gen, [("t", 0, 5, -1, None)])
    assert commit == [("t", 0, fenced)]
    assert h.coord.leave_group("g", [(old, "inst")], None)[1] == [(old, "inst", fenced)]
    assert h.heartbeat(new, gen, instance="inst") == ErrorCode.NONE
    assert h.heartbeat(new, gen, instance="other") == ErrorCode.UNKNOWN_MEMBER_ID


def test_static_leader_restart_with_skip_assignment_support() -> None:
    h = Harness()
    s = h.join(instance="lead", client_id="s")
    gen = s.value.generation_id
    h.sync(s.value.member_id, gen, {s.value.member_id: b"L"})
    again = h.join(instance="lead", client_id="s", skip=True)
    new = again.value.member_id
    assert (again.value.leader, again.value.skip_assignment) == (new, True)
    assert again.value.members == [JoinMember(new, "lead", protocols()[0][1])]
    assert again.value.generation_id == gen and h.state() == "Stable"
    old_client = h.join(instance="lead", client_id="s")  # without KIP-814: told the old leader
    assert old_client.value.leader == new and old_client.value.skip_assignment is False
    assert old_client.value.members == []


def test_static_member_restart_that_changes_the_protocol_choice_rebalances() -> None:
    h = Harness()
    s = h.join(instance="inst").value
    h.sync(s.member_id, s.generation_id, {s.member_id: b"S"})
    meta = protocols()[0][1]
    again = h.join(instance="inst", protos=[("roundrobin", meta), ("range", meta)])
    # Its new first choice wins the vote: a rebalance (which it alone completes at once).
    assert again.value.generation_id == s.generation_id + 1
    assert again.value.protocol_name == "roundrobin"


def test_static_member_replaced_while_its_join_is_parked_fences_the_parked_join() -> None:
    h = Harness()
    leader, old, gen = static_pair(h)
    newcomer = h.join(client_id="c")  # rebalance
    parked = h.join(old, instance="inst")
    assert not parked.done
    new = h.join(instance="inst")  # the same instance, restarted elsewhere
    assert (parked.value.error, parked.value.member_id) == (ErrorCode.FENCED_INSTANCE_ID, old)
    assert not new.done
    ja = h.join(leader)
    assert new.value.error == newcomer.value.error == ErrorCode.NONE
    assert new.value.generation_id == ja.value.generation_id == gen + 1
    assert {m.member_id for m in ja.value.members} == {
        leader,
        new.value.member_id,
        newcomer.value.member_id,
    }


def test_static_member_replaced_in_completing_rebalance_starts_over() -> None:
    h = Harness()
    leader, old, gen = static_pair(h)
    _ja, _js = h.join(leader), h.join(old, instance="inst")
    assert h.state() == "CompletingRebalance"
    parked_sync = h.sync(old, gen + 1, instance="inst")
    new = h.join(instance="inst")
    assert parked_sync.value.error == ErrorCode.FENCED_INSTANCE_ID
    assert not new.done and h.state() == "PreparingRebalance"
    h.join(leader)
    assert new.value.generation_id == gen + 2


def test_static_member_that_does_not_rejoin_stays_until_its_session_ends() -> None:
    h = Harness()
    leader, sid, gen = static_pair(h)
    ja = h.join(leader)  # rebalance
    for _ in range(REBALANCE // 3000):
        h.advance(3000)
        h.heartbeat(sid, gen, instance="inst")  # alive (restarting, say) but not rejoining
    assert [m.member_id for m in ja.value.members] == [leader, sid]  # still in the group
    h.sync(leader, ja.value.generation_id, {leader: b"A", sid: b"S2"})
    h.advance(SESSION - 1)
    assert h.heartbeat(leader, ja.value.generation_id) == ErrorCode.NONE
    h.advance(1)  # the static member never came back
    assert h.heartbeat(sid, gen, instance="inst") == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.state() == "PreparingRebalance"


def test_admin_removes_a_static_member_by_instance_id() -> None:
    h = Harness()
    _leader, sid, gen = static_pair(h)
    _err, results = h.coord.leave_group("g", [("", "inst")], "admin")
    assert results == [("", "inst", ErrorCode.NONE)]
    assert h.state() == "PreparingRebalance"
    assert h.heartbeat(sid, gen, instance="inst") == ErrorCode.UNKNOWN_MEMBER_ID
