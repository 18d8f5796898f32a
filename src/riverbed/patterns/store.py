"""Where an aggregate type's events live: topics, partitioning, and reading a partition.

One aggregate type has three topics with the same partition count:

- ``<prefix><type>.events``: the event log, key = aggregate id, retention forever;
- ``<prefix><type>.commands``: commands on their way to the partition's owner;
- ``<prefix><type>.command-results``: one result per command (accepted or rejected).

An aggregate's partition is Kafka's default for its id (murmur2, as Java clients compute it),
and command partition *p* is owned together with event partition *p* (docs/adr/0010).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from riverbed import client
from riverbed.client import ClusterSettings
from riverbed.streams.query import partition_for

from .envelope import Envelope
from .errors import InvalidEnvelope

log = logging.getLogger("riverbed.patterns.store")


@dataclass(frozen=True)
class EventStore:
    """The topics of one aggregate type on a cluster."""

    settings: ClusterSettings
    aggregate_type: str
    partitions: int = 6
    prefix: str = ""

    @property
    def events_topic(self) -> str:
        return f"{self.prefix}{self.aggregate_type}.events"

    @property
    def commands_topic(self) -> str:
        return f"{self.prefix}{self.aggregate_type}.commands"

    @property
    def results_topic(self) -> str:
        return f"{self.prefix}{self.aggregate_type}.command-results"

    def partition_for(self, aggregate_id: str) -> int:
        return partition_for(aggregate_id.encode(), self.partitions)

    def ensure_topics(self) -> None:
        forever = {"retention.ms": "-1", "retention.bytes": "-1"}
        week = {"retention.ms": str(7 * 24 * 3600 * 1000)}
        adm = client.admin(self.settings)
        client.ensure_topics(adm, {self.events_topic: (self.partitions, forever), self.commands_topic: (self.partitions, week), self.results_topic: (self.partitions, week)})
        md = adm.list_topics(self.events_topic, timeout=30).topics.get(self.events_topic)
        if md is not None and md.error is None and len(md.partitions) != self.partitions:
            raise ValueError(f"{self.events_topic} has {len(md.partitions)} partitions, this store is configured for {self.partitions}")


class PartitionReader:
    """Reads event partitions from an offset up to their current end (committed events only).
    One consumer, reused; thread-safe by a lock."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._consumer = client.consumer(
            store.settings,
            f"riverbed-patterns-reader-{uuid.uuid4().hex[:8]}",
            **{"enable.partition.eof": True, "isolation.level": "read_committed", "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10},
        )

    def read(self, partition: int, start: int = 0, timeout: float = 60.0, key: str | None = None) -> list[Envelope]:
        """Every committed event of ``partition`` from ``start`` to the end as it is now (only
        those of aggregate ``key`` if given). A record that is not an envelope is logged and
        skipped."""
        with self._lock:
            tp = TopicPartition(self.store.events_topic, partition)
            low, high = self._consumer.get_watermark_offsets(tp, timeout=timeout)
            start = max(start, low)
            if start >= high:
                return []
            want = None if key is None else key.encode()
            out: list[Envelope] = []
            self._consumer.assign([TopicPartition(self.store.events_topic, partition, start)])
            try:
                deadline = time.monotonic() + timeout
                while True:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"reading {self.store.events_topic}[{partition}] took over {timeout} s")
                    msgs: list[Any] = self._consumer.consume(1000, 0.05)
                    done = False
                    for m in msgs:
                        err = m.error()
                        if err is not None:
                            if err.code() == KafkaError._PARTITION_EOF:
                                done = True
                                continue
                            raise KafkaException(err)
                        if want is not None and m.key() != want:
                            continue
                        try:
                            out.append(Envelope.decode(m.value(), m.partition(), m.offset(), self.store.events_topic))
                        except InvalidEnvelope as exc:
                            log.warning("skipping %s[%d]@%d: %s", self.store.events_topic, m.partition(), m.offset(), exc)
                    if done:
                        return out
            finally:
                self._consumer.unassign()

    def read_aggregate(self, aggregate_id: str, start: int = 0) -> list[Envelope]:
        """The aggregate's committed events from offset ``start`` of its partition."""
        return [e for e in self.read(self.store.partition_for(aggregate_id), start, key=aggregate_id) if e.aggregate_id == aggregate_id]

    def close(self) -> None:
        self._consumer.close()
