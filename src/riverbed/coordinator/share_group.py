"""Share groups (KIP-932): membership by ShareGroupHeartbeat, the server-side assignor, share
sessions (ShareFetch / ShareAcknowledge) and the share-partitions of each group. Pure: the
clock is injected (``now_ms``), topics are seen through ``ShareTopics``; the broker layer
(broker/share.py) reads the log, persists state and writes dead letters.

Membership (ShareGroupHeartbeat v1): the client makes up its member id; epoch 0 joins, -1
leaves, any other epoch must be the member's current one (else FENCED_MEMBER_EPOCH; an
unknown member: UNKNOWN_MEMBER_ID). There is no reconciliation as in KIP-848: a member gets
its new assignment at its next heartbeat, where its epoch becomes the group's.

The assignor ("simple"): the subscribed partitions of each topic are spread over the
topic's subscribers. With at least as many partitions as subscribers, each partition goes to
one member (round robin); with more subscribers than partitions, member i (sorted) gets
partition i mod P, so every member has work and several share a partition.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from riverbed.protocol.errors import ErrorCode

from .share_partition import SharePartition


class ShareTopics(Protocol):
    def topic_id(self, name: str) -> uuid.UUID | None: ...
    def partitions(self, name: str) -> int | None: ...


@dataclass(frozen=True, slots=True)
class ShareGroupSettings:
    """The group configs in force for one group (GROUP resource; defaults as Kafka's)."""

    session_timeout_ms: int = 45_000
    heartbeat_interval_ms: int = 5_000
    record_lock_duration_ms: int = 30_000
    delivery_count_limit: int = 5
    auto_offset_reset: str = "latest"
    isolation_level: str = "read_uncommitted"
    max_record_locks: int = 2000
    deadletter_topic: str | None = None


@dataclass(slots=True)
class ShareMember:
    member_id: str
    epoch: int
    deadline: int
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    topics: list[str] = field(default_factory=list)
    assignment: dict[uuid.UUID, list[int]] = field(default_factory=dict)


@dataclass(slots=True)
class ShareGroup:
    group_id: str
    epoch: int = 0
    members: dict[str, ShareMember] = field(default_factory=dict)
    target: dict[str, dict[uuid.UUID, list[int]]] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return "Stable" if self.members else "Empty"


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    error: ErrorCode
    message: str | None = None
    member_id: str | None = None
    epoch: int = -1
    heartbeat_interval_ms: int = 0
    assignment: list[tuple[uuid.UUID, list[int]]] | None = None


@dataclass(slots=True)
class ShareSession:
    epoch: int
    partitions: set[tuple[uuid.UUID, int]] = field(default_factory=set)
    # the member left the group (heartbeat epoch -1) but may still close its session with
    # its last acknowledgements (librdkafka's close order); dropped at this time otherwise
    expires: int | None = None


PartitionKey = tuple[str, uuid.UUID, int]  # group, topic id, partition


def assign(
    members: dict[str, list[str]], topics: ShareTopics
) -> dict[str, dict[uuid.UUID, list[int]]]:
    """member id -> {topic id: partitions}: every subscribed partition to at least one
    subscriber, every subscriber of a topic with partitions gets some."""
    out: dict[str, dict[uuid.UUID, list[int]]] = {m: {} for m in members}
    for name in sorted({t for ts in members.values() for t in ts}):
        tid, count = topics.topic_id(name), topics.partitions(name)
        if tid is None or not count:
            continue
        subs = sorted(m for m, ts in members.items() if name in ts)
        n = len(subs)
        for i, m in enumerate(subs):
            parts = [p for p in range(count) if p % n == i] if count >= n else [i % count]
            out[m][tid] = parts
    return out


class ShareGroupCoordinator:
    def __init__(
        self,
        now_ms: Callable[[], int],
        topics: ShareTopics,
        settings: Callable[[str], ShareGroupSettings],
    ) -> None:
        self.now_ms = now_ms
        self.topics = topics
        self.settings = settings
        self.groups: dict[str, ShareGroup] = {}
        self.partitions: dict[PartitionKey, SharePartition] = {}
        self.sessions: dict[tuple[str, str], ShareSession] = {}

    # ------------------------------------------------------------------ membership
    def has_group(self, group_id: str) -> bool:
        return group_id in self.groups or any(k[0] == group_id for k in self.partitions)

    def group(self, group_id: str) -> ShareGroup:
        g = self.groups.get(group_id)
        if g is None:
            g = self.groups[group_id] = ShareGroup(group_id)
        return g

    def heartbeat(
        self,
        group_id: str,
        member_id: str,
        member_epoch: int,
        rack_id: str | None,
        topics: list[str] | None,
        client_id: str = "",
        client_host: str = "",
    ) -> tuple[HeartbeatResult, list[str]]:
        """Returns the answer and the members that left (their records are released)."""
        now = self.now_ms()
        cfg = self.settings(group_id)
        if not group_id:
            return HeartbeatResult(ErrorCode.INVALID_REQUEST, "GroupId can't be empty."), []
        if not member_id:
            return HeartbeatResult(ErrorCode.INVALID_REQUEST, "MemberId can't be empty."), []
        g = self.groups.get(group_id)
        m = g.members.get(member_id) if g is not None else None
        if member_epoch == -1:  # leave
            if g is None or m is None:
                return HeartbeatResult(
                    ErrorCode.UNKNOWN_MEMBER_ID,
                    f"Member {member_id} is not a member of group {group_id}.",
                    member_id,
                    -1,
                ), []
            self._remove(g, member_id, keep_session=True)
            session = self.sessions.get((group_id, member_id))
            if session is not None:  # its records go back when the session closes or expires
                session.expires = now + cfg.session_timeout_ms
                return HeartbeatResult(ErrorCode.NONE, None, member_id, -1), []
            return HeartbeatResult(ErrorCode.NONE, None, member_id, -1), [member_id]
        if member_epoch == 0:
            if topics is None and m is None:
                return HeartbeatResult(
                    ErrorCode.INVALID_REQUEST, "SubscribedTopicNames must be set in first request."
                ), []
            g = self.group(group_id)
            if m is None:
                m = g.members[member_id] = ShareMember(member_id, 0, now + cfg.session_timeout_ms)
                g.epoch += 1
            m.epoch = 0
        else:
            if g is None or m is None:
                return HeartbeatResult(
                    ErrorCode.UNKNOWN_MEMBER_ID,
                    f"Member {member_id} is not a member of group {group_id}.",
                    member_id,
                    -1,
                ), []
            if member_epoch != m.epoch:
                return HeartbeatResult(
                    ErrorCode.FENCED_MEMBER_EPOCH,
                    f"The share group member has a smaller member epoch ({member_epoch}) than the one known by the group coordinator ({m.epoch}).",
                    member_id,
                    -1,
                ), []
        assert g is not None
        m.deadline = now + cfg.session_timeout_ms
        m.rack_id = rack_id
        m.client_id, m.client_host = client_id, client_host
        if topics is not None and sorted(topics) != sorted(m.topics):
            m.topics = sorted(set(topics))
            g.epoch += 1
        target = assign({mid: mm.topics for mid, mm in g.members.items()}, self.topics)
        if target != g.target:
            if g.target:
                g.epoch += 1
            g.target = target
        if g.epoch == 0:
            g.epoch = 1
        send: list[tuple[uuid.UUID, list[int]]] | None = None
        if m.epoch != g.epoch or member_epoch == 0:
            m.epoch = g.epoch
            m.assignment = target.get(member_id, {})
            send = sorted(m.assignment.items(), key=lambda kv: str(kv[0]))
        return HeartbeatResult(
            ErrorCode.NONE, None, member_id, m.epoch, cfg.heartbeat_interval_ms, send
        ), []

    def _remove(self, g: ShareGroup, member_id: str, keep_session: bool = False) -> None:
        g.members.pop(member_id, None)
        g.epoch += 1
        g.target = assign({mid: mm.topics for mid, mm in g.members.items()}, self.topics)
        if not keep_session:
            self.sessions.pop((g.group_id, member_id), None)

    def group_ids(self) -> list[str]:
        return sorted(set(self.groups) | {k[0] for k in self.partitions})

    def list_groups(self, states: set[str] | None, types: set[str] | None) -> list[tuple[str, str]]:
        """ListGroups: (group id, state) of the share groups; filters case-insensitive."""
        if types and "share" not in {t.lower() for t in types}:
            return []
        wanted = {s.lower() for s in states} if states else None
        out = []
        for gid in self.group_ids():
            g = self.groups.get(gid)
            state = g.state if g is not None else "Empty"
            if wanted is None or state.lower() in wanted:
                out.append((gid, state))
        return out

    def delete_group(self, group_id: str) -> list[PartitionKey]:
        """DeleteGroups: only an empty group. Returns its share-partitions (removed)."""
        self.groups.pop(group_id, None)
        keys = [k for k in self.partitions if k[0] == group_id]
        for k in keys:
            del self.partitions[k]
        return keys

    # ------------------------------------------------------------------ time
    def next_deadline(self) -> int | None:
        ds = [m.deadline for g in self.groups.values() for m in g.members.values()]
        ds += [s.expires for s in self.sessions.values() if s.expires is not None]
        ds += [d for sp in self.partitions.values() if (d := sp.next_deadline()) is not None]
        return min(ds) if ds else None

    def tick(self) -> tuple[list[tuple[str, str]], list[PartitionKey]]:
        """Expire members (session timeout) and acquisition locks. Returns (group, member)
        removed and the share-partitions whose state changed."""
        now = self.now_ms()
        gone: list[tuple[str, str]] = []
        for g in self.groups.values():
            for mid, m in list(g.members.items()):
                if m.deadline <= now:
                    self._remove(g, mid)
                    gone.append((g.group_id, mid))
        for key, session in list(self.sessions.items()):
            if session.expires is not None and session.expires <= now:
                del self.sessions[key]
                gone.append(key)
        changed: set[PartitionKey] = set()
        for gid, mid in gone:
            changed.update(self.release_member(gid, mid))
        for k, sp in self.partitions.items():
            if sp.expire(now):
                changed.add(k)
        return gone, sorted(changed, key=str)

    def release_member(self, group_id: str, member_id: str) -> list[PartitionKey]:
        return [
            k
            for k, sp in self.partitions.items()
            if k[0] == group_id and sp.release_member(member_id)
        ]

    # ------------------------------------------------------------------ share sessions
    def open_session(
        self, group_id: str, member_id: str, epoch: int
    ) -> tuple[ErrorCode, ShareSession | None]:
        """ShareFetch's session handling: epoch 0 opens (or replaces) the member's session,
        -1 closes it, anything else must be the session's next epoch."""
        key = (group_id, member_id)
        g = self.groups.get(group_id)
        if epoch == 0:
            if g is None or member_id not in g.members:
                return ErrorCode.UNKNOWN_MEMBER_ID, None
            s = self.sessions[key] = ShareSession(epoch=1)
            return ErrorCode.NONE, s
        cur = self.sessions.get(key)
        if cur is None:
            return ErrorCode.SHARE_SESSION_NOT_FOUND, None
        if epoch == -1:
            del self.sessions[key]
            return ErrorCode.NONE, cur
        if epoch != cur.epoch:
            return ErrorCode.INVALID_SHARE_SESSION_EPOCH, None
        cur.epoch = cur.epoch + 1 if cur.epoch < 2**31 - 1 else 1
        return ErrorCode.NONE, cur

    def session_check(self, group_id: str, member_id: str, epoch: int) -> ErrorCode:
        """ShareAcknowledge: the session must exist and ``epoch`` be its next epoch (which it
        then advances); -1 closes it after the acknowledgements."""
        s = self.sessions.get((group_id, member_id))
        if epoch == 0:
            return ErrorCode.INVALID_SHARE_SESSION_EPOCH
        if s is None:
            return ErrorCode.SHARE_SESSION_NOT_FOUND
        if epoch == -1:
            del self.sessions[(group_id, member_id)]
            return ErrorCode.NONE
        if epoch != s.epoch:
            return ErrorCode.INVALID_SHARE_SESSION_EPOCH
        s.epoch = s.epoch + 1 if s.epoch < 2**31 - 1 else 1
        return ErrorCode.NONE

    # ------------------------------------------------------------------ share-partitions
    def partition(self, key: PartitionKey, initial_offset: Callable[[], int]) -> SharePartition:
        sp = self.partitions.get(key)
        if sp is None:
            cfg = self.settings(key[0])
            sp = SharePartition(
                start_offset=initial_offset(),
                delivery_limit=cfg.delivery_count_limit,
                lock_ms=cfg.record_lock_duration_ms,
                max_in_flight=cfg.max_record_locks,
            )
            self.partitions[key] = sp
        return sp

    def apply_settings(self, group_id: str) -> None:
        """Group configs changed: the share-partitions take the new lock and delivery limits."""
        cfg = self.settings(group_id)
        for k, sp in self.partitions.items():
            if k[0] == group_id:
                sp.lock_ms, sp.delivery_limit, sp.max_in_flight = (
                    cfg.record_lock_duration_ms,
                    cfg.delivery_count_limit,
                    cfg.max_record_locks,
                )
