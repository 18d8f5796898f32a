"""Internal topics as Kafka shows them (issue 20, item 4): ``__consumer_offsets`` and
``__transaction_state`` are created on first use (FindCoordinator, or a Metadata request
naming them), appear in an all-topics Metadata response with is_internal=true, are left out
of pattern subscriptions by clients, and refuse what Kafka refuses."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicCollection
from confluent_kafka.admin import AdminClient, NewTopic

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.create_topics import CreateTopicsRequest, CreateTopicsResponse
from riverbed.protocol.messages.find_coordinator import FindCoordinatorRequest
from riverbed.protocol.messages.metadata import MetadataRequest, MetadataResponse
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics
from .wire import Wire

pytestmark = pytest.mark.integration

OFFSETS, TXN_STATE = "__consumer_offsets", "__transaction_state"


def _all_topics(w: Wire, version: int = 12) -> dict[str, MetadataResponse.MetadataResponseTopic]:
    resp = w.request(MetadataRequest(topics=None, allow_auto_topic_creation=False), version)
    assert isinstance(resp, MetadataResponse)
    return {t.name: t for t in resp.topics if t.name is not None}


def test_find_coordinator_creates_internal_topics_listed_as_internal(broker: EmbeddedBroker) -> None:
    with Wire(broker.bootstrap) as w:
        assert OFFSETS not in _all_topics(w) and TXN_STATE not in _all_topics(w)
        w.request(FindCoordinatorRequest(key="some-group", key_type=0), 3)
        topics = _all_topics(w)
        assert topics[OFFSETS].is_internal and len(topics[OFFSETS].partitions) == 50
        assert TXN_STATE not in topics
        w.request(FindCoordinatorRequest(key_type=1, coordinator_keys=["some-txn"]), 4)
        topics = _all_topics(w)
        assert topics[TXN_STATE].is_internal and len(topics[TXN_STATE].partitions) == 50
        for version in (1, 9):  # is_internal exists from v1
            assert _all_topics(w, version)[OFFSETS].is_internal


def test_metadata_naming_internal_topic(broker: EmbeddedBroker) -> None:
    with Wire(broker.bootstrap) as w:
        T = MetadataRequest.MetadataRequestTopic
        resp = w.request(MetadataRequest(topics=[T(name=OFFSETS)], allow_auto_topic_creation=False), 12)
        assert isinstance(resp, MetadataResponse)
        [t] = resp.topics
        assert (t.error_code, t.is_internal) == (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, True)
        resp = w.request(MetadataRequest(topics=[T(name=TXN_STATE)], allow_auto_topic_creation=True), 12)
        assert isinstance(resp, MetadataResponse)
        [t] = resp.topics
        # auto-created as its coordinator creates it: 50 partitions, compacted
        assert (t.error_code, t.is_internal, len(t.partitions)) == (0, True, 50)
    assert broker.broker.topic_configs(broker.broker.topics.get(TXN_STATE))["cleanup.policy"] == "compact"


def test_confluent_list_topics_shows_internal_and_regex_subscription_matches_them(broker: EmbeddedBroker, topic_name: str) -> None:
    """librdkafka has no exclude.internal.topics: its regex subscriptions match internal topics
    on Kafka too (only ``topic.blacklist`` filters; confluentinc/librdkafka#3458), so ``^.*``
    gets __consumer_offsets once the broker lists it."""
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic_name, b"v")
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{topic_name}", "auto.offset.reset": "earliest", "topic.metadata.refresh.interval.ms": 500})
    try:
        c.subscribe(["^.*"])
        got = None
        deadline = time.monotonic() + 60
        while got is None and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None and msg.topic() == topic_name:
                got = msg
        assert got is not None
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        # the group made the broker create __consumer_offsets: clients see it, as on Kafka
        assert OFFSETS in admin.list_topics(timeout=30).topics
        assert admin.describe_topics(TopicCollection([OFFSETS]))[OFFSETS].result(30).is_internal
        while OFFSETS not in {tp.topic for tp in c.assignment()} and time.monotonic() < deadline:
            c.poll(0.2)
        assert {tp.topic for tp in c.assignment()} >= {topic_name, OFFSETS}
    finally:
        c.close()


def test_kafka_python_pattern_subscription_excludes_internal(broker: EmbeddedBroker, topic_name: str) -> None:
    """kafka-python's exclude_internal_topics (default True, as Java's exclude.internal.topics)
    acts on the is_internal flag riverbed now sends."""
    from kafka import KafkaConsumer

    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    with Wire(broker.bootstrap) as w:
        w.request(FindCoordinatorRequest(key="any-group", key_type=0), 3)  # creates __consumer_offsets
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=f"kp-{topic_name}")
    try:
        c.subscribe(pattern=".*")
        deadline = time.monotonic() + 60
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(timeout_ms=200)
        assert {tp.topic for tp in c.assignment()} == {topic_name}
    finally:
        c.close()


def test_internal_topics_refuse_create_delete_produce(broker: EmbeddedBroker) -> None:
    with Wire(broker.bootstrap) as w:

        def create(name: str) -> tuple[int, str | None]:
            resp = w.request(CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(name=name, num_partitions=1, replication_factor=1)], timeout_ms=5000), 7)
            assert isinstance(resp, CreateTopicsResponse)
            return resp.topics[0].error_code, resp.topics[0].error_message

        # not yet created: clients may not create it (the broker does, with its own layout)
        code, message = create(OFFSETS)
        assert code == ErrorCode.INVALID_REQUEST and message is not None and "prohibited" in message
        assert broker.broker.topics.get(OFFSETS) is None
        assert create("__cluster_metadata") == (ErrorCode.INVALID_REQUEST, "Creation of internal topic __cluster_metadata is prohibited.")
        w.request(FindCoordinatorRequest(key="g", key_type=0), 3)
        assert create(OFFSETS)[0] == ErrorCode.TOPIC_ALREADY_EXISTS
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    with pytest.raises(Exception) as info:
        admin.delete_topics([OFFSETS])[OFFSETS].result(30)
    assert info.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
    errors: list[KafkaError] = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 10000})
    p.produce(OFFSETS, b"x", partition=0, on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    assert [e.code() for e in errors] == [KafkaError.TOPIC_EXCEPTION]


def test_cli_topic_list_hides_internal_unless_asked_and_describe_prints_topic_id(broker: EmbeddedBroker, topic_name: str) -> None:
    b = broker.bootstrap
    user_topic = f"__{topic_name}"  # a user topic whose name starts with "__" is not internal
    create_topics(b, NewTopic(topic_name, 2, 1), NewTopic(user_topic, 1, 1))
    with Wire(b) as w:
        w.request(FindCoordinatorRequest(key="g", key_type=0), 3)

    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "riverbed", *args, "-b", b], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    listed = cli("topic", "list").split()
    assert topic_name in listed and user_topic in listed and OFFSETS not in listed
    assert OFFSETS in cli("topic", "list", "--internal").split()
    first = cli("topic", "describe", topic_name).splitlines()[0]
    expected = base64.urlsafe_b64encode(broker.broker.topics.get(topic_name).topic_id.bytes).decode().rstrip("=")
    assert f"TopicId: {expected}\t" in first
    assert "Internal: true" in cli("topic", "describe", OFFSETS).splitlines()[0]


def test_metadata_auto_creation_of_internal_topic_needs_create_permission(riverbed_broker_factory: Any) -> None:
    """As Kafka: a Metadata request that would auto-create an internal topic needs CREATE (on
    the cluster or the topic) like any other; refused, the entry says is_internal=true.
    A principal that may not DESCRIBE the topic learns nothing (is_internal=false)."""
    from riverbed.protocol.messages.create_acls import CreateAclsRequest

    b = riverbed_broker_factory(authorizer_enabled=True, allow_everyone_if_no_acl_found=True)
    C = CreateAclsRequest.AclCreation
    anon, topic_rt, cluster_rt, literal, allow, deny = "User:ANONYMOUS", 2, 4, 3, 3, 2
    describe, create = 8, 5
    acls = [
        C(resource_type=topic_rt, resource_name=OFFSETS, resource_pattern_type=literal, principal=anon, host="*", operation=describe, permission_type=allow),
        C(resource_type=topic_rt, resource_name=OFFSETS, resource_pattern_type=literal, principal=anon, host="*", operation=create, permission_type=deny),
        C(resource_type=topic_rt, resource_name=TXN_STATE, resource_pattern_type=literal, principal="User:someone-else", host="*", operation=describe, permission_type=allow),
        C(resource_type=cluster_rt, resource_name="kafka-cluster", resource_pattern_type=literal, principal=anon, host="*", operation=create, permission_type=deny),
    ]
    T = MetadataRequest.MetadataRequestTopic
    with Wire(b.bootstrap) as w:
        created = w.request(CreateAclsRequest(creations=acls), 3)
        assert [r.error_code for r in created.results] == [0, 0, 0, 0]  # type: ignore[attr-defined]
        resp = w.request(MetadataRequest(topics=[T(name=OFFSETS), T(name=TXN_STATE)], allow_auto_topic_creation=True), 12)
    assert isinstance(resp, MetadataResponse)
    got = {t.name: (t.error_code, t.is_internal) for t in resp.topics}
    assert got == {OFFSETS: (ErrorCode.TOPIC_AUTHORIZATION_FAILED, True), TXN_STATE: (ErrorCode.TOPIC_AUTHORIZATION_FAILED, False)}
    assert b.broker.topics.get(OFFSETS) is None and b.broker.topics.get(TXN_STATE) is None
