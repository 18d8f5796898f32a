"""Processor nodes: the vertices of a topology. Nodes hold no per-partition state; that
lives in the :class:`~riverbed.streams.task.Task` they run in (stores, stream time)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .records import Record, StreamsError
from .serdes import Serde

if TYPE_CHECKING:
    from .task import Task

log = logging.getLogger("riverbed.streams")

TimestampExtractor = Callable[[Record, int], int]


class Node:
    kind = "node"
    # records this node drops (no key, late): "skip" (log line or late side output, counted) or
    # "dead_letter" (also sent to the app's dead-letter topic); set by the DSL's on_error=;
    # None: the app's dropped_records setting
    drop_policy: str | None = None

    def __init__(self, name: str) -> None:
        self.name = name
        self.children: list[Node] = []

    def process(self, task: Task, rec: Record) -> None:
        self.forward(task, rec)

    def forward(self, task: Task, rec: Record) -> None:
        for c in self.children:
            c.process(task, rec)

    def punctuate(self, task: Task) -> None:
        """Called on wall-clock ticks (stateful nodes override)."""

    def successors(self) -> list[Node]:
        return self.children

    def stores(self) -> list[str]:
        return []

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


class SourceNode(Node):
    kind = "source"

    def __init__(self, name: str, topic: str, key_serde: Serde[Any], value_serde: Serde[Any],
                 extractor: TimestampExtractor | None, on_error: str, internal: bool = False,
                 sized_by_reader: bool = False) -> None:
        super().__init__(name)
        self.topic = topic
        # an internal topic with as many partitions as the other sources of the sub-topology
        # reading it (foreign-key join topics), not as the sub-topology writing it
        self.sized_by_reader = sized_by_reader
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.extractor = extractor
        self.on_error = on_error
        self.internal = internal
        # a value serde that reads headers (see serdes)
        self.value_deserialize_with_headers = getattr(value_serde, "deserialize_with_headers", None)

    def describe(self) -> str:
        return f"source {self.name} <- {self.topic}"


class SinkNode(Node):
    kind = "sink"

    def __init__(self, name: str, topic: str, key_serde: Serde[Any], value_serde: Serde[Any], internal: bool = False) -> None:
        super().__init__(name)
        self.topic = topic
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.internal = internal
        self._with_headers = getattr(value_serde, "serialize_with_headers", None)

    def process(self, task: Task, rec: Record) -> None:
        try:
            k = self.key_serde.serialize(rec.key)
            headers = rec.headers
            if self._with_headers is not None:
                headers = list(rec.headers or ())
                v = self._with_headers(rec.value, headers)
            else:
                v = self.value_serde.serialize(rec.value)
        except Exception as e:  # Kafka's ProductionExceptionHandler#handleSerializationException
            task.production_failed("serialization", self.topic, e)
            return
        task.send(self.topic, k, v, rec.timestamp, headers, internal=self.internal)

    def describe(self) -> str:
        return f"sink {self.name} -> {self.topic}"


class FilterNode(Node):
    kind = "filter"

    def __init__(self, name: str, pred: Callable[[Any, Any], bool], negate: bool = False) -> None:
        super().__init__(name)
        self.pred = pred
        self.negate = negate

    def process(self, task: Task, rec: Record) -> None:
        if bool(self.pred(rec.key, rec.value)) != self.negate:
            self.forward(task, rec)


class MapNode(Node):
    kind = "map"

    def __init__(self, name: str, fn: Callable[[Any, Any], tuple[Any, Any]]) -> None:
        super().__init__(name)
        self.fn = fn

    def process(self, task: Task, rec: Record) -> None:
        k, v = self.fn(rec.key, rec.value)
        self.forward(task, rec.with_kv(k, v))


class MapValuesNode(Node):
    kind = "map_values"

    def __init__(self, name: str, fn: Callable[[Any], Any]) -> None:
        super().__init__(name)
        self.fn = fn

    def process(self, task: Task, rec: Record) -> None:
        self.forward(task, rec.with_kv(rec.key, self.fn(rec.value)))


class FlatMapNode(Node):
    kind = "flat_map"

    def __init__(self, name: str, fn: Callable[[Any, Any], Iterable[tuple[Any, Any]]]) -> None:
        super().__init__(name)
        self.fn = fn

    def process(self, task: Task, rec: Record) -> None:
        for k, v in self.fn(rec.key, rec.value):
            self.forward(task, rec.with_kv(k, v))


class PeekNode(Node):
    kind = "peek"

    def __init__(self, name: str, fn: Callable[[Any, Any], None]) -> None:
        super().__init__(name)
        self.fn = fn

    def process(self, task: Task, rec: Record) -> None:
        self.fn(rec.key, rec.value)
        self.forward(task, rec)


class BranchNode(Node):
    """Each record goes to the first branch whose predicate holds (Kafka's split/branch)."""

    kind = "branch"

    def __init__(self, name: str, preds: list[Callable[[Any, Any], bool]]) -> None:
        super().__init__(name)
        self.preds = preds
        self.branches: list[Node] = [Node(f"{name}-{i}") for i in range(len(preds))]
        self.children = list(self.branches)

    def process(self, task: Task, rec: Record) -> None:
        for pred, branch in zip(self.preds, self.branches, strict=True):
            if pred(rec.key, rec.value):
                branch.forward(task, rec)
                return


class AggregateNode(Node):
    """count / reduce / aggregate per key into a key-value store; forwards each new value."""

    kind = "aggregate"

    def __init__(self, name: str, store: str, init: Callable[[], Any], agg: Callable[[Any, Any, Any], Any]) -> None:
        super().__init__(name)
        self.store = store
        self.init = init
        self.agg = agg

    def stores(self) -> list[str]:
        return [self.store]

    def process(self, task: Task, rec: Record) -> None:
        if rec.key is None or rec.value is None:
            task.skip(rec, f"{self.name}: a record without a key or value cannot be aggregated", self)
            return
        st = task.kv_store(self.store)
        kb = st._k(rec.key)
        raw = st.get_bytes(kb)
        old = None if raw is None else st.value_serde.deserialize(raw)
        new = self.agg(rec.key, rec.value, self.init() if old is None else old)
        vb = st.value_serde.serialize(new)
        out = rec.with_kv(rec.key, new)
        out.old = old  # (foreign-key joins need the previous value)
        if task.cache is not None:  # written and forwarded when the cache flushes or evicts it
            task.cache.put(task, self.store, kb, vb, st.write, self, out)
            return
        st.write(kb, vb)
        self.forward(task, out)


class TableSourceNode(Node):
    """Materializes a topic as a table: the latest value per key; None deletes."""

    kind = "table"

    def __init__(self, name: str, store: str) -> None:
        super().__init__(name)
        self.store = store
        self.send_old = False  # forward the previous value too (``Record.old``; foreign-key joins)

    def stores(self) -> list[str]:
        return [self.store]

    def process(self, task: Task, rec: Record) -> None:
        if rec.key is None:
            task.skip(rec, f"{self.name}: a table record needs a key", self)
            return
        st = task.kv_store(self.store)
        if self.send_old:
            rec = rec.with_kv(rec.key, rec.value)
            rec.old = st.get(rec.key)
        st.put(rec.key, rec.value)
        self.forward(task, rec)


class TableFilterNode(Node):
    """KTable#filter: rows that fail the predicate are forwarded as deletions (``None``)."""

    kind = "table_filter"

    def __init__(self, name: str, pred: Callable[[Any, Any], bool]) -> None:
        super().__init__(name)
        self.pred = pred

    def process(self, task: Task, rec: Record) -> None:
        keep = rec.value is not None and bool(self.pred(rec.key, rec.value))
        self.forward(task, rec if keep else rec.with_kv(rec.key, None))


class StreamTableJoinNode(Node):
    """Each stream record looks up the table's current value for its key (Kafka's KStream-KTable
    join): inner joins drop records without a match, left joins pass ``None``. Table updates
    produce no output."""

    kind = "stream_table_join"

    def __init__(self, name: str, store: str, joiner: Callable[[Any, Any], Any], left: bool) -> None:
        super().__init__(name)
        self.store = store
        self.joiner = joiner
        self.left = left

    def stores(self) -> list[str]:
        return [self.store]

    def process(self, task: Task, rec: Record) -> None:
        if rec.key is None or rec.value is None:
            if self.left and rec.key is None and rec.value is not None:  # KIP-962: joined with no match
                self.forward(task, rec.with_kv(None, self.joiner(rec.value, None)))
                return
            task.skip(rec, f"{self.name}: a record without a key or value cannot be joined", self)
            return
        other = task.kv_store(self.store).get(rec.key)
        if other is None and not self.left:
            return
        self.forward(task, rec.with_kv(rec.key, self.joiner(rec.value, other)))


class TableTableJoinNode(Node):
    """One side of a table-table join (Kafka's KTable-KTable join, not foreign-key): an update of
    this side's table for a key is joined with the other table's current value for it.

    ``how``: ``inner`` emits when both sides have a value; ``left`` when the left side has one
    (the right may be ``None``); ``outer`` when either has. A deletion that removes the result
    emits ``None`` (a tombstone) for the key, as Kafka's joins forward a null new value."""

    kind = "table_join"

    def __init__(self, name: str, side: str, other_store: str, joiner: Callable[[Any, Any], Any], how: str) -> None:
        super().__init__(name)
        self.side = side
        self.other_store = other_store
        self.joiner = joiner
        self.how = how

    def stores(self) -> list[str]:
        return [self.other_store]

    def process(self, task: Task, rec: Record) -> None:
        other = task.kv_store(self.other_store).get(rec.key)
        left, right = (rec.value, other) if self.side == "left" else (other, rec.value)
        if self.how == "inner":
            if other is None:
                return
            out = None if rec.value is None else self.joiner(left, right)
        elif self.how == "left":
            if self.side == "right" and left is None:
                return
            out = None if left is None else self.joiner(left, right)
        else:
            out = None if left is None and right is None else self.joiner(left, right)
        self.forward(task, rec.with_kv(rec.key, out))


def check_emit(emit: str) -> str:
    if emit not in ("on_update", "on_window_close"):
        raise StreamsError(f"emit must be 'on_update' or 'on_window_close', not {emit!r}")
    return emit


# A fused path: what runs for each input record of a source whose first nodes are stateless one-in
# one-out steps (filter, filter_not, map, map_values, peek, merge) ending in a sink or in any other
# node. One nested call per step on (key, value) instead of a Record per step and a ``forward``
# loop per node; the node that ends the chain gets a Record as before. Same results, same order
# and the same errors: an exception still reaches the task's processing error policy, a sink's
# serialization error its production error policy.
Fused = Callable[["Task", Any, Any, int, "list[tuple[str, bytes]] | None", str, int], None]


def fuse(source: Node) -> Fused:
    """The fused function for the nodes under ``source`` (see above)."""
    return _fuse_children(source)


def _fuse_children(node: Node) -> Fused:
    children = node.children
    if len(children) == 1:
        step = _fuse_step(children[0])
        if step is not None:
            return step

    def forward(task: Task, k: Any, v: Any, ts: int, h: list[tuple[str, bytes]] | None, tp: str, off: int) -> None:
        node.forward(task, Record(k, v, ts, h, tp, task.partition, off))

    return forward


def _fuse_step(node: Node) -> Fused | None:
    t = type(node)
    if t is SinkNode:
        return _fuse_sink(node)  # type: ignore[arg-type]
    if t not in (FilterNode, MapNode, MapValuesNode, PeekNode, Node):
        return None
    nxt = _fuse_children(node)
    if t is Node:  # a merge: passes records through
        return nxt
    f: Fused
    if t is FilterNode:
        pred = node.pred  # type: ignore[attr-defined]
        if node.negate:  # type: ignore[attr-defined]
            def f(task: Task, k: Any, v: Any, ts: int, h: Any, tp: str, off: int) -> None:
                if not pred(k, v):
                    nxt(task, k, v, ts, h, tp, off)
        else:
            def f(task: Task, k: Any, v: Any, ts: int, h: Any, tp: str, off: int) -> None:
                if pred(k, v):
                    nxt(task, k, v, ts, h, tp, off)
    elif t is MapNode:
        kv_fn = node.fn  # type: ignore[attr-defined]

        def f(task: Task, k: Any, v: Any, ts: int, h: Any, tp: str, off: int) -> None:
            k2, v2 = kv_fn(k, v)
            nxt(task, k2, v2, ts, h, tp, off)
    elif t is MapValuesNode:
        v_fn = node.fn  # type: ignore[attr-defined]

        def f(task: Task, k: Any, v: Any, ts: int, h: Any, tp: str, off: int) -> None:
            nxt(task, k, v_fn(v), ts, h, tp, off)
    else:  # PeekNode
        peek_fn = node.fn  # type: ignore[attr-defined]

        def f(task: Task, k: Any, v: Any, ts: int, h: Any, tp: str, off: int) -> None:
            peek_fn(k, v)
            nxt(task, k, v, ts, h, tp, off)
    return f


def _fuse_sink(sink: SinkNode) -> Fused | None:
    if sink._with_headers is not None or sink.children:
        return None
    topic, internal = sink.topic, sink.internal
    key_ser, value_ser = sink.key_serde.serialize, sink.value_serde.serialize

    def f(task: Task, k: Any, v: Any, ts: int, h: Any, tp: str, off: int) -> None:
        try:
            kb = key_ser(k)
            vb = value_ser(v)
        except Exception as e:
            task.production_failed("serialization", topic, e)
            return
        task.send(topic, kb, vb, ts, h, internal=internal)

    return f
