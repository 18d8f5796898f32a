"""The KIP-848 ("consumer" protocol) group coordinator: ConsumerGroupHeartbeat,
ConsumerGroupDescribe, the consumer groups' part of ListGroups / DeleteGroups, and the
member-epoch checks of OffsetCommit / OffsetFetch v9+.

A pure state machine: no I/O, no threads, no asyncio. Time is read only from the injected
`clock` (milliseconds), once per call; topics are seen only through the injected `TopicView`.
Every call answers by return value; changes to a group are reported after the call through
`on_change` as one `ConsumerGroupChanged` snapshot per changed group (or
`ConsumerGroupDeleted`), so the caller can persist them and replay them with `load`.

The caller drives time: call `tick()` once `next_deadline()` has passed (session timeouts fence
silent members, rebalance timeouts fence members that do not revoke partitions in time), and
`on_metadata_change()` whenever topics are created, deleted or grow partitions.

Unlike classic groups nothing is parked: every heartbeat is answered at once with the member's
epoch and the partitions it may own now. The layers: consumer_group_core.py (registry, timers,
change reports) <- consumer_group_admin.py (describe, list, delete, offset checks, load) <-
this module; the assignors are in assignors.py and reconciliation in
consumer_group_reconcile.py. docs/consumer-groups.md ("The consumer protocol
(KIP-848)") explains the behaviour and where it departs from Kafka's GroupMetadataManager.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import replace

from riverbed.coordinator.assignors import ASSIGNORS, AssignmentSpec, MemberSpec
from riverbed.coordinator.consumer_group_admin import ConsumerGroupAdmin
from riverbed.coordinator.consumer_group_core import (
    REVOKE_TIMER,
    SESSION_TIMER,
    Reject,
    entry,
)
from riverbed.coordinator.consumer_group_model import (
    ConsumerGroup,
    ConsumerMember,
    copy_member,
)
from riverbed.coordinator.consumer_group_reconcile import MemberAssignment, reconcile
from riverbed.coordinator.consumer_group_types import (
    INVALID_REGULAR_EXPRESSION,
    JOIN_EPOCH,
    LEAVE_EPOCH,
    STATIC_LEAVE_EPOCH,
    ConsumerGroupChanged,
    ConsumerGroupConfig,
    ConsumerGroupDeleted,
    ConsumerGroupDescription,
    ConsumerGroupEvent,
    ConsumerGroupMemberDescription,
    ConsumerGroupSnapshot,
    ConsumerGroupState,
    ConsumerMemberSnapshot,
    DescribedTopicPartitions,
    HeartbeatInput,
    HeartbeatOutput,
    MemberState,
    TopicPartitions,
    TopicView,
)
from riverbed.protocol.errors import ErrorCode


def _wire(
    assignment: Iterable[tuple[uuid.UUID, frozenset[int]]],
) -> list[tuple[uuid.UUID, list[int]]]:
    return [(t, sorted(ps)) for t, ps in sorted(assignment) if ps]


class ConsumerGroupCoordinator(ConsumerGroupAdmin):
    """See the module docstring; describe, list, delete, offset checks and loading come from
    the base classes."""

    # ------------------------------------------------------------------------------------------
    # ConsumerGroupHeartbeat
    # ------------------------------------------------------------------------------------------

    @entry
    def heartbeat(self, req: HeartbeatInput) -> HeartbeatOutput:
        """One ConsumerGroupHeartbeat: join (epoch 0), heartbeat, or leave (-1, static -2)."""
        try:
            self._validate(req)
            if req.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
                return self._leave(req)
            return self._heartbeat(req)
        except Reject as reject:
            return HeartbeatOutput(reject.error, reject.message)

    def _validate(self, req: HeartbeatInput) -> None:
        """Kafka's throwIfConsumerGroupHeartbeatRequestIsInvalid, with its messages."""

        def blank(value: str | None) -> bool:
            return value is not None and not value.strip()

        invalid = ErrorCode.INVALID_REQUEST
        epoch = req.member_epoch
        needs_id = req.api_version >= 1 or epoch > 0 or epoch == LEAVE_EPOCH
        if needs_id and blank(req.member_id):
            raise Reject(invalid, "MemberId can't be empty.")
        if blank(req.group_id):
            raise Reject(invalid, "GroupId can't be empty.")
        if blank(req.instance_id):
            raise Reject(invalid, "InstanceId can't be empty.")
        if blank(req.rack_id):
            raise Reject(invalid, "RackId can't be empty.")
        if epoch == JOIN_EPOCH:
            if req.rebalance_timeout_ms == -1:
                raise Reject(invalid, "RebalanceTimeoutMs must be provided in first request.")
            if req.topic_partitions is None or len(req.topic_partitions) > 0:
                raise Reject(invalid, "TopicPartitions must be empty when (re-)joining.")
            if req.subscribed_topic_names is None and req.subscribed_topic_regex is None:
                raise Reject(
                    invalid,
                    "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null "
                    "when (re-)joining.",
                )
        elif epoch == STATIC_LEAVE_EPOCH:
            if req.instance_id is None:
                raise Reject(invalid, "InstanceId can't be null.")
        elif epoch < STATIC_LEAVE_EPOCH:
            raise Reject(invalid, "MemberEpoch is invalid.")
        if req.server_assignor is not None and req.server_assignor not in self.config.assignors:
            raise Reject(
                ErrorCode.UNSUPPORTED_ASSIGNOR,
                f"ServerAssignor {req.server_assignor} is not supported. Supported assignors: "
                f"{', '.join(self.config.assignors)}.",
            )
        if req.subscribed_topic_regex:
            try:
                re.compile(req.subscribed_topic_regex)
            except re.error as exc:
                raise Reject(
                    INVALID_REGULAR_EXPRESSION,
                    f"SubscribedTopicRegex `{req.subscribed_topic_regex}` is not a valid "
                    f"regular expression: {exc}.",
                ) from None

    def _heartbeat(self, req: HeartbeatInput) -> HeartbeatOutput:
        joining = req.member_epoch == JOIN_EPOCH
        group = self._groups.get(req.group_id)
        if group is None:
            if not joining:
                raise Reject(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {req.group_id} not found.")
            group = ConsumerGroup(req.group_id)
        limit = self.config.max_group_size
        if len(group.members) >= limit and (
            not req.member_id or req.member_id not in group.members
        ):
            raise Reject(
                ErrorCode.GROUP_MAX_SIZE_REACHED,
                f"The consumer group has reached its maximum capacity of {limit} members.",
            )
        member_id = req.member_id or self._new_member_id()
        old, replaced = self._find_member(group, req, member_id)
        updated = self._updated(old, req)

        # Everything below changes state; every error was raised above.
        if group.group_id not in self._groups:
            self._groups[group.group_id] = group
            self._changed(group)
        if replaced is not None:
            target = group.target.get(replaced.member_id, {})
            self._drop(group, replaced)
            group.target[member_id] = target
            self._changed(group)
        group.put(updated)
        if updated != old or replaced is not None:
            self._changed(group)
        names_changed = updated.subscribed_topic_names != old.subscribed_topic_names
        regex_changed = updated.subscribed_topic_regex != old.subscribed_topic_regex
        self._maybe_resolve_regexes(group, force=regex_changed)
        metadata = group.current_metadata(self._topics)
        bump = group.group_epoch == 0 or names_changed or regex_changed
        if metadata != group.subscribed_metadata:
            group.subscribed_metadata = metadata
            bump = True
        if bump:
            group.group_epoch += 1
            self._changed(group)
        if group.group_epoch > group.assignment_epoch:
            self._assign(group)
        member = group.members[member_id]
        self._reconcile(group, member, names_changed or regex_changed, req.topic_partitions)
        self._timers.set(
            (SESSION_TIMER, group.group_id, member_id), self._now + self.config.session_timeout_ms
        )

        full = (
            req.rebalance_timeout_ms != -1
            and (req.subscribed_topic_names is not None or req.subscribed_topic_regex is not None)
            and req.topic_partitions is not None
        )
        assigned = member.assignment.assigned
        send = joining or full or assigned != old.assignment.assigned
        return HeartbeatOutput(
            ErrorCode.NONE,
            member_id=member_id,
            member_epoch=member.member_epoch,
            heartbeat_interval_ms=self.config.heartbeat_interval_ms,
            assignment=_wire(assigned.items()) if send else None,
        )

    def _find_member(
        self, group: ConsumerGroup, req: HeartbeatInput, member_id: str
    ) -> tuple[ConsumerMember, ConsumerMember | None]:
        """The member the request speaks for (a new one when joining), and the static member
        it replaces, if any. Checks ids and epochs; changes nothing."""
        joining = req.member_epoch == JOIN_EPOCH
        instance_id = req.instance_id
        if instance_id is None:
            member = group.members.get(member_id)
            if member is None:
                if not joining:
                    raise Reject(
                        ErrorCode.UNKNOWN_MEMBER_ID,
                        f"Member {member_id} is not a member of group {group.group_id}.",
                    )
                return ConsumerMember(member_id), None
            self._check_epoch(member, req)
            return member, None
        existing_id = group.static_members.get(instance_id)
        existing = group.members.get(existing_id) if existing_id is not None else None
        if joining:
            if existing is None:
                return group.members.get(member_id) or ConsumerMember(member_id), None
            if existing.member_id == member_id:
                return existing, None  # the same member rejoining after being fenced
            if existing.member_epoch != STATIC_LEAVE_EPOCH:
                raise Reject(
                    ErrorCode.UNRELEASED_INSTANCE_ID,
                    f"Static member {member_id} with instance id {instance_id} cannot join the "
                    f"group because the instance id is owned by {existing.member_id} member.",
                )
            return copy_member(existing, member_id), existing
        if existing is None:
            raise Reject(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
        if existing.member_id != member_id:
            raise Reject(
                ErrorCode.FENCED_INSTANCE_ID,
                f"Static member {member_id} with instance id {instance_id} was fenced by "
                f"member {existing.member_id}.",
            )
        self._check_epoch(existing, req)
        return existing, None

    @staticmethod
    def _check_epoch(member: ConsumerMember, req: HeartbeatInput) -> None:
        """FENCED_MEMBER_EPOCH unless the epoch is the member's, 0 (rejoin), or its previous
        one with ownership within its assignment (the answer that bumped it was lost)."""
        received, known = req.member_epoch, member.member_epoch
        if received in (JOIN_EPOCH, known):
            return
        if received > known:
            relation = "greater"
        else:
            previous = member.assignment.previous_member_epoch
            if received == previous and _within(req.topic_partitions, member):
                return
            relation = "smaller"
        raise Reject(
            ErrorCode.FENCED_MEMBER_EPOCH,
            f"The consumer group member has a {relation} member epoch ({received}) than the "
            f"one known by the group coordinator ({known}). The member must abandon all its "
            "partitions and rejoin.",
        )

    @staticmethod
    def _updated(old: ConsumerMember, req: HeartbeatInput) -> ConsumerMember:
        """The member with the request's changes applied (None fields keep their value)."""
        names = old.subscribed_topic_names
        if req.subscribed_topic_names is not None:
            names = tuple(sorted(set(req.subscribed_topic_names)))
        regex = old.subscribed_topic_regex
        if req.subscribed_topic_regex is not None:
            regex = req.subscribed_topic_regex or None
        return replace(
            old,
            instance_id=req.instance_id if req.instance_id is not None else old.instance_id,
            rack_id=req.rack_id if req.rack_id is not None else old.rack_id,
            rebalance_timeout_ms=(
                req.rebalance_timeout_ms
                if req.rebalance_timeout_ms != -1
                else old.rebalance_timeout_ms
            ),
            server_assignor=(
                req.server_assignor if req.server_assignor is not None else old.server_assignor
            ),
            subscribed_topic_names=names,
            subscribed_topic_regex=regex,
            client_id=req.client_id,
            client_host=req.client_host,
        )

    # ------------------------------------------------------------------------------------------
    # Leaving
    # ------------------------------------------------------------------------------------------

    def _leave(self, req: HeartbeatInput) -> HeartbeatOutput:
        group = self._groups.get(req.group_id)
        if group is None:
            raise Reject(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {req.group_id} not found.")
        if req.instance_id is None:
            member = group.members.get(req.member_id)
            if member is None:
                raise Reject(
                    ErrorCode.UNKNOWN_MEMBER_ID,
                    f"Member {req.member_id} is not a member of group {group.group_id}.",
                )
        else:
            existing_id = group.static_members.get(req.instance_id)
            if existing_id is None:
                raise Reject(
                    ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {req.instance_id} is unknown."
                )
            if existing_id != req.member_id:
                raise Reject(
                    ErrorCode.FENCED_INSTANCE_ID,
                    f"Static member {req.member_id} with instance id {req.instance_id} was "
                    f"fenced by member {existing_id}.",
                )
            member = group.members[existing_id]
            if req.member_epoch == STATIC_LEAVE_EPOCH:
                # A temporary leave: the member keeps its partitions (nobody else gets them)
                # until it rejoins or its session, still running, expires.
                leaving = replace(
                    member.assignment, member_epoch=STATIC_LEAVE_EPOCH, pending_revocation={}
                )
                group.set_assignment(member, leaving)
                self._cancel_revocation_timer(group, member)
                self._changed(group)
                return HeartbeatOutput(
                    ErrorCode.NONE, member_id=member.member_id, member_epoch=STATIC_LEAVE_EPOCH
                )
        self._fence(group, member)
        return HeartbeatOutput(ErrorCode.NONE, member_id=req.member_id, member_epoch=LEAVE_EPOCH)

    def _fence(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        """Remove the member (leave, session or rebalance timeout) and bump the group epoch;
        the new target assignment is computed at the next heartbeat, as in Kafka."""
        self._drop(group, member)
        group.subscribed_metadata = group.current_metadata(self._topics)
        group.group_epoch += 1
        self._changed(group)

    def _drop(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        group.remove(member.member_id)
        self._timers.cancel((SESSION_TIMER, group.group_id, member.member_id))
        self._timers.cancel((REVOKE_TIMER, group.group_id, member.member_id))
        if member.subscribed_topic_regex and member.subscribed_topic_regex not in group.regexes():
            group.resolved_regexes.pop(member.subscribed_topic_regex, None)

    # ------------------------------------------------------------------------------------------
    # Assignment and reconciliation
    # ------------------------------------------------------------------------------------------

    def _maybe_resolve_regexes(self, group: ConsumerGroup, *, force: bool) -> None:
        regexes = group.regexes()
        due = self._now >= group.resolved_at_ms + self.config.regex_refresh_interval_ms
        if force or (regexes and (due or regexes != set(group.resolved_regexes))):
            before = dict(group.resolved_regexes)
            group.resolve_regexes(self._topics, self._now)
            if group.resolved_regexes != before:
                self._changed(group)

    def _assign(self, group: ConsumerGroup) -> None:
        """Compute the target assignment of the group's current epoch."""
        name = group.preferred_assignor(self.default_assignor)
        assignor = ASSIGNORS.get(name) or ASSIGNORS[self.default_assignor]
        partitions = {
            tid: count
            for tid, count in group.subscribed_metadata.values()
            if tid is not None and count > 0
        }
        spec = AssignmentSpec(
            members={
                mid: MemberSpec(
                    subscribed_topic_ids=group.subscribed_ids(m, self._topics),
                    current=group.target.get(mid, {}),
                    rack_id=m.rack_id,
                    instance_id=m.instance_id,
                )
                for mid, m in group.members.items()
            },
            partitions=partitions,
        )
        result = assignor.assign(spec)
        group.target = {mid: result.get(mid, {}) for mid in group.members}
        group.assignment_epoch = group.group_epoch
        self._changed(group)

    def _reconcile(
        self,
        group: ConsumerGroup,
        member: ConsumerMember,
        subscription_changed: bool,
        owned: Sequence[TopicPartitions] | None,
    ) -> None:
        new = reconcile(
            member.member_id,
            member.assignment,
            target_epoch=group.assignment_epoch,
            target=group.target.get(member.member_id, {}),
            subscribed=group.subscribed_ids(member, self._topics),
            owner=group.owner,
            owned=owned,
            subscription_changed=subscription_changed,
        )
        if new == member.assignment:
            return
        group.set_assignment(member, new)
        self._changed(group)
        if new.state is MemberState.UNREVOKED_PARTITIONS:
            # Kafka's rebalance timeout: revoke within the member's rebalance timeout.
            member.revocation_timer_epoch = new.member_epoch
            key = (REVOKE_TIMER, group.group_id, member.member_id)
            self._timers.set(key, self._now + max(member.rebalance_timeout_ms, 1))
        else:
            self._cancel_revocation_timer(group, member)

    def _cancel_revocation_timer(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        member.revocation_timer_epoch = None
        self._timers.cancel((REVOKE_TIMER, group.group_id, member.member_id))

    # ------------------------------------------------------------------------------------------
    # Time and topics
    # ------------------------------------------------------------------------------------------

    @entry
    def tick(self) -> None:
        """Run every deadline that is due at clock()."""
        while (key := self._timers.pop_due(self._now)) is not None:
            self._fire(key)

    def _fire(self, key: Hashable) -> None:
        assert isinstance(key, tuple)
        kind, group_id, member_id = key
        group = self._groups.get(group_id)
        member = group.members.get(member_id) if group is not None else None
        if group is None or member is None:
            return
        # A revocation deadline only counts if the member is still stuck in that epoch.
        stuck = kind == REVOKE_TIMER and member.revocation_timer_epoch == member.member_epoch
        if kind == SESSION_TIMER or stuck:
            self._fence(group, member)

    @entry
    def on_metadata_change(self) -> None:
        """Topics were created or deleted, or gained partitions: re-resolve subscription
        regexes and bump the epoch of every group whose subscribed topics changed."""
        for group in self._groups.values():
            if group.regexes():
                self._maybe_resolve_regexes(group, force=True)
            metadata = group.current_metadata(self._topics)
            if metadata != group.subscribed_metadata:
                group.subscribed_metadata = metadata
                group.group_epoch += 1
                self._changed(group)


def _within(owned: Sequence[TopicPartitions] | None, member: ConsumerMember) -> bool:
    """Kafka's isSubset: every reported partition is in the member's assignment."""
    if owned is None:
        return False
    assigned = member.assignment.assigned
    return all(
        topic_id in assigned and all(p in assigned[topic_id] for p in partitions)
        for topic_id, partitions in owned
    )


__all__ = [
    "ConsumerGroupChanged",
    "ConsumerGroupConfig",
    "ConsumerGroupCoordinator",
    "ConsumerGroupDeleted",
    "ConsumerGroupDescription",
    "ConsumerGroupEvent",
    "ConsumerGroupMemberDescription",
    "ConsumerGroupSnapshot",
    "ConsumerGroupState",
    "ConsumerMemberSnapshot",
    "DescribedTopicPartitions",
    "HeartbeatInput",
    "HeartbeatOutput",
    "MemberAssignment",
    "MemberState",
    "TopicView",
]
