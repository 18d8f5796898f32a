"""The runtime's global stores: bootstrapped from their topics before processing, then kept
up to date from the same consumer (Kafka Streams' global state manager and stream thread)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from .global_table import GlobalStoreSpec, apply_update
from .records import StreamsError
from .stores import Engine, KeyValueStore

log = logging.getLogger("riverbed.streams")


class GlobalState:
    """One consumer assigned every partition of every global topic (no group, no commits: a
    store is re-read from the beginning of its topic on each start)."""

    def __init__(
        self,
        specs: dict[str, GlobalStoreSpec],
        consumer_config: dict[str, Any],
        engine_for: Callable[[GlobalStoreSpec], Engine],
        batch_size: int = 500,
    ) -> None:
        self.specs = specs
        self.by_topic = {s.topic: s for s in specs.values()}
        self.engines: dict[str, Engine] = {}
        self.stores: dict[str, KeyValueStore] = {}
        for spec in specs.values():
            engine = engine_for(spec)
            engine.wipe()
            self.engines[spec.name] = engine
            self.stores[spec.name] = KeyValueStore(
                spec.name, engine, spec.key_serde, spec.value_serde, None
            )
        cfg = {k: v for k, v in consumer_config.items() if k != "group.id"}
        self.consumer = Consumer(
            {
                **cfg,
                "group.id": "riverbed-streams-global",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        self.batch_size = batch_size
        self.metrics: dict[str, int] = {}
        self.restored: dict[str, int] = {}

    def bootstrap(self, timeout: float = 30.0) -> None:
        """Read every partition of every global topic up to its end as of now."""
        if not self.specs:
            return
        parts: list[TopicPartition] = []
        ends: dict[tuple[str, int], int] = {}
        md = self.consumer.list_topics(timeout=timeout)
        for topic in self.by_topic:
            t = md.topics.get(topic)
            if t is None or t.error is not None:
                raise StreamsError(f"global table topic {topic!r} does not exist; create it first")
            for p in t.partitions:
                _low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=timeout
                )
                parts.append(TopicPartition(topic, p, OFFSET_BEGINNING))
                if high > 0:
                    ends[(topic, p)] = high
        self.consumer.assign(parts)
        started = last_log = time.monotonic()
        n = 0
        while ends:
            for m in self.consumer.consume(self.batch_size, 0.5):
                err = m.error()
                tp: Any = (m.topic(), m.partition())
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:  # (read_committed: the stable end)
                        ends.pop(tp, None)
                        continue
                    raise StreamsError(f"bootstrapping global table from {m.topic()}: {err}")
                self._apply(m)
                n += 1
                if (m.offset() or 0) >= ends.get(tp, 0) - 1:
                    ends.pop(tp, None)
            if time.monotonic() - last_log >= 5:
                last_log = time.monotonic()
                log.info(
                    "global tables: bootstrapping, %d records so far; waiting for %s",
                    n,
                    sorted(ends),
                )
        self.commit()
        for name in self.specs:
            self.restored[name] = self.engines[name].count()
        log.info(
            "global tables %s bootstrapped: %d records in %.1f s",
            sorted(self.specs),
            n,
            time.monotonic() - started,
        )

    def _apply(self, m: Any) -> None:
        spec = self.by_topic[m.topic()]
        apply_update(
            spec,
            self.stores[spec.name],
            m.key(),
            m.value(),
            f"{m.topic()}-{m.partition()}@{m.offset()}",
            self.metrics,
        )

    def poll(self) -> int:
        """Apply what has arrived since (non-blocking); returns the number of records."""
        if not self.specs:
            return 0
        n = 0
        for m in self.consumer.consume(self.batch_size, 0):
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("global table consumer: %s", err)
                continue
            self._apply(m)
            n += 1
        if n:
            self.commit()
        return n

    def commit(self) -> None:
        for engine in self.engines.values():
            engine.commit(None)

    def close(self) -> None:
        self.consumer.close()
        for engine in self.engines.values():
            engine.close()
