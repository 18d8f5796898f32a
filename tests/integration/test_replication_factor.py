"""Replication factor on one node (issue 20, item 8). By default riverbed refuses a factor
above 1 as Kafka refuses one above the broker count, and refuses acks=all below
min.insync.replicas as Kafka does with one replica in sync. With
``riverbed.accept.replication.factor=true`` (the pytest fixture's default) it creates such a
topic with one replica, logs a warning, reports the truth in Metadata and CreateTopics, and
takes acks=all writes whatever min.insync.replicas says."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from riverbed.cli.config import load_config
from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.create_topics import CreateTopicsRequest, CreateTopicsResponse
from riverbed.testing import EmbeddedBroker

from .wire import Wire

pytestmark = pytest.mark.integration


def _create(b: EmbeddedBroker, name: str, factor: int, configs: dict[str, str] | None = None) -> CreateTopicsResponse.CreatableTopicResult:
    C = CreateTopicsRequest.CreatableTopic
    cfg = [CreateTopicsRequest.CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()]
    with Wire(b.bootstrap) as w:
        resp = w.request(CreateTopicsRequest(topics=[C(name=name, num_partitions=2, replication_factor=factor, configs=cfg)], timeout_ms=5000), 7)
    assert isinstance(resp, CreateTopicsResponse)
    return resp.topics[0]


def _produce(b: EmbeddedBroker, topic: str, acks: str) -> KafkaError | None:
    errors: list[KafkaError | None] = []
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": acks, "retries": 0, "message.timeout.ms": 20000, "enable.idempotence": False})
    p.produce(topic, b"v", partition=0, on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    assert len(errors) == 1
    return errors[0]


def test_default_refuses_factor_above_one(riverbed_broker_factory: Any, topic_name: str) -> None:
    b = riverbed_broker_factory(accept_replication_factor=False)
    res = _create(b, topic_name, 3)
    assert res.error_code == ErrorCode.INVALID_REPLICATION_FACTOR
    assert "only 1 broker(s) are registered" in (res.error_message or "")
    res = _create(b, topic_name, 0)
    assert (res.error_code, res.error_message) == (ErrorCode.INVALID_REPLICATION_FACTOR, "Replication factor must be larger than 0, or -1 to use the default value.")
    assert b.broker.topics.get(topic_name) is None


def test_default_acks_all_below_min_insync_is_refused(riverbed_broker_factory: Any, topic_name: str) -> None:
    b = riverbed_broker_factory(accept_replication_factor=False)
    assert _create(b, topic_name, 1, {"min.insync.replicas": "2"}).error_code == 0
    err = _produce(b, topic_name, "all")
    assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS
    assert _produce(b, topic_name, "1") is None  # acks=1 does not wait for the ISR (Kafka)


def test_opt_in_creates_one_replica_and_warns(riverbed_broker_factory: Any, topic_name: str, caplog: pytest.LogCaptureFixture) -> None:
    b = riverbed_broker_factory(accept_replication_factor=True)
    with caplog.at_level(logging.WARNING, logger="riverbed.broker"):
        res = _create(b, topic_name, 3, {"min.insync.replicas": "2"})
    assert (res.error_code, res.error_message, res.num_partitions, res.replication_factor) == (0, None, 2, 1)
    assert any(topic_name in r.getMessage() and "replication factor 3" in r.getMessage() for r in caplog.records)
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    md = admin.list_topics(topic_name, timeout=30).topics[topic_name]
    node = b.config.node_id
    assert [list(p.replicas) for p in md.partitions.values()] == [[node], [node]]  # the truth: one replica
    # what applications do: confluent-kafka's create_topics with their production factor
    admin.create_topics([NewTopic(topic_name + "-cf", 1, 3)])[topic_name + "-cf"].result(30)
    assert _produce(b, topic_name, "all") is None  # min.insync.replicas=2 is met by the one replica


def test_fixture_enables_opt_in(broker: EmbeddedBroker, topic_name: str) -> None:
    assert broker.config.accept_replication_factor
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic_name, 1, 3)])[topic_name].result(30)


def test_setting_from_config(tmp_path: Any) -> None:
    cfg, _ = load_config(env={}, kafka_flags={"riverbed.accept.replication.factor": "true"})
    assert cfg.accept_replication_factor
    cfg, _ = load_config(env={})
    assert not cfg.accept_replication_factor
