"""Value types of the classic consumer-group coordinator: configuration, states, results,
persisted events and snapshots. Plain data, no behaviour (see group.py for the machine)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

#: Protocol type of Kafka's Java-style consumers; only these subscriptions are decoded.
CONSUMER_PROTOCOL_TYPE = "consumer"


@dataclass(frozen=True)
class GroupConfig:
    """Coordinator settings; each maps to a Kafka broker config (name in the comment)."""

    # group.initial.rebalance.delay.ms: how long the first rebalance of an Empty group waits for
    # more members; every new member extends it by the same delay, within the rebalance timeout.
    initial_rebalance_delay_ms: int = 3000
    # group.min.session.timeout.ms / group.max.session.timeout.ms -> INVALID_SESSION_TIMEOUT
    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1_800_000
    # group.max.size -> GROUP_MAX_SIZE_REACHED
    max_group_size: int = 2**31 - 1
    # offsets.retention.minutes (in ms): offsets of an Empty group expire this long after it became
    # Empty; offsets of a standalone group (no protocol type) this long after their commit.
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000
    # offset.metadata.max.bytes -> OFFSET_METADATA_TOO_LARGE
    max_metadata_size: int = 4096
    # Kafka's new-member join timeout: a member that joined for the first time and is still
    # waiting for its JoinGroup answer is dropped after this long (its client likely gave up).
    new_member_join_timeout_ms: int = 300_000
    # offsets.retention.check.interval.ms: an Empty group without offsets is deleted this long
    # after it became Empty (Kafka deletes it at its next cleanup pass, at most this much later).
    offsets_retention_check_interval_ms: int = 600_000


class GroupState(Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(frozen=True)
class JoinMember:
    """One member as the leader sees it in its JoinGroup answer."""

    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass
class JoinResult:
    error: int
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    member_id: str = ""
    members: list[JoinMember] = field(default_factory=list)  # only the leader's answer has them
    skip_assignment: bool = False


@dataclass
class SyncResult:
    error: int
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


JoinCallback = Callable[[JoinResult], None]
SyncCallback = Callable[[SyncResult], None]


@dataclass(frozen=True)
class OffsetAndMetadata:
    """A committed offset; fields mirror the OffsetCommitValue record of __consumer_offsets."""

    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp: int = 0
    # Only set by OffsetCommit v1 records (explicit per-offset expiry); -1 = use the retention.
    expire_timestamp: int = -1


@dataclass(frozen=True)
class MemberSnapshot:
    """A member as persisted; fields mirror GroupMetadataValue.MemberMetadata."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout: int
    session_timeout: int
    subscription: bytes  # the member's metadata for the group's chosen protocol
    assignment: bytes


@dataclass(frozen=True)
class GroupSnapshot:
    """A group as persisted; fields mirror the GroupMetadataValue record."""

    protocol_type: str  # "" when the group has none (standalone offset storage)
    generation: int
    protocol: str | None
    leader: str | None
    state_timestamp: int  # -1 when unknown (records older than version 2)
    members: list[MemberSnapshot] = field(default_factory=list)


@dataclass(frozen=True)
class GroupMetadataChanged:
    """Persist `snapshot` as the group's GroupMetadata record."""

    group_id: str
    snapshot: GroupSnapshot


@dataclass(frozen=True)
class OffsetsCommitted:
    group_id: str
    offsets: list[tuple[str, int, OffsetAndMetadata]]


@dataclass(frozen=True)
class OffsetsDeleted:
    """Write tombstones for these offsets (OffsetDelete, expiry, or group deletion)."""

    group_id: str
    partitions: list[tuple[str, int]]


@dataclass(frozen=True)
class GroupDeleted:
    """Write tombstones for these offsets of the group and for its metadata, as one batch
    (the group's deletion is written whole or not at all)."""

    group_id: str
    offsets: list[tuple[str, int]] = field(default_factory=list)


GroupEvent = GroupMetadataChanged | OffsetsCommitted | OffsetsDeleted | GroupDeleted


@dataclass(frozen=True)
class MemberDescription:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(frozen=True)
class GroupDescription:
    group_id: str
    error: int
    state: str
    protocol_type: str
    protocol: str  # the chosen protocol; "" unless the group is Stable
    members: list[MemberDescription] = field(default_factory=list)
