"""Connector offsets in a compacted Kafka topic, keyed as Kafka Connect keys source offsets
(``["<connector>", {"server": "<topic.prefix>"}]``) with Debezium's PostgreSQL offset fields
(``lsn``, ``txId``, ``ts_usec``) plus the snapshot's progress."""

from __future__ import annotations

import json
import time
from typing import Any

from confluent_kafka import KafkaError, Producer, TopicPartition

from ..client import ClusterSettings, admin, consumer, ensure_topics
from .debezium import dumps

__all__ = ["OffsetStore"]


class OffsetStore:
    def __init__(self, cluster: ClusterSettings, topic: str, connector: str, server: str, replication: int = -1) -> None:
        self.cluster, self.topic = cluster, topic
        self.connector, self.server = connector, server
        self.key = dumps([connector, {"server": server}])
        self.replication = replication

    def ensure_topic(self) -> None:
        ensure_topics(admin(self.cluster), {self.topic: (1, {"cleanup.policy": "compact"})}, replication=self.replication)

    def read_all(self, timeout: float = 30.0) -> dict[bytes, dict[str, Any] | None]:
        """The last value of every key of the offsets topic (None for a reset connector)."""
        c = consumer(self.cluster, "riverbed-connect-offsets-reader", **{"auto.offset.reset": "earliest", "enable.partition.eof": False})
        out: dict[bytes, dict[str, Any] | None] = {}
        try:
            tp = TopicPartition(self.topic, 0)
            lo, hi = c.get_watermark_offsets(tp, timeout=timeout)
            if hi <= lo:
                return out
            c.assign([TopicPartition(self.topic, 0, lo)])
            deadline = time.monotonic() + timeout
            pos = lo
            while pos < hi:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {self.topic} timed out at offset {pos} of {hi}")
                msg = c.poll(0.5)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"reading {self.topic}: {err}")
                pos = (msg.offset() or 0) + 1
                key = msg.key()
                if key is None:
                    continue
                value = msg.value()
                out[bytes(key)] = None if value is None else json.loads(value)
        finally:
            c.close()
        return out

    def load(self, timeout: float = 30.0) -> dict[str, Any] | None:
        return self.read_all(timeout).get(self.key)

    def write(self, producer: Producer, value: dict[str, Any] | None, on_delivery: Any = None) -> None:
        producer.produce(self.topic, key=self.key, value=None if value is None else dumps(value), on_delivery=on_delivery)
