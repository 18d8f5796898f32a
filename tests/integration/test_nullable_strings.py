"""Nullable strings on the wire (issue 20, item 5): where there is no error, Kafka sends the
``error_message`` fields as null, not as empty strings. Each response kind riverbed answers
with such a field is checked here as it comes off the wire (decoded by riverbed's codec: a
null decodes to None, an empty string to "")."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import NewTopic

from riverbed.protocol.messages.alter_configs import AlterConfigsRequest
from riverbed.protocol.messages.alter_partition_reassignments import (
    AlterPartitionReassignmentsRequest,
)
from riverbed.protocol.messages.alter_user_scram_credentials import AlterUserScramCredentialsRequest
from riverbed.protocol.messages.create_acls import CreateAclsRequest
from riverbed.protocol.messages.create_partitions import CreatePartitionsRequest
from riverbed.protocol.messages.create_topics import CreateTopicsRequest
from riverbed.protocol.messages.delete_acls import DeleteAclsRequest
from riverbed.protocol.messages.delete_topics import DeleteTopicsRequest
from riverbed.protocol.messages.describe_acls import DescribeAclsRequest
from riverbed.protocol.messages.describe_cluster import DescribeClusterRequest
from riverbed.protocol.messages.describe_configs import DescribeConfigsRequest
from riverbed.protocol.messages.describe_user_scram_credentials import (
    DescribeUserScramCredentialsRequest,
)
from riverbed.protocol.messages.find_coordinator import FindCoordinatorRequest
from riverbed.protocol.messages.incremental_alter_configs import IncrementalAlterConfigsRequest
from riverbed.protocol.messages.list_partition_reassignments import (
    ListPartitionReassignmentsRequest,
)
from riverbed.protocol.primitives import Message
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics
from .wire import Wire

pytestmark = pytest.mark.integration

TOPIC = 2


def error_messages(msg: Any, path: str = "") -> Iterator[tuple[str, int, Any]]:
    """(path, error code beside it, value) of every ``error_message`` field in a response."""
    if isinstance(msg, list):
        for i, item in enumerate(msg):
            yield from error_messages(item, f"{path}[{i}]")
        return
    if not isinstance(msg, Message):
        return
    for f in dataclasses.fields(msg):  # type: ignore[arg-type]
        value = getattr(msg, f.name)
        if f.name == "error_message":
            yield f"{path}.error_message", getattr(msg, "error_code", 0), value
        elif isinstance(value, list | Message):
            yield from error_messages(value, f"{path}.{f.name}")


def assert_null_when_no_error(resp: Message) -> None:
    found = list(error_messages(resp))
    assert found, f"no error_message field in {type(resp).__name__}"
    bad = [(p, v) for p, code, v in found if code == 0 and v is not None]
    assert not bad, f"{type(resp).__name__}: non-null error_message without an error: {bad}"


def test_topic_admin_responses(broker: EmbeddedBroker, topic_name: str) -> None:
    with Wire(broker.bootstrap) as w:
        for version in (1, 5, 7):
            name = f"{topic_name}-{version}"
            resp = w.request(CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(name=name, num_partitions=1, replication_factor=1)], timeout_ms=5000), version)
            assert_null_when_no_error(resp)
        resp = w.request(
            CreatePartitionsRequest(topics=[CreatePartitionsRequest.CreatePartitionsTopic(name=f"{topic_name}-7", count=2, assignments=None)], timeout_ms=5000), 3
        )
        assert_null_when_no_error(resp)
        for version, name in ((5, f"{topic_name}-1"), (6, f"{topic_name}-5")):
            if version >= 6:
                req = DeleteTopicsRequest(topics=[DeleteTopicsRequest.DeleteTopicState(name=name)], timeout_ms=5000)
            else:
                req = DeleteTopicsRequest(topic_names=[name], timeout_ms=5000)
            assert_null_when_no_error(w.request(req, version))


def test_config_responses(broker: EmbeddedBroker, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    with Wire(broker.bootstrap) as w:
        for version in (0, 4):
            resp = w.request(DescribeConfigsRequest(resources=[DescribeConfigsRequest.DescribeConfigsResource(resource_type=TOPIC, resource_name=topic_name, configuration_keys=None)]), version)
            assert_null_when_no_error(resp)
        A = AlterConfigsRequest
        resp = w.request(A(resources=[A.AlterConfigsResource(resource_type=TOPIC, resource_name=topic_name, configs=[A.AlterableConfig(name="retention.ms", value="100000")])]), 2)
        assert_null_when_no_error(resp)
        I = IncrementalAlterConfigsRequest  # noqa: E741
        resp = w.request(I(resources=[I.AlterConfigsResource(resource_type=TOPIC, resource_name=topic_name, configs=[I.AlterableConfig(name="retention.ms", config_operation=0, value="200000")])]), 1)
        assert_null_when_no_error(resp)


def test_coordinator_and_cluster_responses(broker: EmbeddedBroker) -> None:
    with Wire(broker.bootstrap) as w:
        for version in (1, 3):
            assert_null_when_no_error(w.request(FindCoordinatorRequest(key="nullable-group", key_type=0), version))
        v4 = w.request(FindCoordinatorRequest(key_type=0, coordinator_keys=["g1", "g2"]), 4)
        for coordinator in v4.coordinators:  # type: ignore[attr-defined]  # (no top-level message in v4)
            assert_null_when_no_error(coordinator)
        assert_null_when_no_error(w.request(DescribeClusterRequest(), 1))
        assert_null_when_no_error(w.request(ListPartitionReassignmentsRequest(timeout_ms=5000, topics=None), 0))
        assert_null_when_no_error(w.request(AlterPartitionReassignmentsRequest(timeout_ms=5000, topics=[]), 0))


def test_acl_responses(riverbed_broker_factory: Any) -> None:
    b = riverbed_broker_factory(authorizer_enabled=True, super_users=("User:ANONYMOUS",))
    with Wire(b.bootstrap) as w:
        C = CreateAclsRequest.AclCreation
        create = CreateAclsRequest(creations=[C(resource_type=TOPIC, resource_name="t", resource_pattern_type=3, principal="User:alice", host="*", operation=3, permission_type=3)])
        assert_null_when_no_error(w.request(create, 3))
        describe = DescribeAclsRequest(resource_type_filter=1, resource_name_filter=None, pattern_type_filter=1, principal_filter=None, host_filter=None, operation=1, permission_type=1)
        assert_null_when_no_error(w.request(describe, 3))
        F = DeleteAclsRequest.DeleteAclsFilter
        delete = DeleteAclsRequest(filters=[F(resource_type_filter=1, resource_name_filter=None, pattern_type_filter=1, principal_filter=None, host_filter=None, operation=1, permission_type=1)])
        assert_null_when_no_error(w.request(delete, 3))


def test_scram_responses(broker: EmbeddedBroker) -> None:
    with Wire(broker.bootstrap) as w:
        U = AlterUserScramCredentialsRequest.ScramCredentialUpsertion
        alter = AlterUserScramCredentialsRequest(deletions=[], upsertions=[U(name="nullable-user", mechanism=1, iterations=4096, salt=b"salt-salt", salted_password=b"x" * 32)])
        assert_null_when_no_error(w.request(alter, 0))
        describe = DescribeUserScramCredentialsRequest(users=[DescribeUserScramCredentialsRequest.UserName(name="nullable-user")])
        assert_null_when_no_error(w.request(describe, 0))


def test_kafka_python_create_and_delete_topics_show_none(broker: EmbeddedBroker, topic_name: str) -> None:
    """kafka-python hands the results over as decoded: a successful topic's error_message is
    None, as from Kafka (it showed '' for CreateTopics)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic as KPNewTopic

    adm = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        created = adm.create_topics([KPNewTopic(topic_name, 1, 1)])
        assert [(t["name"], t["error_code"], t["error_message"]) for t in created["topics"]] == [(topic_name, 0, None)]
        deleted = adm.delete_topics([topic_name])
        assert [(t["name"], t["error_code"], t["error_message"]) for t in deleted["topics"]] == [(topic_name, 0, None)]
    finally:
        adm.close()
