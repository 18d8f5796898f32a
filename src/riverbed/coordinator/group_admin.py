"""Group administration: ListGroups, DescribeGroups, DeleteGroups, and reloading groups
from __consumer_offsets."""

from __future__ import annotations

from riverbed.coordinator.delivers import delivers
from riverbed.coordinator.group_core import DEAD, EMPTY, STABLE
from riverbed.coordinator.group_model import Member
from riverbed.coordinator.group_offsets import GroupOffsets
from riverbed.coordinator.group_types import (
    GroupDescription,
    GroupSnapshot,
    JoinResult,
    MemberDescription,
    SyncResult,
)
from riverbed.coordinator.write_errors import group_write_error
from riverbed.protocol.errors import ErrorCode


class GroupAdmin(GroupOffsets):
    """ListGroups, DescribeGroups, DeleteGroups and recovery from __consumer_offsets."""

    @delivers
    def list_groups(
        self, states: set[str] | None, types: set[str] | None = None
    ) -> list[tuple[str, str, str]]:
        """ListGroups: (group id, protocol type, state). `states` filters by state name and
        `types` by group type (KIP-848; every group here is "classic"), both case-insensitive;
        an empty or missing filter matches everything."""
        if types and "classic" not in {t.lower() for t in types}:
            return []
        wanted = {s.lower() for s in states} if states else None
        return [
            (group_id, group.protocol_type or "", group.state.value)
            for group_id, group in self._groups.items()
            if wanted is None or group.state.value.lower() in wanted
        ]

    @delivers
    def describe_group(self, group_id: str) -> GroupDescription:
        """DescribeGroups for one group. Unknown groups are reported as Dead with no error, and
        only a Stable group shows its protocol, member metadata and assignments (as Kafka)."""
        group = self._groups.get(group_id)
        if group is None or group.state is DEAD:
            return GroupDescription(group_id, ErrorCode.NONE, DEAD.value, "", "", [])
        stable = group.state is STABLE
        members = [
            MemberDescription(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                metadata=m.metadata(group.protocol) if stable else b"",
                assignment=m.assignment if stable else b"",
            )
            for m in group.members.values()
        ]
        protocol = (group.protocol or "") if stable else ""
        return GroupDescription(
            group_id,
            ErrorCode.NONE,
            group.state.value,
            group.protocol_type or "",
            protocol,
            members,
        )

    @delivers
    def delete_groups(self, group_ids: list[str]) -> list[tuple[str, int]]:
        results: list[tuple[str, int]] = []
        for group_id in group_ids:
            group = self._groups.get(group_id)
            if group is None or group.state is DEAD:
                results.append((group_id, ErrorCode.GROUP_ID_NOT_FOUND))
            elif group.state is not EMPTY:
                results.append((group_id, ErrorCode.NON_EMPTY_GROUP))
            else:
                index = len(results)
                results.append((group_id, ErrorCode.NONE))

                def failed(code: int, index: int = index, group_id: str = group_id) -> None:
                    results[index] = (group_id, group_write_error(code))

                self._delete_group(group, failed)
        return results

    @delivers
    def load_group(self, group_id: str, snapshot: GroupSnapshot | None) -> None:
        """Replay one group metadata record (None = tombstone). A group with members comes back
        Stable and every member must heartbeat within its session timeout from now."""
        old = self._groups.get(group_id)
        offsets = old.offsets if old is not None else {}
        # transactional offsets waiting for their marker survive a metadata record (a
        # rebalance during a transaction), as Kafka keeps them apart from the group
        pending_txn = old.pending_txn if old is not None else {}
        offset_seq = old.offset_seq if old is not None else {}
        if old is not None:
            # Only possible if the log is replayed while serving: parked requests start over.
            retry = ErrorCode.REBALANCE_IN_PROGRESS
            for member in old.members.values():
                self._answer_join(member.join_reply, JoinResult(retry, member_id=member.member_id))
                self._answer_sync(member.sync_reply, SyncResult(retry))
                member.join_reply = member.sync_reply = None
            self._forget(old)
        if snapshot is None:
            if offsets or pending_txn:  # offsets committed after the group was deleted live on
                group = self._create_group(group_id)
                group.offsets, group.pending_txn, group.offset_seq = offsets, pending_txn, offset_seq
                self._check_expiry_soon(group)
            return
        group = self._create_group(group_id)
        group.offsets, group.pending_txn, group.offset_seq = offsets, pending_txn, offset_seq
        group.protocol_type = snapshot.protocol_type or None
        group.generation = snapshot.generation
        group.protocol = snapshot.protocol
        group.state_timestamp = snapshot.state_timestamp
        if snapshot.members and snapshot.protocol:
            for ms in snapshot.members:
                member = Member(
                    member_id=ms.member_id,
                    group_instance_id=ms.group_instance_id,
                    client_id=ms.client_id,
                    client_host=ms.client_host,
                    rebalance_timeout_ms=ms.rebalance_timeout,
                    session_timeout_ms=ms.session_timeout,
                    protocol_type=snapshot.protocol_type,
                    protocols=[(snapshot.protocol, ms.subscription)],
                    assignment=ms.assignment,
                )
                group.add(member)
                self._reset_session(group, member)
            if snapshot.leader in group.members:
                group.leader = snapshot.leader
            group.state = group.previous_state = STABLE
        else:
            group.protocol = None
            group.leader = None
        group.subscribed = group.compute_subscribed()
        self._check_expiry_soon(group)
