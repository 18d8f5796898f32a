"""The consumer group protocol of KIP-848: ConsumerGroupHeartbeat (68) and
ConsumerGroupDescribe (69). The server assigns partitions (assignors "uniform", "range");
members reconcile by heartbeating. See docs/consumer-groups.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from riverbed.coordinator.consumer_group_types import (
    DescribedTopicPartitions,
    HeartbeatInput,
    HeartbeatOutput,
)
from riverbed.coordinator.write_errors import group_write_error
from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.messages.consumer_group_describe import (
    ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse,
)
from riverbed.protocol.messages.consumer_group_heartbeat import (
    ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
)
from riverbed.security.acl import AclOperation, ResourceType
from riverbed.server.handler import ConnectionInfo

from .groups import client_host

if TYPE_CHECKING:
    from ..broker import Broker

HB = ConsumerGroupHeartbeatResponse
D = ConsumerGroupDescribeResponse


def handle_consumer_group_heartbeat(broker: Broker, conn: ConnectionInfo, version: int, req: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse:
    if broker.authorizer is not None and req.subscribed_topic_names:
        hidden = sorted(t for t in req.subscribed_topic_names if not broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.TOPIC, t))
        if hidden:  # Kafka (KIP-848): the subscribed topics must be describable
            return HB(throttle_time_ms=0, error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, error_message=None, member_epoch=-1)
    classic = broker.groups.coordinator.group_state(req.group_id)
    if classic is not None and broker.groups.coordinator.describe_group(req.group_id).members:
        return HB(throttle_time_ms=0, error_code=ErrorCode.GROUP_ID_NOT_FOUND, error_message=f"Group {req.group_id} is not a consumer group.", member_epoch=-1)
    if broker.shares.coordinator.has_group(req.group_id):  # a share group (KIP-932)
        return HB(throttle_time_ms=0, error_code=ErrorCode.GROUP_ID_NOT_FOUND, error_message=f"Group {req.group_id} is not a consumer group.", member_epoch=-1)
    before = broker.groups.consumer.snapshot(req.group_id)
    try:
        out = _heartbeat(broker, conn, version, req)
    except KafkaError as exc:
        # the group's new state could not be written (disk full): Kafka fails the whole
        # operation and its state goes back to what it was
        broker.groups.consumer.load(req.group_id, before)
        broker.groups.reschedule()
        return HB(throttle_time_ms=0, error_code=group_write_error(exc.code), error_message=None, member_epoch=-1)
    broker.groups.reschedule()
    assignment = None
    if out.assignment is not None:
        assignment = HB.Assignment(topic_partitions=[HB.TopicPartitions(topic_id=tid, partitions=parts) for tid, parts in out.assignment])
    return HB(
        throttle_time_ms=0,
        error_code=out.error,
        error_message=out.error_message,
        member_id=out.member_id,
        member_epoch=out.member_epoch,
        heartbeat_interval_ms=out.heartbeat_interval_ms,
        assignment=assignment,
    )


def _heartbeat(broker: Broker, conn: ConnectionInfo, version: int, req: ConsumerGroupHeartbeatRequest) -> HeartbeatOutput:
    return broker.groups.consumer.heartbeat(
        HeartbeatInput(
            group_id=req.group_id,
            member_id=req.member_id,
            member_epoch=req.member_epoch,
            instance_id=req.instance_id,
            rack_id=req.rack_id,
            rebalance_timeout_ms=req.rebalance_timeout_ms,
            subscribed_topic_names=req.subscribed_topic_names,
            subscribed_topic_regex=req.subscribed_topic_regex if version >= 1 else None,
            server_assignor=req.server_assignor,
            topic_partitions=None if req.topic_partitions is None else [(tp.topic_id, list(tp.partitions)) for tp in req.topic_partitions],
            client_id=str(conn.state.get("client_id") or ""),
            client_host=client_host(conn),
            api_version=version,
        )
    )


def _parts(parts: list[DescribedTopicPartitions]) -> D.Assignment:
    return D.Assignment(topic_partitions=[D.TopicPartitions(p.topic_id, p.topic_name, p.partitions) for p in parts])


def handle_consumer_group_describe(broker: Broker, conn: ConnectionInfo, version: int, req: ConsumerGroupDescribeRequest) -> ConsumerGroupDescribeResponse:
    groups = []
    for d in broker.groups.consumer.describe(req.group_ids):
        if not broker.authorize(conn, AclOperation.DESCRIBE, ResourceType.GROUP, d.group_id):
            groups.append(D.DescribedGroup(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, error_message=None, group_id=d.group_id))
            continue
        groups.append(
            D.DescribedGroup(
                error_code=d.error,
                error_message=d.error_message,
                group_id=d.group_id,
                group_state=d.group_state,
                group_epoch=d.group_epoch,
                assignment_epoch=d.assignment_epoch,
                assignor_name=d.assignor_name,
                members=[
                    D.Member(
                        member_id=m.member_id,
                        instance_id=m.instance_id,
                        rack_id=m.rack_id,
                        member_epoch=m.member_epoch,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        subscribed_topic_names=m.subscribed_topic_names,
                        subscribed_topic_regex=m.subscribed_topic_regex,
                        assignment=_parts(m.assignment),
                        target_assignment=_parts(m.target_assignment),
                    )
                    for m in d.members
                ],
                authorized_operations=(
                    broker.authorized_operations(conn, ResourceType.GROUP, d.group_id)
                    if req.include_authorized_operations
                    else -2147483648
                ),
            )
        )
    return ConsumerGroupDescribeResponse(throttle_time_ms=0, groups=groups)
