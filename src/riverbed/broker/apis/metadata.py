"""Metadata (key 3) with auto topic creation, and DescribeCluster (key 60)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from riverbed.metadata.topics import Topic, is_internal, validate_topic_name
from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.messages.describe_cluster import (
    DescribeClusterRequest,
    DescribeClusterResponse,
)
from riverbed.protocol.messages.metadata import MetadataRequest, MetadataResponse
from riverbed.protocol.primitives import ZERO_UUID
from riverbed.security.acl import CLUSTER_NAME, AclOperation, ResourceType
from riverbed.server.handler import ConnectionInfo

if TYPE_CHECKING:
    from ..broker import Broker

AUTHORIZED_OPS_UNKNOWN = -2147483648
DESCRIBE, CREATE = AclOperation.DESCRIBE, AclOperation.CREATE
TOPIC, CLUSTER = ResourceType.TOPIC, ResourceType.CLUSTER
Resp = MetadataResponse


def _topic_entry(broker: Broker, topic: Topic, conn: ConnectionInfo, with_ops: bool) -> Resp.MetadataResponseTopic:
    node = broker.config.node_id
    ops = broker.authorized_operations(conn, TOPIC, topic.name) if with_ops else AUTHORIZED_OPS_UNKNOWN
    return Resp.MetadataResponseTopic(
        error_code=0,
        name=topic.name,
        topic_id=topic.topic_id,
        is_internal=topic.internal,
        partitions=[
            Resp.MetadataResponsePartition(
                error_code=0,
                partition_index=p,
                leader_id=node,
                leader_epoch=-1,  # no leader epochs: clients then skip offset validation
                replica_nodes=[node],
                isr_nodes=[node],
                offline_replicas=[],
            )
            for p in range(topic.partitions)
        ],
        topic_authorized_operations=ops,
    )


def _ensure_internal(broker: Broker, name: str) -> Topic:
    """Create an internal topic with its coordinator's partition count and configs."""
    if name == "__consumer_offsets":
        broker.groups.ensure_topic()
    else:
        broker.txns.ensure_topic()
    topic = broker.topics.get(name)
    assert topic is not None
    return topic


def _cluster_ops(broker: Broker, conn: ConnectionInfo) -> int:
    """The cluster's KIP-430 operations; 0 for a principal that may not DESCRIBE it (Kafka)."""
    if not broker.authorize(conn, DESCRIBE, CLUSTER, CLUSTER_NAME):
        return 0
    return broker.authorized_operations(conn, CLUSTER, CLUSTER_NAME)


def handle_metadata(broker: Broker, conn: ConnectionInfo, version: int, req: MetadataRequest) -> MetadataResponse:
    host, port = broker.advertised(conn.listener)
    node = broker.config.node_id
    topics: list[Resp.MetadataResponseTopic] = []
    topic_ops = version >= 8 and req.include_topic_authorized_operations  # KIP-430
    all_topics = req.topics is None or (version == 0 and not req.topics)
    if all_topics:  # internal ones too (is_internal); not those the principal may not DESCRIBE (Kafka)
        topics = [_topic_entry(broker, t, conn, topic_ops) for t in broker.topics if broker.authorize(conn, DESCRIBE, TOPIC, t.name)]
    else:
        auto = (req.allow_auto_topic_creation if version >= 4 else True) and broker.config.auto_create_topics
        for wanted in req.topics or []:
            name = wanted.name
            if name is None:
                found = broker.topics.by_id(wanted.topic_id) if wanted.topic_id != ZERO_UUID else None
                if found is None:
                    topics.append(
                        Resp.MetadataResponseTopic(
                            error_code=ErrorCode.UNKNOWN_TOPIC_ID, name=None, topic_id=wanted.topic_id
                        )
                    )
                elif not broker.authorize(conn, DESCRIBE, TOPIC, found.name):
                    topics.append(Resp.MetadataResponseTopic(error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, name=None, topic_id=wanted.topic_id))
                else:
                    topics.append(_topic_entry(broker, found, conn, topic_ops))
                continue
            internal = is_internal(name)
            if not broker.authorize(conn, DESCRIBE, TOPIC, name):  # (is_internal false: Kafka tells nothing)
                topics.append(Resp.MetadataResponseTopic(error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, name=name))
                continue
            topic = broker.topics.get(name)
            if topic is None:
                try:
                    validate_topic_name(name)
                except KafkaError as exc:
                    topics.append(Resp.MetadataResponseTopic(error_code=exc.code, name=name))
                    continue
                if not auto:
                    topics.append(Resp.MetadataResponseTopic(error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, name=name, is_internal=internal))
                    continue
                if not (broker.authorize(conn, CREATE, CLUSTER, CLUSTER_NAME) or broker.authorize(conn, CREATE, TOPIC, name)):
                    topics.append(Resp.MetadataResponseTopic(error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, name=name, is_internal=internal))
                    continue
                if internal:  # auto-created as its coordinator creates it (Kafka)
                    topics.append(_topic_entry(broker, _ensure_internal(broker, name), conn, topic_ops))
                    continue
                try:
                    topic = broker.create_topic(name, broker.config.num_partitions, {})
                except KafkaError as exc:
                    if exc.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                        topics.append(Resp.MetadataResponseTopic(error_code=exc.code, name=name))
                        continue
                    topic = broker.topics.get(name)
                    assert topic is not None
            topics.append(_topic_entry(broker, topic, conn, topic_ops))
    return MetadataResponse(
        throttle_time_ms=0,
        brokers=[Resp.MetadataResponseBroker(node_id=node, host=host, port=port, rack=None)],
        cluster_id=broker.topics.cluster_id,
        controller_id=node,
        topics=topics,
        # KIP-430: asked for with v8-v10 only (v11+ moved it to DescribeCluster)
        cluster_authorized_operations=_cluster_ops(broker, conn) if 8 <= version <= 10 and req.include_cluster_authorized_operations else AUTHORIZED_OPS_UNKNOWN,
    )


def handle_describe_cluster(
    broker: Broker, conn: ConnectionInfo, version: int, req: DescribeClusterRequest
) -> DescribeClusterResponse:
    host, port = broker.advertised(conn.listener)
    node = broker.config.node_id
    if version >= 1 and req.endpoint_type not in (1,):
        return DescribeClusterResponse(
            error_code=ErrorCode.UNSUPPORTED_ENDPOINT_TYPE,
            error_message="Only brokers can be described",
            endpoint_type=req.endpoint_type,
            cluster_id=broker.topics.cluster_id,
        )
    return DescribeClusterResponse(
        throttle_time_ms=0,
        error_code=0,
        endpoint_type=1,
        cluster_id=broker.topics.cluster_id,
        controller_id=node,
        brokers=[DescribeClusterResponse.DescribeClusterBroker(broker_id=node, host=host, port=port, rack=None)],
        cluster_authorized_operations=_cluster_ops(broker, conn) if req.include_cluster_authorized_operations else AUTHORIZED_OPS_UNKNOWN,
    )
