"""In-memory shape of a classic group and its members, with the bookkeeping Kafka keeps for
them (protocol votes, static-member index, who is awaiting what). No timers and no replies:
the coordinator (group.py) decides when things happen; this module only keeps the facts."""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

from riverbed.coordinator.group_types import (
    CONSUMER_PROTOCOL_TYPE,
    GroupSnapshot,
    GroupState,
    JoinCallback,
    JoinMember,
    MemberSnapshot,
    OffsetAndMetadata,
    SyncCallback,
)
from riverbed.protocol.errors import ErrorCode


def dedupe_protocols(protocols: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Keep the first entry of each protocol name, in the member's order of preference."""
    seen: set[str] = set()
    out: list[tuple[str, bytes]] = []
    for name, metadata in protocols:
        if name not in seen:
            seen.add(name)
            out.append((name, bytes(metadata)))
    return out


def subscribed_topics(metadata: bytes) -> set[str] | None:
    """Topics of a ConsumerProtocolSubscription (every version starts like v0: int16 version,
    int32 count, int16-length strings); None when the bytes do not parse."""
    try:
        (version,) = struct.unpack_from(">h", metadata, 0)
        (count,) = struct.unpack_from(">i", metadata, 2)
        if version < 0 or count < 0:
            return None
        pos = 6
        topics: set[str] = set()
        for _ in range(count):
            (length,) = struct.unpack_from(">h", metadata, pos)
            pos += 2
            if length < 0 or pos + length > len(metadata):
                return None
            topics.add(metadata[pos : pos + length].decode("utf-8"))
            pos += length
        return topics
    except (struct.error, UnicodeDecodeError):
        return None


@dataclass(eq=False)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    join_reply: JoinCallback | None = None  # parked JoinGroup
    sync_reply: SyncCallback | None = None  # parked SyncGroup
    is_new: bool = False  # joined for the first time and not yet part of a generation

    def metadata(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        return self.protocols == protocols

    def vote(self, candidates: set[str]) -> str:
        """Kafka's vote: the member's most preferred protocol among the candidates."""
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise ValueError(f"member {self.member_id} supports none of {sorted(candidates)}")

    def liveness_satisfied(self) -> bool:
        """A known member parked in JoinGroup or SyncGroup counts as alive (Kafka's rule);
        a new member must get its first answer before its join timeout."""
        return not self.is_new and (self.join_reply is not None or self.sync_reply is not None)


@dataclass(eq=False)
class Group:
    group_id: str
    state_timestamp: int  # when the state last changed; -1 if unknown (old records)
    state: GroupState = GroupState.EMPTY
    previous_state: GroupState = GroupState.EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str | None = None
    members: dict[str, Member] = field(default_factory=dict)  # in joining order
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    pending_members: set[str] = field(default_factory=set)  # ids given by MEMBER_ID_REQUIRED
    pending_sync: set[str] = field(default_factory=set)  # members yet to SyncGroup this gen
    subscribed: set[str] | None = None  # topics of the current generation, None if unknown
    offsets: dict[tuple[str, int], OffsetAndMetadata] = field(default_factory=dict)
    # TxnOffsetCommit: producer id -> offsets waiting for the transaction's marker, each with
    # the order in which it was written (see offset_seq)
    pending_txn: dict[int, dict[tuple[str, int], tuple[int, OffsetAndMetadata]]] = field(default_factory=dict)
    # the write order of each committed offset (the coordinator's counter, which follows the
    # group's __consumer_offsets partition): a transaction's offsets replace a committed one
    # only if they were written after it, as Kafka compares the records' log offsets
    offset_seq: dict[tuple[str, int], int] = field(default_factory=dict)
    # join phase bookkeeping (Kafka's DelayedJoin / InitialDelayedJoin)
    initial_delay_phase: bool = False
    initial_delay_remaining_ms: int = 0
    new_member_added: bool = False
    sync_generation: int = -1  # generation the pending-sync deadline belongs to
    _votes: Counter[str] = field(default_factory=Counter)
    _awaiting_join: int = 0

    # -- membership -------------------------------------------------------------------------

    def is_unused(self) -> bool:
        """Nothing in it: no member (or pending one), offset or transactional offset."""
        return not (self.members or self.pending_members or self.offsets or self.pending_txn)

    def add(self, member: Member) -> None:
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if not self.members:
            self.protocol_type = member.protocol_type
        if self.leader is None:
            self.leader = member.member_id
        self.members[member.member_id] = member
        self._votes.update(name for name, _ in member.protocols)
        if member.join_reply is not None:
            self._awaiting_join += 1
        self.pending_members.discard(member.member_id)

    def remove(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if member is not None:
            self._votes.subtract(name for name, _ in member.protocols)
            if member.join_reply is not None:
                self._awaiting_join -= 1
            if member.group_instance_id is not None:
                self.static_members.pop(member.group_instance_id, None)
        if self.leader == member_id:
            self.leader = next(iter(self.members), None)
        self.pending_members.discard(member_id)
        self.pending_sync.discard(member_id)
        return member

    def replace_static(self, instance_id: str, old_id: str, new_id: str) -> tuple[Member, Member]:
        """Give a static member a new member id, keeping everything else; (old, new)."""
        old = self.members.pop(old_id)
        new = Member(
            member_id=new_id,
            group_instance_id=instance_id,
            client_id=old.client_id,
            client_host=old.client_host,
            rebalance_timeout_ms=old.rebalance_timeout_ms,
            session_timeout_ms=old.session_timeout_ms,
            protocol_type=old.protocol_type,
            protocols=old.protocols,
            assignment=old.assignment,
        )
        if old.join_reply is not None:
            self._awaiting_join -= 1  # the caller answers (fences) the old member's parked calls
        self.members[new_id] = new
        self.static_members[instance_id] = new_id
        if self.leader == old_id:
            self.leader = new_id
        if old_id in self.pending_sync:
            self.pending_sync.discard(old_id)
            self.pending_sync.add(new_id)
        return old, new

    def update(
        self,
        member: Member,
        protocols: list[tuple[str, bytes]],
        rebalance_timeout_ms: int,
        session_timeout_ms: int,
    ) -> None:
        self._votes.subtract(name for name, _ in member.protocols)
        member.protocols = protocols
        self._votes.update(name for name, _ in protocols)
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms

    def park_join(self, member: Member, reply: JoinCallback) -> JoinCallback | None:
        """Park a JoinGroup; returns the member's previously parked one (to be answered)."""
        previous = member.join_reply
        if previous is None:
            self._awaiting_join += 1
        member.join_reply = reply
        return previous

    def take_join(self, member: Member) -> JoinCallback | None:
        reply = member.join_reply
        if reply is not None:
            member.join_reply = None
            self._awaiting_join -= 1
        return reply

    def validate_member(self, member_id: str, instance_id: str | None) -> ErrorCode:
        """Kafka's check of (member id, instance id) for Heartbeat, SyncGroup, OffsetCommit..."""
        if instance_id is not None:
            current = self.static_members.get(instance_id)
            if current is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if current != member_id:
                return ErrorCode.FENCED_INSTANCE_ID
        if member_id not in self.members:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return ErrorCode.NONE

    # -- rebalance facts ----------------------------------------------------------------------

    @property
    def num_awaiting_join(self) -> int:
        return self._awaiting_join

    def all_members_joined(self) -> bool:
        return self._awaiting_join == len(self.members) and not self.pending_members

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def elect_joined_leader(self) -> bool:
        """Keep the leader if it rejoined, else pick the first member that did; False if the
        group has no leader or nobody rejoined."""
        if self.leader is None:
            return False
        if self.members[self.leader].join_reply is not None:
            return True
        for member in self.members.values():
            if member.join_reply is not None:
                self.leader = member.member_id
                return True
        return False

    def supports_protocols(self, protocol_type: str, names: list[str]) -> bool:
        if self.state is GroupState.EMPTY:
            return bool(protocol_type) and bool(names)
        size = len(self.members)
        return self.protocol_type == protocol_type and any(self._votes[n] == size for n in names)

    def select_protocol(self) -> str:
        """Kafka's selectProtocol: among protocols every member supports, each member votes for
        its first; most votes wins (ties: the earlier one in the first member's list)."""
        size = len(self.members)
        candidates = {name for name, count in self._votes.items() if count == size}
        votes = Counter(member.vote(candidates) for member in self.members.values())
        best = max(votes.values())
        first = next(iter(self.members.values()))
        for name, _ in first.protocols:
            if votes.get(name) == best:
                return name
        raise AssertionError("the first member voted for a protocol it does not list")

    def compute_subscribed(self) -> set[str] | None:
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return None
        if not self.members:
            return set()
        if self.protocol is None:
            return None
        topics: set[str] = set()
        for member in self.members.values():
            member_topics = subscribed_topics(member.metadata(self.protocol))
            if member_topics is None:
                return None
            topics |= member_topics
        return topics

    def is_subscribed(self, topic: str) -> bool:
        """Unknown subscriptions count as subscribed for consumer groups (Kafka's rule)."""
        if self.subscribed is None:
            return self.protocol_type == CONSUMER_PROTOCOL_TYPE
        return topic in self.subscribed

    def join_members(self) -> list[JoinMember]:
        return [
            JoinMember(m.member_id, m.group_instance_id, m.metadata(self.protocol))
            for m in self.members.values()
        ]

    # -- offsets ------------------------------------------------------------------------------

    def offset_expiry_base(self) -> str | None:
        """Which clock offsets expire by: "state" (since the group became Empty), "commit"
        (since each commit; "commit-unsubscribed" skips subscribed topics), or None."""
        if self.protocol_type is None:
            return "commit"
        if self.state is GroupState.EMPTY:
            return "state" if self.state_timestamp >= 0 else "commit"
        if (
            self.state is GroupState.STABLE
            and self.protocol_type == CONSUMER_PROTOCOL_TYPE
            and self.subscribed is not None
        ):
            return "commit-unsubscribed"
        return None

    def offset_deadline(
        self, base: str, topic: str, offset: OffsetAndMetadata, retention: int
    ) -> int | None:
        if base == "commit-unsubscribed" and self.is_subscribed(topic):
            return None
        if offset.expire_timestamp >= 0:
            return offset.expire_timestamp
        start = self.state_timestamp if base == "state" else offset.commit_timestamp
        return start + retention

    # -- persistence --------------------------------------------------------------------------

    def snapshot(self) -> GroupSnapshot:
        return GroupSnapshot(
            protocol_type=self.protocol_type or "",
            generation=self.generation,
            protocol=self.protocol,
            leader=self.leader,
            state_timestamp=self.state_timestamp,
            members=[
                MemberSnapshot(
                    member_id=m.member_id,
                    group_instance_id=m.group_instance_id,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    rebalance_timeout=m.rebalance_timeout_ms,
                    session_timeout=m.session_timeout_ms,
                    subscription=m.metadata(self.protocol),
                    assignment=m.assignment,
                )
                for m in self.members.values()
            ],
        )
