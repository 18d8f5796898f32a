"""KIP-467: a batch refused because of some of its records lists them in the Produce
response (``record_errors``: batch index + message) and says why in ``error_message``
(Produce v8+), so that clients fail exactly those records with INVALID_RECORD and the
others with a retriable "another record in the batch" error (librdkafka's
_INVALID_DIFFERENT_RECORD), as against Kafka."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import NewTopic

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.produce import ProduceResponse
from riverbed.protocol.records.records import build_batch
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics
from .test_wire import produce_req
from .wire import Wire

pytestmark = pytest.mark.integration

HOUR = 3_600_000


def produce_batch(bootstrap: str, topic: str, records: list[Any], version: int) -> ProduceResponse.PartitionProduceResponse:
    with Wire(bootstrap) as w:
        resp = w.request(produce_req(topic, build_batch(records)), version)
    assert isinstance(resp, ProduceResponse)
    return resp.responses[0].partition_responses[0]


def deliver(bootstrap: str, topic: str, messages: list[dict[str, Any]]) -> list[int]:
    """Produce ``messages`` lingered into one batch; the error code of each (0 = ok)."""
    codes: dict[int, int] = {}
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1000, "message.timeout.ms": 30_000})
    for i, m in enumerate(messages):
        p.produce(topic, **m, on_delivery=lambda err, _msg, i=i: codes.__setitem__(i, err.code() if err else 0))
    assert p.flush(60) == 0
    return [codes[i] for i in range(len(messages))]


def test_keyless_records_on_a_compacted_topic(broker: EmbeddedBroker, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1, config={"cleanup.policy": "compact"}))
    records = [(None if i in (1, 4) else b"k%d" % i, b"v") for i in range(6)]
    part = produce_batch(broker.bootstrap, topic_name, records, 8)
    assert part.error_code == ErrorCode.INVALID_RECORD
    assert [(e.batch_index, e.batch_index_error_message) for e in part.record_errors] == [
        (1, "Compacted topic cannot accept message without key"),
        (4, "Compacted topic cannot accept message without key"),
    ]
    assert part.error_message is not None and "2 record errors" in part.error_message
    # v7 has neither field: the code alone
    old = produce_batch(broker.bootstrap, topic_name, records, 7)
    assert old.error_code == ErrorCode.INVALID_RECORD and old.record_errors == [] and old.error_message is None

    codes = deliver(broker.bootstrap, topic_name, [{"key": None if i in (1, 4) else b"k%d" % i, "value": b"v"} for i in range(6)])
    other = KafkaError._INVALID_DIFFERENT_RECORD
    assert codes == [other, KafkaError.INVALID_RECORD, other, other, KafkaError.INVALID_RECORD, other]


def test_timestamps_out_of_range(broker: EmbeddedBroker, topic_name: str) -> None:
    create_topics(
        broker.bootstrap,
        NewTopic(topic_name, 1, 1, config={"message.timestamp.before.max.ms": str(HOUR), "message.timestamp.after.max.ms": str(HOUR)}),
    )
    now = int(time.time() * 1000)
    stamps = [now, now - 2 * HOUR, now + 2 * HOUR, now - 60_000]
    part = produce_batch(broker.bootstrap, topic_name, [(b"k", b"v", [], ts) for ts in stamps], 8)
    assert part.error_code == ErrorCode.INVALID_TIMESTAMP
    assert [e.batch_index for e in part.record_errors] == [1, 2]
    assert all("out of range" in (e.batch_index_error_message or "") for e in part.record_errors)
    assert part.error_message == "One or more records have been rejected due to invalid timestamp"
    # within the bounds: accepted
    assert produce_batch(broker.bootstrap, topic_name, [(b"k", b"v", [], now - 60_000)], 8).error_code == 0

    codes = deliver(broker.bootstrap, topic_name, [{"value": b"v", "timestamp": ts} for ts in stamps])
    other = KafkaError._INVALID_DIFFERENT_RECORD
    assert codes == [other, KafkaError.INVALID_RECORD, KafkaError.INVALID_RECORD, other]


def test_log_append_time_topics_take_any_timestamp(broker: EmbeddedBroker, topic_name: str) -> None:
    # the bounds apply to CreateTime topics only (the broker overwrites LogAppendTime ones)
    create_topics(
        broker.bootstrap,
        NewTopic(topic_name, 1, 1, config={"message.timestamp.type": "LogAppendTime", "message.timestamp.before.max.ms": str(HOUR)}),
    )
    part = produce_batch(broker.bootstrap, topic_name, [(b"k", b"v", [], 1_000)], 8)
    assert part.error_code == 0
