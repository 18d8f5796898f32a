"""DescribeLogStats (riverbed extension, ``protocol/extensions.py``): per partition, the
log start (partition-wide and local), the high watermark, local and remote bytes and
segments, and for compacted topics the cleaner's dirty ratio and last clean time. Used by
``riverbed topic describe``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.extensions import (
    DescribeLogStatsRequest,
    DescribeLogStatsResponse,
    PartitionStats,
)
from riverbed.security.acl import CLUSTER_NAME, AclOperation, ResourceType
from riverbed.server.handler import ConnectionInfo

if TYPE_CHECKING:
    from ..broker import Broker


def partition_stats(broker: Broker, topic: str, partition: int) -> PartitionStats:
    plog: Any = broker.partition(topic, partition)
    if plog is None:
        return PartitionStats(partition=partition, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    stats = PartitionStats(
        partition=partition,
        log_start_offset=plog.log_start_offset,
        local_log_start_offset=getattr(plog, "local_log_start_offset", plog.log_start_offset),
        high_watermark=plog.high_watermark,
        local_bytes=plog.size_bytes,
        local_segments=len(plog.segment_base_offsets()) if hasattr(plog, "segment_base_offsets") else -1,
    )
    remote = getattr(broker.logs, "remote_stats", None)
    if remote is not None:
        found = remote(topic, partition)
        if found is not None:
            stats.remote_bytes, stats.remote_segments = found
    cleaner_info = getattr(broker.logs, "cleaner_info", None)
    if cleaner_info is not None and plog.config.cleanup_compact:
        info = cleaner_info(topic, partition)
        if info is not None:
            stats.dirty_ratio = float(info.dirty_ratio)
            stats.last_clean_ms = int(info.last_clean_ms)
    else:
        stats.dirty_ratio = math.nan
    return stats


def handle_describe_log_stats(broker: Broker, conn: ConnectionInfo, version: int, req: DescribeLogStatsRequest) -> DescribeLogStatsResponse:
    if not broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME):
        return DescribeLogStatsResponse(throttle_time_ms=0, topics=[DescribeLogStatsResponse.Topic(t.name, [PartitionStats(partition=p, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED) for p in t.partitions]) for t in req.topics or []])
    if req.topics is None:
        wanted = [(t.name, list(range(t.partitions))) for t in sorted(broker.topics, key=lambda t: t.name)]
    else:
        wanted = [(t.name, list(t.partitions)) for t in req.topics]
    topics = [DescribeLogStatsResponse.Topic(name, [partition_stats(broker, name, p) for p in parts]) for name, parts in wanted]
    return DescribeLogStatsResponse(throttle_time_ms=0, topics=topics)
