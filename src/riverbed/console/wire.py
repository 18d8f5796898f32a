"""The Kafka APIs the console needs that confluent-kafka's AdminClient does not offer:
DescribeLogDirs (partition sizes on disk), ListTransactions and the share-group APIs of
KIP-932 (ListGroups with the types filter, FindCoordinator, ShareGroupDescribe,
DescribeShareGroupOffsets, AlterShareGroupOffsets, DeleteGroups of a share group). A small blocking client on riverbed's sans-io codec
(`riverbed.client.wire`), a connection per page view and broker, one request at a time, to any
broker that speaks them (Apache Kafka too), over PLAINTEXT, SSL, SASL/PLAIN and SASL/SCRAM."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from riverbed.client import wire
from riverbed.client.wire import WireError as WireError
from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.extensions import DescribeLogStatsRequest, DescribeLogStatsResponse
from riverbed.protocol.messages.alter_share_group_offsets import (
    AlterShareGroupOffsetsRequest,
    AlterShareGroupOffsetsResponse,
)
from riverbed.protocol.messages.delete_groups import DeleteGroupsRequest, DeleteGroupsResponse
from riverbed.protocol.messages.describe_log_dirs import (
    DescribeLogDirsRequest,
    DescribeLogDirsResponse,
)
from riverbed.protocol.messages.describe_share_group_offsets import (
    DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsResponse,
)
from riverbed.protocol.messages.find_coordinator import (
    FindCoordinatorRequest,
    FindCoordinatorResponse,
)
from riverbed.protocol.messages.list_groups import ListGroupsRequest, ListGroupsResponse
from riverbed.protocol.messages.list_transactions import (
    ListTransactionsRequest,
    ListTransactionsResponse,
)
from riverbed.protocol.messages.share_group_describe import (
    ShareGroupDescribeRequest,
    ShareGroupDescribeResponse,
)
from riverbed.protocol.primitives import Message


class Unsupported(WireError):
    """The broker closed the connection on a request it does not know."""


class SharesUnavailable(WireError):
    """The cluster has no share groups (Apache Kafka before 4.1: no ShareGroupDescribe v1)."""


class GroupError(WireError):
    """The broker answered a group request with a Kafka error code."""

    def __init__(self, group: str, code: int, message: str | None = None) -> None:
        self.group, self.code = group, code
        super().__init__(f"{error_name(code)}{': ' + message if message else ''}")


def error_name(code: int) -> str:
    return ErrorCode(code).name if code in ErrorCode._value2member_map_ else f"error code {code}"


@dataclass(frozen=True)
class ShareMember:
    member_id: str
    client_id: str
    host: str
    epoch: int
    subscribed: list[str]
    assignment: list[tuple[str, int]]


@dataclass(frozen=True)
class ShareGroup:
    group_id: str
    state: str
    epoch: int
    assignor: str
    members: list[ShareMember]


@dataclass(frozen=True)
class ShareOffset:
    topic: str
    partition: int
    start_offset: int  # -1: the share-partition has not been initialised yet
    lag: int  # the broker's own count (DescribeShareGroupOffsets v1), -1 when not given
    error: str | None = None


@dataclass(frozen=True)
class Transaction:
    transactional_id: str
    producer_id: int
    state: str


class WireClient(wire.WireClient):
    def __init__(self, host_port: str, security: Mapping[str, Any] | None = None, timeout: float = 5.0) -> None:
        super().__init__(host_port, security, timeout, client_id="riverbed-console")

    def request_extension(self, msg: Message, response: type[Message] | None = None) -> Message:
        """One of riverbed's own requests; a broker that does not know it (Apache Kafka)
        closes the connection: :class:`Unsupported`."""
        try:
            return super().request_extension(msg, response)
        except WireError as exc:
            if "closed by the broker" in str(exc):
                raise Unsupported(str(exc)) from None
            raise


def partition_sizes(brokers: list[str], security: Mapping[str, Any] | None = None, timeout: float = 5.0) -> dict[tuple[str, int], int]:
    """Bytes on disk of every partition replica, summed over `brokers` (HOST:PORT each) and their
    log dirs (DescribeLogDirs with a null topic list: all topics)."""
    sizes: dict[tuple[str, int], int] = {}
    for broker in brokers:
        with WireClient(broker, security, timeout) as client:
            resp = client.request(DescribeLogDirsRequest(topics=None), 4)
        assert isinstance(resp, DescribeLogDirsResponse)
        for result in resp.results:
            if result.error_code:
                continue
            for topic in result.topics:
                for p in topic.partitions:
                    key = (topic.name, p.partition_index)
                    sizes[key] = sizes.get(key, 0) + p.partition_size
    return sizes


def storage(brokers: list[str], security: Mapping[str, Any] | None = None, timeout: float = 5.0) -> dict[tuple[str, int], tuple[int, int | None]]:
    """Local and tiered (remote) bytes of every partition, from riverbed's DescribeLogStats
    extension; remote is None for a partition that is not tiered. Raises WireError against
    brokers that do not answer it."""
    out: dict[tuple[str, int], tuple[int, int | None]] = {}
    for broker in brokers:
        with WireClient(broker, security, timeout) as client:
            resp = client.request_extension(DescribeLogStatsRequest(None), DescribeLogStatsResponse)
        assert isinstance(resp, DescribeLogStatsResponse)
        for topic in resp.topics:
            for p in topic.partitions:
                if not p.error_code and p.local_bytes >= 0:
                    out[(topic.name, p.partition)] = (p.local_bytes, p.remote_bytes if p.remote_segments >= 0 else None)
    return out


def list_transactions(bootstrap: str, security: Mapping[str, Any] | None = None, timeout: float = 5.0) -> list[Transaction]:
    with WireClient(bootstrap, security, timeout) as client:
        resp = client.request(ListTransactionsRequest(), 1)
    assert isinstance(resp, ListTransactionsResponse)
    if resp.error_code:
        raise WireError(f"ListTransactions failed with error code {resp.error_code}")
    return sorted((Transaction(t.transactional_id, t.producer_id, t.transaction_state) for t in resp.transaction_states), key=lambda t: t.transactional_id)


# -- share groups (KIP-932) ------------------------------------------------------------------
SHARE_UNAVAILABLE = "share groups need Apache Kafka 4.1 or later (or riverbed)"


def _check_shares(client: WireClient) -> None:
    if not client.supports(ShareGroupDescribeRequest.API_KEY, 1):
        raise SharesUnavailable(f"the broker does not support ShareGroupDescribe v1: {SHARE_UNAVAILABLE}")
    if not client.supports(ListGroupsRequest.API_KEY, 5):
        raise SharesUnavailable(f"the broker does not support ListGroups v5 (group types): {SHARE_UNAVAILABLE}")


def list_share_groups(brokers: list[str], security: Mapping[str, Any] | None = None, timeout: float = 5.0) -> list[tuple[str, str]]:
    """(group id, state) of every share group: ListGroups v5 with the types filter ["share"]
    to each broker (HOST:PORT), as each lists the groups it coordinates. Put the bootstrap
    first: a cluster without share groups then answers SharesUnavailable at once."""
    out: dict[str, str] = {}
    for broker in dict.fromkeys(brokers):
        with WireClient(broker, security, timeout) as client:
            _check_shares(client)
            resp = client.request(ListGroupsRequest(types_filter=["share"]), 5)
        assert isinstance(resp, ListGroupsResponse)
        if resp.error_code:
            raise GroupError("", resp.error_code, "ListGroups failed")
        for g in resp.groups:
            out[g.group_id] = g.group_state
    return sorted(out.items())


def _coordinators(client: WireClient, group_ids: list[str]) -> dict[str, str]:
    """HOST:PORT of each group's coordinator (FindCoordinator, key type GROUP)."""
    out: dict[str, str] = {}
    if client.supports(FindCoordinatorRequest.API_KEY, 4):
        resp = client.request(FindCoordinatorRequest(key_type=0, coordinator_keys=group_ids), 5)
        assert isinstance(resp, FindCoordinatorResponse)
        for c in resp.coordinators:
            if c.error_code:
                raise GroupError(c.key, c.error_code, c.error_message)
            out[c.key] = f"{c.host}:{c.port}"
        return out
    for gid in group_ids:
        one = client.request(FindCoordinatorRequest(key=gid, key_type=0), 3)
        assert isinstance(one, FindCoordinatorResponse)
        if one.error_code:
            raise GroupError(gid, one.error_code, one.error_message)
        out[gid] = f"{one.host}:{one.port}"
    return out


def _by_coordinator(bootstrap: str, group_ids: list[str], security: Mapping[str, Any] | None, timeout: float) -> dict[str, list[str]]:
    with WireClient(bootstrap, security, timeout) as client:
        _check_shares(client)
        where = _coordinators(client, group_ids)
    out: dict[str, list[str]] = {}
    for gid in group_ids:
        out.setdefault(where[gid], []).append(gid)
    return out


@dataclass(frozen=True)
class ShareGroupView:
    """What the console shows of one share group: its description and its share-partitions'
    offsets, each the broker's answer or the Kafka error it gave instead."""

    group: ShareGroup | GroupError
    offsets: list[ShareOffset] | GroupError


def describe_share_groups(bootstrap: str, group_ids: list[str], security: Mapping[str, Any] | None = None, timeout: float = 5.0) -> dict[str, ShareGroupView]:
    """Each group at its coordinator, one connection per coordinator: ShareGroupDescribe v1
    (members and assignments) and DescribeShareGroupOffsets (v1, else v0) with a null topic
    list (every share-partition's start offset and, from v1, the broker's lag). A group the
    broker refuses (GROUP_ID_NOT_FOUND, GROUP_AUTHORIZATION_FAILED, ...) gets its GroupError."""
    out: dict[str, ShareGroupView] = {}
    if not group_ids:
        return out
    Offsets = DescribeShareGroupOffsetsRequest
    for coordinator, ids in _by_coordinator(bootstrap, group_ids, security, timeout).items():
        with WireClient(coordinator, security, timeout) as client:
            _check_shares(client)
            if Offsets.API_KEY not in client.versions:
                raise SharesUnavailable(f"the broker does not support DescribeShareGroupOffsets: {SHARE_UNAVAILABLE}")
            described = client.request(ShareGroupDescribeRequest(group_ids=ids), 1)
            offsets = client.request(Offsets(groups=[Offsets.DescribeShareGroupOffsetsRequestGroup(group_id=gid, topics=None) for gid in ids]), 1)
        assert isinstance(described, ShareGroupDescribeResponse) and isinstance(offsets, DescribeShareGroupOffsetsResponse)
        groups: dict[str, ShareGroup | GroupError] = {}
        for g in described.groups:
            if g.error_code:
                groups[g.group_id] = GroupError(g.group_id, g.error_code, g.error_message)
                continue
            members = [
                ShareMember(m.member_id, m.client_id, m.client_host, m.member_epoch, sorted(m.subscribed_topic_names),
                            sorted((tp.topic_name, p) for tp in m.assignment.topic_partitions for p in tp.partitions))
                for m in g.members
            ]
            groups[g.group_id] = ShareGroup(g.group_id, g.group_state, g.group_epoch, g.assignor_name, sorted(members, key=lambda m: (m.client_id, m.member_id)))
        for og in offsets.groups:
            offs: list[ShareOffset] | GroupError
            if og.error_code:
                offs = GroupError(og.group_id, og.error_code, og.error_message)
            else:
                offs = sorted(
                    (ShareOffset(t.topic_name, p.partition_index, p.start_offset, p.lag, str(GroupError(og.group_id, p.error_code, p.error_message)) if p.error_code else None)
                     for t in og.topics for p in t.partitions),
                    key=lambda o: (o.topic, o.partition),
                )
            group = groups.get(og.group_id)
            if group is not None:
                out[og.group_id] = ShareGroupView(group, offs)
    return out


def alter_share_group_offsets(bootstrap: str, group_id: str, offsets: Mapping[tuple[str, int], int], security: Mapping[str, Any] | None = None,
                              timeout: float = 5.0) -> dict[tuple[str, int], str | None]:
    """Set a share group's start offsets (AlterShareGroupOffsets v0 at its coordinator; Kafka
    refuses it for a group with members: NON_EMPTY_GROUP). Per partition None (done) or the
    broker's error; a whole-request error raises GroupError."""
    A = AlterShareGroupOffsetsRequest
    by_topic: dict[str, list[AlterShareGroupOffsetsRequest.AlterShareGroupOffsetsRequestPartition]] = {}
    for (topic, partition), offset in sorted(offsets.items()):
        by_topic.setdefault(topic, []).append(A.AlterShareGroupOffsetsRequestPartition(partition_index=partition, start_offset=offset))
    coordinator = next(iter(_by_coordinator(bootstrap, [group_id], security, timeout)))
    with WireClient(coordinator, security, timeout) as client:
        if A.API_KEY not in client.versions:
            raise SharesUnavailable(f"the broker does not support AlterShareGroupOffsets: {SHARE_UNAVAILABLE}")
        resp = client.request(A(group_id=group_id, topics=[A.AlterShareGroupOffsetsRequestTopic(topic_name=t, partitions=ps) for t, ps in by_topic.items()]), 0)
    assert isinstance(resp, AlterShareGroupOffsetsResponse)
    if resp.error_code:
        raise GroupError(group_id, resp.error_code, resp.error_message)
    out: dict[tuple[str, int], str | None] = dict.fromkeys(offsets)
    for t in resp.responses:
        for p in t.partitions:
            out[(t.topic_name, p.partition_index)] = str(GroupError(group_id, p.error_code, p.error_message)) if p.error_code else None
    return out


def delete_share_group(bootstrap: str, group_id: str, security: Mapping[str, Any] | None = None, timeout: float = 5.0) -> None:
    """Delete an empty share group and its share state: DeleteGroups at its coordinator, as
    Kafka's Admin.deleteShareGroups does (NON_EMPTY_GROUP while it has members)."""
    coordinator = next(iter(_by_coordinator(bootstrap, [group_id], security, timeout)))
    with WireClient(coordinator, security, timeout) as client:
        resp = client.request(DeleteGroupsRequest(groups_names=[group_id]), 2)
    assert isinstance(resp, DeleteGroupsResponse)
    for r in resp.results:
        if r.error_code:
            raise GroupError(group_id, r.error_code)
