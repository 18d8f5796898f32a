"""ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3, v7+), earliest
local (-4, v8+, KIP-405: the first offset still on the broker's disk), latest tiered (-5,
v9+, KIP-1005: the last offset copied to the object store, -1 if none or not tiered), by
timestamp.

By timestamp: the offset of the first *record* whose timestamp is >= the target; max
timestamp: the first record holding the largest timestamp (both as Kafka: the batch is
found through the indexes, then its records are scanned). A lookup by timestamp on a partition with tiered data (log start below the local log
start) may read remote time indexes, which blocks: such a request is answered from the
broker's remote-read pool, within the request's ``timeout_ms`` (v10+, KIP-1075) or Kafka's
default ``remote.list.offsets.request.timeout.ms`` (30 s) before; a lookup still waiting for
the store then is answered REQUEST_TIMED_OUT."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.list_offsets import ListOffsetsRequest, ListOffsetsResponse
from riverbed.security.acl import AclOperation, ResourceType
from riverbed.server.handler import ConnectionInfo
from riverbed.storage.api import NeedsRemote

if TYPE_CHECKING:
    from ..broker import Broker

EARLIEST, LATEST, MAX_TIMESTAMP, EARLIEST_LOCAL, LATEST_TIERED = -2, -1, -3, -4, -5
REMOTE_TIMEOUT_MS = 30_000  # remote.list.offsets.request.timeout.ms (before v10)
Resp = ListOffsetsResponse
log = logging.getLogger(__name__)


def handle_list_offsets(broker: Broker, conn: ConnectionInfo, version: int, req: ListOffsetsRequest) -> ListOffsetsResponse | asyncio.Future[ListOffsetsResponse]:
    denied: set[str] = set()
    refused: list[Resp.ListOffsetsTopicResponse] = []
    if broker.authorizer is not None:  # DESCRIBE on each topic, else TOPIC_AUTHORIZATION_FAILED
        denied = {t.name for t in req.topics if not broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.TOPIC, t.name)}
        if denied:
            refused = [
                Resp.ListOffsetsTopicResponse(
                    name=t.name,
                    partitions=[Resp.ListOffsetsPartitionResponse(partition_index=p.partition_index, error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, timestamp=-1, offset=-1, leader_epoch=-1) for p in t.partitions],
                )
                for t in req.topics
                if t.name in denied
            ]
            req = ListOffsetsRequest(replica_id=req.replica_id, isolation_level=req.isolation_level, topics=[t for t in req.topics if t.name not in denied])
    for t in req.topics:
        for p in t.partitions:
            if p.timestamp >= 0 or p.timestamp == MAX_TIMESTAMP:
                plog = broker.partition(t.name, p.partition_index)
                if plog is not None and plog.log_start_offset < plog.local_log_start_offset:
                    return _with(broker, version, req, refused)
    try:
        resp = _list_offsets(broker, version, req, remote_ok=False)
    except NeedsRemote:  # tiered away since the check above
        return _with(broker, version, req, refused)
    resp.topics += refused
    return resp


def _with(broker: Broker, version: int, req: ListOffsetsRequest, refused: list[ListOffsetsResponse.ListOffsetsTopicResponse]) -> asyncio.Future[ListOffsetsResponse]:
    """The request answered on the remote-read pool, within its timeout."""
    timeout_ms = req.timeout_ms if version >= 10 else REMOTE_TIMEOUT_MS

    async def run() -> ListOffsetsResponse:
        try:
            resp = await asyncio.wait_for(asyncio.shield(broker.run_remote(_list_offsets, broker, version, req)), max(timeout_ms, 0) / 1000)
        except TimeoutError:
            log.warning("ListOffsets: remote lookups not answered within %d ms", timeout_ms)
            resp = _list_offsets(broker, version, req, remote_ok=False, timed_out=True)
        resp.topics += refused
        return resp

    return asyncio.ensure_future(run())


def _list_offsets(broker: Broker, version: int, req: ListOffsetsRequest, remote_ok: bool = True, timed_out: bool = False) -> ListOffsetsResponse:
    """With ``timed_out``, lookups that need the object store are answered REQUEST_TIMED_OUT."""
    topics_out = []
    for t in req.topics:
        parts: list[Resp.ListOffsetsPartitionResponse] = []
        topics_out.append(Resp.ListOffsetsTopicResponse(name=t.name, partitions=parts))
        for p in t.partitions:
            out = Resp.ListOffsetsPartitionResponse(partition_index=p.partition_index, error_code=0, timestamp=-1, offset=-1, leader_epoch=-1)
            parts.append(out)
            plog = broker.partition(t.name, p.partition_index)
            if plog is None:
                out.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            ts = p.timestamp
            if ts == EARLIEST:
                out.offset = plog.log_start_offset
            elif ts == LATEST:
                # read_committed (isolation level 1) stops at the last stable offset
                out.offset = plog.last_stable_offset if req.isolation_level == 1 else plog.high_watermark
            elif ts == MAX_TIMESTAMP:
                if version < 7:
                    out.error_code = ErrorCode.UNSUPPORTED_VERSION
                    continue
                off, stamp = plog.max_timestamp(remote_ok=remote_ok)
                if req.isolation_level == 1 and off >= plog.last_stable_offset:
                    off, stamp = -1, -1  # not visible to read_committed yet (Kafka does the same)
                out.offset, out.timestamp = off, stamp
            elif ts == EARLIEST_LOCAL and version >= 8:
                out.offset = plog.local_log_start_offset
            elif ts == LATEST_TIERED and version >= 9:
                remote = getattr(plog, "remote_metadata", None)  # a tiered log's RemoteLogMetadata
                out.offset = remote.highest_copied_offset() if remote is not None and plog.config.remote_storage_enable else -1
            elif ts < 0:
                out.error_code = ErrorCode.UNSUPPORTED_VERSION if ts in (EARLIEST_LOCAL, LATEST_TIERED) else ErrorCode.INVALID_REQUEST
            else:
                try:
                    found = plog.offset_for_timestamp(ts, remote_ok=remote_ok)
                except NeedsRemote:
                    if not timed_out:
                        raise
                    out.error_code = ErrorCode.REQUEST_TIMED_OUT
                    continue
                upper = plog.last_stable_offset if req.isolation_level == 1 else plog.high_watermark
                if found is not None and found[0] < upper:
                    out.offset, out.timestamp = found
    return ListOffsetsResponse(throttle_time_ms=0, topics=topics_out)
