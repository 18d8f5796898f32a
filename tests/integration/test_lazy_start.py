"""After a clean shutdown the broker loads a partition at its first use: over TCP, with a real
client, such a partition answers ListOffsets (earliest, latest, by timestamp), Fetch and
Produce exactly as before the restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from riverbed.storage import manager as manager_module
from riverbed.testing import EmbeddedBroker

pytestmark = pytest.mark.integration

TOPIC = "lazy"
PARTITIONS = 3


def _observe(bootstrap: str) -> dict[str, Any]:
    """Watermarks, an offset looked up by timestamp, and every record, per partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "lazy-check", "enable.auto.commit": False})
    try:
        out: dict[str, Any] = {}
        for p in range(PARTITIONS):
            tp = TopicPartition(TOPIC, p)
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            by_time = consumer.offsets_for_times([TopicPartition(TOPIC, p, 1_000_000 + 5)], timeout=10)[0].offset
            consumer.assign([TopicPartition(TOPIC, p, low)])
            records = []
            deadline = time.monotonic() + 20
            while len(records) < high - low and time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is not None and msg.error() is None:
                    records.append((msg.offset(), msg.key(), msg.value(), msg.timestamp()[1]))
            out[f"p{p}"] = (low, high, by_time, records)
        return out
    finally:
        consumer.close()


def test_a_partition_loaded_at_first_use_serves_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "LOADER_DELAY_S", 600.0)  # (no background loading here)
    data = tmp_path / "data"
    with EmbeddedBroker(data) as eb:
        admin = AdminClient({"bootstrap.servers": eb.bootstrap})
        admin.create_topics([NewTopic(TOPIC, PARTITIONS)])[TOPIC].result(30)
        producer = Producer({"bootstrap.servers": eb.bootstrap, "acks": "all", "linger.ms": 0})
        for i in range(30):
            producer.produce(TOPIC, f"v{i}".encode(), f"k{i}".encode(), partition=i % PARTITIONS, timestamp=1_000_000 + i)
            if i % 10 == 9:
                producer.flush(30)  # several batches per partition
        assert producer.flush(30) == 0
        before = _observe(eb.bootstrap)
    assert all(len(v[3]) == 10 for v in before.values())

    with EmbeddedBroker(data) as eb:
        logs = eb.broker.logs
        assert eb.call(lambda: [logs.get_loaded(TOPIC, p) for p in range(PARTITIONS)]) == [None] * PARTITIONS
        assert _observe(eb.bootstrap) == before
        assert eb.call(lambda: all(logs.get_loaded(TOPIC, p) is not None for p in range(PARTITIONS)))
        producer = Producer({"bootstrap.servers": eb.bootstrap, "acks": "all", "enable.idempotence": True})
        delivered: list[Any] = []
        producer.produce(TOPIC, b"after", b"k", partition=1, on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
        assert producer.flush(30) == 0
        assert delivered == [(None, before["p1"][1])]  # the next offset of the partition
