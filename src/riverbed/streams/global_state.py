"""The runtime's global stores: bootstrapped from their topics before processing, then kept
up to date from the same consumer (Kafka Streams' global state manager and stream thread).

A persistent global store remembers how far it has read each partition of its topic (the
offsets file ``<store>.offsets.json`` next to its SQLite file, as Kafka's global checkpoint
file), so a restart reads only what is new. The offsets file names a token that the store
commits with its data: a store file deleted, replaced or left behind by a crash between the
two writes does not match, and the store is then wiped and read from the beginning. Replaying
records the store already holds is harmless (the latest value per key wins).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from .global_table import GlobalStoreSpec, apply_update
from .records import StreamsError
from .stores import Engine, KeyValueStore

log = logging.getLogger("riverbed.streams")


class GlobalState:
    """One consumer assigned every partition of every global topic (no group, no offset
    commits: positions live in the offsets files)."""

    def __init__(
        self,
        specs: dict[str, GlobalStoreSpec],
        consumer_config: dict[str, Any],
        engine_for: Callable[[GlobalStoreSpec], Engine],
        batch_size: int = 500,
        checkpoint_dir: Path | None = None,
    ) -> None:
        self.specs = specs
        self.by_topic = {s.topic: s for s in specs.values()}
        self.engines: dict[str, Engine] = {}
        self.stores: dict[str, KeyValueStore] = {}
        self.checkpoint_dir = checkpoint_dir
        self._token = random.getrandbits(62)
        self.positions: dict[tuple[str, int], int] = {}
        self._saved: dict[str, dict[int, int]] = {}  # store -> partition -> next offset
        for spec in specs.values():
            engine = engine_for(spec)
            saved = self._load(spec)
            if saved is None or saved[0] != engine.checkpoint():
                engine.wipe()
                self._saved[spec.name] = {}
            else:
                self._saved[spec.name] = saved[1]
            self.engines[spec.name] = engine
            self.stores[spec.name] = KeyValueStore(
                spec.name, engine, spec.key_serde, spec.value_serde, None
            )
        cfg = {k: v for k, v in consumer_config.items() if k != "group.id"}
        cfg.update(
            {
                "group.id": "riverbed-streams-global",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        self._consumer: Consumer | None = Consumer(cfg) if specs else None
        self.batch_size = batch_size
        self.metrics: dict[str, int] = {}
        self.restored: dict[str, int] = {}  # store -> records read by the bootstrap

    @property
    def consumer(self) -> Consumer:
        assert self._consumer is not None, "no global tables"
        return self._consumer

    def _offsets_file(self, spec: GlobalStoreSpec) -> Path | None:
        return (
            None
            if self.checkpoint_dir is None
            else self.checkpoint_dir / f"{spec.name}.offsets.json"
        )

    def _load(self, spec: GlobalStoreSpec) -> tuple[int, dict[int, int]] | None:
        path = self._offsets_file(spec)
        if path is None or not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            return int(data["token"]), {int(p): int(o) for p, o in data["offsets"].items()}
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning(
                "global table %s: unreadable offsets file %s (%r); reading the topic again",
                spec.name,
                path,
                e,
            )
            return None

    def bootstrap(self, timeout: float = 30.0) -> None:
        """Read every partition of every global topic up to its end as of now (from the saved
        offsets, or from the beginning)."""
        if not self.specs:
            return
        md = self.consumer.list_topics(timeout=timeout)
        marks: dict[str, dict[int, tuple[int, int]]] = {}
        for topic, spec in self.by_topic.items():
            t = md.topics.get(topic)
            if t is None or t.error is not None:
                raise StreamsError(f"global table topic {topic!r} does not exist; create it first")
            marks[topic] = {
                p: self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                for p in t.partitions
            }
            saved = self._saved[spec.name]
            bad = {
                p: o
                for p, o in saved.items()
                if p not in marks[topic] or not marks[topic][p][0] <= o <= marks[topic][p][1]
            }
            if bad:
                log.warning(
                    "global table %s: saved offsets %s are outside topic %s (re-created?); reading it again",
                    spec.name,
                    bad,
                    topic,
                )
                self.engines[spec.name].wipe()
                saved.clear()
        parts: list[TopicPartition] = []
        ends: dict[tuple[str, int], int] = {}
        for topic, spec in self.by_topic.items():
            saved = self._saved[spec.name]
            for p, (_low, high) in marks[topic].items():
                start = saved.get(p)
                parts.append(TopicPartition(topic, p, OFFSET_BEGINNING if start is None else start))
                if start is not None:
                    self.positions[(topic, p)] = start
                if high > (start or 0):
                    ends[(topic, p)] = high
        self.consumer.assign(parts)
        started = last_log = time.monotonic()
        counts = dict.fromkeys(self.specs, 0)
        while ends:
            for m in self.consumer.consume(self.batch_size, 0.5):
                err = m.error()
                tp: Any = (m.topic(), m.partition())
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:  # (read_committed: the stable end)
                        ends.pop(tp, None)
                        continue
                    raise StreamsError(f"bootstrapping global table from {m.topic()}: {err}")
                counts[self._apply(m)] += 1
                if (m.offset() or 0) >= ends.get(tp, 0) - 1:
                    ends.pop(tp, None)
            if time.monotonic() - last_log >= 5:
                last_log = time.monotonic()
                log.info(
                    "global tables: bootstrapping, %d records so far; waiting for %s",
                    sum(counts.values()),
                    sorted(ends),
                )
        self.commit()
        self.restored = counts
        log.info(
            "global tables bootstrapped in %.1f s: %s records read",
            time.monotonic() - started,
            counts,
        )

    def _apply(self, m: Any) -> str:
        spec = self.by_topic[m.topic()]
        where = f"{m.topic()}-{m.partition()}@{m.offset()}"
        apply_update(spec, self.stores[spec.name], m.key(), m.value(), where, self.metrics)
        self.positions[(m.topic(), m.partition())] = (m.offset() or 0) + 1
        return spec.name

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
        return n

    def commit(self) -> None:
        """Make the stores durable, then record how far they have read."""
        for spec in self.specs.values():
            self.engines[spec.name].commit(self._token)
            path = self._offsets_file(spec)
            if path is None:
                continue
            offsets = {str(p): o for (t, p), o in self.positions.items() if t == spec.topic}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"token": self._token, "offsets": offsets}))
            os.replace(tmp, path)

    def close(self) -> None:
        try:
            self.commit()
        finally:
            if self._consumer is not None:
                self._consumer.close()
            for engine in self.engines.values():
                engine.close()
