"""The KIP-848 group and member models: membership, subscriptions, target assignment, who
owns which partition, the derived group state, and conversion to and from snapshots."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from riverbed.coordinator.assignors import Assignment
from riverbed.coordinator.consumer_group_reconcile import MemberAssignment, frozen
from riverbed.coordinator.consumer_group_types import (
    INTERNAL_TOPICS,
    ConsumerGroupSnapshot,
    ConsumerGroupState,
    ConsumerMemberSnapshot,
    FrozenAssignment,
    TopicView,
)

TopicMetadata = dict[str, tuple[uuid.UUID | None, int]]


@dataclass
class ConsumerMember:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: tuple[str, ...] = ()
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    assignment: MemberAssignment = field(default_factory=MemberAssignment)
    #: The epoch a pending rebalance (revocation) timer was armed for, if any.
    revocation_timer_epoch: int | None = None

    @property
    def member_epoch(self) -> int:
        return self.assignment.member_epoch

    def same_subscription(self, other: ConsumerMember) -> bool:
        return (
            self.subscribed_topic_names == other.subscribed_topic_names
            and self.subscribed_topic_regex == other.subscribed_topic_regex
        )

    def snapshot(self, target: Assignment) -> ConsumerMemberSnapshot:
        a = self.assignment
        return ConsumerMemberSnapshot(
            member_id=self.member_id,
            instance_id=self.instance_id,
            rack_id=self.rack_id,
            client_id=self.client_id,
            client_host=self.client_host,
            rebalance_timeout_ms=self.rebalance_timeout_ms,
            subscribed_topic_names=self.subscribed_topic_names,
            subscribed_topic_regex=self.subscribed_topic_regex,
            server_assignor=self.server_assignor,
            state=a.state,
            member_epoch=a.member_epoch,
            previous_member_epoch=a.previous_member_epoch,
            assigned=frozen(a.assigned),
            pending_revocation=frozen(a.pending_revocation),
            target=frozen(target),
        )

    @classmethod
    def from_snapshot(cls, s: ConsumerMemberSnapshot) -> ConsumerMember:
        return cls(
            member_id=s.member_id,
            instance_id=s.instance_id,
            rack_id=s.rack_id,
            client_id=s.client_id,
            client_host=s.client_host,
            rebalance_timeout_ms=s.rebalance_timeout_ms,
            subscribed_topic_names=s.subscribed_topic_names,
            subscribed_topic_regex=s.subscribed_topic_regex,
            server_assignor=s.server_assignor,
            assignment=MemberAssignment(
                s.state,
                s.member_epoch,
                s.previous_member_epoch,
                thawed(s.assigned),
                thawed(s.pending_revocation),
            ),
        )


def thawed(assignment: FrozenAssignment) -> dict[uuid.UUID, frozenset[int]]:
    return {t: frozenset(ps) for t, ps in assignment if ps}


def regex_matches(regex: str, topics: TopicView) -> frozenset[str]:
    """Topic names the subscription regex matches in full (Python `re` standing in for
    Java's RE2J syntax), internal topics excluded. An invalid regex matches nothing."""
    try:
        pattern = re.compile(regex)
    except re.error:
        return frozenset()
    return frozenset(
        name
        for name in topics.topic_names()
        if name not in INTERNAL_TOPICS and pattern.fullmatch(name)
    )


@dataclass
class ConsumerGroup:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    target: dict[str, Assignment] = field(default_factory=dict)  # member id -> target
    owners: dict[tuple[uuid.UUID, int], str] = field(default_factory=dict)
    #: The subscribed topics as last seen; a difference means the metadata changed.
    subscribed_metadata: TopicMetadata = field(default_factory=dict)
    resolved_regexes: dict[str, frozenset[str]] = field(default_factory=dict)
    resolved_at_ms: int = -1
    #: Caches of the members' subscriptions (None: recompute); heartbeats read them often.
    _names: frozenset[str] | None = field(default=None, repr=False, compare=False)
    _regexes: frozenset[str] | None = field(default=None, repr=False, compare=False)

    # ----------------------------------------------------------------------------- state

    @property
    def state(self) -> ConsumerGroupState:
        """Kafka's ConsumerGroup.maybeUpdateGroupState, computed on demand."""
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        for member in self.members.values():
            if not member.assignment.is_reconciled_to(self.assignment_epoch):
                return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    def preferred_assignor(self, default: str) -> str:
        """The server assignor most members asked for (ties: the default, then by name)."""
        counts: dict[str, int] = {}
        for member in self.members.values():
            if member.server_assignor is not None:
                counts[member.server_assignor] = counts.get(member.server_assignor, 0) + 1
        if not counts:
            return default
        return min(counts, key=lambda name: (-counts[name], name != default, name))

    def owner(self, topic_id: uuid.UUID, partition: int) -> str | None:
        return self.owners.get((topic_id, partition))

    # ----------------------------------------------------------------------------- members

    def put(self, member: ConsumerMember) -> None:
        """Add or update a member, keeping the owner map and static ids in step."""
        old = self.members.get(member.member_id)
        if old is not None:
            self._release(old)
        if old is None or not old.same_subscription(member):
            self._names = self._regexes = None
        self.members[member.member_id] = member
        self._claim(member)
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id

    def set_assignment(self, member: ConsumerMember, assignment: MemberAssignment) -> None:
        self._release(member)
        member.assignment = assignment
        self._claim(member)

    def remove(self, member_id: str) -> ConsumerMember | None:
        member = self.members.pop(member_id, None)
        if member is None:
            return None
        self._release(member)
        self._names = self._regexes = None
        self.target.pop(member_id, None)
        if member.instance_id is not None and self.static_members.get(member.instance_id) == (
            member_id
        ):
            del self.static_members[member.instance_id]
        return member

    def _claim(self, member: ConsumerMember) -> None:
        for assignment in (member.assignment.assigned, member.assignment.pending_revocation):
            for topic_id, partitions in assignment.items():
                for p in partitions:
                    holder = self.owners.setdefault((topic_id, p), member.member_id)
                    assert holder == member.member_id, (
                        f"{topic_id}-{p} owned by {holder} and {member.member_id}"
                    )

    def _release(self, member: ConsumerMember) -> None:
        for assignment in (member.assignment.assigned, member.assignment.pending_revocation):
            for topic_id, partitions in assignment.items():
                for p in partitions:
                    if self.owners.get((topic_id, p)) == member.member_id:
                        del self.owners[(topic_id, p)]

    # ----------------------------------------------------------------------------- topics

    def subscribed_names(self, member: ConsumerMember) -> frozenset[str]:
        names = set(member.subscribed_topic_names)
        if member.subscribed_topic_regex:
            names |= self.resolved_regexes.get(member.subscribed_topic_regex, frozenset())
        return frozenset(names)

    def subscribed_ids(self, member: ConsumerMember, topics: TopicView) -> frozenset[uuid.UUID]:
        ids = (topics.topic_id(name) for name in self.subscribed_names(member))
        return frozenset(i for i in ids if i is not None)

    def regexes(self) -> frozenset[str]:
        """Every subscription regex of the group's members."""
        if self._regexes is None:
            found = (m.subscribed_topic_regex for m in self.members.values())
            self._regexes = frozenset(r for r in found if r)
        return self._regexes

    def resolve_regexes(self, topics: TopicView, now: int) -> None:
        self.resolved_regexes = {r: regex_matches(r, topics) for r in sorted(self.regexes())}
        self.resolved_at_ms = now
        self._names = None

    def all_subscribed_names(self) -> frozenset[str]:
        """Every topic name some member subscribes to (by name or through its regex)."""
        if self._names is None:
            names: set[str] = set()
            for member in self.members.values():
                names |= self.subscribed_names(member)
            self._names = frozenset(names)
        return self._names

    def current_metadata(self, topics: TopicView) -> TopicMetadata:
        """(topic id, partitions) of every subscribed name, as the topics are now."""
        return {
            n: (topics.topic_id(n), topics.partitions(n) or 0)
            for n in sorted(self.all_subscribed_names())
        }

    # ----------------------------------------------------------------------------- snapshots

    def snapshot(self) -> ConsumerGroupSnapshot:
        return ConsumerGroupSnapshot(
            group_epoch=self.group_epoch,
            assignment_epoch=self.assignment_epoch,
            members=tuple(m.snapshot(self.target.get(mid, {})) for mid, m in self.members.items()),
            subscribed_metadata=tuple(
                (name, tid, count) for name, (tid, count) in self.subscribed_metadata.items()
            ),
            resolved_regexes=tuple(
                (regex, tuple(sorted(names))) for regex, names in self.resolved_regexes.items()
            ),
            resolved_at_ms=self.resolved_at_ms,
        )

    @classmethod
    def from_snapshot(cls, group_id: str, s: ConsumerGroupSnapshot) -> ConsumerGroup:
        group = cls(group_id, group_epoch=s.group_epoch, assignment_epoch=s.assignment_epoch)
        for ms in s.members:
            group.put(ConsumerMember.from_snapshot(ms))
            group.target[ms.member_id] = thawed(ms.target)
        group.subscribed_metadata = {name: (tid, n) for name, tid, n in s.subscribed_metadata}
        group.resolved_regexes = {r: frozenset(names) for r, names in s.resolved_regexes}
        group.resolved_at_ms = s.resolved_at_ms
        return group


def copy_member(member: ConsumerMember, member_id: str) -> ConsumerMember:
    """A static member's replacement: same subscription and partitions, new id, epoch 0."""
    assignment = replace(member.assignment, member_epoch=0, previous_member_epoch=0)
    return replace(member, member_id=member_id, assignment=assignment, revocation_timer_epoch=None)


def partitions_of(assignment: Assignment) -> Iterable[tuple[uuid.UUID, int]]:
    for topic_id, partitions in assignment.items():
        for p in partitions:
            yield topic_id, p
