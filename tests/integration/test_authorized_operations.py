"""KIP-430 authorized operations, read by confluent-kafka's admin client: the operations a
principal may perform on a topic, a group and the cluster, from its ACLs; every supported
operation when the broker has no authorizer (as Kafka answers)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicCollection
from confluent_kafka.admin import AclOperation, AdminClient, NewTopic

from riverbed.protocol.messages.metadata import MetadataRequest, MetadataResponse
from riverbed.security.acl import (
    AclBinding,
    AclBindingFilter,
    AclPermissionType,
    PatternType,
    ResourceType,
)
from riverbed.security.acl import AclOperation as Op
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics
from .wire import Wire

pytestmark = pytest.mark.integration

ANON = "User:ANONYMOUS"
UNKNOWN = -2147483648
ALL_TOPIC_OPS = {"READ", "WRITE", "CREATE", "DESCRIBE", "DELETE", "ALTER", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}
ALL_GROUP_OPS = {"READ", "DESCRIBE", "DELETE"}
ALL_CLUSTER_OPS = {"CREATE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE", "ALTER", "DESCRIBE"}


def names(ops: list[AclOperation] | None) -> set[str]:
    assert ops is not None, "no authorized operations in the answer"
    return {op.name for op in ops}


def join_group(bootstrap: str, group: str, topic: str) -> None:
    """Leave a group with committed offsets behind, so that DescribeGroups finds it."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 30
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(0.2)
        assert c.assignment(), "no assignment"
    finally:
        c.close()


def describe_all(bootstrap: str, topic: str, group: str) -> tuple[set[str], set[str], set[str]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    t = admin.describe_topics(TopicCollection([topic]), include_authorized_operations=True)[topic].result(10)
    g = admin.describe_consumer_groups([group], include_authorized_operations=True)[group].result(10)
    c = admin.describe_cluster(include_authorized_operations=True).result(10)
    return names(t.authorized_operations), names(g.authorized_operations), names(c.authorized_operations)


def test_every_supported_operation_without_an_authorizer(broker: EmbeddedBroker, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    join_group(broker.bootstrap, "kip430-open", topic_name)
    topic_ops, group_ops, cluster_ops = describe_all(broker.bootstrap, topic_name, "kip430-open")
    assert topic_ops == ALL_TOPIC_OPS
    assert group_ops == ALL_GROUP_OPS
    assert cluster_ops == ALL_CLUSTER_OPS


def test_operations_follow_the_acls(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path / "data", authorizer_enabled=True, group_initial_rebalance_delay_ms=0).start()
    try:

        def allow(rt: ResourceType, name: str, op: Op, pattern: PatternType = PatternType.LITERAL) -> AclBinding:
            return AclBinding(rt, name, pattern, ANON, "*", op, AclPermissionType.ALLOW)

        acls = [
            allow(ResourceType.CLUSTER, "kafka-cluster", Op.CREATE),  # to create the topic below
            allow(ResourceType.CLUSTER, "kafka-cluster", Op.DESCRIBE),
            allow(ResourceType.TOPIC, "orders", Op.READ),  # implies DESCRIBE
            allow(ResourceType.TOPIC, "ord", Op.DESCRIBE_CONFIGS, PatternType.PREFIXED),
            allow(ResourceType.GROUP, "billing-service", Op.READ),
            AclBinding(ResourceType.TOPIC, "orders", PatternType.LITERAL, ANON, "*", Op.WRITE, AclPermissionType.DENY),
        ]
        broker.call(broker.broker.acls.add, acls)
        create_topics(broker.bootstrap, NewTopic("orders", 1, 1))
        join_group(broker.bootstrap, "billing-service", "orders")
        topic_ops, group_ops, cluster_ops = describe_all(broker.bootstrap, "orders", "billing-service")
        # only the topic's own ACLs count (CREATE on the cluster is not CREATE on the topic),
        # and the DENY on WRITE leaves WRITE out
        assert topic_ops == {"READ", "DESCRIBE", "DESCRIBE_CONFIGS"}
        assert group_ops == {"READ", "DESCRIBE"}
        assert cluster_ops == {"CREATE", "DESCRIBE"}
        # without DESCRIBE on the cluster, its operations are answered as none (Kafka; 0,
        # which librdkafka reports as no list)
        gone = AclBindingFilter(resource_type=ResourceType.CLUSTER, operation=Op.DESCRIBE)
        broker.call(broker.broker.acls.delete, [gone])
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        assert not admin.describe_cluster(include_authorized_operations=True).result(10).authorized_operations
    finally:
        broker.stop()


def test_metadata_fields_on_the_wire(broker: EmbeddedBroker, topic_name: str) -> None:
    """Metadata v8-v10 carries the cluster's operations when asked; v11+ never does, and
    fields not asked for hold Kafka's "unknown" (INT32_MIN)."""
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    # Kafka's AclOperation codes (org.apache.kafka.common.acl.AclOperation), written out here
    # rather than taken from riverbed's enum: READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7,
    # DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12.
    # The bitfield has bit (1 << code) set per allowed operation.
    topic_bits = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11)
    cluster_bits = (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12)
    assert (topic_bits, cluster_bits) == (3576, 8096)
    with Wire(broker.bootstrap) as w:

        def ask(version: int, ops: bool) -> MetadataResponse:
            req = MetadataRequest(
                topics=[MetadataRequest.MetadataRequestTopic(name=topic_name)],
                include_cluster_authorized_operations=ops and version <= 10,
                include_topic_authorized_operations=ops,
            )
            resp = w.request(req, version)
            assert isinstance(resp, MetadataResponse)
            return resp

        for version in (8, 10):
            got = ask(version, True)
            assert (got.cluster_authorized_operations, got.topics[0].topic_authorized_operations) == (cluster_bits, topic_bits)
            got = ask(version, False)
            assert (got.cluster_authorized_operations, got.topics[0].topic_authorized_operations) == (UNKNOWN, UNKNOWN)
        got = ask(12, True)
        assert (got.cluster_authorized_operations, got.topics[0].topic_authorized_operations) == (UNKNOWN, topic_bits)
