"""DescribeLogDirs (key 35): the broker's one log directory and the size on disk of each
partition in it (what ``kafka-log-dirs.sh`` and admin clients show). v4 adds the volume's
total and usable bytes. A directory whose disk is full (writes refused) has the error
KAFKA_STORAGE_ERROR."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.describe_log_dirs import (
    DescribeLogDirsRequest,
    DescribeLogDirsResponse,
)
from riverbed.security.acl import CLUSTER_NAME, AclOperation, ResourceType
from riverbed.server.handler import ConnectionInfo

if TYPE_CHECKING:
    from ..broker import Broker

R = DescribeLogDirsResponse


def handle_describe_log_dirs(broker: Broker, conn: ConnectionInfo, version: int, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse:
    if not broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME):
        return R(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, results=[])
    if req.topics is None:  # every partition
        wanted = [(t.name, list(range(t.partitions))) for t in sorted(broker.topics, key=lambda t: t.name)]
    else:
        wanted = [(t.topic, list(t.partitions)) for t in req.topics]
    topics = []
    for name, indexes in wanted:
        parts = []
        for index in indexes:
            plog = broker.partition(name, index)
            if plog is not None:  # Kafka leaves out partitions it does not host
                parts.append(R.DescribeLogDirsPartition(partition_index=index, partition_size=plog.size_bytes, offset_lag=0, is_future_key=False))
        if parts:
            topics.append(R.DescribeLogDirsTopic(name=name, partitions=parts))
    directory = broker.config.data_dir.resolve()
    total = usable = -1
    try:
        usage = shutil.disk_usage(directory)
        total, usable = usage.total, usage.free
    except OSError:
        pass
    # a full disk refuses writes (storage/space.py): Kafka reports a failed log dir with
    # KAFKA_STORAGE_ERROR; the partitions are still listed (they are readable)
    full = broker.logs.log_dir_error()
    error = ErrorCode.NONE if full is None else ErrorCode.KAFKA_STORAGE_ERROR
    result = R.DescribeLogDirsResult(error_code=error, log_dir=str(directory), topics=topics, total_bytes=total, usable_bytes=usable)
    return R(throttle_time_ms=0, error_code=ErrorCode.NONE, results=[result])
