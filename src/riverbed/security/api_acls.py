"""Which ACL checks each Kafka API performs: the table the broker's handlers follow.

Transcribed from Apache Kafka's ``KafkaApis`` / ``AclApis`` (``core/src/main/scala/kafka/
server``). Each API lists *rules*; every rule applies (in Kafka's order, when its ``when``
condition holds), and a rule passes when *any one* of its checks passes. ``on_deny`` says
what a failed rule does:

- ``FAIL_REQUEST``: the whole request (or the whole group / transactional id it is about)
  gets ``error``; nothing else is attempted.
- ``FAIL_RESOURCE``: each named resource that fails gets ``error``; the others proceed.
- ``OMIT``: resources that fail are silently left out of the answer (Metadata for all
  topics, ListGroups, ListTransactions): the caller cannot learn that they exist.

A check names the resource by the request field that carries it (``target``), the fixed
name ``kafka-cluster`` for the cluster, or ``ANY_RESOURCE`` for "at least one resource of
this type" (``Authorizer.authorize_by_resource_type``).

Differences from older descriptions worth knowing:
- Produce does *not* check IDEMPOTENT_WRITE for idempotent batches since Kafka 3.0 (KIP-679);
  InitProducerId does, and accepts WRITE on any topic instead.
- Metadata hides topics the caller may not DESCRIBE only when all topics are requested; a
  topic asked for by name comes back with TOPIC_AUTHORIZATION_FAILED.
- DeleteTopics by topic id also needs DESCRIBE, so the name is not disclosed.

Inter-broker APIs (LeaderAndIsr, UpdateMetadata, ... : CLUSTER_ACTION on the cluster) and
delegation tokens are listed only where riverbed may meet them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from riverbed.protocol.errors import ErrorCode
from riverbed.security.acl import (
    CLUSTER_NAME,
    AclOperation,
    Authorizer,
    ResourceType,
)

ANY_RESOURCE = "<any>"
"""Check target meaning "some resource of this type" (authorize_by_resource_type)."""

_OP = AclOperation
_RT = ResourceType
_E = ErrorCode


class OnDeny(Enum):
    FAIL_REQUEST = "fail-request"
    FAIL_RESOURCE = "fail-resource"
    OMIT = "omit"


@dataclass(frozen=True, slots=True)
class AclCheck:
    operation: AclOperation
    resource_type: ResourceType
    target: str
    """Request field naming the resource, ``kafka-cluster``, or ``ANY_RESOURCE``."""


@dataclass(frozen=True, slots=True)
class AclRule:
    any_of: tuple[AclCheck, ...]
    on_deny: OnDeny
    error: ErrorCode
    """Error for a failed rule; NONE for OMIT rules (nothing is reported)."""
    when: str = ""
    """Condition under which the rule applies; empty = always."""


@dataclass(frozen=True, slots=True)
class ApiAcls:
    api_key: int
    name: str
    rules: tuple[AclRule, ...]
    notes: str = ""


def _check(op: AclOperation, rt: ResourceType, target: str) -> AclCheck:
    return AclCheck(op, rt, CLUSTER_NAME if rt == _RT.CLUSTER else target)


def _rule(
    *checks: AclCheck, on_deny: OnDeny, error: ErrorCode = _E.NONE, when: str = ""
) -> AclRule:
    return AclRule(tuple(checks), on_deny, error, when)


def _cluster(op: AclOperation, error: ErrorCode = _E.CLUSTER_AUTHORIZATION_FAILED) -> AclRule:
    return _rule(_check(op, _RT.CLUSTER, CLUSTER_NAME), on_deny=OnDeny.FAIL_REQUEST, error=error)


def _group(op: AclOperation, target: str = "group_id", when: str = "") -> AclRule:
    return _rule(
        _check(op, _RT.GROUP, target),
        on_deny=OnDeny.FAIL_REQUEST,
        error=_E.GROUP_AUTHORIZATION_FAILED,
        when=when,
    )


def _txn(op: AclOperation, target: str = "transactional_id", when: str = "") -> AclRule:
    return _rule(
        _check(op, _RT.TRANSACTIONAL_ID, target),
        on_deny=OnDeny.FAIL_REQUEST,
        error=_E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        when=when,
    )


def _topics(op: AclOperation, target: str, when: str = "") -> AclRule:
    return _rule(
        _check(op, _RT.TOPIC, target),
        on_deny=OnDeny.FAIL_RESOURCE,
        error=_E.TOPIC_AUTHORIZATION_FAILED,
        when=when,
    )


_TABLE: tuple[ApiAcls, ...] = (
    ApiAcls(
        0,
        "Produce",
        (
            _txn(_OP.WRITE, when="the request carries transactional batches (a null id fails)"),
            _topics(_OP.WRITE, "topic_data[].name"),
        ),
        "No IDEMPOTENT_WRITE check for idempotent batches since Kafka 3.0 (KIP-679).",
    ),
    ApiAcls(
        1,
        "Fetch",
        (
            _topics(_OP.READ, "topics[].topic", when="consumer fetch (replica_id < 0)"),
            _rule(
                _check(_OP.CLUSTER_ACTION, _RT.CLUSTER, CLUSTER_NAME),
                on_deny=OnDeny.FAIL_RESOURCE,
                error=_E.TOPIC_AUTHORIZATION_FAILED,
                when="follower fetch (replica_id >= 0): every partition fails",
            ),
        ),
    ),
    ApiAcls(2, "ListOffsets", (_topics(_OP.DESCRIBE, "topics[].name"),)),
    ApiAcls(
        3,
        "Metadata",
        (
            _rule(
                _check(_OP.DESCRIBE, _RT.TOPIC, "topics[].name"),
                on_deny=OnDeny.OMIT,
                when="all topics requested (null list, or empty list in v0)",
            ),
            _topics(_OP.DESCRIBE, "topics[].name", when="topics requested by name or id"),
            _rule(
                _check(_OP.CREATE, _RT.CLUSTER, CLUSTER_NAME),
                _check(_OP.CREATE, _RT.TOPIC, "topics[].name"),
                on_deny=OnDeny.FAIL_RESOURCE,
                error=_E.TOPIC_AUTHORIZATION_FAILED,
                when="auto-creating a missing, describable topic",
            ),
            _rule(
                _check(_OP.DESCRIBE, _RT.CLUSTER, CLUSTER_NAME),
                on_deny=OnDeny.OMIT,
                when="include_cluster_authorized_operations (v8-v10): else the field is 0",
            ),
        ),
        "include_topic_authorized_operations: bitfield of allowed topic operations.",
    ),
    ApiAcls(
        8,
        "OffsetCommit",
        (_group(_OP.READ), _topics(_OP.READ, "topics[].name")),
        "A group failure puts GROUP_AUTHORIZATION_FAILED on every partition.",
    ),
    ApiAcls(
        9,
        "OffsetFetch",
        (
            _group(_OP.DESCRIBE, "group_id (groups[].group_id in v8+, per group)"),
            _topics(_OP.DESCRIBE, "topics[].name", when="partitions listed"),
            _rule(
                _check(_OP.DESCRIBE, _RT.TOPIC, "committed topics"),
                on_deny=OnDeny.OMIT,
                when="all partitions requested (null topics)",
            ),
        ),
    ),
    ApiAcls(
        10,
        "FindCoordinator",
        (
            _group(_OP.DESCRIBE, "key (coordinator_keys[] in v4+)", when="key_type 0 (group)"),
            _txn(_OP.DESCRIBE, "key (coordinator_keys[] in v4+)", when="key_type 1 (txn)"),
        ),
        "v4+: the error is per key.",
    ),
    ApiAcls(11, "JoinGroup", (_group(_OP.READ),)),
    ApiAcls(12, "Heartbeat", (_group(_OP.READ),)),
    ApiAcls(13, "LeaveGroup", (_group(_OP.READ),)),
    ApiAcls(14, "SyncGroup", (_group(_OP.READ),)),
    ApiAcls(
        15,
        "DescribeGroups",
        (
            _rule(
                _check(_OP.DESCRIBE, _RT.GROUP, "groups[]"),
                on_deny=OnDeny.FAIL_RESOURCE,
                error=_E.GROUP_AUTHORIZATION_FAILED,
            ),
        ),
        "v3+ include_authorized_operations: bitfield of allowed group operations.",
    ),
    ApiAcls(
        16,
        "ListGroups",
        (
            _rule(
                _check(_OP.DESCRIBE, _RT.CLUSTER, CLUSTER_NAME),
                _check(_OP.DESCRIBE, _RT.GROUP, "each listed group"),
                on_deny=OnDeny.OMIT,
            ),
        ),
        "DESCRIBE on the cluster lists every group; otherwise only DESCRIBE-able groups.",
    ),
    ApiAcls(17, "SaslHandshake", (), "Before authentication; no ACL."),
    ApiAcls(18, "ApiVersions", (), "No ACL."),
    ApiAcls(
        19,
        "CreateTopics",
        (
            _rule(
                _check(_OP.CREATE, _RT.CLUSTER, CLUSTER_NAME),
                _check(_OP.CREATE, _RT.TOPIC, "topics[].name"),
                on_deny=OnDeny.FAIL_RESOURCE,
                error=_E.TOPIC_AUTHORIZATION_FAILED,
            ),
            _rule(
                _check(_OP.DESCRIBE_CONFIGS, _RT.TOPIC, "topics[].name"),
                on_deny=OnDeny.FAIL_RESOURCE,
                error=_E.TOPIC_AUTHORIZATION_FAILED,
                when="returning configs (v5+): sets topic_config_error_code only",
            ),
        ),
    ),
    ApiAcls(
        20,
        "DeleteTopics",
        (
            _topics(_OP.DESCRIBE, "topics[].topic_id", when="by topic id: name is withheld"),
            _topics(_OP.DELETE, "topic_names[] / topics[].name"),
        ),
    ),
    ApiAcls(21, "DeleteRecords", (_topics(_OP.DELETE, "topics[].name"),)),
    ApiAcls(
        22,
        "InitProducerId",
        (
            _txn(_OP.WRITE, when="transactional_id is not null"),
            _rule(
                _check(_OP.IDEMPOTENT_WRITE, _RT.CLUSTER, CLUSTER_NAME),
                _check(_OP.WRITE, _RT.TOPIC, ANY_RESOURCE),
                on_deny=OnDeny.FAIL_REQUEST,
                error=_E.CLUSTER_AUTHORIZATION_FAILED,
                when="transactional_id is null (idempotent producer)",
            ),
        ),
    ),
    ApiAcls(
        23,
        "OffsetForLeaderEpoch",
        (
            _rule(
                _check(_OP.CLUSTER_ACTION, _RT.CLUSTER, CLUSTER_NAME),
                _check(_OP.DESCRIBE, _RT.TOPIC, "topics[].topic"),
                on_deny=OnDeny.FAIL_RESOURCE,
                error=_E.TOPIC_AUTHORIZATION_FAILED,
            ),
        ),
    ),
    ApiAcls(
        24,
        "AddPartitionsToTxn",
        (
            _txn(_OP.WRITE),
            _topics(_OP.WRITE, "topics[].name", when="non-internal topics"),
        ),
        "Any topic failure fails the request: the others get OPERATION_NOT_ATTEMPTED.",
    ),
    ApiAcls(25, "AddOffsetsToTxn", (_txn(_OP.WRITE), _group(_OP.READ))),
    ApiAcls(26, "EndTxn", (_txn(_OP.WRITE),)),
    ApiAcls(27, "WriteTxnMarkers", (_cluster(_OP.CLUSTER_ACTION),), "Inter-broker."),
    ApiAcls(
        28,
        "TxnOffsetCommit",
        (_txn(_OP.WRITE), _group(_OP.READ), _topics(_OP.READ, "topics[].name")),
    ),
    ApiAcls(29, "DescribeAcls", (_cluster(_OP.DESCRIBE),)),
    ApiAcls(30, "CreateAcls", (_cluster(_OP.ALTER),)),
    ApiAcls(31, "DeleteAcls", (_cluster(_OP.ALTER),)),
    ApiAcls(
        32,
        "DescribeConfigs",
        (
            _topics(_OP.DESCRIBE_CONFIGS, "resources[].resource_name", when="topic resource"),
            _rule(
                _check(_OP.DESCRIBE_CONFIGS, _RT.CLUSTER, CLUSTER_NAME),
                on_deny=OnDeny.FAIL_RESOURCE,
                error=_E.CLUSTER_AUTHORIZATION_FAILED,
                when="broker or broker-logger resource",
            ),
        ),
    ),
    ApiAcls(
        33,
        "AlterConfigs",
        (
            _topics(_OP.ALTER_CONFIGS, "resources[].resource_name", when="topic resource"),
            _rule(
                _check(_OP.ALTER_CONFIGS, _RT.CLUSTER, CLUSTER_NAME),
                on_deny=OnDeny.FAIL_RESOURCE,
                error=_E.CLUSTER_AUTHORIZATION_FAILED,
                when="broker resource",
            ),
        ),
    ),
    ApiAcls(34, "AlterReplicaLogDirs", (_cluster(_OP.ALTER),)),
    ApiAcls(35, "DescribeLogDirs", (_cluster(_OP.DESCRIBE),), "Denied: empty results + error."),
    ApiAcls(36, "SaslAuthenticate", (), "Before authentication; no ACL."),
    ApiAcls(37, "CreatePartitions", (_topics(_OP.ALTER, "topics[].name"),)),
    ApiAcls(
        42,
        "DeleteGroups",
        (
            _rule(
                _check(_OP.DELETE, _RT.GROUP, "groups_names[]"),
                on_deny=OnDeny.FAIL_RESOURCE,
                error=_E.GROUP_AUTHORIZATION_FAILED,
            ),
        ),
    ),
    ApiAcls(43, "ElectLeaders", (_cluster(_OP.ALTER),)),
    ApiAcls(
        44,
        "IncrementalAlterConfigs",
        (
            _topics(_OP.ALTER_CONFIGS, "resources[].resource_name", when="topic resource"),
            _rule(
                _check(_OP.ALTER_CONFIGS, _RT.CLUSTER, CLUSTER_NAME),
                on_deny=OnDeny.FAIL_RESOURCE,
                error=_E.CLUSTER_AUTHORIZATION_FAILED,
                when="broker or broker-logger resource",
            ),
        ),
    ),
    ApiAcls(45, "AlterPartitionReassignments", (_cluster(_OP.ALTER),)),
    ApiAcls(46, "ListPartitionReassignments", (_cluster(_OP.DESCRIBE),)),
    ApiAcls(47, "OffsetDelete", (_group(_OP.DELETE), _topics(_OP.READ, "topics[].name"))),
    ApiAcls(48, "DescribeClientQuotas", (_cluster(_OP.DESCRIBE_CONFIGS),)),
    ApiAcls(49, "AlterClientQuotas", (_cluster(_OP.ALTER_CONFIGS),)),
    ApiAcls(50, "DescribeUserScramCredentials", (_cluster(_OP.DESCRIBE),)),
    ApiAcls(51, "AlterUserScramCredentials", (_cluster(_OP.ALTER),)),
    ApiAcls(55, "DescribeQuorum", (_cluster(_OP.DESCRIBE),), "Denied: top-level error."),
    ApiAcls(
        60,
        "DescribeCluster",
        (
            _rule(
                _check(_OP.DESCRIBE, _RT.CLUSTER, CLUSTER_NAME),
                on_deny=OnDeny.OMIT,
                when="include_cluster_authorized_operations: else the field is 0",
            ),
        ),
        "No ACL needed for the cluster description itself.",
    ),
    ApiAcls(61, "DescribeProducers", (_topics(_OP.READ, "topics[].name"),)),
    ApiAcls(
        65,
        "DescribeTransactions",
        (
            _rule(
                _check(_OP.DESCRIBE, _RT.TRANSACTIONAL_ID, "transactional_ids[]"),
                on_deny=OnDeny.FAIL_RESOURCE,
                error=_E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            ),
            _rule(
                _check(_OP.DESCRIBE, _RT.TOPIC, "topics of each transaction"),
                on_deny=OnDeny.OMIT,
            ),
        ),
    ),
    ApiAcls(
        66,
        "ListTransactions",
        (
            _rule(
                _check(_OP.DESCRIBE, _RT.TRANSACTIONAL_ID, "each listed transactional id"),
                on_deny=OnDeny.OMIT,
            ),
        ),
    ),
    ApiAcls(
        68,
        "ConsumerGroupHeartbeat",
        (
            _group(_OP.READ),
            _rule(
                _check(_OP.DESCRIBE, _RT.TOPIC, "subscribed_topic_names[]"),
                on_deny=OnDeny.FAIL_REQUEST,
                error=_E.TOPIC_AUTHORIZATION_FAILED,
                when="subscribed_topic_names given: any undescribable topic fails it",
            ),
        ),
        "KIP-848 (Kafka 3.7+).",
    ),
    ApiAcls(
        69,
        "ConsumerGroupDescribe",
        (
            _rule(
                _check(_OP.DESCRIBE, _RT.GROUP, "group_ids[]"),
                on_deny=OnDeny.FAIL_RESOURCE,
                error=_E.GROUP_AUTHORIZATION_FAILED,
            ),
        ),
        "KIP-848 (Kafka 3.7+).",
    ),
    ApiAcls(
        75,
        "DescribeTopicPartitions",
        (
            _rule(
                _check(_OP.DESCRIBE, _RT.TOPIC, "topics[].name"),
                on_deny=OnDeny.FAIL_RESOURCE,
                error=_E.TOPIC_AUTHORIZATION_FAILED,
                when="topics named; with none (every topic) the undescribable ones are omitted",
            ),
        ),
        "KIP-966 (Kafka 3.8+).",
    ),
)

API_ACLS: Mapping[int, ApiAcls] = {entry.api_key: entry for entry in _TABLE}
"""api key -> the ACL rules Kafka applies to it. Keys absent here: not client-facing in riverbed
(inter-broker APIs need CLUSTER_ACTION on the cluster; delegation tokens are unsupported)."""


def acls_for(api_key: int) -> ApiAcls | None:
    return API_ACLS.get(api_key)


_AUTH_ERRORS: Mapping[ResourceType, ErrorCode] = {
    ResourceType.TOPIC: ErrorCode.TOPIC_AUTHORIZATION_FAILED,
    ResourceType.GROUP: ErrorCode.GROUP_AUTHORIZATION_FAILED,
    ResourceType.CLUSTER: ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
    ResourceType.TRANSACTIONAL_ID: ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    ResourceType.DELEGATION_TOKEN: ErrorCode.DELEGATION_TOKEN_AUTHORIZATION_FAILED,
}


def authorization_error(resource_type: ResourceType) -> ErrorCode:
    """The *_AUTHORIZATION_FAILED code for a denied check on ``resource_type``."""
    try:
        return _AUTH_ERRORS[resource_type]
    except KeyError:
        raise ValueError(f"no authorization error for {resource_type.name}") from None


# --------------------------------------------------------------------------------------------
# Helpers the handlers call


def check_passes(
    authorizer: Authorizer, principal: str, host: str, check: AclCheck, name: str = ""
) -> bool:
    """Evaluate one check; ``name`` is the resource name for non-cluster, non-ANY targets."""
    if check.resource_type == ResourceType.CLUSTER:
        return authorizer.authorize(
            principal, host, check.operation, ResourceType.CLUSTER, CLUSTER_NAME
        )
    if check.target == ANY_RESOURCE:
        return authorizer.authorize_by_resource_type(
            principal, host, check.operation, check.resource_type
        )
    return authorizer.authorize(principal, host, check.operation, check.resource_type, name)


def rule_passes(
    authorizer: Authorizer, principal: str, host: str, rule: AclRule, name: str = ""
) -> bool:
    """A rule passes when any of its checks passes (cluster checks first, they are per request)."""
    return any(check_passes(authorizer, principal, host, c, name) for c in rule.any_of)


def operations_bitfield(operations: Iterable[AclOperation]) -> int:
    """Kafka's ``Utils.to32BitField``: bit ``op`` set for each allowed operation."""
    bits = 0
    for op in operations:
        bits |= 1 << int(op)
    return bits


def authorized_operations(
    authorizer: Authorizer,
    principal: str,
    host: str,
    resource_type: ResourceType,
    resource_name: str,
) -> int:
    """The ``*_authorized_operations`` field of Metadata / DescribeGroups / DescribeCluster."""
    return operations_bitfield(
        authorizer.authorized_operations(principal, host, resource_type, resource_name)
    )


def check_init_producer_id(
    authorizer: Authorizer, principal: str, host: str, transactional_id: str | None
) -> ErrorCode:
    """InitProducerId: WRITE on the transactional id, or (no id) IDEMPOTENT_WRITE on the cluster
    or WRITE on some topic."""
    if transactional_id is not None:
        if authorizer.authorize(
            principal, host, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id
        ):
            return ErrorCode.NONE
        return ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    if authorizer.authorize(
        principal, host, AclOperation.IDEMPOTENT_WRITE, ResourceType.CLUSTER, CLUSTER_NAME
    ) or authorizer.authorize_by_resource_type(
        principal, host, AclOperation.WRITE, ResourceType.TOPIC
    ):
        return ErrorCode.NONE
    return ErrorCode.CLUSTER_AUTHORIZATION_FAILED


def check_transactional_produce(
    authorizer: Authorizer, principal: str, host: str, transactional_id: str | None
) -> ErrorCode:
    """Produce with transactional batches: WRITE on the transactional id (null id fails)."""
    if transactional_id is not None and authorizer.authorize(
        principal, host, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id
    ):
        return ErrorCode.NONE
    return ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def topics_creatable(
    authorizer: Authorizer, principal: str, host: str, topics: Iterable[str]
) -> set[str]:
    """CreateTopics / Metadata auto-creation: all of them with CREATE on the cluster, else
    those with CREATE on the topic."""
    names = set(topics)
    if authorizer.authorize(
        principal, host, AclOperation.CREATE, ResourceType.CLUSTER, CLUSTER_NAME
    ):
        return names
    return authorizer.filter_authorized(
        principal, host, AclOperation.CREATE, ResourceType.TOPIC, names
    )


@dataclass(frozen=True, slots=True)
class MetadataAccess:
    """How a Metadata request's topics split under the caller's ACLs."""

    authorized: frozenset[str]
    """Describable (and, if missing and auto-created, creatable) topics: answer normally."""
    denied_describe: frozenset[str]
    """Answer TOPIC_AUTHORIZATION_FAILED (empty when all topics were requested: omitted)."""
    denied_create: frozenset[str]
    """Missing topics the caller may describe but not create: TOPIC_AUTHORIZATION_FAILED."""


def metadata_access(
    authorizer: Authorizer,
    principal: str,
    host: str,
    topics: Iterable[str],
    *,
    all_topics: bool,
    existing: Iterable[str] = (),
    auto_create: bool = False,
) -> MetadataAccess:
    """Kafka's ``handleTopicMetadataRequest`` authorization. ``topics`` is every topic when
    ``all_topics``; ``auto_create`` is (request flag and broker config, and not all topics)."""
    names = set(topics)
    describable = authorizer.filter_authorized(
        principal, host, AclOperation.DESCRIBE, ResourceType.TOPIC, names
    )
    denied_describe = frozenset() if all_topics else frozenset(names - describable)
    denied_create: set[str] = set()
    if auto_create and not all_topics:
        missing = describable - set(existing)
        if missing:
            denied_create = missing - topics_creatable(authorizer, principal, host, missing)
    return MetadataAccess(
        frozenset(describable - denied_create), denied_describe, frozenset(denied_create)
    )


def visible_groups(
    authorizer: Authorizer, principal: str, host: str, groups: Iterable[str]
) -> list[str]:
    """ListGroups: every group with DESCRIBE on the cluster, else the DESCRIBE-able ones."""
    listed = list(groups)
    if authorizer.authorize(
        principal, host, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME
    ):
        return listed
    allowed = authorizer.filter_authorized(
        principal, host, AclOperation.DESCRIBE, ResourceType.GROUP, listed
    )
    return [g for g in listed if g in allowed]


def offset_for_leader_epoch_topics(
    authorizer: Authorizer, principal: str, host: str, topics: Iterable[str]
) -> set[str]:
    """OffsetForLeaderEpoch: all topics with CLUSTER_ACTION, else the DESCRIBE-able ones."""
    names = set(topics)
    if authorizer.authorize(
        principal, host, AclOperation.CLUSTER_ACTION, ResourceType.CLUSTER, CLUSTER_NAME
    ):
        return names
    return authorizer.filter_authorized(
        principal, host, AclOperation.DESCRIBE, ResourceType.TOPIC, names
    )
