"""Replication admin APIs answered as a single-node Kafka answers them (issue 20, item 7):
ElectLeaders, AlterPartitionReassignments, ListPartitionReassignments, AlterReplicaLogDirs,
DescribeTopicPartitions, DescribeQuorum, CreatePartitions with an explicit assignment. Real
clients (confluent-kafka, kafka-python) where they have the call, the wire client otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from kafka import KafkaAdminClient

from riverbed.broker.versions import SUPPORTED
from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.alter_partition_reassignments import (
    AlterPartitionReassignmentsRequest,
)
from riverbed.protocol.messages.alter_replica_log_dirs import AlterReplicaLogDirsRequest
from riverbed.protocol.messages.describe_quorum import DescribeQuorumRequest, DescribeQuorumResponse
from riverbed.protocol.messages.describe_topic_partitions import (
    DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse,
)
from riverbed.protocol.messages.elect_leaders import ElectLeadersRequest, ElectLeadersResponse
from riverbed.protocol.messages.list_partition_reassignments import (
    ListPartitionReassignmentsRequest,
)
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics
from .wire import Wire

pytestmark = pytest.mark.integration


@pytest.fixture
def kp_admin(broker: EmbeddedBroker) -> Iterator[KafkaAdminClient]:
    adm = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        yield adm
    finally:
        adm.close()


def test_versions_advertised_as_kafka_4() -> None:
    assert SUPPORTED[34] == (1, 2)
    assert SUPPORTED[43] == (0, 2)
    assert SUPPORTED[45] == (0, 0)
    assert SUPPORTED[46] == (0, 0)
    assert SUPPORTED[55] == (0, 2)
    assert SUPPORTED[75] == (0, 0)


# ----------------------------------------------------------------------------- ElectLeaders


def test_elect_leaders_confluent_election_not_needed(broker: EmbeddedBroker, topic_name: str) -> None:
    from confluent_kafka import ElectionType

    create_topics(broker.bootstrap, NewTopic(topic_name, 2, 1))
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    result = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)]).result(30)
    assert {(tp.topic, tp.partition) for tp in result} == {(topic_name, 0), (topic_name, 1)}
    for err in result.values():
        assert err is not None and err.code() == ErrorCode.ELECTION_NOT_NEEDED


def test_elect_leaders_wire_unknown_partition_and_all_partitions(broker: EmbeddedBroker, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    with Wire(broker.bootstrap) as w:
        for election_type in (0, 1):  # preferred, unclean: the leader is there either way
            req = ElectLeadersRequest(
                election_type=election_type,
                topic_partitions=[ElectLeadersRequest.TopicPartitions(topic=topic_name, partitions=[0, 7]), ElectLeadersRequest.TopicPartitions(topic="no-such-topic", partitions=[0])],
                timeout_ms=5000,
            )
            resp = w.request(req, 2)
            assert isinstance(resp, ElectLeadersResponse)
            assert resp.error_code == 0
            got = {(r.topic, p.partition_id): (p.error_code, p.error_message) for r in resp.replica_election_results for p in r.partition_result}
            assert got[(topic_name, 0)][0] == ErrorCode.ELECTION_NOT_NEEDED
            assert got[(topic_name, 7)][0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            assert got[("no-such-topic", 0)][0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        # every partition (null): Kafka leaves out those that need no election
        resp = w.request(ElectLeadersRequest(election_type=0, topic_partitions=None, timeout_ms=5000), 2)
        assert isinstance(resp, ElectLeadersResponse)
        assert resp.error_code == 0
        assert all(not r.partition_result for r in resp.replica_election_results)
        assert topic_name in {r.topic for r in resp.replica_election_results}


def test_elect_leaders_kafka_python(kp_admin: KafkaAdminClient, broker: EmbeddedBroker, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 2, 1))
    resp = kp_admin.elect_leaders(0, {topic_name: [0, 1]}, raise_errors=True)  # ELECTION_NOT_NEEDED is no error to it
    assert resp.error_code == 0
    [result] = resp.replica_election_results
    assert result.topic == topic_name
    assert sorted((p.partition_id, p.error_code) for p in result.partition_result) == [(0, ErrorCode.ELECTION_NOT_NEEDED), (1, ErrorCode.ELECTION_NOT_NEEDED)]


# ----------------------------------------------------------------------------- reassignments


def test_reassignments_kafka_python(kp_admin: KafkaAdminClient, broker: EmbeddedBroker, topic_name: str) -> None:
    from kafka.structs import TopicPartition as KTP

    create_topics(broker.bootstrap, NewTopic(topic_name, 2, 1))
    node = broker.config.node_id
    assert kp_admin.list_partition_reassignments() == {}
    # to this node: already so, a no-op success
    assert kp_admin.alter_partition_reassignments({KTP(topic_name, 0): [node]}) is not None
    assert kp_admin.list_partition_reassignments() == {}


def test_reassignments_wire_errors(broker: EmbeddedBroker, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    node = broker.config.node_id
    P = AlterPartitionReassignmentsRequest.ReassignablePartition
    req = AlterPartitionReassignmentsRequest(
        timeout_ms=5000,
        topics=[
            AlterPartitionReassignmentsRequest.ReassignableTopic(
                name=topic_name,
                partitions=[P(partition_index=0, replicas=[node])],
            ),
            AlterPartitionReassignmentsRequest.ReassignableTopic(name=topic_name, partitions=[P(partition_index=0, replicas=[node, node + 1])]),
            AlterPartitionReassignmentsRequest.ReassignableTopic(name=topic_name, partitions=[P(partition_index=0, replicas=None)]),
            AlterPartitionReassignmentsRequest.ReassignableTopic(name=topic_name, partitions=[P(partition_index=5, replicas=[node])]),
            AlterPartitionReassignmentsRequest.ReassignableTopic(name="no-such-topic", partitions=[P(partition_index=0, replicas=[node])]),
        ],
    )
    with Wire(broker.bootstrap) as w:
        resp = w.request(req, 0)
        assert resp.error_code == 0 and resp.error_message is None  # type: ignore[attr-defined]
        results = [(t.name, p.error_code, p.error_message) for t in resp.responses for p in t.partitions]  # type: ignore[attr-defined]
        assert results[0] == (topic_name, 0, None)
        assert results[1][1] == ErrorCode.INVALID_REPLICA_ASSIGNMENT and f"broker {node + 1}" in results[1][2]
        assert results[2][1] == ErrorCode.NO_REASSIGNMENT_IN_PROGRESS
        assert results[3][1] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert results[4][1] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        listed = w.request(ListPartitionReassignmentsRequest(timeout_ms=5000, topics=None), 0)
        assert listed.error_code == 0 and listed.error_message is None and listed.topics == []  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- log dirs


def test_alter_replica_log_dirs(broker: EmbeddedBroker, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    own = str(Path(broker.data_dir).resolve())
    D, T = AlterReplicaLogDirsRequest.AlterReplicaLogDir, AlterReplicaLogDirsRequest.AlterReplicaLogDirTopic
    req = AlterReplicaLogDirsRequest(
        dirs=[
            D(path=own, topics=[T(name=topic_name, partitions=[0, 3])]),
            D(path="/elsewhere/not-a-log-dir", topics=[T(name="other-" + topic_name, partitions=[0])]),
        ]
    )
    with Wire(broker.bootstrap) as w:
        resp = w.request(req, 2)
    got = {(t.topic_name, p.partition_index): p.error_code for t in resp.results for p in t.partitions}  # type: ignore[attr-defined]
    assert got == {
        (topic_name, 0): 0,
        (topic_name, 3): ErrorCode.REPLICA_NOT_AVAILABLE,
        ("other-" + topic_name, 0): ErrorCode.LOG_DIR_NOT_FOUND,
    }


def test_alter_replica_log_dirs_kafka_python(kp_admin: KafkaAdminClient, broker: EmbeddedBroker, topic_name: str) -> None:
    import kafka.errors as Errors
    from kafka.structs import TopicPartitionReplica

    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    own = str(Path(broker.data_dir).resolve())
    node = broker.config.node_id
    here, there = TopicPartitionReplica(topic_name, 0, node), TopicPartitionReplica(topic_name + "-x", 0, node)
    result = kp_admin.alter_replica_log_dirs({here: own})
    assert result[here] is Errors.NoError
    result = kp_admin.alter_replica_log_dirs({there: "/not/a/log/dir"})
    assert result[there] is Errors.LogDirNotFoundError


# ----------------------------------------------------------------------------- DescribeTopicPartitions


def _dtp(w: Wire, names: list[str], limit: int, cursor: tuple[str, int] | None = None) -> DescribeTopicPartitionsResponse:
    req = DescribeTopicPartitionsRequest(
        topics=[DescribeTopicPartitionsRequest.TopicRequest(name=n) for n in names],
        response_partition_limit=limit,
        cursor=None if cursor is None else DescribeTopicPartitionsRequest.Cursor(topic_name=cursor[0], partition_index=cursor[1]),
    )
    resp = w.request(req, 0)
    assert isinstance(resp, DescribeTopicPartitionsResponse)
    return resp


def test_describe_topic_partitions_paging(broker: EmbeddedBroker, topic_name: str) -> None:
    a, b = f"{topic_name}-a", f"{topic_name}-b"
    create_topics(broker.bootstrap, NewTopic(a, 3, 1), NewTopic(b, 2, 1))
    seen: list[tuple[str, int]] = []
    with Wire(broker.bootstrap) as w:
        cursor: tuple[str, int] | None = None
        pages = 0
        while True:
            resp = _dtp(w, [b, a], 2, cursor)
            pages += 1
            for t in resp.topics:
                assert t.error_code == 0 and t.topic_id == broker.broker.topics.get(t.name).topic_id
                seen += [(t.name, p.partition_index) for p in t.partitions]
                assert all(p.leader_id == broker.config.node_id and p.replica_nodes == [broker.config.node_id] for p in t.partitions)
            if resp.next_cursor is None:
                break
            cursor = (resp.next_cursor.topic_name, resp.next_cursor.partition_index)
            assert pages < 10
        assert seen == [(a, 0), (a, 1), (a, 2), (b, 0), (b, 1)]
        assert pages == 3
        # a page filled exactly by one topic: the cursor points at the next topic's start
        resp = _dtp(w, [a, b], 3)
        assert [(t.name, len(t.partitions)) for t in resp.topics] == [(a, 3)]
        assert resp.next_cursor is not None and (resp.next_cursor.topic_name, resp.next_cursor.partition_index) == (b, 0)
        # unknown topic named: an error entry; a cursor topic outside the list: INVALID_REQUEST
        resp = _dtp(w, [a, "no-such-topic"], 100)
        assert {t.name: t.error_code for t in resp.topics} == {a: 0, "no-such-topic": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}
        resp = _dtp(w, [a], 100, ("zzz", 0))
        assert [t.error_code for t in resp.topics] == [ErrorCode.INVALID_REQUEST]


def test_describe_topic_partitions_kafka_python(kp_admin: KafkaAdminClient, broker: EmbeddedBroker, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 3, 1))
    resp = kp_admin.describe_topic_partitions([topic_name])
    [topic] = resp["topics"]
    assert topic["name"] == topic_name and topic["error_code"] == 0
    assert [p["partition_index"] for p in topic["partitions"]] == [0, 1, 2]
    assert resp["next_cursor"] is None


# ----------------------------------------------------------------------------- DescribeQuorum


def test_describe_quorum_kafka_python(kp_admin: KafkaAdminClient, broker: EmbeddedBroker) -> None:
    quorum = kp_admin.describe_metadata_quorum()
    [topic] = quorum["topics"]
    assert topic["topic_name"] == "__cluster_metadata"
    [part] = topic["partitions"]
    node = broker.config.node_id
    assert part["partition_index"] == 0 and part["leader_id"] == node and part["leader_epoch"] >= 1
    assert [v["replica_id"] for v in part["current_voters"]] == [node]
    assert part["current_voters"][0]["log_end_offset"] == part["high_watermark"] > 0
    assert part["observers"] == []
    assert [n["node_id"] for n in quorum["nodes"]] == [node]


def test_describe_quorum_offsets_grow_and_wrong_partition(broker: EmbeddedBroker, topic_name: str) -> None:
    T, P = DescribeQuorumRequest.TopicData, DescribeQuorumRequest.PartitionData
    with Wire(broker.bootstrap) as w:
        before = w.request(DescribeQuorumRequest(topics=[T(topic_name="__cluster_metadata", partitions=[P(partition_index=0)])]), 2)
        assert isinstance(before, DescribeQuorumResponse)
        create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
        after = w.request(DescribeQuorumRequest(topics=[T(topic_name="__cluster_metadata", partitions=[P(partition_index=0)])]), 2)
        assert isinstance(after, DescribeQuorumResponse)
        assert after.topics[0].partitions[0].high_watermark > before.topics[0].partitions[0].high_watermark
        assert after.error_code == 0 and after.error_message is None and after.topics[0].partitions[0].error_message is None
        wrong = w.request(DescribeQuorumRequest(topics=[T(topic_name="__cluster_metadata", partitions=[P(partition_index=1)])]), 1)
        assert isinstance(wrong, DescribeQuorumResponse)
        assert wrong.topics[0].partitions[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


# ----------------------------------------------------------------------------- CreatePartitions


def test_create_partitions_with_assignment_to_own_node(broker: EmbeddedBroker, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    node = broker.config.node_id
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_partitions([NewPartitions(topic_name, 3, replica_assignment=[[node], [node]])])[topic_name].result(30)
    assert len(admin.list_topics(topic_name, timeout=30).topics[topic_name].partitions) == 3
    with pytest.raises(Exception) as info:
        admin.create_partitions([NewPartitions(topic_name, 4, replica_assignment=[[node + 1]])])[topic_name].result(30)
    assert info.value.args[0].code() == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert "no such broker is registered" in info.value.args[0].str()


# ----------------------------------------------------------------------------- authorization


def test_cluster_permission_required_with_authorizer(riverbed_broker_factory: object, topic_name: str) -> None:
    """With the authorizer on and no ACLs, User:ANONYMOUS may not ALTER or DESCRIBE the
    cluster: Kafka's CLUSTER_AUTHORIZATION_FAILED on each of these APIs."""
    b = riverbed_broker_factory(authorizer_enabled=True)  # type: ignore[operator]
    denied = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    with Wire(b.bootstrap) as w:
        el = w.request(ElectLeadersRequest(election_type=0, topic_partitions=[ElectLeadersRequest.TopicPartitions(topic=topic_name, partitions=[0])], timeout_ms=5000), 2)
        assert el.error_code == denied  # type: ignore[attr-defined]
        assert [p.error_code for r in el.replica_election_results for p in r.partition_result] == [denied]  # type: ignore[attr-defined]
        ar = w.request(AlterPartitionReassignmentsRequest(timeout_ms=5000, topics=[]), 0)
        assert ar.error_code == denied  # type: ignore[attr-defined]
        lr = w.request(ListPartitionReassignmentsRequest(timeout_ms=5000, topics=None), 0)
        assert lr.error_code == denied  # type: ignore[attr-defined]
        D, T = AlterReplicaLogDirsRequest.AlterReplicaLogDir, AlterReplicaLogDirsRequest.AlterReplicaLogDirTopic
        ld = w.request(AlterReplicaLogDirsRequest(dirs=[D(path=str(b.data_dir), topics=[T(name=topic_name, partitions=[0])])]), 2)
        assert [p.error_code for t in ld.results for p in t.partitions] == [denied]  # type: ignore[attr-defined]
        q = w.request(DescribeQuorumRequest(topics=[DescribeQuorumRequest.TopicData(topic_name="__cluster_metadata", partitions=[DescribeQuorumRequest.PartitionData(partition_index=0)])]), 2)
        assert q.error_code == denied  # type: ignore[attr-defined]
        dtp = _dtp(w, [topic_name], 10)
        assert [t.error_code for t in dtp.topics] == [ErrorCode.TOPIC_AUTHORIZATION_FAILED]
