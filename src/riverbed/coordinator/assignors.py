"""Server-side partition assignors of KIP-848 ("consumer" protocol) groups.

An assignor is a pure function from an `AssignmentSpec` (every member's subscribed topic ids
and its current *target* assignment, plus the partition count of every subscribed topic) to
the group's next target assignment. It never sees the members' actual ownership: the
coordinator's reconciliation (consumer_group_reconcile.py) moves members towards the target
one safe step at a time.

Two assignors, as in Kafka (``group.consumer.assignors``, the first is the default):

* ``uniform``: spreads all subscribed partitions as evenly as possible and is sticky: a member
  keeps what it had unless that breaks the balance. With identical subscriptions (the common
  case) member sizes differ by at most one and partitions only move away from members that
  have too many. With differing subscriptions it keeps every valid partition, hands out the
  rest to the least loaded subscriber, then moves partitions from a member to a subscriber
  with at least two fewer until no such move is left.
* ``range``: per topic, the topic's subscribers (sorted by member id) get contiguous ranges,
  the first ``partitions % subscribers`` of them one more; sticky within each topic's quota.
  Topics with the same partition count and the same subscribers come out identical
  ("co-partitioned"): member i gets the same partition numbers of each, which joins rely on.

Both are deterministic: the same spec always gives the same assignment (members are ordered
by id, topics by id, partitions by number), so a replayed coordinator agrees with itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

#: topic id -> partitions; the shape of every assignment in the coordinator.
Assignment = Mapping[uuid.UUID, frozenset[int]]
TopicPartition = tuple[uuid.UUID, int]

UNIFORM = "uniform"
RANGE = "range"


@dataclass(frozen=True)
class MemberSpec:
    """One member as the assignor sees it."""

    subscribed_topic_ids: frozenset[uuid.UUID]
    #: The member's current target assignment (stickiness starts from it).
    current: Assignment = field(default_factory=dict)
    rack_id: str | None = None
    instance_id: str | None = None


@dataclass(frozen=True)
class AssignmentSpec:
    members: Mapping[str, MemberSpec]
    #: Partition count of every subscribed topic that exists (topic id -> count).
    partitions: Mapping[uuid.UUID, int]


GroupAssignment = dict[str, dict[uuid.UUID, frozenset[int]]]


class PartitionAssignor(Protocol):
    @property
    def name(self) -> str: ...

    def assign(self, spec: AssignmentSpec) -> GroupAssignment: ...


def _subscribers(spec: AssignmentSpec) -> dict[uuid.UUID, list[str]]:
    """Topic id -> subscribed member ids (sorted), for topics that exist and have partitions."""
    out: dict[uuid.UUID, list[str]] = {}
    for member_id in sorted(spec.members):
        for topic_id in spec.members[member_id].subscribed_topic_ids:
            if spec.partitions.get(topic_id, 0) > 0:
                out.setdefault(topic_id, []).append(member_id)
    return dict(sorted(out.items()))


def _valid_current(spec: AssignmentSpec, member_id: str) -> list[TopicPartition]:
    """The member's current partitions that it may keep: its topic still exists, it is still
    subscribed, and the partition is in range. Sorted."""
    member = spec.members[member_id]
    kept: list[TopicPartition] = []
    for topic_id, partitions in member.current.items():
        count = spec.partitions.get(topic_id, 0)
        if topic_id in member.subscribed_topic_ids:
            kept.extend((topic_id, p) for p in partitions if 0 <= p < count)
    return sorted(kept)


def _group(members: list[str], owned: Mapping[str, list[TopicPartition]]) -> GroupAssignment:
    out: GroupAssignment = {}
    for member_id in members:
        per_topic: dict[uuid.UUID, set[int]] = {}
        for topic_id, partition in owned.get(member_id, []):
            per_topic.setdefault(topic_id, set()).add(partition)
        out[member_id] = {t: frozenset(ps) for t, ps in sorted(per_topic.items())}
    return out


def _fill_with_quota(
    members: list[str],
    current: Mapping[str, list[TopicPartition]],
    all_partitions: list[TopicPartition],
) -> dict[str, list[TopicPartition]]:
    """Balanced and sticky for members that may all take every partition: each gets
    len/members or one more. Members keep what they had up to that quota (members with the
    most keep first, so the fewest partitions move); the rest is handed out in order, first
    up to the quota, then one extra each, both in member order."""
    quota, extras = divmod(len(all_partitions), len(members))
    valid = set(all_partitions)
    claimed: set[TopicPartition] = set()
    result: dict[str, list[TopicPartition]] = {m: [] for m in members}
    for member_id in sorted(members, key=lambda m: (-len(current.get(m, [])), m)):
        keep = [tp for tp in current.get(member_id, []) if tp in valid and tp not in claimed]
        limit = quota
        if len(keep) > quota and extras > 0:
            limit, extras = quota + 1, extras - 1
        result[member_id] = keep[:limit]
        claimed.update(result[member_id])
    free = iter(tp for tp in all_partitions if tp not in claimed)
    for member_id in members:
        taken = result[member_id]
        need = quota - len(taken)
        if len(taken) <= quota and extras > 0:
            need, extras = need + 1, extras - 1
        taken.extend(next(free) for _ in range(need))
    leftover = list(free)
    assert not leftover, f"assignor bug: {len(leftover)} partitions left over"
    return result


class UniformAssignor:
    """Kafka's default server assignor ("uniform"); see the module docstring."""

    @property
    def name(self) -> str:
        return UNIFORM

    def assign(self, spec: AssignmentSpec) -> GroupAssignment:
        members = sorted(spec.members)
        if not members:
            return {}
        subscribers = _subscribers(spec)
        subscriptions = {
            frozenset(t for t in spec.members[m].subscribed_topic_ids if t in subscribers)
            for m in members
        }
        current = {m: _valid_current(spec, m) for m in members}
        if len(subscriptions) == 1:  # homogeneous: everybody may take everything
            topics = sorted(subscribers)
            every = [(t, p) for t in topics for p in range(spec.partitions[t])]
            return _group(members, _fill_with_quota(members, current, every))
        return _group(members, self._heterogeneous(members, subscribers, spec, current))

    @staticmethod
    def _heterogeneous(
        members: list[str],
        subscribers: dict[uuid.UUID, list[str]],
        spec: AssignmentSpec,
        current: Mapping[str, list[TopicPartition]],
    ) -> dict[str, list[TopicPartition]]:
        owned: dict[str, set[TopicPartition]] = {m: set() for m in members}
        owner: dict[TopicPartition, str] = {}
        for member_id in members:  # sticky: keep every valid partition (first claim wins)
            for tp in current[member_id]:
                if tp not in owner:
                    owner[tp] = member_id
                    owned[member_id].add(tp)
        # Hand out the rest, scarcest topics first, each to its least loaded subscriber.
        free = sorted(
            ((t, p) for t, subs in subscribers.items() for p in range(spec.partitions[t])),
            key=lambda tp: (len(subscribers[tp[0]]), tp),
        )
        for tp in free:
            if tp not in owner:
                target = min(subscribers[tp[0]], key=lambda m: (len(owned[m]), m))
                owner[tp] = target
                owned[target].add(tp)
        # Balance: move a partition to a subscriber with at least two fewer, until none can.
        # Each move lowers the sum of squared loads, so this ends.
        moved = True
        while moved:
            moved = False
            for source in sorted(members, key=lambda m: (-len(owned[m]), m)):
                for tp in sorted(owned[source], reverse=True):
                    target = min(subscribers[tp[0]], key=lambda m: (len(owned[m]), m))
                    if len(owned[source]) - len(owned[target]) > 1:
                        owned[source].discard(tp)
                        owned[target].add(tp)
                        moved = True
                        break
                if moved:
                    break
        return {m: sorted(owned[m]) for m in members}


class RangeAssignor:
    """Kafka's server-side "range" assignor; see the module docstring."""

    @property
    def name(self) -> str:
        return RANGE

    def assign(self, spec: AssignmentSpec) -> GroupAssignment:
        members = sorted(spec.members)
        owned: dict[str, list[TopicPartition]] = {m: [] for m in members}
        for topic_id, subs in _subscribers(spec).items():
            count = spec.partitions[topic_id]
            current = {m: [tp for tp in _valid_current(spec, m) if tp[0] == topic_id] for m in subs}
            every = [(topic_id, p) for p in range(count)]
            for member_id, tps in _fill_with_quota(subs, current, every).items():
                owned[member_id].extend(tps)
        return _group(members, owned)


ASSIGNORS: dict[str, PartitionAssignor] = {UNIFORM: UniformAssignor(), RANGE: RangeAssignor()}
