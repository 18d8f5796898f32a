"""A test driver: run a topology without a broker, deterministically.

Like Kafka's ``TopologyTestDriver``: every topic has one partition, records piped in are
processed at once, records written to repartition topics are fed back in before ``pipe``
returns, and the wall clock only moves when the test says so.

```python
with TestDriver(app) as d:
    d.pipe("clicks", "user-1", "dog-food", timestamp=1_000)
    d.advance_wall_clock(60_000)
    assert d.read("counts", STRING, LONG) == [("user-1", 1)]
```
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .cache import RecordCache
from .global_table import apply_update
from .records import StreamsError
from .serdes import Serde
from .stores import Engine, KeyValueStore, MemoryEngine
from .task import Task
from .topology import StoreSpec, Topology

if TYPE_CHECKING:
    from .dsl import StreamsApp


@dataclass
class OutputRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: list[tuple[str, bytes]] | None


class TestDriver:
    __test__ = False  # not a pytest test class

    def __init__(self, app: StreamsApp | Topology, wall_clock_ms: int = 0, cache_max_bytes: int = 0) -> None:
        """``cache_max_bytes``: the record cache (riverbed.streams.cache); 0 (the default here,
        unlike the runtime's 10 MiB) forwards every update at once, as tests of Kafka's
        TopologyTestDriver usually configure; with a cache, ``commit()`` flushes it."""
        self.topology = app if isinstance(app, Topology) else app.topology()
        self.cache = RecordCache(cache_max_bytes)
        self.wall_ms = wall_clock_ms
        self.outputs: dict[str, list[OutputRecord]] = {}
        self._read_pos: dict[str, int] = {}
        self._loop: deque[OutputRecord] = deque()
        self._offsets: dict[str, int] = {}
        internal = set(self.topology.repartition_topics)
        self._internal = internal
        self.global_metrics: dict[str, int] = {}
        self.global_stores = {name: KeyValueStore(name, MemoryEngine(), spec.key_serde, spec.value_serde, None)
                              for name, spec in self.topology.global_stores.items()}
        self._global_by_topic = {spec.topic: spec for spec in self.topology.global_stores.values()}
        self.tasks = [Task(sub, 0, self, self._engine, self.topology.changelog_topic, errors=self.topology.errors,
                           global_stores=self.global_stores, cache=self.cache)
                      for sub in self.topology.subtopologies]
        for t in self.tasks:
            t.wall_ms = wall_clock_ms
            t.start()

    @staticmethod
    def _engine(spec: StoreSpec, task_id: str) -> Engine:
        return MemoryEngine()

    # Collector
    def send(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
             headers: list[tuple[str, bytes]] | None, partition: int | None) -> None:
        rec = OutputRecord(topic, key, value, timestamp, headers)
        self.outputs.setdefault(topic, []).append(rec)
        if topic in self._internal:
            self._loop.append(rec)

    def _drain(self) -> None:
        while self._loop:
            r = self._loop.popleft()
            self._deliver(r.topic, r.key, r.value, r.timestamp, r.headers)

    def _deliver(self, topic: str, key: bytes | None, value: bytes | None, ts: int,
                 headers: list[tuple[str, bytes]] | None) -> None:
        off = self._offsets.get(topic, 0)
        spec = self._global_by_topic.get(topic)
        if spec is not None:  # a global table's topic: straight into its store
            self._offsets[topic] = off + 1
            apply_update(spec, self.global_stores[spec.name], key, value, f"{topic}-0@{off}", self.global_metrics)
            return
        sub = self.topology.sub_for_topic.get(topic)
        if sub is None:
            raise StreamsError(f"topic {topic!r} is not a source of this topology")
        self._offsets[topic] = off + 1
        self.tasks[sub.id].process(topic, key, value, ts, headers, off)

    def pipe_raw(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
                 headers: list[tuple[str, bytes]] | None = None) -> None:
        """Pipe already-serialized bytes (to test bad input)."""
        self._deliver(topic, key, value, timestamp, headers)
        self._drain()

    def pipe(self, topic: str, key: Any, value: Any, timestamp: int = 0,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        """Pipe one record, serialized with the source's own serdes."""
        spec = self._global_by_topic.get(topic)
        if spec is not None:
            self.pipe_raw(topic, spec.key_serde.serialize(key), spec.value_serde.serialize(value), timestamp, headers)
            return
        sub = self.topology.sub_for_topic.get(topic)
        if sub is None:
            raise StreamsError(f"topic {topic!r} is not a source of this topology")
        src = sub.sources[topic]
        with_headers = getattr(src.value_serde, "serialize_with_headers", None)
        if with_headers is not None:
            headers = list(headers or ())
            raw = with_headers(value, headers)
        else:
            raw = src.value_serde.serialize(value)
        self.pipe_raw(topic, src.key_serde.serialize(key), raw, timestamp, headers)

    def advance_wall_clock(self, ms: int) -> None:
        """Move the wall clock and run wall-clock punctuation."""
        self.wall_ms += ms
        for t in self.tasks:
            t.punctuate(self.wall_ms)
        self._drain()

    def commit(self) -> None:
        """A task commit: write and forward what the record cache holds (a no-op without one)."""
        for t in self.tasks:
            t.flush_cache()
        self._drain()

    def read(self, topic: str, key_serde: Serde[Any], value_serde: Serde[Any], with_timestamp: bool = False) -> list[Any]:
        """The records written to ``topic`` since the last read, as (key, value[, timestamp])."""
        recs = self.outputs.get(topic, [])
        start = self._read_pos.get(topic, 0)
        self._read_pos[topic] = len(recs)
        out: list[Any] = []
        with_headers = getattr(value_serde, "deserialize_with_headers", None)
        for r in recs[start:]:
            k = key_serde.deserialize(r.key)
            v = value_serde.deserialize(r.value) if with_headers is None else with_headers(r.value, r.headers)
            out.append((k, v, r.timestamp) if with_timestamp else (k, v))
        return out

    def store(self, name: str) -> Any:
        """The store's typed view (KeyValueStore, WindowStore or SessionStore); global
        tables' stores too."""
        if name in self.global_stores:
            return self.global_stores[name]
        for t in self.tasks:
            if name in t.engines:
                return t.store(name)
        raise KeyError(name)

    def metrics(self) -> dict[str, int]:
        total: dict[str, int] = dict(self.global_metrics)
        for t in self.tasks:
            for k, v in t.metrics.items():
                total[k] = total.get(k, 0) + v
        return total

    def close(self) -> None:
        for t in self.tasks:
            t.close()

    def __enter__(self) -> TestDriver:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
