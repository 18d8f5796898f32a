"""Administration of KIP-848 consumer groups: ConsumerGroupDescribe, ListGroups, DeleteGroups,
the member-epoch checks of OffsetCommit / OffsetFetch v9+, and loading groups back."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from riverbed.coordinator.consumer_group_core import (
    GROUP_TYPE,
    REVOKE_TIMER,
    SESSION_TIMER,
    ConsumerCoordinatorCore,
    entry,
)
from riverbed.coordinator.consumer_group_model import ConsumerGroup
from riverbed.coordinator.consumer_group_types import (
    ConsumerGroupDescription,
    ConsumerGroupMemberDescription,
    ConsumerGroupSnapshot,
    DescribedTopicPartitions,
    MemberState,
)
from riverbed.protocol.errors import ErrorCode


class ConsumerGroupAdmin(ConsumerCoordinatorCore):
    """Describe, list, delete, offset checks and recovery."""

    # ------------------------------------------------------------------------------------------
    # Administration
    # ------------------------------------------------------------------------------------------

    @entry
    def describe(self, group_ids: Sequence[str]) -> list[ConsumerGroupDescription]:
        """ConsumerGroupDescribe; unknown groups get GROUP_ID_NOT_FOUND (as Kafka)."""
        out: list[ConsumerGroupDescription] = []
        for group_id in group_ids:
            group = self._groups.get(group_id)
            if not group_id.strip():
                out.append(ConsumerGroupDescription(group_id, ErrorCode.INVALID_GROUP_ID))
            elif group is None:
                message = f"Group {group_id} not found."
                out.append(
                    ConsumerGroupDescription(group_id, ErrorCode.GROUP_ID_NOT_FOUND, message)
                )
            else:
                out.append(self._describe(group))
        return out

    def _describe(self, group: ConsumerGroup) -> ConsumerGroupDescription:
        def named(
            assignment: Iterable[tuple[uuid.UUID, frozenset[int]]],
        ) -> list[DescribedTopicPartitions]:
            out: list[DescribedTopicPartitions] = []
            for topic_id, partitions in sorted(assignment):
                name = self._topics.topic_name(topic_id)
                if name is not None and partitions:
                    out.append(DescribedTopicPartitions(topic_id, name, sorted(partitions)))
            return out

        members = [
            ConsumerGroupMemberDescription(
                member_id=m.member_id,
                instance_id=m.instance_id,
                rack_id=m.rack_id,
                member_epoch=m.member_epoch,
                client_id=m.client_id,
                client_host=m.client_host,
                subscribed_topic_names=list(m.subscribed_topic_names),
                subscribed_topic_regex=m.subscribed_topic_regex,
                assignment=named(m.assignment.assigned.items()),
                target_assignment=named(group.target.get(m.member_id, {}).items()),
            )
            for m in group.members.values()
        ]
        return ConsumerGroupDescription(
            group_id=group.group_id,
            group_state=group.state.value,
            group_epoch=group.group_epoch,
            assignment_epoch=group.assignment_epoch,
            assignor_name=group.preferred_assignor(self.default_assignor),
            members=members,
        )

    @entry
    def list_groups(
        self, states: Iterable[str] | None = None, types: Iterable[str] | None = None
    ) -> list[tuple[str, str, str]]:
        """ListGroups: (group id, group type "consumer", state). Filters are
        case-insensitive; an empty or missing filter matches everything."""
        wanted_types = {t.lower() for t in types} if types else None
        if wanted_types is not None and GROUP_TYPE not in wanted_types:
            return []
        wanted = {s.lower().strip() for s in states} if states else None
        return [
            (group_id, GROUP_TYPE, group.state.value)
            for group_id, group in self._groups.items()
            if wanted is None or group.state.value.lower() in wanted
        ]

    @entry
    def delete_group(self, group_id: str) -> int:
        """DeleteGroups for one consumer group: only an Empty group can go."""
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.GROUP_ID_NOT_FOUND
        if group.members:
            return ErrorCode.NON_EMPTY_GROUP
        del self._groups[group_id]
        self._changed(group)
        return ErrorCode.NONE

    # ------------------------------------------------------------------------------------------
    # Offsets: the member epoch as generation (OffsetCommit / OffsetFetch v9+)
    # ------------------------------------------------------------------------------------------

    def commit_allowed(
        self, group_id: str, member_id: str, member_epoch: int, api_version: int = 9
    ) -> int:
        """May this OffsetCommit go ahead? (Kafka's ConsumerGroup.validateOffsetCommit.)

        NONE for the member's current epoch, or for epoch < 0 (admin / assign()) while the
        group is empty; UNKNOWN_MEMBER_ID for a member not in the group; UNSUPPORTED_VERSION
        below OffsetCommit v9; STALE_MEMBER_EPOCH for any other epoch. GROUP_ID_NOT_FOUND
        when this coordinator does not know the group (the broker decides what that means)."""
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.GROUP_ID_NOT_FOUND
        if member_epoch < 0 and not group.members:
            return ErrorCode.NONE
        member = group.members.get(member_id)
        if member is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if api_version < 9:
            return ErrorCode.UNSUPPORTED_VERSION
        if member_epoch != member.member_epoch:
            return ErrorCode.STALE_MEMBER_EPOCH
        return ErrorCode.NONE

    def fetch_allowed(self, group_id: str, member_id: str | None, member_epoch: int) -> int:
        """OffsetFetch v9+: anyone without a member id and epoch -1 may read; members must
        give their current epoch (Kafka's ConsumerGroup.validateOffsetFetch)."""
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.GROUP_ID_NOT_FOUND
        if member_id is None and member_epoch < 0:
            return ErrorCode.NONE
        member = group.members.get(member_id or "")
        if member is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if member_epoch != member.member_epoch:
            return ErrorCode.STALE_MEMBER_EPOCH
        return ErrorCode.NONE

    @entry
    def load(self, group_id: str, snapshot: ConsumerGroupSnapshot | None) -> None:
        """Replay one group (None = deleted). Emits nothing. Every member's session starts
        now; members that were revoking get a fresh rebalance timeout."""
        old = self._groups.pop(group_id, None)
        if old is not None:
            for member_id in old.members:
                self._timers.cancel((SESSION_TIMER, group_id, member_id))
                self._timers.cancel((REVOKE_TIMER, group_id, member_id))
        if snapshot is None:
            return
        group = ConsumerGroup.from_snapshot(group_id, snapshot)
        self._groups[group_id] = group
        for member in group.members.values():
            deadline = self._now + self.config.session_timeout_ms
            self._timers.set((SESSION_TIMER, group_id, member.member_id), deadline)
            if member.assignment.state is MemberState.UNREVOKED_PARTITIONS:
                member.revocation_timer_epoch = member.member_epoch
                deadline = self._now + max(member.rebalance_timeout_ms, 1)
                self._timers.set((REVOKE_TIMER, group_id, member.member_id), deadline)
