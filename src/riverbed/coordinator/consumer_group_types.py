"""Value types of the KIP-848 consumer-group coordinator: configuration, the topic view it is
given, heartbeat input and output, descriptions, snapshots and events. Plain data, no
behaviour (the machine is in consumer_group.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from riverbed.coordinator.assignors import RANGE, UNIFORM

#: ConsumerGroupHeartbeat member epochs with a special meaning.
JOIN_EPOCH = 0
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2

#: Kafka's INVALID_REGULAR_EXPRESSION (128); missing from riverbed.protocol.errors.ErrorCode.
INVALID_REGULAR_EXPRESSION = 128

#: Kafka's internal topics (Topic.isInternal): never matched by a subscription regex.
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state", "__share_group_state"})

#: (topic id, partitions), the wire shape of ConsumerGroupHeartbeat's TopicPartitions.
TopicPartitions = tuple[uuid.UUID, Sequence[int]]


class TopicView(Protocol):
    """What the coordinator needs to know about topics; the broker supplies it."""

    def topic_id(self, name: str) -> uuid.UUID | None: ...

    def topic_name(self, topic_id: uuid.UUID) -> str | None: ...

    def partitions(self, name: str) -> int | None: ...

    def topic_names(self) -> list[str]: ...


@dataclass(frozen=True)
class ConsumerGroupConfig:
    """Coordinator settings; each maps to a Kafka broker config (name in the comment)."""

    # group.consumer.session.timeout.ms: a member that sends no heartbeat for this long is
    # fenced (removed) and the group epoch bumped.
    session_timeout_ms: int = 45_000
    # group.consumer.heartbeat.interval.ms: returned to members in every answer.
    heartbeat_interval_ms: int = 5_000
    # group.consumer.max.size -> GROUP_MAX_SIZE_REACHED
    max_group_size: int = 2**31 - 1
    # group.consumer.assignors: the supported server assignors; the first is the default.
    assignors: tuple[str, ...] = (UNIFORM, RANGE)
    # group.consumer.regex.refresh.interval.ms: how often a heartbeat re-resolves the group's
    # subscription regexes even without on_metadata_change().
    regex_refresh_interval_ms: int = 600_000


class ConsumerGroupState(Enum):
    """Group states as ListGroups / ConsumerGroupDescribe name them (derived, see model)."""

    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"
    DEAD = "Dead"


class MemberState(Enum):
    """A member's reconciliation state (Kafka's MemberState)."""

    STABLE = "stable"
    UNREVOKED_PARTITIONS = "unrevoked_partitions"
    UNRELEASED_PARTITIONS = "unreleased_partitions"


@dataclass(frozen=True)
class HeartbeatInput:
    """One ConsumerGroupHeartbeat request (v0/v1 fields) plus what the connection knows.

    None means "unchanged since the last heartbeat" for every optional field, as on the wire.
    `api_version` matters only for validation: v1 members must bring their own member id.
    """

    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: Sequence[str] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    topic_partitions: Sequence[TopicPartitions] | None = None
    client_id: str = ""
    client_host: str = ""
    api_version: int = 1


@dataclass(frozen=True)
class HeartbeatOutput:
    """The ConsumerGroupHeartbeat response's data. `assignment` is None unless the member
    joined, sent a full request, or its assignment changed (as Kafka)."""

    error: int
    error_message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: list[tuple[uuid.UUID, list[int]]] | None = None


@dataclass(frozen=True)
class DescribedTopicPartitions:
    topic_id: uuid.UUID
    topic_name: str
    partitions: list[int]


@dataclass(frozen=True)
class ConsumerGroupMemberDescription:
    member_id: str
    instance_id: str | None
    rack_id: str | None
    member_epoch: int
    client_id: str
    client_host: str
    subscribed_topic_names: list[str]
    subscribed_topic_regex: str | None
    assignment: list[DescribedTopicPartitions]
    target_assignment: list[DescribedTopicPartitions]


@dataclass(frozen=True)
class ConsumerGroupDescription:
    """One ConsumerGroupDescribe entry (authorized operations are the broker's business)."""

    group_id: str
    error: int = 0
    error_message: str | None = None
    group_state: str = ""
    group_epoch: int = 0
    assignment_epoch: int = 0
    assignor_name: str = ""
    members: list[ConsumerGroupMemberDescription] = field(default_factory=list)


#: Assignments in snapshots: ((topic id, (partitions...)), ...), sorted.
FrozenAssignment = tuple[tuple[uuid.UUID, tuple[int, ...]], ...]


@dataclass(frozen=True)
class ConsumerMemberSnapshot:
    """A member as persisted (Kafka spreads this over ConsumerGroupMemberMetadata,
    ConsumerGroupCurrentMemberAssignment and ConsumerGroupTargetAssignmentMember records)."""

    member_id: str
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    server_assignor: str | None
    state: MemberState
    member_epoch: int
    previous_member_epoch: int
    assigned: FrozenAssignment
    pending_revocation: FrozenAssignment
    target: FrozenAssignment


@dataclass(frozen=True)
class ConsumerGroupSnapshot:
    """A group as persisted (Kafka: ConsumerGroupMetadata, ConsumerGroupTargetAssignmentMetadata,
    ConsumerGroupRegularExpression and the member records)."""

    group_epoch: int
    assignment_epoch: int
    members: tuple[ConsumerMemberSnapshot, ...] = ()
    #: The subscribed topics as last seen: (name, topic id or None, partitions or 0).
    subscribed_metadata: tuple[tuple[str, uuid.UUID | None, int], ...] = ()
    #: Resolved subscription regexes: (regex, (matching topic names...)).
    resolved_regexes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    resolved_at_ms: int = -1


@dataclass(frozen=True)
class ConsumerGroupChanged:
    """Persist `snapshot` as the group's current state (replaces the previous one)."""

    group_id: str
    snapshot: ConsumerGroupSnapshot


@dataclass(frozen=True)
class ConsumerGroupDeleted:
    """Write the group's tombstones."""

    group_id: str


ConsumerGroupEvent = ConsumerGroupChanged | ConsumerGroupDeleted
