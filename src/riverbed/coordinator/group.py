"""The classic consumer-group coordinator (JoinGroup / SyncGroup / Heartbeat / LeaveGroup,
OffsetCommit / OffsetFetch / OffsetDelete, ListGroups / DescribeGroups / DeleteGroups).

A pure state machine: no I/O, no threads, no asyncio. Time is read only from the injected
`clock` (milliseconds). Requests that Kafka parks (JoinGroup until the rebalance completes,
a follower's SyncGroup until the leader's) take a `reply` callback; every other call answers
by return value. Callbacks and `on_change` events are delivered after the call has finished
changing state, in the order they were produced (events first where Kafka would persist before
answering), so a callback may safely call back into the coordinator.

The caller drives time: call `tick()` when `next_deadline()` has passed. Nothing happens
between calls, so a deadline is honoured as precisely as the caller's timer.

Group states move only through `group_states.TRANSITIONS`; docs/consumer-groups.md explains
the behaviour, and where it follows or departs from Kafka's GroupCoordinator.
"""

from __future__ import annotations

from collections.abc import Hashable

from riverbed.coordinator.delivers import delivers
from riverbed.coordinator.group_admin import GroupAdmin
from riverbed.coordinator.group_core import (
    COMPLETING,
    DEAD,
    EMPTY,
    EXPIRE_TIMER,
    JOIN_TIMER,
    MEMBER_TIMER,
    PREPARING,
    STABLE,
    SYNC_TIMER,
    JoinRequest,
)
from riverbed.coordinator.group_model import Group, Member, dedupe_protocols, subscribed_topics
from riverbed.coordinator.group_states import (
    INITIAL_STATES,
    TRANSITIONS,
    IllegalTransition,
    Trigger,
    state_diagram,
)
from riverbed.coordinator.group_types import (
    CONSUMER_PROTOCOL_TYPE,
    GroupConfig,
    GroupDeleted,
    GroupDescription,
    GroupEvent,
    GroupMetadataChanged,
    GroupSnapshot,
    GroupState,
    JoinCallback,
    JoinMember,
    JoinResult,
    MemberDescription,
    MemberSnapshot,
    OffsetAndMetadata,
    OffsetsCommitted,
    OffsetsDeleted,
    SyncCallback,
    SyncResult,
)
from riverbed.coordinator.write_errors import group_write_error
from riverbed.protocol.errors import ErrorCode

__all__ = [
    "CONSUMER_PROTOCOL_TYPE",
    "INITIAL_STATES",
    "TRANSITIONS",
    "GroupConfig",
    "GroupCoordinator",
    "GroupDeleted",
    "GroupDescription",
    "GroupEvent",
    "GroupMetadataChanged",
    "GroupSnapshot",
    "GroupState",
    "IllegalTransition",
    "JoinCallback",
    "JoinMember",
    "JoinResult",
    "MemberDescription",
    "MemberSnapshot",
    "OffsetAndMetadata",
    "OffsetsCommitted",
    "OffsetsDeleted",
    "SyncCallback",
    "SyncResult",
    "Trigger",
    "state_diagram",
    "subscribed_topics",
]


def _join_error(error: ErrorCode, member_id: str = "") -> JoinResult:
    return JoinResult(error=error, member_id=member_id)


class GroupCoordinator(GroupAdmin):
    """See the module docstring; the offsets and admin APIs come from the base classes."""

    # ------------------------------------------------------------------------------------------
    # JoinGroup
    # ------------------------------------------------------------------------------------------

    @delivers
    def join_group(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        *,
        require_known_member_id: bool,
        reason: str | None,
        reply: JoinCallback,
        supports_skip_assignment: bool = False,
    ) -> None:
        """JoinGroup. `require_known_member_id` is true for v4+ (KIP-394);
        `supports_skip_assignment` is true for v9+ (KIP-814: a static leader that rejoins a
        Stable group is told it leads, gets the members, and must not reassign)."""
        cfg = self.config
        if not group_id:
            self._answer_join(reply, _join_error(ErrorCode.INVALID_GROUP_ID, member_id))
            return
        if not cfg.min_session_timeout_ms <= session_timeout_ms <= cfg.max_session_timeout_ms:
            self._answer_join(reply, _join_error(ErrorCode.INVALID_SESSION_TIMEOUT, member_id))
            return
        group = self._groups.get(group_id)
        if group is None:
            if member_id:
                self._answer_join(reply, _join_error(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
                return
            group = self._create_group(group_id)
        request = JoinRequest(
            member_id=member_id,
            group_instance_id=group_instance_id,
            client_id=client_id,
            client_host=client_host,
            session_timeout_ms=session_timeout_ms,
            rebalance_timeout_ms=rebalance_timeout_ms,
            protocol_type=protocol_type,
            protocols=dedupe_protocols(protocols),
            require_known_member_id=require_known_member_id,
            supports_skip_assignment=supports_skip_assignment,
            reply=reply,
        )
        if not self._accepts_joining_member(group, member_id):
            known = group.members.get(member_id)
            if known is not None:
                self._remove_member(group, known)
            elif member_id in group.pending_members:
                self._remove_pending_member(group, member_id)
            self._answer_join(reply, _join_error(ErrorCode.GROUP_MAX_SIZE_REACHED))
        elif not member_id:
            self._join_new_member(group, request)
        else:
            self._join_known_member(group, request)
        self._maybe_complete_join(group)

    def _accepts_joining_member(self, group: Group, member_id: str) -> bool:
        limit = self.config.max_group_size
        member = group.members.get(member_id)
        if group.state in (EMPTY, DEAD):
            return True
        if group.state is PREPARING:
            # Count members that rejoined, so the last ones to rejoin an oversized group lose.
            awaiting = member is not None and member.join_reply is not None
            return awaiting or group.num_awaiting_join < limit
        return member is not None or len(group.members) < limit

    def _join_new_member(self, group: Group, req: JoinRequest) -> None:
        if group.state is DEAD:
            self._answer_join(req.reply, _join_error(ErrorCode.COORDINATOR_NOT_AVAILABLE))
            return
        if not group.supports_protocols(req.protocol_type, [n for n, _ in req.protocols]):
            self._answer_join(req.reply, _join_error(ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
            return
        prefix = req.group_instance_id if req.group_instance_id is not None else req.client_id
        new_id = f"{prefix}-{self._new_uuid()}"
        if req.group_instance_id is not None:
            old_id = group.static_members.get(req.group_instance_id)
            if old_id is not None:
                self._replace_static_member(group, req, old_id, new_id)
            else:
                self._add_member_and_rebalance(group, req, new_id)
        elif req.require_known_member_id:
            # KIP-394: hand out an id and wait (one session timeout) for the member to use it.
            group.pending_members.add(new_id)
            self._timers.set(
                (MEMBER_TIMER, group.group_id, new_id), self._after(req.session_timeout_ms)
            )
            self._answer_join(req.reply, _join_error(ErrorCode.MEMBER_ID_REQUIRED, new_id))
        else:
            self._add_member_and_rebalance(group, req, new_id)

    def _join_known_member(self, group: Group, req: JoinRequest) -> None:
        member_id = req.member_id
        if group.state is DEAD:
            self._answer_join(
                req.reply, _join_error(ErrorCode.COORDINATOR_NOT_AVAILABLE, member_id)
            )
            return
        if not group.supports_protocols(req.protocol_type, [n for n, _ in req.protocols]):
            error = ErrorCode.INCONSISTENT_GROUP_PROTOCOL
            self._answer_join(req.reply, _join_error(error, member_id))
            return
        if member_id in group.pending_members:
            instance = req.group_instance_id
            if instance is not None and instance in group.static_members:
                self._answer_join(req.reply, _join_error(ErrorCode.FENCED_INSTANCE_ID, member_id))
            else:
                self._add_member_and_rebalance(group, req, member_id)
            return
        error = group.validate_member(member_id, req.group_instance_id)
        if error:
            self._answer_join(req.reply, _join_error(error, member_id))
            return
        member = group.members[member_id]
        unchanged = member.matches(req.protocols)
        if group.state is PREPARING:
            self._update_member_and_rebalance(group, member, req)
        elif group.state is COMPLETING:
            if unchanged:  # the member missed our answer: repeat it
                self._answer_join(req.reply, self._current_generation(group, member_id))
            else:
                self._update_member_and_rebalance(group, member, req)
        elif group.state is STABLE:
            # The leader may rejoin to force a new assignment (e.g. topic metadata changed).
            if group.leader == member_id or not unchanged:
                self._update_member_and_rebalance(group, member, req)
            else:
                self._answer_join(req.reply, self._current_generation(group, member_id))
        else:
            self._answer_join(req.reply, _join_error(ErrorCode.UNKNOWN_MEMBER_ID, member_id))

    def _current_generation(self, group: Group, member_id: str) -> JoinResult:
        leader = group.leader or ""
        return JoinResult(
            error=ErrorCode.NONE,
            generation_id=group.generation,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol,
            leader=leader,
            member_id=member_id,
            members=group.join_members() if member_id == leader else [],
        )

    def _add_member_and_rebalance(self, group: Group, req: JoinRequest, member_id: str) -> None:
        member = Member(
            member_id=member_id,
            group_instance_id=req.group_instance_id,
            client_id=req.client_id,
            client_host=req.client_host,
            rebalance_timeout_ms=req.rebalance_timeout_ms,
            session_timeout_ms=req.session_timeout_ms,
            protocol_type=req.protocol_type,
            protocols=req.protocols,
            join_reply=req.reply,
            is_new=True,
        )
        if group.state is PREPARING and group.previous_state is EMPTY:
            group.new_member_added = True  # may extend the initial delay
        group.add(member)
        # A new member cannot heartbeat before its first answer; if its client gave up, it is
        # dropped after the new-member join timeout instead of its session timeout.
        key = (MEMBER_TIMER, group.group_id, member_id)
        self._timers.set(key, self._after(self.config.new_member_join_timeout_ms))
        self._maybe_prepare_rebalance(group, Trigger.MEMBER_JOINED)

    def _update_member_and_rebalance(self, group: Group, member: Member, req: JoinRequest) -> None:
        group.update(member, req.protocols, req.rebalance_timeout_ms, req.session_timeout_ms)
        previous = group.park_join(member, req.reply)
        # Kafka drops an earlier parked JoinGroup of the same member; we answer it, so that its
        # connection's responses stay in order. The client simply rejoins.
        error = ErrorCode.REBALANCE_IN_PROGRESS
        self._answer_join(previous, _join_error(error, member.member_id))
        self._maybe_prepare_rebalance(group, Trigger.MEMBER_JOINED)

    def _replace_static_member(
        self, group: Group, req: JoinRequest, old_id: str, new_id: str
    ) -> None:
        """A static member rejoined without its member id: the new id takes over the old
        member (and its assignment); calls that still use the old id are fenced."""
        instance_id = req.group_instance_id
        assert instance_id is not None
        current_leader = group.leader or ""
        before = group.members[old_id]
        previous = (before.protocols, before.rebalance_timeout_ms, before.session_timeout_ms)
        old, new = group.replace_static(instance_id, old_id, new_id)
        fenced = ErrorCode.FENCED_INSTANCE_ID
        self._answer_join(old.join_reply, _join_error(fenced, old_id))
        self._answer_sync(old.sync_reply, SyncResult(fenced))
        old.join_reply = old.sync_reply = None
        self._timers.cancel((MEMBER_TIMER, group.group_id, old_id))
        self._timers.set(
            (MEMBER_TIMER, group.group_id, new_id), self._after(new.session_timeout_ms)
        )
        group.update(new, req.protocols, req.rebalance_timeout_ms, req.session_timeout_ms)
        group.park_join(new, req.reply)

        if group.state is STABLE:
            if group.protocol == group.select_protocol():
                # No rebalance: persist the new member id and hand back the current generation.
                reply = group.take_join(new)
                if req.supports_skip_assignment:
                    is_leader = group.leader == new_id
                    result = JoinResult(
                        error=ErrorCode.NONE,
                        generation_id=group.generation,
                        protocol_type=group.protocol_type,
                        protocol_name=group.protocol,
                        leader=group.leader or "",
                        member_id=new_id,
                        members=group.join_members() if is_leader else [],
                        skip_assignment=is_leader,
                    )
                else:
                    # Older clients must not believe they lead (they would reassign, and a
                    # Stable group would not pass that on): name the leader's old id.
                    result = JoinResult(
                        error=ErrorCode.NONE,
                        generation_id=group.generation,
                        protocol_type=group.protocol_type,
                        protocol_name=group.protocol,
                        leader=current_leader,
                        member_id=new_id,
                    )

                def failed(code: int) -> None:
                    # Kafka: the replacement is undone and the join answers the mapped error
                    if group.static_members.get(instance_id) != new_id:
                        return
                    group.update(new, *previous)
                    group.replace_static(instance_id, new_id, old_id)
                    self._timers.cancel((MEMBER_TIMER, group.group_id, new_id))
                    self._timers.set(
                        (MEMBER_TIMER, group.group_id, old_id), self._after(previous[2])
                    )
                    self._answer_join(reply, _join_error(group_write_error(code)))

                self._emit(
                    GroupMetadataChanged(group.group_id, group.snapshot()),
                    lambda: self._answer_join(reply, result),
                    failed,
                )
            else:
                self._maybe_prepare_rebalance(group, Trigger.MEMBER_JOINED)
        elif group.state is COMPLETING:
            # The leader may already be assigning to the old id: start over.
            self._prepare_rebalance(group, Trigger.MEMBER_JOINED)
        # PreparingRebalance: the join stays parked like any other.

    # ------------------------------------------------------------------------------------------
    # SyncGroup
    # ------------------------------------------------------------------------------------------

    @delivers
    def sync_group(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
        *,
        reply: SyncCallback,
    ) -> None:
        if not group_id:
            self._answer_sync(reply, SyncResult(ErrorCode.INVALID_GROUP_ID))
            return
        group = self._groups.get(group_id)
        error = self._sync_error(group, generation_id, member_id, group_instance_id)
        if error is ErrorCode.NONE and group is not None:
            wrong_type = protocol_type is not None and protocol_type != group.protocol_type
            wrong_name = protocol_name is not None and protocol_name != group.protocol
            if wrong_type or wrong_name:
                error = ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        if error is not ErrorCode.NONE or group is None:
            self._answer_sync(reply, SyncResult(error))
            return
        member = group.members[member_id]
        if group.state is PREPARING:
            self._answer_sync(reply, SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
        elif group.state is COMPLETING:
            previous, member.sync_reply = member.sync_reply, reply
            self._answer_sync(previous, SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
            self._synced(group, member_id)
            if group.leader == member_id:
                self._complete_sync(group, assignments)
        elif group.state is STABLE:
            self._synced(group, member_id)
            self._answer_sync(reply, self._assignment_of(group, member))
            self._reset_session(group, member)
        else:  # Empty
            self._answer_sync(reply, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))

    def _sync_error(
        self, group: Group | None, generation_id: int, member_id: str, instance_id: str | None
    ) -> ErrorCode:
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.state is DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        error = group.validate_member(member_id, instance_id)
        if error:
            return error
        if generation_id != group.generation:
            return ErrorCode.ILLEGAL_GENERATION
        return ErrorCode.NONE

    def _synced(self, group: Group, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync:
            self._timers.cancel((SYNC_TIMER, group.group_id))

    def _complete_sync(self, group: Group, assignments: dict[str, bytes]) -> None:
        """The leader's assignment arrived: persist it; once written, the group is Stable and
        every parked SyncGroup gets its assignment. If the write fails (Kafka's
        resetAndPropagateAssignmentWithError), the assignment is dropped, every parked
        SyncGroup answers the mapped error (NOT_COORDINATOR for a full disk) and the group
        rebalances again."""
        for member_id, member in group.members.items():
            member.assignment = bytes(assignments.get(member_id, b""))
        generation = group.generation

        def current() -> bool:
            same = self._groups.get(group.group_id) is group and group.generation == generation
            return same and group.state is COMPLETING

        def written() -> None:
            if not current():
                return
            self._transition(group, Trigger.ASSIGNMENT_RECEIVED)
            for member in group.members.values():
                if member.sync_reply is not None:
                    reply, member.sync_reply = member.sync_reply, None
                    self._answer_sync(reply, self._assignment_of(group, member))
                    self._reset_session(group, member)
            self._schedule_expiry(group)

        def failed(code: int) -> None:
            if not current():
                return
            error = group_write_error(code)
            for member in group.members.values():
                member.assignment = b""
                reply, member.sync_reply = member.sync_reply, None
                self._answer_sync(reply, SyncResult(error))
            self._prepare_rebalance(group, Trigger.MEMBER_JOINED)

        self._emit(GroupMetadataChanged(group.group_id, group.snapshot()), written, failed)

    @staticmethod
    def _assignment_of(group: Group, member: Member) -> SyncResult:
        return SyncResult(ErrorCode.NONE, group.protocol_type, group.protocol, member.assignment)

    # ------------------------------------------------------------------------------------------
    # Heartbeat and LeaveGroup
    # ------------------------------------------------------------------------------------------

    @delivers
    def heartbeat(
        self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None
    ) -> int:
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID
        group = self._groups.get(group_id)
        error = self._sync_error(group, generation_id, member_id, group_instance_id)
        if error is not ErrorCode.NONE or group is None:
            return error
        if group.state is EMPTY:
            return ErrorCode.UNKNOWN_MEMBER_ID
        self._reset_session(group, group.members[member_id])
        if group.state is PREPARING:
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    @delivers
    def leave_group(
        self, group_id: str, members: list[tuple[str, str | None]], reason: str | None
    ) -> tuple[int, list[tuple[str, str | None, int]]]:
        """LeaveGroup (v3+ batches). A member id of "" with an instance id removes that static
        member (KIP-345 admin removal). Answers echo the request's ids."""
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID, []
        group = self._groups.get(group_id)
        if group is None:
            unknown = ErrorCode.UNKNOWN_MEMBER_ID
            return ErrorCode.NONE, [(mid, iid, unknown) for mid, iid in members]
        if group.state is DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, []
        results: list[tuple[str, str | None, int]] = []
        for member_id, instance_id in members:
            results.append((member_id, instance_id, self._leave(group, member_id, instance_id)))
        return ErrorCode.NONE, results

    def _leave(self, group: Group, member_id: str, instance_id: str | None) -> ErrorCode:
        if not member_id:
            current = group.static_members.get(instance_id) if instance_id is not None else None
            if current is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            self._remove_member_and_rebalance(group, group.members[current])
            return ErrorCode.NONE
        if member_id in group.pending_members and instance_id is None:
            self._remove_pending_member(group, member_id)
            return ErrorCode.NONE
        error = group.validate_member(member_id, instance_id)
        if error:
            return error
        self._remove_member_and_rebalance(group, group.members[member_id])
        return ErrorCode.NONE

    # ------------------------------------------------------------------------------------------
    # Rebalance mechanics
    # ------------------------------------------------------------------------------------------

    def _maybe_prepare_rebalance(self, group: Group, trigger: Trigger) -> None:
        if group.state in (STABLE, COMPLETING, EMPTY):
            self._prepare_rebalance(group, trigger)
        else:
            self._transition(group, trigger)  # PreparingRebalance stays where it is

    def _prepare_rebalance(self, group: Group, trigger: Trigger) -> None:
        if group.state is COMPLETING:
            # The leader's assignment will not come for this generation: release the followers.
            for member in group.members.values():
                member.assignment = b""
                reply, member.sync_reply = member.sync_reply, None
                self._answer_sync(reply, SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
        group.pending_sync.clear()
        self._timers.cancel((SYNC_TIMER, group.group_id))
        from_empty = group.state is EMPTY
        self._transition(group, trigger)
        timeout = group.rebalance_timeout_ms()
        delay = self.config.initial_rebalance_delay_ms
        if from_empty and delay > 0:
            # Kafka's InitialDelayedJoin: wait `delay`, extended while members keep arriving,
            # for at most the rebalance timeout in all.
            group.initial_delay_phase = True
            group.initial_delay_remaining_ms = max(timeout - delay, 0)
            group.new_member_added = False
            self._timers.set((JOIN_TIMER, group.group_id), self._after(delay))
        else:
            group.initial_delay_phase = False
            self._timers.set((JOIN_TIMER, group.group_id), self._after(timeout))
        self._maybe_complete_join(group)

    def _maybe_complete_join(self, group: Group) -> None:
        # During the initial delay Kafka waits the delay out even if everyone is there.
        ready = group.state is PREPARING and not group.initial_delay_phase
        if ready and group.all_members_joined():
            self._complete_join(group)

    def _on_join_deadline(self, group: Group) -> None:
        if group.state is not PREPARING:
            return
        if group.initial_delay_phase and group.new_member_added:
            remaining = group.initial_delay_remaining_ms
            if remaining > 0:
                delay = min(self.config.initial_rebalance_delay_ms, remaining)
                group.initial_delay_remaining_ms = remaining - delay
                group.new_member_added = False
                self._timers.set((JOIN_TIMER, group.group_id), self._after(delay))
                return
        self._complete_join(group)

    def _complete_join(self, group: Group) -> None:
        """End of the join phase (everyone rejoined, or the deadline passed)."""
        group.initial_delay_phase = False
        # Dynamic members that did not rejoin are out; static ones stay until their session
        # expires (they may be restarting).
        for member in list(group.members.values()):
            if member.join_reply is None and member.group_instance_id is None:
                self._remove_member(group, member)
        if group.members and not group.elect_joined_leader():
            # Only static members that did not rejoin are left: give them another round.
            self._timers.set(
                (JOIN_TIMER, group.group_id), self._after(group.rebalance_timeout_ms())
            )
            return
        self._timers.cancel((JOIN_TIMER, group.group_id))
        group.generation += 1
        group.pending_sync.clear()
        if not group.members:
            group.protocol = None
            group.leader = None
            group.subscribed = group.compute_subscribed()
            self._transition(group, Trigger.JOIN_COMPLETED_EMPTY)
            self._emit(GroupMetadataChanged(group.group_id, group.snapshot()))
            self._schedule_expiry(group)
            return
        group.protocol = group.select_protocol()
        group.subscribed = group.compute_subscribed()
        self._transition(group, Trigger.JOIN_COMPLETED)
        for member in group.members.values():
            reply = group.take_join(member)
            self._answer_join(reply, self._current_generation(group, member.member_id))
            member.is_new = False
            self._reset_session(group, member)
            group.pending_sync.add(member.member_id)
        group.sync_generation = group.generation
        self._timers.set((SYNC_TIMER, group.group_id), self._after(group.rebalance_timeout_ms()))

    def _on_sync_deadline(self, group: Group) -> None:
        """Members of the new generation that never sent SyncGroup are removed."""
        if group.state not in (COMPLETING, STABLE) or group.generation != group.sync_generation:
            return
        if not group.pending_sync:
            return
        for member_id in list(group.pending_sync):
            member = group.members.get(member_id)
            if member is not None:
                self._remove_member(group, member)
        self._prepare_rebalance(group, Trigger.MEMBER_REMOVED)

    def _on_member_deadline(self, group: Group, member_id: str) -> None:
        if member_id in group.pending_members:
            self._remove_pending_member(group, member_id)
            return
        member = group.members.get(member_id)
        if member is None:
            return
        if member.liveness_satisfied():
            self._reset_session(group, member)
            return
        self._remove_member_and_rebalance(group, member)

    def _remove_member(self, group: Group, member: Member) -> None:
        """Drop a member, answering its parked calls with UNKNOWN_MEMBER_ID."""
        unknown = ErrorCode.UNKNOWN_MEMBER_ID
        self._answer_join(group.take_join(member), _join_error(unknown))
        reply, member.sync_reply = member.sync_reply, None
        self._answer_sync(reply, SyncResult(unknown))
        group.remove(member.member_id)
        self._timers.cancel((MEMBER_TIMER, group.group_id, member.member_id))

    def _remove_member_and_rebalance(self, group: Group, member: Member) -> None:
        self._remove_member(group, member)
        if group.state in (STABLE, COMPLETING):
            self._maybe_prepare_rebalance(group, Trigger.MEMBER_REMOVED)
        elif group.state is PREPARING:
            self._transition(group, Trigger.MEMBER_REMOVED)
            self._maybe_complete_join(group)

    def _remove_pending_member(self, group: Group, member_id: str) -> None:
        group.pending_members.discard(member_id)
        self._timers.cancel((MEMBER_TIMER, group.group_id, member_id))
        if group.state is PREPARING:
            self._maybe_complete_join(group)
        elif group.state is EMPTY:
            self._schedule_expiry(group)

    # ------------------------------------------------------------------------------------------
    # Time
    # ------------------------------------------------------------------------------------------

    @delivers
    def tick(self) -> None:
        """Run every deadline that is due at clock()."""
        while (key := self._timers.pop_due(self._now)) is not None:
            self._fire(key)

    def _fire(self, key: Hashable) -> None:
        assert isinstance(key, tuple)
        kind, group_id = key[0], key[1]
        group = self._groups.get(group_id)
        if group is None:
            return
        if kind == JOIN_TIMER:
            self._on_join_deadline(group)
        elif kind == SYNC_TIMER:
            self._on_sync_deadline(group)
        elif kind == MEMBER_TIMER:
            self._on_member_deadline(group, key[2])
        elif kind == EXPIRE_TIMER:
            self._on_expiry_deadline(group)
