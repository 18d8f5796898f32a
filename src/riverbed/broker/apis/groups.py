"""Classic consumer groups: FindCoordinator (10), JoinGroup (11), Heartbeat (12),
LeaveGroup (13), SyncGroup (14), DescribeGroups (15), ListGroups (16), DeleteGroups (42);
committed offsets: OffsetCommit (8), OffsetFetch (9), OffsetDelete (47).

The coordinator (``coordinator/group.py``) decides; these handlers translate requests of
every version into its calls and its answers into responses. JoinGroup and SyncGroup answer
later (when the rebalance completes), through futures.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

from riverbed.coordinator.group_types import JoinResult, SyncResult
from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.delete_groups import DeleteGroupsRequest, DeleteGroupsResponse
from riverbed.protocol.messages.describe_groups import DescribeGroupsRequest, DescribeGroupsResponse
from riverbed.protocol.messages.find_coordinator import (
    FindCoordinatorRequest,
    FindCoordinatorResponse,
)
from riverbed.protocol.messages.heartbeat import HeartbeatRequest, HeartbeatResponse
from riverbed.protocol.messages.join_group import JoinGroupRequest, JoinGroupResponse
from riverbed.protocol.messages.leave_group import LeaveGroupRequest, LeaveGroupResponse
from riverbed.protocol.messages.list_groups import ListGroupsRequest, ListGroupsResponse
from riverbed.protocol.messages.offset_commit import OffsetCommitRequest, OffsetCommitResponse
from riverbed.protocol.messages.offset_delete import OffsetDeleteRequest, OffsetDeleteResponse
from riverbed.protocol.messages.offset_fetch import OffsetFetchRequest, OffsetFetchResponse
from riverbed.protocol.messages.sync_group import SyncGroupRequest, SyncGroupResponse
from riverbed.protocol.primitives import Message
from riverbed.security.acl import CLUSTER_NAME, AclOperation, ResourceType
from riverbed.server.handler import ConnectionInfo

if TYPE_CHECKING:
    from ..broker import Broker

GROUP_KEY, TXN_KEY, SHARE_KEY = 0, 1, 2
M = TypeVar("M", bound=Message)


def client_host(conn: ConnectionInfo) -> str:
    return "/" + conn.peer.rsplit(":", 1)[0]


# ---------------------------------------------------------------------------- FindCoordinator


def handle_find_coordinator(broker: Broker, conn: ConnectionInfo, version: int, req: FindCoordinatorRequest) -> FindCoordinatorResponse:
    host, port = broker.advertised(conn.listener)
    node = broker.config.node_id
    keys = req.coordinator_keys if version >= 4 else [req.key]

    def answer(key: str) -> tuple[int, str | None]:
        if req.key_type == TXN_KEY:
            if not key:
                return ErrorCode.INVALID_REQUEST, "the transactional id must not be empty"
            if not broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, key):
                return ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, None
            broker.txns.ensure_topic()  # created on first use, as Kafka does
            return 0, None
        if req.key_type == SHARE_KEY and version >= 6:
            return ErrorCode.INVALID_REQUEST, "share groups (KIP-932) are not supported by this broker"
        if req.key_type != GROUP_KEY:
            return ErrorCode.INVALID_REQUEST, f"unknown key type {req.key_type}"
        if not broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.GROUP, key):
            return ErrorCode.GROUP_AUTHORIZATION_FAILED, None
        broker.groups.ensure_topic()  # created on first use, as Kafka does
        return 0, None

    if version >= 4:
        coords = []
        for key in keys:
            err, msg = answer(key)
            coords.append(
                FindCoordinatorResponse.Coordinator(
                    key=key, node_id=node if not err else -1, host=host if not err else "", port=port if not err else -1, error_code=err, error_message=msg
                )
            )
        return FindCoordinatorResponse(throttle_time_ms=0, coordinators=coords)
    err, msg = answer(req.key)
    if err:
        return FindCoordinatorResponse(throttle_time_ms=0, error_code=err, error_message=msg, node_id=-1, host="", port=-1)
    return FindCoordinatorResponse(throttle_time_ms=0, error_code=0, error_message=None, node_id=node, host=host, port=port)


# ---------------------------------------------------------------------------- membership


def _join_response(r: JoinResult) -> JoinGroupResponse:
    return JoinGroupResponse(
        throttle_time_ms=0,
        error_code=r.error,
        generation_id=r.generation_id,
        protocol_type=r.protocol_type,
        protocol_name=r.protocol_name,
        leader=r.leader,
        skip_assignment=r.skip_assignment,
        member_id=r.member_id,
        members=[JoinGroupResponse.JoinGroupResponseMember(m.member_id, m.group_instance_id, m.metadata) for m in r.members],
    )


def handle_join_group(broker: Broker, conn: ConnectionInfo, version: int, req: JoinGroupRequest) -> asyncio.Future[JoinGroupResponse]:
    assert broker.loop is not None
    fut: asyncio.Future[JoinGroupResponse] = broker.loop.create_future()
    if broker.shares.coordinator.has_group(req.group_id):  # a share group (KIP-932)
        fut.set_result(JoinGroupResponse(error_code=ErrorCode.INCONSISTENT_GROUP_PROTOCOL, generation_id=-1, protocol_name=None if version >= 7 else "", member_id=req.member_id))
        return fut

    def reply(result: JoinResult) -> None:
        if not fut.done():
            resp = _join_response(result)
            if version < 7 and resp.protocol_name is None:
                resp.protocol_name = ""  # not nullable before v7
            fut.set_result(resp)

    if broker.groups.consumer.has_group(req.group_id):
        fut.set_result(JoinGroupResponse(throttle_time_ms=0, error_code=ErrorCode.INCONSISTENT_GROUP_PROTOCOL, generation_id=-1, protocol_name="" if version < 7 else None, leader="", member_id=req.member_id))
        return fut
    broker.groups.coordinator.join_group(
        req.group_id,
        req.member_id,
        req.group_instance_id if version >= 5 else None,
        str(conn.state.get("client_id") or ""),
        client_host(conn),
        req.session_timeout_ms,
        req.rebalance_timeout_ms if version >= 1 else req.session_timeout_ms,
        req.protocol_type,
        [(p.name, p.metadata) for p in req.protocols],
        require_known_member_id=version >= 4,
        reason=req.reason if version >= 8 else None,
        reply=reply,
        supports_skip_assignment=version >= 9,
    )
    broker.groups.reschedule()
    return fut


def handle_sync_group(broker: Broker, conn: ConnectionInfo, version: int, req: SyncGroupRequest) -> asyncio.Future[SyncGroupResponse]:
    assert broker.loop is not None
    fut: asyncio.Future[SyncGroupResponse] = broker.loop.create_future()

    def reply(r: SyncResult) -> None:
        if not fut.done():
            fut.set_result(SyncGroupResponse(throttle_time_ms=0, error_code=r.error, protocol_type=r.protocol_type, protocol_name=r.protocol_name, assignment=r.assignment))

    broker.groups.coordinator.sync_group(
        req.group_id,
        req.generation_id,
        req.member_id,
        req.group_instance_id if version >= 3 else None,
        req.protocol_type if version >= 5 else None,
        req.protocol_name if version >= 5 else None,
        {a.member_id: a.assignment for a in req.assignments},
        reply=reply,
    )
    broker.groups.reschedule()
    return fut


def handle_heartbeat(broker: Broker, conn: ConnectionInfo, version: int, req: HeartbeatRequest) -> HeartbeatResponse:
    err = broker.groups.coordinator.heartbeat(req.group_id, req.generation_id, req.member_id, req.group_instance_id if version >= 3 else None)
    broker.groups.reschedule()
    return HeartbeatResponse(throttle_time_ms=0, error_code=err)


def handle_leave_group(broker: Broker, conn: ConnectionInfo, version: int, req: LeaveGroupRequest) -> LeaveGroupResponse:
    if version >= 3:
        members = [(m.member_id, m.group_instance_id) for m in req.members]
        reason = next((m.reason for m in req.members if m.reason), None) if version >= 5 else None
    else:
        members = [(req.member_id, None)]
        reason = None
    err, results = broker.groups.coordinator.leave_group(req.group_id, members, reason)
    broker.groups.reschedule()
    if version < 3:
        return LeaveGroupResponse(throttle_time_ms=0, error_code=err if err else (results[0][2] if results else 0))
    return LeaveGroupResponse(
        throttle_time_ms=0,
        error_code=err,
        members=[LeaveGroupResponse.MemberResponse(member_id=m, group_instance_id=i, error_code=e) for m, i, e in results],
    )


# ---------------------------------------------------------------------------- offsets


def handle_offset_commit(broker: Broker, conn: ConnectionInfo, version: int, req: OffsetCommitRequest) -> OffsetCommitResponse | asyncio.Future[OffsetCommitResponse]:
    R = OffsetCommitResponse
    errors: dict[tuple[str, int], int] = {}
    wanted: list[tuple[str, int, int, int, str | None]] = []
    group_denied = not broker.authorize(conn, AclOperation.READ, ResourceType.GROUP, req.group_id)
    for t in req.topics:
        topic = broker.topics.get(t.name)
        topic_denied = not group_denied and not broker.authorize(conn, AclOperation.READ, ResourceType.TOPIC, t.name)
        for p in t.partitions:
            if group_denied:
                errors[(t.name, p.partition_index)] = ErrorCode.GROUP_AUTHORIZATION_FAILED
            elif topic_denied:
                errors[(t.name, p.partition_index)] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            elif topic is None or not 0 <= p.partition_index < topic.partitions:
                errors[(t.name, p.partition_index)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                epoch = p.committed_leader_epoch if version >= 6 else -1
                wanted.append((t.name, p.partition_index, p.committed_offset, epoch, p.committed_metadata))
    consumer = broker.groups.consumer
    if wanted and consumer.has_group(req.group_id):
        # a KIP-848 group: the member epoch is checked there, the offsets stored as standalone
        err = consumer.commit_allowed(req.group_id, req.member_id, req.generation_id_or_member_epoch, version)
        if err:
            for name, idx, *_ in wanted:
                errors[(name, idx)] = err
            wanted = []
        else:
            for name, idx, e in broker.groups.coordinator.commit_offsets(req.group_id, "", None, -1, wanted):
                errors[(name, idx)] = e
    elif wanted and version >= 9 and req.generation_id_or_member_epoch >= 0 and broker.groups.coordinator.group_state(req.group_id) is None:
        # A member of a group that does not exist (deleted, or expired): from v9 Kafka answers
        # GROUP_ID_NOT_FOUND; older versions keep ILLEGAL_GENERATION (commit_offsets).
        for name, idx, *_ in wanted:
            errors[(name, idx)] = ErrorCode.GROUP_ID_NOT_FOUND
    elif wanted:
        for name, idx, err in broker.groups.coordinator.commit_offsets(
            req.group_id, req.member_id if version >= 1 else "", req.group_instance_id if version >= 7 else None, req.generation_id_or_member_epoch if version >= 1 else -1, wanted
        ):
            errors[(name, idx)] = err
    broker.groups.reschedule()
    resp = R(
        throttle_time_ms=0,
        topics=[
            R.OffsetCommitResponseTopic(name=t.name, partitions=[R.OffsetCommitResponsePartition(p.partition_index, errors.get((t.name, p.partition_index), 0)) for p in t.partitions])
            for t in req.topics
        ],
    )
    if not wanted:
        return resp
    return asyncio.ensure_future(_when_durable(broker, [req.group_id], resp))


async def _when_durable(broker: Broker, groups: list[str], resp: M) -> M:
    """Answer once the __consumer_offsets records written for these groups are durable."""
    for group_id in groups:
        await broker.groups.durable(group_id)
    return resp


def _fetch_group(broker: Broker, conn: ConnectionInfo, group_id: str, topics: list[tuple[str, list[int]]] | None, require_stable: bool = False) -> tuple[int, dict[str, list[tuple[int, int, int, str | None, int]]]]:
    if not broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
        return ErrorCode.GROUP_AUTHORIZATION_FAILED, {}
    partitions = None if topics is None else [(name, p) for name, ps in topics for p in ps]
    err, rows = broker.groups.coordinator.fetch_offsets(group_id, partitions, require_stable)
    out: dict[str, list[tuple[int, int, int, str | None, int]]] = {}
    allowed: dict[str, bool] = {}
    for topic, partition, offset, epoch, metadata, perr in rows:
        if topic not in allowed:
            allowed[topic] = broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.TOPIC, topic)
        if not allowed[topic]:
            if topics is None:
                continue  # all partitions: the ones it may not see are left out (Kafka)
            offset, epoch, metadata, perr = -1, -1, "", ErrorCode.TOPIC_AUTHORIZATION_FAILED
        out.setdefault(topic, []).append((partition, offset, epoch, metadata, perr))
    return err, out


def handle_offset_fetch(broker: Broker, conn: ConnectionInfo, version: int, req: OffsetFetchRequest) -> OffsetFetchResponse:
    R = OffsetFetchResponse
    if version >= 8:
        groups = []
        for g in req.groups:
            topics = None if g.topics is None else [(t.name, list(t.partition_indexes)) for t in g.topics]
            err, rows = _fetch_group(broker, conn, g.group_id, topics, req.require_stable)
            if version >= 9 and broker.groups.consumer.has_group(g.group_id) and g.member_id is not None:
                check = broker.groups.consumer.fetch_allowed(g.group_id, g.member_id, g.member_epoch)
                if check:
                    err, rows = check, {}
            groups.append(
                R.OffsetFetchResponseGroup(
                    group_id=g.group_id,
                    error_code=err,
                    topics=[
                        R.OffsetFetchResponseTopics(name=name, partitions=[R.OffsetFetchResponsePartitions(p, off, ep, md, pe) for p, off, ep, md, pe in parts])
                        for name, parts in rows.items()
                    ],
                )
            )
        return R(throttle_time_ms=0, groups=groups)
    topics = None if req.topics is None else [(t.name, list(t.partition_indexes)) for t in req.topics]
    err, rows = _fetch_group(broker, conn, req.group_id, topics, version >= 7 and req.require_stable)
    return R(
        throttle_time_ms=0,
        error_code=err,
        topics=[
            R.OffsetFetchResponseTopic(name=name, partitions=[R.OffsetFetchResponsePartition(p, off, ep, md, pe) for p, off, ep, md, pe in parts])
            for name, parts in rows.items()
        ],
    )


def handle_offset_delete(broker: Broker, conn: ConnectionInfo, version: int, req: OffsetDeleteRequest) -> OffsetDeleteResponse | asyncio.Future[OffsetDeleteResponse]:
    R = OffsetDeleteResponse
    if not broker.authorize(conn, AclOperation.DELETE, ResourceType.GROUP, req.group_id):
        return R(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, throttle_time_ms=0, topics=[])
    readable = {t.name for t in req.topics if broker.authorize(conn, AclOperation.READ, ResourceType.TOPIC, t.name)}
    wanted = [(t.name, p.partition_index) for t in req.topics for p in t.partitions if t.name in readable]
    err, rows = broker.groups.coordinator.delete_offsets(req.group_id, wanted)
    if not err:
        rows = list(rows) + [(t.name, p.partition_index, int(ErrorCode.TOPIC_AUTHORIZATION_FAILED)) for t in req.topics if t.name not in readable for p in t.partitions]
    broker.groups.reschedule()
    by_topic: dict[str, list[OffsetDeleteResponse.OffsetDeleteResponsePartition]] = {}
    for topic, partition, perr in rows:
        by_topic.setdefault(topic, []).append(R.OffsetDeleteResponsePartition(partition, perr))
    resp = R(error_code=err, throttle_time_ms=0, topics=[R.OffsetDeleteResponseTopic(name, parts) for name, parts in by_topic.items()])
    if err:
        return resp
    return asyncio.ensure_future(_when_durable(broker, [req.group_id], resp))


# ---------------------------------------------------------------------------- admin


def handle_list_groups(broker: Broker, conn: ConnectionInfo, version: int, req: ListGroupsRequest) -> ListGroupsResponse:
    states = set(req.states_filter) if version >= 4 and req.states_filter else None
    types = set(req.types_filter) if version >= 5 and req.types_filter else None
    consumer = broker.groups.consumer
    listed = [
        ListGroupsResponse.ListedGroup(group_id=g, protocol_type=pt, group_state=st, group_type="classic")
        for g, pt, st in broker.groups.coordinator.list_groups(states, types)
        if not consumer.has_group(g)  # its standalone offset entry, not a classic group
    ]
    listed += [
        ListGroupsResponse.ListedGroup(group_id=g, protocol_type=pt, group_state=st, group_type="consumer")
        for g, pt, st in consumer.list_groups(states, types)
    ]
    from . import share_groups  # KIP-932 (share_groups imports this module)

    listed += share_groups.listed_groups(broker, states, types)
    if broker.authorizer is not None and not broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME):
        listed = [g for g in listed if broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.GROUP, g.group_id)]
    return ListGroupsResponse(throttle_time_ms=0, error_code=0, groups=listed)


def handle_describe_groups(broker: Broker, conn: ConnectionInfo, version: int, req: DescribeGroupsRequest) -> DescribeGroupsResponse:
    R = DescribeGroupsResponse
    out = []
    for gid in req.groups:
        if not broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.GROUP, gid):
            out.append(R.DescribedGroup(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, group_id=gid, group_state="", protocol_type="", protocol_data="", authorized_operations=-2147483648))
            continue
        d = broker.groups.coordinator.describe_group(gid)
        error, message = d.error, None
        if version >= 6 and error == 0 and d.state == "Dead":  # KIP-1043
            error = ErrorCode.GROUP_ID_NOT_FOUND
            other = broker.groups.consumer.has_group(gid) or broker.shares.coordinator.has_group(gid)
            message = f"Group {gid} is not a classic group." if other else f"Group {gid} not found."
        out.append(
            R.DescribedGroup(
                error_code=error,
                error_message=message,
                group_id=gid,
                group_state=d.state,
                protocol_type=d.protocol_type,
                protocol_data=d.protocol,
                members=[
                    R.DescribedGroupMember(
                        member_id=m.member_id,
                        group_instance_id=m.group_instance_id,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        member_metadata=m.metadata,
                        member_assignment=m.assignment,
                    )
                    for m in d.members
                ],
                authorized_operations=(
                    broker.authorized_operations(conn, ResourceType.GROUP, gid)
                    if version >= 3 and req.include_authorized_operations
                    else -2147483648
                ),
            )
        )
    return DescribeGroupsResponse(throttle_time_ms=0, groups=out)


def handle_delete_groups(broker: Broker, conn: ConnectionInfo, version: int, req: DeleteGroupsRequest) -> DeleteGroupsResponse | asyncio.Future[DeleteGroupsResponse]:
    allowed = [g for g in req.groups_names if broker.authorize(conn, AclOperation.DELETE, ResourceType.GROUP, g)]
    refused = [(g, int(ErrorCode.GROUP_AUTHORIZATION_FAILED)) for g in req.groups_names if g not in allowed]
    from . import share_groups  # KIP-932 (share_groups imports this module)

    shares = [g for g in allowed if broker.shares.coordinator.has_group(g)]
    allowed = [g for g in allowed if g not in shares]
    results = broker.groups.coordinator.delete_groups(allowed) + share_groups.delete_groups(broker, shares) + refused
    broker.groups.reschedule()
    resp = DeleteGroupsResponse(throttle_time_ms=0, results=[DeleteGroupsResponse.DeletableGroupResult(g, e) for g, e in results])
    deleted = [g for g, e in results if e == 0]
    if not deleted:
        return resp
    return asyncio.ensure_future(_when_durable(broker, deleted, resp))
