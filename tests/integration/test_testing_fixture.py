"""The pytest plugin as a user's suite sees it (issue 20, item 11): brokers without the 3 s
initial rebalance delay (as Kafka's test images), settings per test through a marker or the
``riverbed_broker_factory`` fixture."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from riverbed.testing import EmbeddedBroker

pytestmark = pytest.mark.integration


def _broker_config(bootstrap: str, name: str) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    configs = admin.describe_configs([res])[res].result(30)
    return str(configs[name].value)


def test_fixture_has_no_initial_rebalance_delay_and_round_trip_through_a_group(riverbed_broker: EmbeddedBroker, topic_name: str) -> None:
    assert _broker_config(riverbed_broker.bootstrap, "group.initial.rebalance.delay.ms") == "0"
    p = Producer({"bootstrap.servers": riverbed_broker.bootstrap})
    p.produce(topic_name, key=b"k", value=b"one record")
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": riverbed_broker.bootstrap, "group.id": f"g-{topic_name}", "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic_name])
        got = None
        deadline = time.monotonic() + 60
        while got is None and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                got = msg
        assert got is not None and got.value() == b"one record"
    finally:
        c.close()


@pytest.mark.riverbed(num_partitions=3, group_initial_rebalance_delay_ms=250)
def test_marker_passes_settings(riverbed_broker: EmbeddedBroker) -> None:
    assert riverbed_broker.config.num_partitions == 3
    assert _broker_config(riverbed_broker.bootstrap, "group.initial.rebalance.delay.ms") == "250"
    assert riverbed_broker.config.accept_replication_factor  # the other defaults stay


def test_factory_starts_brokers_with_settings(riverbed_broker_factory: Any) -> None:
    a = riverbed_broker_factory(num_partitions=2)
    b = riverbed_broker_factory(auto_create_topics=False)
    assert a.bootstrap != b.bootstrap
    assert a.config.num_partitions == 2 and a.config.group_initial_rebalance_delay_ms == 0
    assert not b.config.auto_create_topics


def test_embedded_broker_alone_keeps_kafka_defaults(tmp_path: Any) -> None:
    """Outside the fixtures a broker is configured as Kafka is by default."""
    b = EmbeddedBroker(tmp_path / "data")
    assert b.config.group_initial_rebalance_delay_ms == 3000
    assert not b.config.accept_replication_factor
