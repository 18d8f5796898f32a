"""A Hypothesis state machine: a few clients join, sync, heartbeat, leave and commit in random
orders while the clock jumps, against the coordinator's invariants."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from group_helpers import Box, FakeClock, subscription
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from riverbed.coordinator.group import (
    GroupConfig,
    GroupCoordinator,
    GroupEvent,
    GroupState,
    JoinResult,
    SyncResult,
)
from riverbed.protocol.errors import ErrorCode

CONFIG = GroupConfig(
    initial_rebalance_delay_ms=300,
    min_session_timeout_ms=100,
    max_session_timeout_ms=10_000,
    new_member_join_timeout_ms=5_000,
    # No expiry during a run: a deleted group would legitimately restart at generation 0.
    offsets_retention_ms=10**12,
    offsets_retention_check_interval_ms=10**12,
)
GROUP = "g"
RESET = (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_INSTANCE_ID)
# Client 3 shares client 2's instance id; it acts less often, so that groups also get to settle.
CLIENT = st.sampled_from([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])


@dataclass
class Client:
    name: str
    instance: str | None
    member_id: str = ""
    generation: int = -1
    leader: bool = False
    members: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.member_id, self.generation, self.leader, self.members = "", -1, False, []


class GroupMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.events: list[GroupEvent] = []
        ids = itertools.count()
        self.coord = GroupCoordinator(
            self.clock, CONFIG, on_change=self.events.append, new_uuid=lambda: f"u{next(ids)}"
        )
        # Two dynamic clients, and two processes that claim the same static instance id.
        self.clients = [
            Client("c0", None),
            Client("c1", None),
            Client("s0", "inst"),
            Client("s1", "inst"),
        ]
        self.join_boxes: list[Box[JoinResult]] = []
        self.sync_boxes: list[Box[SyncResult]] = []
        self.self_declared_leaders: dict[int, set[str]] = {}
        self.max_generation = 0
        self.last_assignment: tuple[int, dict[str, bytes]] | None = None

    # -- client actions ---------------------------------------------------------------------

    @rule(
        i=CLIENT,
        require_known=st.booleans(),
        topics=st.sampled_from([("t",), ("t", "u")]),
        session=st.sampled_from([1000, 3000]),
        rebalance=st.sampled_from([1500, 4000]),
        skip=st.booleans(),
        eager=st.booleans(),
    )
    def join(
        self,
        i: int,
        require_known: bool,
        topics: tuple[str, ...],
        session: int,
        rebalance: int,
        skip: bool,
        eager: bool,
    ) -> None:
        client = self.clients[i]
        box: Box[JoinResult] = Box()
        self.join_boxes.append(box)

        def on_join(result: JoinResult) -> None:
            box(result)
            if result.error == ErrorCode.NONE:
                client.member_id = result.member_id
                client.generation = result.generation_id
                client.leader = result.leader == result.member_id
                client.members = [m.member_id for m in result.members]
                if client.leader and not result.skip_assignment:
                    claims = self.self_declared_leaders.setdefault(result.generation_id, set())
                    claims.add(result.member_id)
            elif result.error == ErrorCode.MEMBER_ID_REQUIRED:
                client.member_id = result.member_id
                if eager:  # rejoin straight from the callback, as a client's future chain would
                    self.join(i, True, topics, session, rebalance, skip, False)
            elif result.error in RESET:
                client.reset()

        self.coord.join_group(
            GROUP,
            client.member_id,
            client.instance,
            client.name,
            "/10.0.0.1",
            session,
            rebalance,
            "consumer",
            [("range", subscription(*topics)), ("roundrobin", subscription(*topics))],
            require_known_member_id=require_known,
            reason=None,
            reply=on_join,
            supports_skip_assignment=skip,
        )

    @rule(i=CLIENT)
    def sync(self, i: int) -> None:
        client = self.clients[i]
        box: Box[SyncResult] = Box()
        self.sync_boxes.append(box)
        assignments = (
            {m: f"{client.generation}:{m}".encode() for m in client.members}
            if client.leader
            else {}
        )

        def on_sync(result: SyncResult) -> None:
            box(result)
            if result.error in RESET:
                client.reset()

        before = self.coord.group_state(GROUP)
        self.coord.sync_group(
            GROUP,
            client.generation,
            client.member_id,
            client.instance,
            "consumer",
            None,
            assignments,
            reply=on_sync,
        )
        after = self.coord.group_state(GROUP)
        if before is GroupState.COMPLETING_REBALANCE and after is GroupState.STABLE:
            self.last_assignment = (client.generation, assignments)

    @rule(i=CLIENT)
    def heartbeat(self, i: int) -> None:
        client = self.clients[i]
        error = self.coord.heartbeat(GROUP, client.generation, client.member_id, client.instance)
        if error in RESET:
            client.reset()

    @rule(i=CLIENT)
    def leave(self, i: int) -> None:
        client = self.clients[i]
        self.coord.leave_group(GROUP, [(client.member_id, client.instance)], None)
        client.reset()

    @rule(i=CLIENT, standalone=st.booleans(), offset=st.integers(0, 100))
    def commit(self, i: int, standalone: bool, offset: int) -> None:
        client = self.clients[i]
        if standalone:
            results = self.coord.commit_offsets(GROUP, "", None, -1, [("t", 0, offset, -1, "")])
        else:
            results = self.coord.commit_offsets(
                GROUP,
                client.member_id,
                client.instance,
                client.generation,
                [("t", 0, offset, -1, None)],
            )
        assert len(results) == 1
        if results[0][2] == ErrorCode.NONE:
            assert self.coord.fetch_offsets(GROUP, [("t", 0)])[1][0][2] == offset

    @rule()
    def everyone_syncs(self) -> None:
        """A well-behaved round: every client that holds a generation sends SyncGroup."""
        for i, client in enumerate(self.clients):
            if client.generation >= 0:
                self.sync(i)

    @rule()
    def everyone_heartbeats(self) -> None:
        for i, client in enumerate(self.clients):
            if client.member_id:
                self.heartbeat(i)

    @rule(ms=st.integers(0, 400) | st.integers(0, 5000))
    def advance(self, ms: int) -> None:
        self.clock.now += ms
        self.coord.tick()

    @rule()
    def run_next_deadline(self) -> None:
        deadline = self.coord.next_deadline()
        if deadline is not None and deadline < self.clock.now + 60_000:
            self.clock.now = max(self.clock.now, deadline)
            self.coord.tick()

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def at_most_one_leader_per_generation(self) -> None:
        for generation, leaders in self.self_declared_leaders.items():
            assert len(leaders) <= 1, (generation, leaders)

    @invariant()
    def generation_never_decreases(self) -> None:
        snapshot = self.coord.group_snapshot(GROUP)
        if snapshot is not None:
            assert snapshot.generation >= self.max_generation
            self.max_generation = snapshot.generation

    @invariant()
    def stable_members_hold_the_last_leader_assignment(self) -> None:
        group = self.coord._groups.get(GROUP)
        if group is None or group.state is not GroupState.STABLE:
            return
        assert self.last_assignment is not None
        generation, assignments = self.last_assignment
        assert generation == group.generation
        handed_out = set(assignments.values()) | {b""}
        for member in group.members.values():
            assert member.assignment in handed_out, (member.member_id, member.assignment)

    @invariant()
    def bookkeeping_is_consistent(self) -> None:
        group = self.coord._groups.get(GROUP)
        if group is None:
            return
        members = group.members
        parked_joins = [m for m in members.values() if m.join_reply is not None]
        parked_syncs = [m for m in members.values() if m.sync_reply is not None]
        assert group.num_awaiting_join == len(parked_joins)
        if parked_joins:
            assert group.state is GroupState.PREPARING_REBALANCE
        if parked_syncs:
            assert group.state is GroupState.COMPLETING_REBALANCE
        assert (group.leader is None) == (not members)
        assert group.leader is None or group.leader in members
        assert group.static_members == {
            m.group_instance_id: m.member_id for m in members.values() if m.group_instance_id
        }
        assert not (group.pending_members & set(members))
        assert group.pending_sync <= set(members)
        if group.state is GroupState.EMPTY:
            assert not members
        if group.state in (GroupState.COMPLETING_REBALANCE, GroupState.STABLE):
            assert group.protocol is not None and members

    def teardown(self) -> None:
        # Everybody goes quiet: once the timeouts pass, every parked request must have been
        # answered and every member must be gone. (Offset expiry is 10**12 ms away.)
        horizon = self.clock.now + 10**9
        for _ in range(200):
            deadline = self.coord.next_deadline()
            if deadline is None or deadline > horizon:
                break
            self.clock.now = max(self.clock.now, deadline)
            self.coord.tick()
        assert all(b.done for b in self.join_boxes), "a JoinGroup was never answered"
        assert all(b.done for b in self.sync_boxes), "a SyncGroup was never answered"
        assert self.coord.group_state(GROUP) in (None, GroupState.EMPTY)


TestGroupMachine = GroupMachine.TestCase
TestGroupMachine.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
