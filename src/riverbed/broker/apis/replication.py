"""The replication admin APIs, answered as a single-node Kafka (KRaft combined mode: this node
is the only broker, the only controller and the only voter) answers them, so that operator
tools work: ElectLeaders (43), AlterPartitionReassignments (45), ListPartitionReassignments
(46), AlterReplicaLogDirs (34) and DescribeQuorum (55).

Every partition has one replica, on this node, which is its leader and its preferred leader:
an election is never needed, a reassignment to this node changes nothing (so none is ever in
progress), and any other broker id is not registered. The one log directory is the data dir.

A Kafka 4 broker forwards ElectLeaders, the reassignment APIs and DescribeQuorum to the
active controller (DescribeQuorum fails there if no controller is reachable); a combined-mode
node, as riverbed is, answers them itself, with the controller's answers and errors.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.messages.alter_partition_reassignments import (
    AlterPartitionReassignmentsRequest,
    AlterPartitionReassignmentsResponse,
)
from riverbed.protocol.messages.alter_replica_log_dirs import (
    AlterReplicaLogDirsRequest,
    AlterReplicaLogDirsResponse,
)
from riverbed.protocol.messages.describe_quorum import DescribeQuorumRequest, DescribeQuorumResponse
from riverbed.protocol.messages.elect_leaders import ElectLeadersRequest, ElectLeadersResponse
from riverbed.protocol.messages.list_partition_reassignments import (
    ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse,
)
from riverbed.protocol.primitives import ZERO_UUID
from riverbed.security.acl import CLUSTER_NAME, AclOperation, ResourceType
from riverbed.server.handler import ConnectionInfo

if TYPE_CHECKING:
    from ..broker import Broker

log = logging.getLogger("riverbed.broker")
METADATA_TOPIC = "__cluster_metadata"
CLUSTER_AUTH_MESSAGE = "Cluster authorization failed."
ELECTION_NOT_NEEDED_MESSAGE = "Leader election not needed for topic partition."


def check_assignment(broker: Broker, replicas: list[int]) -> None:
    """Kafka's checks of a manual replica assignment, on a cluster whose only registered
    broker is this node (CreateTopics, CreatePartitions, AlterPartitionReassignments)."""
    if not replicas:
        raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, "The manual partition assignment includes an empty replica list.")
    seen: set[int] = set()
    for broker_id in sorted(replicas):
        if broker_id != broker.config.node_id:
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"The manual partition assignment includes broker {broker_id}, but no such broker is registered.",
            )
        if broker_id in seen:
            raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, f"The manual partition assignment includes the broker {broker_id} more than once.")
        seen.add(broker_id)


def _may_alter_cluster(broker: Broker, conn: ConnectionInfo, operation: AclOperation = AclOperation.ALTER) -> bool:
    return broker.authorize(conn, operation, ResourceType.CLUSTER, CLUSTER_NAME)


def _hosts(broker: Broker, topic: str, partition: int) -> bool:
    t = broker.topics.get(topic)
    return t is not None and 0 <= partition < t.partitions


# ----------------------------------------------------------------------------- ElectLeaders


def handle_elect_leaders(broker: Broker, conn: ConnectionInfo, version: int, req: ElectLeadersRequest) -> ElectLeadersResponse:
    R = ElectLeadersResponse
    if not _may_alter_cluster(broker, conn):
        denied = [
            R.ReplicaElectionResult(
                topic=t.topic,
                partition_result=[R.PartitionResult(partition_id=p, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message=CLUSTER_AUTH_MESSAGE) for p in t.partitions],
            )
            for t in req.topic_partitions or []
        ]
        return R(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, replica_election_results=denied)
    if version >= 1 and req.election_type not in (0, 1):  # 0 preferred, 1 unclean
        return R(throttle_time_ms=0, error_code=ErrorCode.INVALID_REQUEST, replica_election_results=[])
    results = []
    if req.topic_partitions is None:
        # every partition: Kafka leaves out those that already have the desired leader, so
        # on one node the answer lists each topic with no partitions
        results = [R.ReplicaElectionResult(topic=t.name, partition_result=[]) for t in broker.topics]
    else:
        for t in req.topic_partitions:
            parts = []
            for p in t.partitions:
                if _hosts(broker, t.topic, p):
                    parts.append(R.PartitionResult(partition_id=p, error_code=ErrorCode.ELECTION_NOT_NEEDED, error_message=ELECTION_NOT_NEEDED_MESSAGE))
                else:
                    message = f"No such topic as {t.topic}" if broker.topics.get(t.topic) is None else f"No such partition as {t.topic}-{p}"
                    parts.append(R.PartitionResult(partition_id=p, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, error_message=message))
            results.append(R.ReplicaElectionResult(topic=t.topic, partition_result=parts))
    return R(throttle_time_ms=0, error_code=0, replica_election_results=results)


# ----------------------------------------------------------------------------- reassignments


def handle_alter_partition_reassignments(
    broker: Broker, conn: ConnectionInfo, version: int, req: AlterPartitionReassignmentsRequest
) -> AlterPartitionReassignmentsResponse:
    R = AlterPartitionReassignmentsResponse
    if not _may_alter_cluster(broker, conn):
        return R(
            throttle_time_ms=0,
            error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
            error_message=CLUSTER_AUTH_MESSAGE,
            responses=[
                R.ReassignableTopicResponse(
                    name=t.name,
                    partitions=[
                        R.ReassignablePartitionResponse(partition_index=p.partition_index, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message=CLUSTER_AUTH_MESSAGE)
                        for p in t.partitions
                    ],
                )
                for t in req.topics
            ],
        )
    out = []
    for t in req.topics:
        parts = []
        for p in t.partitions:
            res = R.ReassignablePartitionResponse(partition_index=p.partition_index, error_code=0, error_message=None)
            parts.append(res)
            try:
                if broker.topics.get(t.name) is None:
                    raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find a topic named {t.name}.")
                if not _hosts(broker, t.name, p.partition_index):
                    raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find partition {t.name}:{p.partition_index}.")
                if p.replicas is None:  # cancel: nothing is ever in progress here
                    raise KafkaError(ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, "No partition reassignment is in progress.")
                check_assignment(broker, p.replicas)  # [this node]: already so, nothing to do
            except KafkaError as exc:
                res.error_code, res.error_message = int(exc.code), exc.message or None
                log.info("unable to alter the reassignment of %s-%d: %s", t.name, p.partition_index, exc.message)
        out.append(R.ReassignableTopicResponse(name=t.name, partitions=parts))
    return R(throttle_time_ms=0, error_code=0, error_message=None, responses=out)


def handle_list_partition_reassignments(
    broker: Broker, conn: ConnectionInfo, version: int, req: ListPartitionReassignmentsRequest
) -> ListPartitionReassignmentsResponse:
    R = ListPartitionReassignmentsResponse
    if not _may_alter_cluster(broker, conn, AclOperation.DESCRIBE):
        return R(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message=CLUSTER_AUTH_MESSAGE, topics=[])
    return R(throttle_time_ms=0, error_code=0, error_message=None, topics=[])  # none ever in progress


# ----------------------------------------------------------------------------- log dirs


def handle_alter_replica_log_dirs(broker: Broker, conn: ConnectionInfo, version: int, req: AlterReplicaLogDirsRequest) -> AlterReplicaLogDirsResponse:
    R = AlterReplicaLogDirsResponse
    allowed = _may_alter_cluster(broker, conn)
    own = broker.config.data_dir.resolve()
    by_topic: dict[str, list[AlterReplicaLogDirsResponse.AlterReplicaLogDirPartitionResult]] = {}
    for d in req.dirs:
        same_dir = Path(d.path).resolve() == own  # Kafka compares absolute paths
        for t in d.topics:
            parts = by_topic.setdefault(t.name, [])
            for p in t.partitions:
                if not allowed:
                    code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
                elif not same_dir:
                    code = ErrorCode.LOG_DIR_NOT_FOUND
                    log.warning("unable to alter the log dir of %s-%d: log dir %s is not %s", t.name, p, d.path, own)
                elif not _hosts(broker, t.name, p):
                    code = ErrorCode.REPLICA_NOT_AVAILABLE
                else:
                    code = ErrorCode.NONE  # already in the destination: nothing to move
                parts.append(R.AlterReplicaLogDirPartitionResult(partition_index=p, error_code=code))
    return R(throttle_time_ms=0, results=[R.AlterReplicaLogDirTopicResult(topic_name=name, partitions=parts) for name, parts in by_topic.items()])


# ----------------------------------------------------------------------------- DescribeQuorum


def handle_describe_quorum(broker: Broker, conn: ConnectionInfo, version: int, req: DescribeQuorumRequest) -> DescribeQuorumResponse:
    """This node as the single voter and leader of ``__cluster_metadata-0``. The epoch is 1 (one
    leader since the cluster began); the offsets count the metadata changes made so far."""
    R = DescribeQuorumResponse
    if not _may_alter_cluster(broker, conn, AclOperation.DESCRIBE):
        return R(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message=CLUSTER_AUTH_MESSAGE if version >= 2 else None, topics=[])
    valid = len(req.topics) == 1 and req.topics[0].topic_name == METADATA_TOPIC and [p.partition_index for p in req.topics[0].partitions] == [0]
    if not valid:
        return R(
            error_code=0,
            error_message=None,
            topics=[
                R.TopicData(
                    topic_name=t.topic_name,
                    partitions=[
                        R.PartitionData(partition_index=p.partition_index, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, error_message="This server does not host this topic-partition.")
                        for p in t.partitions
                    ],
                )
                for t in req.topics
            ],
        )
    node = broker.config.node_id
    now = broker.now_ms()
    end = broker.topics.metadata_offset
    voter = R.ReplicaState(replica_id=node, replica_directory_id=ZERO_UUID, log_end_offset=end, last_fetch_timestamp=now, last_caught_up_timestamp=now)
    partition = R.PartitionData(partition_index=0, error_code=0, error_message=None, leader_id=node, leader_epoch=1, high_watermark=end, current_voters=[voter], observers=[])
    nodes = []
    if version >= 2:
        host, port = broker.advertised(conn.listener)
        nodes = [R.Node(node_id=node, listeners=[R.Listener(name=conn.listener or "PLAINTEXT", host=host, port=port)])]
    return R(error_code=0, error_message=None, topics=[R.TopicData(topic_name=METADATA_TOPIC, partitions=[partition])], nodes=nodes)
