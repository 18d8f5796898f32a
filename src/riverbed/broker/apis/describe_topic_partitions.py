"""DescribeTopicPartitions (key 75, KIP-966): topics and their partitions, paged.

As Kafka: topics in name order from the cursor's topic (its partitions from the cursor's
partition), at most ``min(response_partition_limit, 2000)`` partitions per answer; when the
limit is reached ``next_cursor`` names the first partition not returned. An empty topic list
means every topic the principal may DESCRIBE (unauthorized or unknown ones are left out);
named topics that are unknown or not authorized get an error entry.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from riverbed.metadata.topics import is_internal, validate_topic_name
from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.messages.describe_topic_partitions import (
    DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse,
)
from riverbed.protocol.primitives import ZERO_UUID
from riverbed.security.acl import AclOperation, ResourceType
from riverbed.server.handler import ConnectionInfo

if TYPE_CHECKING:
    from ..broker import Broker

R = DescribeTopicPartitionsResponse
log = logging.getLogger("riverbed.broker")
MAX_PARTITIONS = 2000  # max.request.partition.size.limit


def _invalid(req: DescribeTopicPartitionsRequest, message: str) -> DescribeTopicPartitionsResponse:
    """Kafka's answer to an invalid request: INVALID_REQUEST on every requested topic."""
    log.info("DescribeTopicPartitions refused: %s", message)
    return R(
        throttle_time_ms=0,
        topics=[R.DescribeTopicPartitionsResponseTopic(error_code=ErrorCode.INVALID_REQUEST, name=t.name, topic_id=ZERO_UUID, partitions=[]) for t in req.topics],
        next_cursor=None,
    )


def handle_describe_topic_partitions(
    broker: Broker, conn: ConnectionInfo, version: int, req: DescribeTopicPartitionsRequest
) -> DescribeTopicPartitionsResponse:
    all_topics = not req.topics
    cursor = req.cursor
    start_topic = cursor.topic_name if cursor is not None else ""
    if all_topics:
        names = {t.name for t in broker.topics if t.name >= start_topic}
    else:
        names = {t.name for t in req.topics if t.name >= start_topic}
        if cursor is not None and cursor.topic_name not in names:
            return _invalid(req, f"DescribeTopicPartitionsRequest topic list should contain the cursor topic: {cursor.topic_name}")
    if cursor is not None and cursor.partition_index < 0:
        return _invalid(req, "DescribeTopicPartitionsRequest cursor partition must be valid")
    denied: list[DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponseTopic] = []
    authorized = []
    for name in sorted(names):
        if broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.TOPIC, name):
            authorized.append(name)
        elif not all_topics:
            denied.append(R.DescribeTopicPartitionsResponseTopic(error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, name=name, topic_id=ZERO_UUID, is_internal=False, partitions=[]))
    node = broker.config.node_id
    remaining = max(min(MAX_PARTITIONS, req.response_partition_limit), 1)
    out: list[DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponseTopic] = []
    next_cursor = None
    for name in authorized:
        if remaining == 0:  # the previous topic filled the page exactly
            next_cursor = R.Cursor(topic_name=name, partition_index=0)
            break
        topic = broker.topics.get(name)
        if topic is None:
            if not all_topics:
                try:
                    validate_topic_name(name)
                    code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                except KafkaError:
                    code = ErrorCode.INVALID_TOPIC_EXCEPTION
                out.append(R.DescribeTopicPartitionsResponseTopic(error_code=code, name=name, topic_id=ZERO_UUID, is_internal=is_internal(name), partitions=[]))
            continue
        first = cursor.partition_index if cursor is not None and name == cursor.topic_name else 0
        upper = min(topic.partitions, first + remaining)
        partitions = [
            R.DescribeTopicPartitionsResponsePartition(
                error_code=0,
                partition_index=p,
                leader_id=node,
                leader_epoch=-1,  # riverbed has no leader epochs (as in Metadata)
                replica_nodes=[node],
                isr_nodes=[node],
                eligible_leader_replicas=[],
                last_known_elr=[],
                offline_replicas=[],
            )
            for p in range(first, upper)
        ]
        out.append(
            R.DescribeTopicPartitionsResponseTopic(
                error_code=0,
                name=name,
                topic_id=topic.topic_id,
                is_internal=topic.internal,
                partitions=partitions,
                topic_authorized_operations=broker.authorized_operations(conn, ResourceType.TOPIC, name),
            )
        )
        if upper < topic.partitions:
            next_cursor = R.Cursor(topic_name=name, partition_index=upper)
            break
        remaining -= len(partitions)
    return R(throttle_time_ms=0, topics=out + denied, next_cursor=next_cursor)
