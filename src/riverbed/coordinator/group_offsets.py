"""Committed offsets of classic groups: OffsetCommit, OffsetFetch, OffsetDelete, expiry
(offsets.retention.minutes) and the deletion of Empty groups that have nothing left."""

from __future__ import annotations

from collections.abc import Callable

from riverbed.coordinator.delivers import delivers
from riverbed.coordinator.group_core import (
    COMPLETING,
    DEAD,
    EMPTY,
    EXPIRE_TIMER,
    PREPARING,
    STABLE,
    CoordinatorCore,
)
from riverbed.coordinator.group_model import Group
from riverbed.coordinator.group_states import Trigger
from riverbed.coordinator.group_types import (
    CONSUMER_PROTOCOL_TYPE,
    GroupDeleted,
    OffsetAndMetadata,
    OffsetsCommitted,
    OffsetsDeleted,
)
from riverbed.coordinator.write_errors import group_write_error, offset_commit_write_error
from riverbed.protocol.errors import ErrorCode


class GroupOffsets(CoordinatorCore):
    """OffsetCommit / OffsetFetch / OffsetDelete, offset expiry and group deletion."""

    @delivers
    def commit_offsets(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        generation_id: int,
        offsets: list[tuple[str, int, int, int, str | None]],
    ) -> list[tuple[str, int, int]]:
        """OffsetCommit: offsets are (topic, partition, offset, leader_epoch, metadata).

        The offsets become visible (OffsetFetch, expiry) only once their records are written;
        if the write fails, nothing changes and those partitions answer the mapped error
        (``write_errors.offset_commit_write_error``: NOT_COORDINATOR for a full disk)."""
        group = self._groups.get(group_id)
        created = group is None
        if group is None:
            if generation_id >= 0:  # a member of a group we do not know (any more)
                return [(t, p, ErrorCode.ILLEGAL_GENERATION) for t, p, *_ in offsets]
            group = self._create_group(group_id)  # standalone (assign()) offset storage
        error = self._commit_error(group, member_id, group_instance_id, generation_id)
        if error:
            return [(t, p, error) for t, p, *_ in offsets]
        member = group.members.get(member_id)
        if member is not None:
            self._reset_session(group, member)  # a commit from a member proves it is alive
        now = self._now
        results: list[tuple[str, int, int]] = []
        committed: list[tuple[str, int, OffsetAndMetadata]] = []
        for topic, partition, offset, leader_epoch, metadata in offsets:
            text = metadata or ""
            if len(text) > self.config.max_metadata_size:
                results.append((topic, partition, ErrorCode.OFFSET_METADATA_TOO_LARGE))
                continue
            committed.append((topic, partition, OffsetAndMetadata(offset, leader_epoch, text, now)))
            results.append((topic, partition, ErrorCode.NONE))
        if not committed:
            return results
        the_group = group

        def written() -> None:
            if self._groups.get(group_id) is not the_group:
                return  # deleted meanwhile (cannot happen within one call)
            for topic, partition, value in committed:
                the_group.offsets[(topic, partition)] = value
                the_group.offset_seq[(topic, partition)] = self._next_seq()
            self._expire_no_later_than(the_group, committed)

        def failed(code: int) -> None:
            mapped = offset_commit_write_error(code)
            for i, (topic, partition, err) in enumerate(results):
                if err == ErrorCode.NONE:
                    results[i] = (topic, partition, mapped)
            if created and the_group.is_unused() and self._groups.get(group_id) is the_group:
                self._forget(the_group)  # the standalone group existed only for this commit

        self._emit(OffsetsCommitted(group_id, committed), written, failed)
        return results

    def _commit_error(
        self,
        group: Group,
        member_id: str,
        instance_id: str | None,
        generation_id: int,
        transactional: bool = False,
    ) -> ErrorCode:
        if group.state is DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if generation_id < 0 and group.state is EMPTY:
            return ErrorCode.NONE  # admin or assign() consumer: allowed while nobody is in it
        if generation_id >= 0 or member_id or instance_id is not None:
            error = group.validate_member(member_id, instance_id)
            if error:
                return error
            if generation_id != group.generation:
                return ErrorCode.ILLEGAL_GENERATION
        elif not transactional:
            return ErrorCode.UNKNOWN_MEMBER_ID  # generation -1 while the group has members
        else:
            return ErrorCode.NONE  # a transactional producer without group metadata (pre-KIP-447)
        if group.state is COMPLETING and not transactional:
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    # -- transactional offsets (TxnOffsetCommit) -----------------------------------------------

    @delivers
    def txn_commit_error(
        self, group_id: str, member_id: str, group_instance_id: str | None, generation_id: int
    ) -> ErrorCode:
        """TxnOffsetCommit's checks, without changing anything (Kafka's validateOffsetCommit
        for a transactional commit: a producer that sends no group metadata, generation -1 and
        no member id, may commit whatever the group's state; otherwise the member and its
        generation must be current; a rebalance in progress does not block it)."""
        group = self._groups.get(group_id)
        if group is None:
            if member_id or group_instance_id is not None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            return ErrorCode.NONE if generation_id < 0 else ErrorCode.ILLEGAL_GENERATION
        return self._commit_error(group, member_id, group_instance_id, generation_id, transactional=True)

    @delivers
    def add_pending_txn_offsets(
        self, group_id: str, producer_id: int, offsets: list[tuple[str, int, OffsetAndMetadata]]
    ) -> None:
        """Offsets written by TxnOffsetCommit (or found in the log during replay) wait for the
        transaction's marker: :meth:`complete_txn`. Emits nothing (the broker wrote them)."""
        group = self._groups.get(group_id)
        if group is None:
            group = self._create_group(group_id)
        pending = group.pending_txn.setdefault(producer_id, {})
        for topic, partition, value in offsets:
            pending[(topic, partition)] = (self._next_seq(), value)

    @delivers
    def complete_txn(self, group_id: str, producer_id: int, commit: bool) -> bool:
        """The marker of ``producer_id``'s transaction reached the group's partition: a commit
        makes its pending offsets the committed ones, an abort drops them. Returns whether the
        group had any. Emits nothing: the records and the marker are in the log already, and
        a replay reaches the same state."""
        group = self._groups.get(group_id)
        if group is None:
            return False
        pending = group.pending_txn.pop(producer_id, None)
        if pending is None:
            return False
        if commit:
            # Kafka's completePendingTxnOffsetCommit: a transactional offset replaces the
            # committed one only if it was written after it
            committed = []
            for (t, p), (seq, value) in pending.items():
                if group.offset_seq.get((t, p), 0) < seq:
                    group.offsets[(t, p)] = value
                    group.offset_seq[(t, p)] = seq
                    committed.append((t, p, value))
            self._expire_no_later_than(group, committed)
        self._schedule_expiry(group)
        return True

    def has_pending_txn(self, group_id: str, topic: str, partition: int) -> bool:
        group = self._groups.get(group_id)
        if group is None:
            return False
        return any((topic, partition) in offsets for offsets in group.pending_txn.values())

    @delivers
    def fetch_offsets(
        self,
        group_id: str,
        partitions: list[tuple[str, int]] | None,
        require_stable: bool = False,
    ) -> tuple[int, list[tuple[str, int, int, int, str | None, int]]]:
        """OffsetFetch: (offset, leader_epoch, metadata) per partition; -1 / -1 / "" when the
        group has no commit for it. `partitions=None` lists every committed partition. With
        ``require_stable`` (KIP-447), a partition with a transactional commit waiting for its
        marker answers UNSTABLE_OFFSET_COMMIT and the client asks again."""
        group = self._groups.get(group_id)
        stored = group.offsets if group is not None else {}
        wanted = list(stored) if partitions is None else partitions
        unstable: set[tuple[str, int]] = set()
        if require_stable and group is not None:
            for offsets in group.pending_txn.values():
                unstable.update(offsets)
        out: list[tuple[str, int, int, int, str | None, int]] = []
        for topic, partition in wanted:
            value = stored.get((topic, partition))
            if (topic, partition) in unstable:
                out.append((topic, partition, -1, -1, "", ErrorCode.UNSTABLE_OFFSET_COMMIT))
            elif value is None:
                out.append((topic, partition, -1, -1, "", ErrorCode.NONE))
            else:
                out.append(
                    (
                        topic,
                        partition,
                        value.offset,
                        value.leader_epoch,
                        value.metadata,
                        ErrorCode.NONE,
                    )
                )
        return ErrorCode.NONE, out

    def delete_offsets(
        self, group_id: str, partitions: list[tuple[str, int]]
    ) -> tuple[int, list[tuple[str, int, int]]]:
        """OffsetDelete: refused per partition (GROUP_SUBSCRIBED_TO_TOPIC) for topics the
        members consume; refused whole (NON_EMPTY_GROUP) for an active non-consumer group.
        The offsets go once their tombstones are written; if that write fails nothing
        changes and the whole request answers the mapped error (NOT_COORDINATOR for a full
        disk), as Kafka fails the operation."""
        failure: list[int] = []
        error, results = self._delete_offsets(group_id, partitions, failure)
        if failure:
            return failure[0], []
        return error, results

    @delivers
    def _delete_offsets(
        self, group_id: str, partitions: list[tuple[str, int]], failure: list[int]
    ) -> tuple[int, list[tuple[str, int, int]]]:
        group = self._groups.get(group_id)
        if group is None or group.state is DEAD:
            return ErrorCode.GROUP_ID_NOT_FOUND, []
        active = group.state in (PREPARING, COMPLETING, STABLE)
        if active and group.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return ErrorCode.NON_EMPTY_GROUP, []
        results: list[tuple[str, int, int]] = []
        deleted: list[tuple[str, int]] = []
        for topic, partition in partitions:
            if group.is_subscribed(topic):
                results.append((topic, partition, ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC))
                continue
            if (topic, partition) in group.offsets and (topic, partition) not in deleted:
                deleted.append((topic, partition))
            results.append((topic, partition, ErrorCode.NONE))
        if deleted:
            the_group = group

            def written() -> None:
                for key in deleted:
                    the_group.offsets.pop(key, None)
                    the_group.offset_seq.pop(key, None)
                self._schedule_expiry(the_group)

            self._emit(OffsetsDeleted(group_id, deleted), written, lambda code: failure.append(group_write_error(code)))
        return ErrorCode.NONE, results

    @delivers
    def load_offset(
        self, group_id: str, topic: str, partition: int, value: OffsetAndMetadata | None
    ) -> None:
        """Replay one offset record (None = tombstone). Emits nothing."""
        group = self._groups.get(group_id)
        if group is None:
            if value is None:
                return
            group = self._create_group(group_id)
        if value is None:
            group.offsets.pop((topic, partition), None)
            group.offset_seq.pop((topic, partition), None)
        else:
            group.offsets[(topic, partition)] = value
            group.offset_seq[(topic, partition)] = self._next_seq()
        self._check_expiry_soon(group)

    def _expire_no_later_than(
        self, group: Group, committed: list[tuple[str, int, OffsetAndMetadata]]
    ) -> None:
        """After a commit: bring the expiry check forward if a new offset expires earlier."""
        base = group.offset_expiry_base()
        if base is None:
            return
        retention = self.config.offsets_retention_ms
        for topic, _, value in committed:
            deadline = group.offset_deadline(base, topic, value, retention)
            current = self._timers.get((EXPIRE_TIMER, group.group_id))
            if deadline is not None and (current is None or deadline < current):
                self._timers.set((EXPIRE_TIMER, group.group_id), deadline)

    def _expiry_deadline(self, group: Group) -> int | None:
        """When the group next needs an expiry pass: its first offset to expire, or (Empty,
        no offsets, nobody pending) its deletion."""
        if group.state is EMPTY and not group.offsets:
            if group.pending_members or group.pending_txn:
                return None
            return max(group.state_timestamp, 0) + self.config.offsets_retention_check_interval_ms
        base = group.offset_expiry_base()
        if base is None:
            return None
        retention = self.config.offsets_retention_ms
        deadlines = (
            group.offset_deadline(base, topic, value, retention)
            for (topic, _), value in group.offsets.items()
        )
        return min((d for d in deadlines if d is not None), default=None)

    def _schedule_expiry(self, group: Group) -> None:
        deadline = self._expiry_deadline(group)
        if deadline is None:
            self._timers.cancel((EXPIRE_TIMER, group.group_id))
        else:
            self._timers.set((EXPIRE_TIMER, group.group_id), deadline)

    def _check_expiry_soon(self, group: Group) -> None:
        # While loading, an exact deadline would cost a pass over the group's offsets per
        # record; the first tick computes it instead.
        key = (EXPIRE_TIMER, group.group_id)
        current = self._timers.get(key)
        if current is None or current > self._now:
            self._timers.set(key, self._now)

    def _on_expiry_deadline(self, group: Group) -> None:
        now = self._now
        base = group.offset_expiry_base()
        if base is not None:
            retention = self.config.offsets_retention_ms
            expired = []
            for (topic, partition), value in group.offsets.items():
                deadline = group.offset_deadline(base, topic, value, retention)
                if deadline is not None and deadline <= now:
                    expired.append((topic, partition))
            for key in expired:
                del group.offsets[key]
                group.offset_seq.pop(key, None)
            if expired:
                self._emit(OffsetsDeleted(group.group_id, expired))
        deadline = self._expiry_deadline(group)
        if group.state is EMPTY and not group.offsets and deadline is not None and deadline <= now:
            self._delete_group(group)
        else:
            self._schedule_expiry(group)

    def _create_group(self, group_id: str) -> Group:
        group = Group(group_id=group_id, state_timestamp=self._now)
        self._groups[group_id] = group
        self._schedule_expiry(group)
        return group

    def _delete_group(self, group: Group, on_failed: Callable[[int], None] | None = None) -> None:
        """Tombstones for the group's offsets and metadata; the group goes once they are
        written. If that fails: with ``on_failed`` (DeleteGroups) the group stays as it was;
        without (expiry) it goes anyway, as Kafka only logs a failed cleanup write."""
        offsets = list(group.offsets)
        gid = group.group_id

        def written() -> None:
            if self._groups.get(gid) is not group:
                return  # deleted twice in one call
            group.offsets.clear()
            group.offset_seq.clear()
            self._transition(group, Trigger.DELETED)
            self._forget(group)

        self._emit(GroupDeleted(gid, offsets), written, on_failed or (lambda _code: written()))
