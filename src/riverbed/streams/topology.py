"""A built topology: sub-topologies (connected parts between repartition topics), their source
topics and state stores, and the internal topics the application needs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .global_table import GlobalStoreSpec
from .nodes import Node, SinkNode, SourceNode
from .records import StreamsError
from .serdes import Serde


@dataclass
class StoreSpec:
    name: str
    key_serde: Serde[Any]
    value_serde: Serde[Any]
    window_size_ms: int | None = None  # None: a key-value (or session) store
    retention_ms: int | None = None
    session: bool = False
    timestamped: bool = False  # a window store keeping each window's largest record timestamp


ERROR_POLICIES = ("fail", "skip", "dead_letter")


@dataclass(frozen=True)
class ErrorPolicy:
    """What to do with a record that fails (Kafka's exception handlers, KIP-1034's DLQ)."""

    on_processing_error: str = "fail"
    dead_letter_topic: str | None = None
    production_error: str = "fail"  # Kafka's ProductionExceptionHandler (serialization and delivery)
    dropped_records: str = "skip"  # records the DSL drops (no key, late): "skip" or "dead_letter"
    dead_letter_headers: DeadLetterHeaders | None = None
    """Builds the dead letter's headers instead of Kafka Streams' ``__streams.errors.*`` ones."""


DeadLetterHeaders = Callable[["DeadLetterContext"], list[tuple[str, bytes]]]


@dataclass(frozen=True)
class DeadLetterContext:
    """What a dead-letter header builder is told about the failed input record."""

    stage: str  # "deserialization" or "processing"
    error: Exception
    topic: str
    partition: int
    offset: int
    timestamp: int
    headers: list[tuple[str, bytes]] | None


@dataclass
class SubTopology:
    id: int
    sources: dict[str, SourceNode] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    stores: list[StoreSpec] = field(default_factory=list)
    stateful: list[Node] = field(default_factory=list)
    sink_topics: list[str] = field(default_factory=list)
    interceptors: tuple[Any, ...] = ()
    """Record interceptors (see :class:`riverbed.streams.records.RecordInterceptor`)."""


class Topology:
    def __init__(self, app_id: str, sources: list[SourceNode], stores: dict[str, StoreSpec],
                 errors: ErrorPolicy | None = None, global_stores: dict[str, GlobalStoreSpec] | None = None,
                 interceptors: tuple[Any, ...] = ()) -> None:
        self.app_id = app_id
        self.interceptors = tuple(interceptors)
        self.global_stores = global_stores or {}
        self.global_topics = [g.topic for g in self.global_stores.values()]
        for s in sources:
            if s.topic in self.global_topics:
                raise StreamsError(f"topic {s.topic!r} is a global table's topic and a source; read it once")
        self.errors = errors = errors or ErrorPolicy()
        policies = [("on_processing_error", errors.on_processing_error), ("production_error", errors.production_error),
                    *((s.topic, s.on_error) for s in sources)]
        for where, policy in policies:
            if policy not in ERROR_POLICIES:
                raise StreamsError(f"{where}: the error policy must be one of {ERROR_POLICIES}, not {policy!r}")
            if policy == "dead_letter" and not errors.dead_letter_topic:
                raise StreamsError(f"{where}: 'dead_letter' needs StreamsApp(dead_letter_topic=...)")
        if errors.dropped_records not in ("skip", "dead_letter"):
            raise StreamsError(f"dropped_records must be 'skip' or 'dead_letter', not {errors.dropped_records!r}")
        if errors.dropped_records == "dead_letter" and not errors.dead_letter_topic:
            raise StreamsError("dropped_records='dead_letter' needs StreamsApp(dead_letter_topic=...)")
        for src in sources:  # records the DSL drops (on_error="dead_letter" on an aggregation)
            todo: list[Node] = [src]
            seen_ids: set[int] = set()
            while todo:
                n = todo.pop()
                if id(n) in seen_ids:
                    continue
                seen_ids.add(id(n))
                if n.drop_policy == "dead_letter" and not errors.dead_letter_topic:
                    raise StreamsError(f"{n.name}: on_error='dead_letter' needs StreamsApp(dead_letter_topic=...)")
                todo.extend(n.successors())
        self.store_specs = stores
        self.subtopologies: list[SubTopology] = []
        by_topic: dict[str, SourceNode] = {}
        for s in sources:
            if s.topic in by_topic:
                raise StreamsError(f"topic {s.topic!r} is a source twice; read it once and reuse the stream")
            by_topic[s.topic] = s
        # connected components over parent->child edges (merge joins two sources' parts)
        parent: dict[int, int] = {}

        def find(x: int) -> int:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        reach: dict[int, list[Node]] = {}
        for s in sources:
            seen: list[Node] = []
            stack: list[Node] = [s]
            ids: set[int] = set()
            while stack:
                n = stack.pop()
                if id(n) in ids:
                    continue
                ids.add(id(n))
                seen.append(n)
                stack.extend(n.successors())
            reach[id(s)] = seen
        owner: dict[int, int] = {}
        for s in sources:
            for n in reach[id(s)]:
                if id(n) in owner:
                    parent[find(owner[id(n)])] = find(id(s))
                else:
                    owner[id(n)] = id(s)
        # nodes that share a store (a table and the join reading it) belong to one sub-topology
        store_owner: dict[str, int] = {}
        for src in sources:
            for n in reach[id(src)]:
                for name in n.stores():
                    if name in store_owner:
                        parent[find(store_owner[name])] = find(id(src))
                    else:
                        store_owner[name] = id(src)
        groups: dict[int, list[SourceNode]] = {}
        for s in sources:
            groups.setdefault(find(id(s)), []).append(s)
        for i, members in enumerate(groups.values()):
            sub = SubTopology(i, interceptors=self.interceptors)
            nodes: dict[int, Node] = {}
            for s in members:
                sub.sources[s.topic] = s
                for n in reach[id(s)]:
                    nodes[id(n)] = n
            sub.nodes = list(nodes.values())
            for n in sub.nodes:
                names = n.stores()
                if names:
                    sub.stateful.append(n)
                for name in names:
                    if name not in [x.name for x in sub.stores]:
                        sub.stores.append(stores[name])
                if isinstance(n, SinkNode):
                    sub.sink_topics.append(n.topic)
            self.subtopologies.append(sub)
        self.sub_for_topic = {t: sub for sub in self.subtopologies for t in sub.sources}

    @property
    def source_topics(self) -> list[str]:
        return [t for t, s in self._sources() if not s.internal]

    @property
    def repartition_topics(self) -> list[str]:
        return [t for t, s in self._sources() if s.internal]

    def _sources(self) -> list[tuple[str, SourceNode]]:
        return [(t, s) for sub in self.subtopologies for t, s in sub.sources.items()]

    def changelog_topic(self, store: str) -> str:
        return f"{self.app_id}-{store}-changelog"

    def producer_of(self, topic: str) -> SubTopology | None:
        """The sub-topology that writes an internal topic."""
        for sub in self.subtopologies:
            if topic in sub.sink_topics:
                return sub
        return None

    def describe(self) -> str:
        """A readable listing, in the manner of Kafka's ``Topology.describe()``."""
        lines = []
        for sub in self.subtopologies:
            lines.append(f"Sub-topology {sub.id}" + (f" (stores: {', '.join(s.name for s in sub.stores)})" if sub.stores else ""))
            for n in sub.nodes:
                kids = ", ".join(c.name for c in n.successors())
                lines.append(f"  {n.describe()}" + (f" --> {kids}" if kids else ""))
        for g in self.global_stores.values():
            lines.append(f"Global store {g.name} <- {g.topic}")
        return "\n".join(lines)

    def describe_dot(self) -> str:
        """The topology as Graphviz DOT (``dot -Tsvg``): one cluster per sub-topology, topics as
        ellipses, stores as cylinders."""
        lines = ["digraph topology {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
        topics: set[str] = set()
        for sub in self.subtopologies:
            lines.append(f"  subgraph cluster_{sub.id} {{")
            lines.append(f'    label="sub-topology {sub.id}";')
            for n in sub.nodes:
                lines.append(f'    "{n.name}" [label="{n.kind}\n{n.name}"];')
                for c in n.successors():
                    lines.append(f'    "{n.name}" -> "{c.name}";')
                for store in n.stores():
                    lines.append(f'    "{n.name}" -> "store:{store}" [style=dashed, dir=both];')
                for store in getattr(n, "global_stores", list)():
                    lines.append(f'    "global:{store}" -> "{n.name}" [style=dashed];')
            lines.append("  }")
            for spec in sub.stores:
                lines.append(f'  "store:{spec.name}" [shape=cylinder, label="{spec.name}"];')
            for t, src in sub.sources.items():
                topics.add(t)
                lines.append(f'  "topic:{t}" -> "{src.name}";')
            for n in sub.nodes:
                if isinstance(n, SinkNode):
                    topics.add(n.topic)
                    lines.append(f'  "{n.name}" -> "topic:{n.topic}";')
        for g in self.global_stores.values():
            lines.append(f'  "global:{g.name}" [shape=cylinder, label="{g.name} (global)"];')
            lines.append(f'  "topic:{g.topic}" -> "global:{g.name}";')
            topics.add(g.topic)
        for t in sorted(topics):
            lines.append(f'  "topic:{t}" [shape=ellipse, label="{t}"];')
        lines.append("}")
        return "\n".join(lines)
