"""Plumbing shared by the classic group coordinator's layers: the group registry, the timer
queue, the outbox of replies and events, and the one way to change a group's state.

The coordinator is split by API family, each layer a class on top of the previous one:
CoordinatorCore (this module) <- GroupOffsets (group_offsets.py) <- GroupAdmin
(group_admin.py) <- GroupCoordinator (group.py: membership and rebalances).
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from riverbed.coordinator.group_model import Group, Member
from riverbed.coordinator.group_states import Trigger, next_state
from riverbed.coordinator.group_timers import TimerQueue
from riverbed.coordinator.group_types import (
    GroupConfig,
    GroupEvent,
    GroupSnapshot,
    GroupState,
    JoinCallback,
    JoinResult,
    SyncCallback,
    SyncResult,
)
from riverbed.protocol.errors import KafkaError

EMPTY = GroupState.EMPTY
PREPARING = GroupState.PREPARING_REBALANCE
COMPLETING = GroupState.COMPLETING_REBALANCE
STABLE = GroupState.STABLE
DEAD = GroupState.DEAD

# Timer keys: (kind, group id[, member id]).
JOIN_TIMER = "join"  # end of the join phase (initial delay or rebalance timeout)
SYNC_TIMER = "sync"  # members of the new generation must SyncGroup before this
MEMBER_TIMER = "member"  # a member's session (or new-member join timeout, or pending expiry)
EXPIRE_TIMER = "expire"  # next offset expiry / empty-group cleanup



class CoordinatorCore:
    """Registry, timers and outbox shared by the coordinator's layers (no public API of its
    own beyond snapshots, state and `next_deadline`)."""

    def __init__(
        self,
        clock: Callable[[], int],
        config: GroupConfig | None = None,
        *,
        on_change: Callable[[GroupEvent], None] | None = None,
        new_uuid: Callable[[], str] | None = None,
    ) -> None:
        self._clock = clock
        self.config = config or GroupConfig()
        self._on_change = on_change
        self._new_uuid = new_uuid or (lambda: str(uuid.uuid4()))
        self._groups: dict[str, Group] = {}
        self._timers = TimerQueue()
        self._outbox: deque[Callable[[], None]] = deque()
        self._flushing = False
        self._now = clock()
        self._write_seq = 0  # counts offset writes (committed or transactional), in log order

    def _next_seq(self) -> int:
        self._write_seq += 1
        return self._write_seq

    def group_snapshot(self, group_id: str) -> GroupSnapshot | None:
        """The group as it would be persisted now (None for an unknown group)."""
        group = self._groups.get(group_id)
        return group.snapshot() if group is not None else None

    def metrics_view(self) -> list[tuple[str, int, dict[tuple[str, int], int]]]:
        """(group id, members, committed offset per (topic, partition)) of every group, for
        the metrics endpoint."""
        return [(gid, len(g.members), {tp: om.offset for tp, om in g.offsets.items()}) for gid, g in self._groups.items()]

    def group_state(self, group_id: str) -> GroupState | None:
        """The group's state, or None when the coordinator does not know the group."""
        group = self._groups.get(group_id)
        return group.state if group is not None else None

    def next_deadline(self) -> int | None:
        """The earliest time (clock ms) at which `tick()` has work, or None."""
        return self._timers.next_deadline()

    def _after(self, delay_ms: int) -> int:
        # At least 1 ms ahead, so a zero timeout cannot make tick() spin on the same instant.
        return self._now + max(delay_ms, 1)

    def _reset_session(self, group: Group, member: Member) -> None:
        key = (MEMBER_TIMER, group.group_id, member.member_id)
        self._timers.set(key, self._after(member.session_timeout_ms))

    def _forget(self, group: Group) -> None:
        """Remove the group and every timer it owns (no member of an Empty group is parked)."""
        gid = group.group_id
        for member_id in [*group.members, *group.pending_members]:
            self._timers.cancel((MEMBER_TIMER, gid, member_id))
        for kind in (JOIN_TIMER, SYNC_TIMER, EXPIRE_TIMER):
            self._timers.cancel((kind, gid))
        del self._groups[gid]

    def _transition(self, group: Group, trigger: Trigger) -> None:
        target = next_state(group.state, trigger)
        if target is not group.state:
            group.previous_state = group.state
            group.state = target
            group.state_timestamp = self._now

    def _answer_join(self, reply: JoinCallback | None, result: JoinResult) -> None:
        if reply is not None:
            self._outbox.append(lambda: reply(result))

    def _answer_sync(self, reply: SyncCallback | None, result: SyncResult) -> None:
        if reply is not None:
            self._outbox.append(lambda: reply(result))

    def _emit(
        self,
        event: GroupEvent,
        on_written: Callable[[], None] | None = None,
        on_failed: Callable[[int], None] | None = None,
    ) -> None:
        """Queue ``event`` for the sink (the broker writes it to ``__consumer_offsets``).

        The sink raises KafkaError when the write fails (disk full). Then ``on_failed`` runs
        with the log's error code instead of ``on_written``: changes that must only exist
        once written are made in ``on_written`` (Kafka applies a write to its cache only
        after the append succeeded). A failed write without ``on_failed`` is left at that:
        the broker has logged it."""
        sink = self._on_change

        def deliver() -> None:
            if sink is not None:
                try:
                    sink(event)
                except KafkaError as exc:
                    if on_failed is not None:
                        on_failed(exc.code)
                    return
            if on_written is not None:
                on_written()

        self._outbox.append(deliver)

    def _flush(self) -> None:
        """Deliver queued answers and events. Re-entrant calls (from a callback) queue theirs
        and leave the delivery to the outermost flush. A failing callback does not strand the
        others; its exception is raised once everything has been delivered."""
        if self._flushing:
            return
        self._flushing = True
        failure: Exception | None = None
        try:
            while self._outbox:
                deliver = self._outbox.popleft()
                try:
                    deliver()
                except Exception as exc:
                    if failure is None:
                        failure = exc
        finally:
            self._flushing = False
        if failure is not None:
            raise failure


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """The fields of one JoinGroup call, passed between the join helpers."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    require_known_member_id: bool
    supports_skip_assignment: bool
    reply: JoinCallback
