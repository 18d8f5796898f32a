"""ListOffsets by timestamp and MAX_TIMESTAMP answer with a *record* offset, as Kafka does
(it scans inside the batch), seen through confluent-kafka's and kafka-python's
``offsets_for_times`` and confluent-kafka's ``list_offsets`` (OffsetSpec.max_timestamp)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition

from riverbed.protocol.messages.produce import ProduceResponse
from riverbed.protocol.records.records import build_batch
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics
from .test_wire import produce_req
from .wire import Wire

pytestmark = pytest.mark.integration

# three batches of four records each, every record with its own timestamp; the second
# batch's timestamps are not in order (a producer may set any timestamp per record)
BATCHES = [
    [1_000, 1_010, 1_020, 1_030],
    [2_000, 2_300, 2_100, 2_200],
    [3_000, 3_010, 3_010, 3_020],
]


def produce_batches(bootstrap: str, topic: str, compression: int) -> None:
    with Wire(bootstrap) as w:
        for stamps in BATCHES:
            batch = build_batch([(b"k", b"v" * 100, [], ts) for ts in stamps], compression=compression)
            resp = w.request(produce_req(topic, batch), 8)
            assert isinstance(resp, ProduceResponse)
            assert resp.responses[0].partition_responses[0].error_code == 0


# target timestamp -> (offset, timestamp) Kafka answers for BATCHES
EXPECTED = {
    0: (0, 1_000),
    1_000: (0, 1_000),
    1_011: (2, 1_020),  # inside the first batch, not its base offset 0
    1_030: (3, 1_030),
    1_031: (4, 2_000),
    2_050: (5, 2_300),  # the first record >= the target, in offset order
    2_250: (5, 2_300),
    3_005: (9, 3_010),
    3_011: (11, 3_020),
}


@pytest.mark.parametrize("compression", [0, 1, 3, 4], ids=["none", "gzip", "lz4", "zstd"])
def test_offsets_for_times_confluent(broker: EmbeddedBroker, topic_name: str, compression: int) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    produce_batches(broker.bootstrap, topic_name, compression)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{topic_name}"})
    try:
        for target, (offset, _) in EXPECTED.items():
            got = c.offsets_for_times([TopicPartition(topic_name, 0, target)], timeout=10)
            assert got[0].error is None
            assert got[0].offset == offset, f"timestamp {target}"
        got = c.offsets_for_times([TopicPartition(topic_name, 0, 3_021)], timeout=10)
        assert got[0].offset == -1  # no record that late: the end (Kafka answers -1)
    finally:
        c.close()


def test_offsets_for_times_kafka_python(broker: EmbeddedBroker, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    produce_batches(broker.bootstrap, topic_name, 2)  # snappy
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, request_timeout_ms=20_000)
    try:
        tp = KTopicPartition(topic_name, 0)
        for target, expected in EXPECTED.items():
            got = c.offsets_for_times({tp: target})[tp]
            assert got is not None and (got.offset, got.timestamp) == expected, f"timestamp {target}"
        assert c.offsets_for_times({tp: 3_021})[tp] is None
    finally:
        c.close()


def test_max_timestamp_is_the_record_holding_it(broker: EmbeddedBroker, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    with Wire(broker.bootstrap) as w:
        for stamps in ([100, 900, 300], [500, 900, 950, 200], [400, 600]):
            resp = w.request(produce_req(topic_name, build_batch([(b"k", b"v", [], ts) for ts in stamps], compression=1)), 8)
            assert resp.responses[0].partition_responses[0].error_code == 0  # type: ignore[attr-defined]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    tp = TopicPartition(topic_name, 0)
    info = admin.list_offsets({tp: OffsetSpec.max_timestamp()}, request_timeout=10)[tp].result(10)
    assert (info.offset, info.timestamp) == (5, 950)  # record 5 of the batch at offsets 3-6


def test_offsets_for_times_of_a_client_batch(broker: EmbeddedBroker, topic_name: str) -> None:
    # the same through confluent-kafka's own producer: records lingered into one batch
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 1000, "compression.type": "lz4"})
    base = int(time.time() * 1000) - 60_000
    for i in range(10):
        p.produce(topic_name, value=b"v%d" % i, timestamp=base + 10 * i)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{topic_name}"})
    try:
        for i in range(10):
            got = c.offsets_for_times([TopicPartition(topic_name, 0, base + 10 * i - 5)], timeout=10)
            assert got[0].offset == i
    finally:
        c.close()
