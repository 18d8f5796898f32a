"""Share groups (KIP-932): ShareGroupHeartbeat (76), ShareGroupDescribe (77), ShareFetch (78),
ShareAcknowledge (79), DescribeShareGroupOffsets (90), AlterShareGroupOffsets (91) and
DeleteShareGroupOffsets (92). The state machines are in coordinator/share_group.py and
coordinator/share_partition.py; reading, persistence and dead letters in broker/share.py.
See docs/share-groups.md."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING

from riverbed.coordinator.share_group import PartitionKey
from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.messages.alter_share_group_offsets import (
    AlterShareGroupOffsetsRequest,
    AlterShareGroupOffsetsResponse,
)
from riverbed.protocol.messages.delete_share_group_offsets import (
    DeleteShareGroupOffsetsRequest,
    DeleteShareGroupOffsetsResponse,
)
from riverbed.protocol.messages.describe_share_group_offsets import (
    DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsResponse,
)
from riverbed.protocol.messages.list_groups import ListGroupsResponse
from riverbed.protocol.messages.share_acknowledge import (
    ShareAcknowledgeRequest,
    ShareAcknowledgeResponse,
)
from riverbed.protocol.messages.share_fetch import ShareFetchRequest, ShareFetchResponse
from riverbed.protocol.messages.share_group_describe import (
    ShareGroupDescribeRequest,
    ShareGroupDescribeResponse,
)
from riverbed.protocol.messages.share_group_heartbeat import (
    ShareGroupHeartbeatRequest,
    ShareGroupHeartbeatResponse,
)
from riverbed.protocol.share_extension import (
    DescribeShareStateRequest,
    DescribeShareStateResponse,
    SharePartitionState,
)
from riverbed.security.acl import AclOperation, ResourceType
from riverbed.server.handler import ConnectionInfo

from .groups import client_host

if TYPE_CHECKING:
    from ..broker import Broker

log = logging.getLogger("riverbed.share")
HB = ShareGroupHeartbeatResponse
SF = ShareFetchResponse
SA = ShareAcknowledgeResponse
D = ShareGroupDescribeResponse


def other_group_type(broker: Broker, group_id: str) -> str | None:
    """'consumer' or 'classic' when ``group_id`` is already a group of another type."""
    if broker.groups.consumer.has_group(group_id):
        return "consumer"
    if (
        broker.groups.coordinator.group_state(group_id) is not None
        and broker.groups.coordinator.describe_group(group_id).members
    ):
        return "classic"
    return None


# ---------------------------------------------------------------------- ListGroups / DeleteGroups
def listed_groups(broker: Broker, states: set[str] | None, types: set[str] | None) -> list[ListGroupsResponse.ListedGroup]:
    return [
        ListGroupsResponse.ListedGroup(group_id=g, protocol_type="share", group_state=st, group_type="share")
        for g, st in broker.shares.coordinator.list_groups(states, types)
    ]


def delete_groups(broker: Broker, group_ids: list[str]) -> list[tuple[str, int]]:
    """DeleteGroups for share groups: only empty ones (NON_EMPTY_GROUP otherwise); their
    share state is tombstoned."""
    coord = broker.shares.coordinator
    out: list[tuple[str, int]] = []
    for gid in group_ids:
        g = coord.groups.get(gid)
        if g is not None and g.members:
            out.append((gid, int(ErrorCode.NON_EMPTY_GROUP)))
            continue
        keys = coord.delete_group(gid)
        code = _persist_quietly(broker, keys) if keys else 0
        out.append((gid, code))
        log.info("share group %r deleted (%d share-partitions)", gid, len(keys))
    return out


# ---------------------------------------------------------------------- heartbeat / describe
def handle_share_group_heartbeat(
    broker: Broker, conn: ConnectionInfo, version: int, req: ShareGroupHeartbeatRequest
) -> ShareGroupHeartbeatResponse:
    if not broker.authorize(conn, AclOperation.READ, ResourceType.GROUP, req.group_id):
        return HB(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, member_epoch=-1)
    if broker.authorizer is not None and req.subscribed_topic_names:
        hidden = sorted(
            t
            for t in req.subscribed_topic_names
            if not broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.TOPIC, t)
        )
        if hidden:
            return HB(error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, member_epoch=-1)
    if other_group_type(broker, req.group_id) is not None:
        # Kafka (GroupMetadataManager): a group id taken by another group type
        log.info(
            "ShareGroupHeartbeat for %r refused: it is a %s group",
            req.group_id,
            other_group_type(broker, req.group_id),
        )
        return HB(
            error_code=ErrorCode.GROUP_ID_NOT_FOUND,
            error_message=f"Group {req.group_id} is not a share group.",
            member_epoch=-1,
        )
    shares = broker.shares
    out, left = shares.coordinator.heartbeat(
        req.group_id,
        req.member_id,
        req.member_epoch,
        req.rack_id,
        req.subscribed_topic_names,
        client_id=str(conn.state.get("client_id") or ""),
        client_host=client_host(conn),
    )
    changed: list[PartitionKey] = []
    for mid in left:
        changed += shares.coordinator.release_member(req.group_id, mid)
    if changed:
        _persist_quietly(broker, changed)
        broker.notify()
    shares.reschedule()
    if out.error:
        log.info(
            "ShareGroupHeartbeat of %r in %r: %s %s",
            req.member_id,
            req.group_id,
            ErrorCode(out.error).name,
            out.message or "",
        )
    assignment = None
    if out.assignment is not None:
        assignment = HB.Assignment(
            topic_partitions=[
                HB.TopicPartitions(topic_id=tid, partitions=parts) for tid, parts in out.assignment
            ]
        )
    return HB(
        error_code=out.error,
        error_message=out.message,
        member_id=out.member_id,
        member_epoch=out.epoch,
        heartbeat_interval_ms=out.heartbeat_interval_ms,
        assignment=assignment,
    )


def handle_share_group_describe(
    broker: Broker, conn: ConnectionInfo, version: int, req: ShareGroupDescribeRequest
) -> ShareGroupDescribeResponse:
    coord = broker.shares.coordinator
    groups = []
    for gid in req.group_ids:
        if not broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.GROUP, gid):
            groups.append(
                D.DescribedGroup(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, group_id=gid)
            )
            continue
        if not coord.has_group(gid):
            other = other_group_type(broker, gid)
            msg = f"Group {gid} is not a share group." if other else f"Group {gid} not found."
            groups.append(
                D.DescribedGroup(
                    error_code=ErrorCode.GROUP_ID_NOT_FOUND, error_message=msg, group_id=gid
                )
            )
            continue
        g = coord.group(gid)
        members = []
        for m in sorted(g.members.values(), key=lambda m: m.member_id):
            parts = [
                D.TopicPartitions(topic_id=tid, topic_name=_topic_name(broker, tid), partitions=ps)
                for tid, ps in sorted(m.assignment.items(), key=lambda kv: str(kv[0]))
            ]
            members.append(
                D.Member(
                    member_id=m.member_id,
                    rack_id=m.rack_id,
                    member_epoch=m.epoch,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    subscribed_topic_names=m.topics,
                    assignment=D.Assignment(topic_partitions=parts),
                )
            )
        groups.append(
            D.DescribedGroup(
                group_id=gid,
                group_state=g.state,
                group_epoch=g.epoch,
                assignment_epoch=g.epoch,
                assignor_name="simple",
                members=members,
                authorized_operations=(
                    broker.authorized_operations(conn, ResourceType.GROUP, gid)
                    if req.include_authorized_operations
                    else -2147483648
                ),
            )
        )
    return ShareGroupDescribeResponse(groups=groups)


def _topic_name(broker: Broker, tid: uuid.UUID) -> str:
    t = broker.topics.by_id(tid)
    return "" if t is None else t.name


def _persist_quietly(broker: Broker, keys: list[PartitionKey]) -> int:
    try:
        broker.shares.persist(keys)
    except KafkaError as exc:
        return int(exc.code)
    return 0


# ---------------------------------------------------------------------- acknowledgements
def _acknowledge(
    broker: Broker,
    group_id: str,
    member_id: str,
    tid: uuid.UUID,
    partition: int,
    batches: list[tuple[int, int, list[int]]],
) -> tuple[int, PartitionKey | None]:
    topic = broker.topics.by_id(tid)
    if topic is None:
        return ErrorCode.UNKNOWN_TOPIC_ID, None
    key = (group_id, tid, partition)
    sp = broker.shares.coordinator.partitions.get(key)
    if sp is None or broker.partition(topic.name, partition) is None:
        return ErrorCode.INVALID_RECORD_STATE if sp is None and broker.partition(
            topic.name, partition
        ) is not None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None
    now = broker.now_ms()
    error = 0
    for first, last, types in sorted(batches):
        code = sp.acknowledge(member_id, first, last, types, now)
        if code:
            error = int(code)
    return error, key


def _member_error(
    broker: Broker, group_id: str | None, member_id: str | None
) -> tuple[int, str | None]:
    if not group_id:
        return ErrorCode.INVALID_GROUP_ID, "The group id is empty."
    if not member_id:
        return ErrorCode.INVALID_REQUEST, "The member id is empty."
    return 0, None


# ---------------------------------------------------------------------- ShareFetch
def handle_share_fetch(
    broker: Broker, conn: ConnectionInfo, version: int, req: ShareFetchRequest
) -> ShareFetchResponse | asyncio.Future[ShareFetchResponse]:
    code, msg = _member_error(broker, req.group_id, req.member_id)
    if code:
        return SF(error_code=code, error_message=msg)
    assert req.group_id is not None and req.member_id is not None
    gid, mid = req.group_id, req.member_id
    if not broker.authorize(conn, AclOperation.READ, ResourceType.GROUP, gid):
        return SF(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    coord = broker.shares.coordinator
    has_acks = any(p.acknowledgement_batches for t in req.topics for p in t.partitions)
    if req.share_session_epoch == 0 and has_acks:
        return SF(
            error_code=ErrorCode.INVALID_REQUEST,
            error_message="Acknowledge data present on initial fetch for the share session.",
        )
    err, session = coord.open_session(gid, mid, req.share_session_epoch)
    if err or session is None:
        log.info(
            "ShareFetch of %r in %r (epoch %d): %s",
            mid,
            gid,
            req.share_session_epoch,
            ErrorCode(err).name,
        )
        return SF(error_code=err)
    log.debug("ShareFetch %s %s epoch %d acks %s close %s", gid, mid, req.share_session_epoch, has_acks, req.share_session_epoch == -1)
    # requested partitions join the session; forgotten ones leave it
    for ft in req.topics:
        for fp in ft.partitions:
            session.partitions.add((ft.topic_id, fp.partition_index))
    for fg in req.forgotten_topics_data:
        for p in fg.partitions:
            session.partitions.discard((fg.topic_id, p))
    # piggybacked acknowledgements
    ack_errors: dict[tuple[uuid.UUID, int], int] = {}
    changed: list[PartitionKey] = []
    for ft in req.topics:
        for fp in ft.partitions:
            if fp.acknowledgement_batches:
                batches = [
                    (b.first_offset, b.last_offset, list(b.acknowledge_types))
                    for b in fp.acknowledgement_batches
                ]
                e, key = _acknowledge(broker, gid, mid, ft.topic_id, fp.partition_index, batches)
                ack_errors[(ft.topic_id, fp.partition_index)] = e
                if key is not None:
                    changed.append(key)
    if req.share_session_epoch == -1:  # the session closes: what the member holds goes back
        for tid, p in session.partitions:
            sp = coord.partitions.get((gid, tid, p))
            if sp is not None and sp.release_member(mid):
                changed.append((gid, tid, p))
    write_error = _persist_quietly(broker, changed) if changed else 0
    if write_error:
        for k in ack_errors:
            ack_errors[k] = ack_errors[k] or write_error
    broker.shares.reschedule()
    fetching = req.share_session_epoch != -1 and req.max_records != 0 and not req.is_renew_ack
    denied = _denied(broker, conn, session.partitions)
    resp = _fetch_now(broker, gid, mid, session.partitions, ack_errors, denied, req, fetching)
    acquired = any(p.acquired_records for t in resp.responses for p in t.partitions)
    if changed and not write_error and (acquired or not fetching or req.max_wait_ms <= 0):
        return asyncio.ensure_future(_when_durable(broker, resp))
    if acquired or not fetching or req.max_wait_ms <= 0 or not session.partitions:
        return resp
    return asyncio.ensure_future(
        _long_poll(
            broker,
            gid,
            mid,
            set(session.partitions),
            ack_errors,
            denied,
            req,
            bool(changed and not write_error),
        )
    )


async def _when_durable(broker: Broker, resp: ShareFetchResponse) -> ShareFetchResponse:
    await broker.shares.durable()
    return resp


def _denied(
    broker: Broker, conn: ConnectionInfo, parts: set[tuple[uuid.UUID, int]]
) -> set[uuid.UUID]:
    if broker.authorizer is None:
        return set()
    out = set()
    for tid, _ in parts:
        t = broker.topics.by_id(tid)
        if t is not None and not broker.authorize(
            conn, AclOperation.READ, ResourceType.TOPIC, t.name
        ):
            out.add(tid)
    return out


def _fetch_now(
    broker: Broker,
    gid: str,
    mid: str,
    parts: set[tuple[uuid.UUID, int]],
    ack_errors: dict[tuple[uuid.UUID, int], int],
    denied: set[uuid.UUID],
    req: ShareFetchRequest,
    fetching: bool,
) -> ShareFetchResponse:
    shares = broker.shares
    cfg = shares.settings(gid)
    node = broker.config.node_id
    member_known = (
        mid in shares.coordinator.group(gid).members if shares.coordinator.has_group(gid) else False
    )
    remaining_records = req.max_records if req.max_records > 0 else 500
    remaining_bytes = req.max_bytes if req.max_bytes > 0 else 2**31 - 1
    by_topic: dict[uuid.UUID, list[SF.PartitionData]] = {}
    for tid, p in sorted(parts | set(ack_errors), key=lambda x: (str(x[0]), x[1])):
        pd = SF.PartitionData(
            partition_index=p,
            current_leader=SF.LeaderIdAndEpoch(leader_id=node, leader_epoch=0),
            records=b"",
        )
        if (tid, p) in ack_errors:
            pd.acknowledge_error_code = ack_errors[(tid, p)]
        topic = broker.topics.by_id(tid)
        plog = broker.partition(topic.name, p) if topic is not None else None
        if tid in denied:
            pd.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
        elif topic is None:
            pd.error_code = ErrorCode.UNKNOWN_TOPIC_ID
        elif plog is None:
            pd.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        elif fetching and member_known and remaining_records > 0 and (tid, p) in parts:
            got = shares.acquire((gid, tid, p), plog, mid, remaining_records, remaining_bytes)
            if got.ranges:
                pd.records = got.records
                pd.acquired_records = [
                    SF.AcquiredRecords(
                        first_offset=r.first_offset,
                        last_offset=r.last_offset,
                        delivery_count=r.delivery_count,
                    )
                    for r in got.ranges
                ]
                remaining_records -= sum(r.last_offset - r.first_offset + 1 for r in got.ranges)
                remaining_bytes -= len(got.records)
        if (
            pd.error_code
            or pd.acknowledge_error_code
            or pd.acquired_records
            or (tid, p) in ack_errors
        ):
            by_topic.setdefault(tid, []).append(pd)
    resp = SF(
        acquisition_lock_timeout_ms=cfg.record_lock_duration_ms,
        responses=[
            SF.ShareFetchableTopicResponse(topic_id=tid, partitions=pds)
            for tid, pds in by_topic.items()
        ],
    )
    if any(pd.acquired_records for pds in by_topic.values() for pd in pds):
        shares.reschedule()  # the new locks' deadlines
    return resp


async def _long_poll(
    broker: Broker,
    gid: str,
    mid: str,
    parts: set[tuple[uuid.UUID, int]],
    ack_errors: dict[tuple[uuid.UUID, int], int],
    denied: set[uuid.UUID],
    req: ShareFetchRequest,
    wait_durable: bool,
) -> ShareFetchResponse:
    if wait_durable:
        await broker.shares.durable()
    shares = broker.shares
    loop = asyncio.get_running_loop()
    deadline = loop.time() + req.max_wait_ms / 1000
    coord = shares.coordinator
    if not (coord.has_group(gid) and mid in coord.group(gid).members):
        await asyncio.sleep(req.max_wait_ms / 1000)  # not a member (any more): nothing to acquire
        return _fetch_now(broker, gid, mid, parts, ack_errors, denied, req, False)

    def ready() -> bool:
        for tid, p in parts:
            sp = shares.coordinator.partitions.get((gid, tid, p))
            topic = broker.topics.by_id(tid)
            plog = broker.partition(topic.name, p) if topic is not None else None
            if plog is None:
                return True
            if sp is None or sp.has_available(shares.upper(gid, plog)):
                return True
        return False

    while True:
        timeout = deadline - loop.time()
        if timeout <= 0:
            break
        try:
            await asyncio.wait_for(broker.wait_until(ready), timeout)
        except (TimeoutError, KafkaError):
            break
        resp = _fetch_now(broker, gid, mid, parts, ack_errors, denied, req, True)
        if any(p.acquired_records for t in resp.responses for p in t.partitions):
            return resp
        await asyncio.sleep(0.005)  # the data was taken by another member: wait for more
    return _fetch_now(broker, gid, mid, parts, ack_errors, denied, req, True)


# ---------------------------------------------------------------------- ShareAcknowledge
def handle_share_acknowledge(
    broker: Broker, conn: ConnectionInfo, version: int, req: ShareAcknowledgeRequest
) -> ShareAcknowledgeResponse | asyncio.Future[ShareAcknowledgeResponse]:
    code, msg = _member_error(broker, req.group_id, req.member_id)
    if code:
        return SA(error_code=code, error_message=msg)
    assert req.group_id is not None and req.member_id is not None
    gid, mid = req.group_id, req.member_id
    if not broker.authorize(conn, AclOperation.READ, ResourceType.GROUP, gid):
        return SA(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    coord = broker.shares.coordinator
    session = coord.sessions.get((gid, mid))
    err = coord.session_check(gid, mid, req.share_session_epoch)
    if err:
        log.info(
            "ShareAcknowledge of %r in %r (epoch %d): %s",
            mid,
            gid,
            req.share_session_epoch,
            ErrorCode(err).name,
        )
        return SA(error_code=err)
    node = broker.config.node_id
    changed: list[PartitionKey] = []
    topics = []
    for at in req.topics:
        pds = []
        for ap in at.partitions:
            batches = [
                (b.first_offset, b.last_offset, list(b.acknowledge_types))
                for b in ap.acknowledgement_batches
            ]
            e, key = _acknowledge(broker, gid, mid, at.topic_id, ap.partition_index, batches)
            if key is not None:
                changed.append(key)
            pds.append(
                SA.PartitionData(
                    partition_index=ap.partition_index,
                    error_code=e,
                    current_leader=SA.LeaderIdAndEpoch(leader_id=node, leader_epoch=0),
                )
            )
        topics.append(SA.ShareAcknowledgeTopicResponse(topic_id=at.topic_id, partitions=pds))
    if req.share_session_epoch == -1 and session is not None:
        for tid, p in session.partitions:
            sp = coord.partitions.get((gid, tid, p))
            if sp is not None and sp.release_member(mid):
                changed.append((gid, tid, p))
    resp = SA(
        responses=topics,
        acquisition_lock_timeout_ms=broker.shares.settings(gid).record_lock_duration_ms,
    )
    if not changed:
        return resp
    write_error = _persist_quietly(broker, changed)
    broker.shares.reschedule()
    broker.notify()
    if write_error:
        for t in resp.responses:
            for pd in t.partitions:
                pd.error_code = pd.error_code or write_error
        return resp
    return asyncio.ensure_future(_ack_durable(broker, resp))


async def _ack_durable(broker: Broker, resp: ShareAcknowledgeResponse) -> ShareAcknowledgeResponse:
    await broker.shares.durable()
    return resp


# ---------------------------------------------------------------------- offsets admin
DO = DescribeShareGroupOffsetsResponse


def share_lag(broker: Broker, key: PartitionKey) -> tuple[int, int, int]:
    """(start offset, in flight, lag) of one share-partition: lag counts the records at or
    after the start offset that are not yet Acknowledged or Archived."""
    from riverbed.coordinator.share_partition import RecordState

    sp = broker.shares.coordinator.partitions.get(key)
    topic = broker.topics.by_id(key[1])
    plog = broker.partition(topic.name, key[2]) if topic is not None else None
    if sp is None or plog is None:
        return -1, 0, -1
    done = sum(
        1
        for r in sp.records.values()
        if r.state in (RecordState.ACKNOWLEDGED, RecordState.ARCHIVED)
    )
    gaps = (sp.end_offset - sp.start_offset) - len(sp.records)
    lag = max(0, broker.shares.upper(key[0], plog) - sp.start_offset - done - gaps)
    return sp.start_offset, sp.count(RecordState.ACQUIRED), lag


def handle_describe_share_group_offsets(
    broker: Broker, conn: ConnectionInfo, version: int, req: DescribeShareGroupOffsetsRequest
) -> DescribeShareGroupOffsetsResponse:
    coord = broker.shares.coordinator
    out = []
    for g in req.groups:
        if not broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.GROUP, g.group_id):
            out.append(
                DO.DescribeShareGroupOffsetsResponseGroup(
                    group_id=g.group_id, error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED
                )
            )
            continue
        if not coord.has_group(g.group_id):
            out.append(
                DO.DescribeShareGroupOffsetsResponseGroup(
                    group_id=g.group_id,
                    error_code=ErrorCode.GROUP_ID_NOT_FOUND,
                    error_message=f"Group {g.group_id} not found.",
                )
            )
            continue
        wanted: list[tuple[str, list[int]]]
        if g.topics is None:  # all the group's share-partitions
            names: dict[str, list[int]] = {}
            for gid, tid, p in coord.partitions:
                t = broker.topics.by_id(tid)
                if gid == g.group_id and t is not None:
                    names.setdefault(t.name, []).append(p)
            wanted = sorted((n, sorted(ps)) for n, ps in names.items())
        else:
            wanted = [(t.topic_name, list(t.partitions)) for t in g.topics]
        topics = []
        for name, parts in wanted:
            topic = broker.topics.get(name)
            pds = []
            for p in parts:
                if topic is None:
                    pds.append(
                        DO.DescribeShareGroupOffsetsResponsePartition(
                            partition_index=p,
                            start_offset=-1,
                            leader_epoch=-1,
                            error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                        )
                    )
                    continue
                start, _inflight, lag = share_lag(broker, (g.group_id, topic.topic_id, p))
                pds.append(
                    DO.DescribeShareGroupOffsetsResponsePartition(
                        partition_index=p,
                        start_offset=start,
                        leader_epoch=0 if start >= 0 else -1,
                        lag=lag,
                    )
                )
            topics.append(
                DO.DescribeShareGroupOffsetsResponseTopic(
                    topic_name=name,
                    topic_id=topic.topic_id if topic is not None else uuid.UUID(int=0),
                    partitions=pds,
                )
            )
        out.append(DO.DescribeShareGroupOffsetsResponseGroup(group_id=g.group_id, topics=topics))
    return DescribeShareGroupOffsetsResponse(groups=out)


AO = AlterShareGroupOffsetsResponse


def handle_alter_share_group_offsets(
    broker: Broker, conn: ConnectionInfo, version: int, req: AlterShareGroupOffsetsRequest
) -> AlterShareGroupOffsetsResponse | asyncio.Future[AlterShareGroupOffsetsResponse]:
    gid = req.group_id
    if not broker.authorize(conn, AclOperation.READ, ResourceType.GROUP, gid):
        return AO(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    if other_group_type(broker, gid) is not None:
        return AO(
            error_code=ErrorCode.GROUP_ID_NOT_FOUND,
            error_message=f"Group {gid} is not a share group.",
        )
    coord = broker.shares.coordinator
    if coord.has_group(gid) and coord.group(gid).members:
        return AO(error_code=ErrorCode.NON_EMPTY_GROUP, error_message="The group is not empty.")
    changed: list[PartitionKey] = []
    topics = []
    for t in req.topics:
        topic = broker.topics.get(t.topic_name)
        pds = []
        for p in t.partitions:
            plog = broker.partition(t.topic_name, p.partition_index) if topic is not None else None
            if topic is None or plog is None:
                pds.append(
                    AO.AlterShareGroupOffsetsResponsePartition(
                        partition_index=p.partition_index,
                        error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    )
                )
                continue
            offset = p.start_offset
            if offset == -1:
                offset = plog.high_watermark
            elif offset == -2:
                offset = plog.log_start_offset
            if not plog.log_start_offset <= offset <= plog.high_watermark:
                pds.append(
                    AO.AlterShareGroupOffsetsResponsePartition(
                        partition_index=p.partition_index,
                        error_code=ErrorCode.OFFSET_OUT_OF_RANGE,
                        error_message=f"Offset {p.start_offset} is out of range.",
                    )
                )
                continue
            key = (gid, topic.topic_id, p.partition_index)
            broker.shares.share_partition(key, plog).reset(offset)
            changed.append(key)
            pds.append(
                AO.AlterShareGroupOffsetsResponsePartition(partition_index=p.partition_index)
            )
        topics.append(
            AO.AlterShareGroupOffsetsResponseTopic(
                topic_name=t.topic_name,
                topic_id=topic.topic_id if topic is not None else uuid.UUID(int=0),
                partitions=pds,
            )
        )
    coord.group(gid)
    resp = AO(responses=topics)
    code = _persist_quietly(broker, changed) if changed else 0
    if code:
        return AO(error_code=code)
    return asyncio.ensure_future(_when_altered(broker, resp))


async def _when_altered(
    broker: Broker, resp: AlterShareGroupOffsetsResponse
) -> AlterShareGroupOffsetsResponse:
    await broker.shares.durable()
    return resp


DL = DeleteShareGroupOffsetsResponse


def handle_delete_share_group_offsets(
    broker: Broker, conn: ConnectionInfo, version: int, req: DeleteShareGroupOffsetsRequest
) -> DeleteShareGroupOffsetsResponse:
    gid = req.group_id
    if not broker.authorize(conn, AclOperation.DELETE, ResourceType.GROUP, gid):
        return DL(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    coord = broker.shares.coordinator
    if not coord.has_group(gid):
        return DL(error_code=ErrorCode.GROUP_ID_NOT_FOUND, error_message=f"Group {gid} not found.")
    if coord.group(gid).members:
        return DL(error_code=ErrorCode.NON_EMPTY_GROUP, error_message="The group is not empty.")
    removed: list[PartitionKey] = []
    out = []
    for t in req.topics:
        topic = broker.topics.get(t.topic_name)
        if topic is None:
            out.append(
                DL.DeleteShareGroupOffsetsResponseTopic(
                    topic_name=t.topic_name, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                )
            )
            continue
        for key in [k for k in coord.partitions if k[0] == gid and k[1] == topic.topic_id]:
            del coord.partitions[key]
            removed.append(key)
        out.append(
            DL.DeleteShareGroupOffsetsResponseTopic(
                topic_name=t.topic_name, topic_id=topic.topic_id
            )
        )
    code = _persist_quietly(broker, removed) if removed else 0
    return DL(error_code=code, responses=out)


# ---------------------------------------------------------------------- riverbed extension
def handle_describe_share_state(broker: Broker, conn: ConnectionInfo, version: int, req: DescribeShareStateRequest) -> DescribeShareStateResponse:
    """The in-flight state of each share-partition of a group (``riverbed share-group describe``)."""
    from riverbed.coordinator.share_partition import RecordState

    gid = req.group_id
    if not broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.GROUP, gid):
        return DescribeShareStateResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    coord = broker.shares.coordinator
    if not coord.has_group(gid):
        return DescribeShareStateResponse(error_code=ErrorCode.GROUP_ID_NOT_FOUND)
    out = []
    for (g, tid, p), sp in sorted(coord.partitions.items(), key=lambda kv: (str(kv[0][1]), kv[0][2])):
        topic = broker.topics.by_id(tid)
        if g != gid or topic is None:
            continue
        counts = {s: sp.count(s) for s in RecordState}
        out.append(
            SharePartitionState(
                topic.name,
                p,
                sp.start_offset,
                sp.end_offset,
                counts[RecordState.AVAILABLE],
                counts[RecordState.ACQUIRED],
                counts[RecordState.ACKNOWLEDGED],
                counts[RecordState.ARCHIVED],
            )
        )
    return DescribeShareStateResponse(partitions=out)
