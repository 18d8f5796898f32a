"""The DSL: ``StreamsApp`` builds a topology from streams and tables.

```python
app = StreamsApp("word-count", "127.0.0.1:9092")
(app.stream("lines", STRING, STRING)
    .flat_map_values(str.split)
    .group_by(lambda _k, word: word, key_serde=STRING, name="words")
    .count(name="counts")
    .to_stream()
    .to("word-counts", STRING, LONG))
app.run()
```
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, Generic, TypeVar, overload

from .fk_join import (
    FkResponseNode,
    FkResponseSinkNode,
    FkRightUpdateNode,
    FkSubscribeNode,
    FkSubscriptionNode,
)
from .global_table import GlobalJoinNode, GlobalStoreSpec
from .nodes import (
    AggregateNode,
    BranchNode,
    FilterNode,
    FlatMapNode,
    MapNode,
    MapValuesNode,
    Node,
    PeekNode,
    SinkNode,
    SourceNode,
    StreamTableJoinNode,
    TableFilterNode,
    TableSourceNode,
    TableTableJoinNode,
    TimestampExtractor,
    check_emit,
)
from .processor import ProcessNode, Processor
from .records import LateRecord, RecordInterceptor, StreamsError
from .serdes import BYTES, JSON, LONG, Serde
from .sessions import SessionAggregateNode
from .sliding import SlidingAggregateNode
from .stream_join import StreamJoinSideNode
from .table_agg import ChangeSerde, TableAggregateNode, TableGroupByNode
from .topology import DeadLetterHeaders, ErrorPolicy, StoreSpec, Topology
from .windowed import WindowAggregateNode
from .windows import JoinWindows, SessionWindows, SlidingWindows, TimeWindows, Windowed, to_ms

K = TypeVar("K")
V = TypeVar("V")
K2 = TypeVar("K2")
V2 = TypeVar("V2")
A = TypeVar("A")


class _Builder:
    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.sources: list[SourceNode] = []
        self.stores: dict[str, StoreSpec] = {}
        self.global_stores: dict[str, GlobalStoreSpec] = {}
        self._n = itertools.count()

    def name(self, kind: str) -> str:
        return f"{kind.upper()}-{next(self._n):010d}"

    def add_store(self, spec: StoreSpec) -> None:
        if spec.name in self.stores or spec.name in self.global_stores:
            raise StreamsError(f"store name {spec.name!r} is used twice")
        self.stores[spec.name] = spec


class KStream(Generic[K, V]):
    """A record stream: each record is an independent event."""

    def __init__(self, b: _Builder, node: Node, key_serde: Serde[Any], value_serde: Serde[Any],
                 key_changed: bool = False) -> None:
        self._b = b
        self._node = node
        self.key_serde = key_serde
        self.value_serde = value_serde
        self._key_changed = key_changed

    def _then(self, node: Node, key_changed: bool | None = None, key_serde: Serde[Any] | None = None,
              value_serde: Serde[Any] | None = None) -> KStream[Any, Any]:
        self._node.children.append(node)
        return KStream(self._b, node, key_serde or self.key_serde, value_serde or self.value_serde,
                       self._key_changed if key_changed is None else key_changed)

    def filter(self, pred: Callable[[K, V], bool]) -> KStream[K, V]:
        return self._then(FilterNode(self._b.name("filter"), pred))

    def filter_not(self, pred: Callable[[K, V], bool]) -> KStream[K, V]:
        return self._then(FilterNode(self._b.name("filter"), pred, negate=True))

    def map(self, fn: Callable[[K, V], tuple[K2, V2]], key_serde: Serde[Any] | None = None,
            value_serde: Serde[Any] | None = None) -> KStream[K2, V2]:
        return self._then(MapNode(self._b.name("map"), fn), True, key_serde, value_serde)

    def select_key(self, fn: Callable[[K, V], K2], key_serde: Serde[Any] | None = None) -> KStream[K2, V]:
        return self._then(MapNode(self._b.name("select_key"), lambda k, v: (fn(k, v), v)), True, key_serde)

    def map_values(self, fn: Callable[[V], V2], value_serde: Serde[Any] | None = None) -> KStream[K, V2]:
        return self._then(MapValuesNode(self._b.name("map_values"), fn), value_serde=value_serde)

    def flat_map(self, fn: Callable[[K, V], Iterable[tuple[K2, V2]]], key_serde: Serde[Any] | None = None,
                 value_serde: Serde[Any] | None = None) -> KStream[K2, V2]:
        return self._then(FlatMapNode(self._b.name("flat_map"), fn), True, key_serde, value_serde)

    def flat_map_values(self, fn: Callable[[V], Iterable[V2]], value_serde: Serde[Any] | None = None) -> KStream[K, V2]:
        node = FlatMapNode(self._b.name("flat_map_values"), lambda k, v: ((k, x) for x in fn(v)))
        return self._then(node, value_serde=value_serde)

    def peek(self, fn: Callable[[K, V], None]) -> KStream[K, V]:
        return self._then(PeekNode(self._b.name("peek"), fn))

    def branch(self, *preds: Callable[[K, V], bool]) -> list[KStream[K, V]]:
        """One stream per predicate; a record goes to the first that matches, or nowhere."""
        node = BranchNode(self._b.name("branch"), list(preds))
        self._node.children.append(node)
        return [KStream(self._b, br, self.key_serde, self.value_serde, self._key_changed) for br in node.branches]

    def merge(self, other: KStream[K, V]) -> KStream[K, V]:
        node = Node(self._b.name("merge"))
        self._node.children.append(node)
        other._node.children.append(node)
        return KStream(self._b, node, self.key_serde, self.value_serde, self._key_changed or other._key_changed)

    def to(self, topic: str, key_serde: Serde[Any] | None = None, value_serde: Serde[Any] | None = None) -> None:
        self._node.children.append(SinkNode(self._b.name("sink"), topic, key_serde or self.key_serde, value_serde or self.value_serde))

    @overload
    def join(self, table: GlobalKTable[Any, Any], joiner: Callable[[K, V], Any], name: Callable[[V, Any], V2],
             value_serde: Serde[Any] | None = None) -> KStream[K, V2]: ...

    @overload
    def join(self, table: KTable[K, Any] | KStream[K, Any], joiner: Callable[[V, Any], V2], name: str | None = None,
             value_serde: Serde[Any] | None = None, windows: JoinWindows | None = None) -> KStream[K, V2]: ...

    def join(self, table: Any, joiner: Any, name: Any = None, value_serde: Serde[Any] | None = None,
             windows: JoinWindows | None = None) -> KStream[Any, Any]:
        """Stream-table inner join: each record with the table's current value for its key.

        The stream and the table's topic must be co-partitioned (same partition count, same
        key partitioning), checked when the app starts. A stream whose key changed upstream
        goes through the repartition topic ``<app>-<name>-repartition`` first.

        With another stream and ``windows=JoinWindows.of(...)``: a stream-stream join (see
        :mod:`riverbed.streams.stream_join`).

        With a global table: ``join(global_table, key_mapper, joiner)``, Kafka's
        ``KStream#join(GlobalKTable, KeyValueMapper, ValueJoiner)``: ``joiner(value,
        global_value)`` for the global table's value of ``key_mapper(key, value)``; no
        co-partitioning needed."""
        if isinstance(table, GlobalKTable):
            return self._global_join(table, joiner, name, False, value_serde)
        if isinstance(table, KStream):
            return self._stream_join(table, joiner, "inner", windows, name, value_serde)
        return self._join(table, joiner, False, name, value_serde)

    @overload
    def left_join(self, table: GlobalKTable[Any, Any], joiner: Callable[[K, V], Any], name: Callable[[V, Any], V2],
                  value_serde: Serde[Any] | None = None) -> KStream[K, V2]: ...

    @overload
    def left_join(self, table: KTable[K, Any] | KStream[K, Any], joiner: Callable[[V, Any], V2], name: str | None = None,
                  value_serde: Serde[Any] | None = None, windows: JoinWindows | None = None) -> KStream[K, V2]: ...

    def left_join(self, table: Any, joiner: Any, name: Any = None, value_serde: Serde[Any] | None = None,
                  windows: JoinWindows | None = None) -> KStream[Any, Any]:
        """Stream-table left join: records without a match are joined with ``None``. With a
        stream and ``windows``: a windowed stream-stream left join. With a global table:
        ``left_join(global_table, key_mapper, joiner)``."""
        if isinstance(table, GlobalKTable):
            return self._global_join(table, joiner, name, True, value_serde)
        if isinstance(table, KStream):
            return self._stream_join(table, joiner, "left", windows, name, value_serde)
        return self._join(table, joiner, True, name, value_serde)

    def _global_join(self, table: GlobalKTable[Any, Any], key_mapper: Any, joiner: Any, left: bool,
                     value_serde: Serde[Any] | None) -> KStream[Any, Any]:
        if not callable(key_mapper) or not callable(joiner):
            raise StreamsError("a global-table join is join(global_table, key_mapper, joiner)")
        node = GlobalJoinNode(self._b.name("global_left_join" if left else "global_join"), table.store_name,
                              key_mapper, joiner, left)
        self._node.children.append(node)
        return KStream(self._b, node, self.key_serde, value_serde or JSON, self._key_changed)

    def outer_join(self, other: KStream[K, Any], joiner: Callable[[Any, Any], V2], windows: JoinWindows,
                   name: str | None = None, value_serde: Serde[Any] | None = None) -> KStream[K, V2]:
        """Windowed stream-stream outer join: unmatched records of either side are joined with
        ``None`` once their window has closed."""
        return self._stream_join(other, joiner, "outer", windows, name, value_serde)

    def _through_repartition(self, name: str) -> Node:
        if not self._key_changed:
            return self._node
        topic = f"{self._b.app_id}-{name}-repartition"
        self._node.children.append(SinkNode(self._b.name("repartition_sink"), topic, self.key_serde, self.value_serde, internal=True))
        src = SourceNode(self._b.name("repartition_source"), topic, self.key_serde, self.value_serde, None, "fail", internal=True)
        self._b.sources.append(src)
        return src

    def _stream_join(self, other: KStream[Any, Any], joiner: Callable[[Any, Any], Any], how: str,
                     windows: JoinWindows | None, name: str | None, value_serde: Serde[Any] | None) -> KStream[Any, Any]:
        if windows is None:
            raise StreamsError("a stream-stream join needs windows=JoinWindows.of(...)")
        name = name or self._b.name("join").lower()
        left_up = self._through_repartition(f"{name}-left")
        right_up = other._through_repartition(f"{name}-right")
        stores = {"left": f"{name}-left-buffer", "right": f"{name}-right-buffer"}
        serdes = {stores["left"]: (self.key_serde, self.value_serde), stores["right"]: (other.key_serde, other.value_serde)}
        for st in stores.values():
            self._b.add_store(StoreSpec(st, BYTES, BYTES))
        merged = Node(self._b.name("stream_join_merge"))
        for side, up in (("left", left_up), ("right", right_up)):
            mine, theirs = stores[side], stores["right" if side == "left" else "left"]
            node = StreamJoinSideNode(self._b.name(f"stream_{how}_join_{side}"), side, mine, theirs, windows, joiner, how, serdes)
            up.children.append(node)
            node.children.append(merged)
        return KStream(self._b, merged, self.key_serde, value_serde or JSON)

    def _join(self, table: KTable[Any, Any], joiner: Callable[[Any, Any], Any], left: bool, name: str | None,
              value_serde: Serde[Any] | None) -> KStream[Any, Any]:
        if table._windowed is not None:
            raise StreamsError("joining a stream with a windowed table is not supported")
        if table.store_name is None:
            raise StreamsError("the table is not materialized (a join result); join with a table backed by a store")
        name = name or self._b.name("join").lower()
        up: Node = self._node
        if self._key_changed:
            topic = f"{self._b.app_id}-{name}-repartition"
            self._node.children.append(SinkNode(self._b.name("repartition_sink"), topic, self.key_serde, self.value_serde, internal=True))
            up = SourceNode(self._b.name("repartition_source"), topic, self.key_serde, self.value_serde, None, "fail", internal=True)
            self._b.sources.append(up)
        node = StreamTableJoinNode(self._b.name("left_join" if left else "join"), table.store_name, joiner, left)
        up.children.append(node)
        return KStream(self._b, node, self.key_serde, value_serde or JSON)

    def process(self, factory: Callable[[], Processor], stores: list[str] | None = None,
                key_serde: Serde[Any] | None = None, value_serde: Serde[Any] | None = None) -> KStream[Any, Any]:
        """Run a :class:`~riverbed.streams.processor.Processor` (one instance per task) with access
        to the named stores (``app.add_state_store``) and punctuation; what it forwards is the
        returned stream. Its key may change, so a following ``group_by_key`` repartitions."""
        names = list(stores or [])
        for n in names:
            if n not in self._b.stores:
                raise StreamsError(f"store {n!r} is not defined (app.add_state_store)")
        return self._then(ProcessNode(self._b.name("processor"), factory, names), True, key_serde, value_serde)

    def group_by_key(self, key_serde: Serde[Any] | None = None, value_serde: Serde[Any] | None = None,
                     on_error: str | None = None) -> KGroupedStream[K, V]:
        """Group by the current key; repartitions only if an upstream operation changed the key.
        ``on_error``: what the aggregation does with records it drops (without a key or value,
        late for their windows): ``"skip"`` (a WARNING line or the late side output, counted) or
        ``"dead_letter"`` (also sent to the app's dead-letter topic); default: the app's
        ``dropped_records``."""
        return KGroupedStream(self, key_serde or self.key_serde, value_serde or self.value_serde, self._key_changed,
                              on_error)

    def group_by(self, fn: Callable[[K, V], K2], key_serde: Serde[Any] | None = None,
                 value_serde: Serde[Any] | None = None, on_error: str | None = None) -> KGroupedStream[K2, V]:
        """Group by a new key: records go through the repartition topic ``<app>-<name>-repartition``.
        ``on_error`` as for :meth:`group_by_key`."""
        rekeyed = self.select_key(fn, key_serde)
        return KGroupedStream(rekeyed, key_serde or self.key_serde, value_serde or self.value_serde, True, on_error)


class KGroupedStream(Generic[K, V]):
    def __init__(self, stream: KStream[Any, Any], key_serde: Serde[Any], value_serde: Serde[Any], repartition: bool,
                 on_error: str | None = None) -> None:
        if on_error not in (None, "skip", "dead_letter"):
            raise StreamsError(f"an aggregation's on_error must be 'skip' or 'dead_letter', not {on_error!r}")
        self.on_error = on_error
        self._s = stream
        self._b = stream._b
        self.key_serde = key_serde
        self.value_serde = value_serde
        self._repartition = repartition

    def _upstream(self, name: str) -> Node:
        """The node the aggregation hangs on: through a repartition topic if the key changed."""
        if not self._repartition:
            return self._s._node
        topic = f"{self._b.app_id}-{name}-repartition"
        self._s._node.children.append(SinkNode(self._b.name("repartition_sink"), topic, self.key_serde, self.value_serde, internal=True))
        src = SourceNode(self._b.name("repartition_source"), topic, self.key_serde, self.value_serde, None, "fail", internal=True)
        self._b.sources.append(src)
        return src

    def _name(self, name: str | None, kind: str) -> str:
        return name or self._b.name(kind + "-store").lower()

    def count(self, name: str | None = None) -> KTable[K, int]:
        return self.aggregate(lambda: 0, lambda _k, _v, a: a + 1, LONG, name or self._name(None, "count"))

    def reduce(self, fn: Callable[[V, V], V], name: str | None = None) -> KTable[K, V]:
        first: Any = object()  # never stored: the first value replaces it
        return self.aggregate(lambda: first, lambda _k, v, a: v if a is first else fn(a, v), self.value_serde,
                              name or self._name(None, "reduce"))

    def aggregate(self, init: Callable[[], A], agg: Callable[[K, V, A], A], value_serde: Serde[Any] = JSON,
                  name: str | None = None) -> KTable[K, A]:
        name = self._name(name, "aggregate")
        up = self._upstream(name)
        self._b.add_store(StoreSpec(name, self.key_serde, value_serde))
        node = AggregateNode(self._b.name("aggregate"), name, init, agg)
        node.drop_policy = self.on_error
        up.children.append(node)
        return KTable(self._b, node, self.key_serde, value_serde, name)

    @overload
    def windowed_by(self, windows: TimeWindows, emit: str = ..., close_after_idle: int | timedelta | None = ...,
                    retention: int | timedelta | None = ...) -> TimeWindowedKStream[K, V]: ...

    @overload
    def windowed_by(self, windows: SessionWindows, emit: str = ..., close_after_idle: int | timedelta | None = ...,
                    retention: int | timedelta | None = ...) -> SessionWindowedKStream[K, V]: ...

    @overload
    def windowed_by(self, windows: SlidingWindows, emit: str = ..., close_after_idle: None = ...,
                    retention: None = ...) -> SlidingWindowedKStream[K, V]: ...

    def windowed_by(self, windows: TimeWindows | SessionWindows | SlidingWindows, emit: str = "on_update",
                    close_after_idle: int | timedelta | None = None,
                    retention: int | timedelta | None = None) -> Any:
        """Window the grouped stream (time windows or sessions).

        ``emit``: ``"on_update"`` (every change) or ``"on_window_close"`` (final results only).
        ``close_after_idle``: when no record arrives for this long (wall clock), stream time
        advances with the wall clock, so windows close without a later record.
        ``retention``: how long windows stay in the store (at least size + grace, the default).
        """
        if isinstance(windows, SlidingWindows):
            if close_after_idle is not None or retention is not None:
                raise StreamsError("close_after_idle and retention are not offered for sliding windows yet")
            return SlidingWindowedKStream(self, windows, check_emit(emit))
        if isinstance(windows, SessionWindows):
            return SessionWindowedKStream(self, windows, check_emit(emit), 0 if retention is None else to_ms(retention),
                                          None if close_after_idle is None else to_ms(close_after_idle))
        return TimeWindowedKStream(self, windows, check_emit(emit),
                                   None if close_after_idle is None else to_ms(close_after_idle),
                                   0 if retention is None else to_ms(retention))


class TimeWindowedKStream(Generic[K, V]):
    def __init__(self, g: KGroupedStream[K, V], windows: TimeWindows, emit: str,
                 close_after_idle_ms: int | None, retention_ms: int) -> None:
        self._g = g
        self.windows = windows
        self.emit = emit
        self.close_after_idle_ms = close_after_idle_ms
        self.retention_ms = retention_ms

    def count(self, name: str | None = None) -> KTable[Windowed[K], int]:
        return self.aggregate(lambda: 0, lambda _k, _v, a: a + 1, LONG, name or self._g._name(None, "windowed-count"))

    def reduce(self, fn: Callable[[V, V], V], name: str | None = None) -> KTable[Windowed[K], V]:
        first: Any = object()  # never stored: the first value replaces it
        return self.aggregate(lambda: first, lambda _k, v, a: v if a is first else fn(a, v), self._g.value_serde,
                              name or self._g._name(None, "windowed-reduce"))

    def aggregate(self, init: Callable[[], A], agg: Callable[[K, V, A], A], value_serde: Serde[Any] = JSON,
                  name: str | None = None) -> KTable[Windowed[K], A]:
        g = self._g
        name = g._name(name, "windowed-aggregate")
        up = g._upstream(name)
        retention = self.retention_ms or 0
        g._b.add_store(StoreSpec(name, g.key_serde, value_serde, self.windows.size_ms,
                                 max(retention, self.windows.size_ms + self.windows.grace_ms), timestamped=True))
        node = WindowAggregateNode(g._b.name("window_aggregate"), name, self.windows, init, agg, self.emit,
                                   retention, self.close_after_idle_ms)
        node.drop_policy = g.on_error
        up.children.append(node)
        return KTable(g._b, node, g.key_serde, value_serde, name, windowed=node)


class SlidingWindowedKStream(Generic[K, V]):
    def __init__(self, g: KGroupedStream[K, V], windows: SlidingWindows, emit: str) -> None:
        self._g = g
        self.windows = windows
        self.emit = emit

    def count(self, name: str | None = None) -> KTable[Windowed[K], int]:
        return self.aggregate(lambda: 0, lambda _k, _v, a: a + 1, LONG, name or self._g._name(None, "sliding-count"))

    def reduce(self, fn: Callable[[V, V], V], name: str | None = None) -> KTable[Windowed[K], V]:
        first: Any = object()  # never stored: the first value replaces it
        return self.aggregate(lambda: first, lambda _k, v, a: v if a is first else fn(a, v), self._g.value_serde,
                              name or self._g._name(None, "sliding-reduce"))

    def aggregate(self, init: Callable[[], A], agg: Callable[[K, V, A], A], value_serde: Serde[Any] = JSON,
                  name: str | None = None) -> KTable[Windowed[K], A]:
        g = self._g
        name = g._name(name, "sliding-aggregate")
        up = g._upstream(name)
        w = self.windows
        g._b.add_store(StoreSpec(name, g.key_serde, value_serde, w.time_difference_ms, 2 * w.time_difference_ms + w.grace_ms + 1))
        node = SlidingAggregateNode(g._b.name("sliding_aggregate"), name, w, init, agg, self.emit, g.value_serde)
        node.drop_policy = g.on_error
        up.children.append(node)
        return KTable(g._b, node, g.key_serde, value_serde, name, windowed=node)


class SessionWindowedKStream(Generic[K, V]):
    def __init__(self, g: KGroupedStream[K, V], windows: SessionWindows, emit: str, retention_ms: int,
                 close_after_idle_ms: int | None = None) -> None:
        self._g = g
        self.windows = windows
        self.emit = emit
        self.retention_ms = retention_ms
        self.close_after_idle_ms = close_after_idle_ms

    def count(self, name: str | None = None) -> KTable[Windowed[K], int]:
        return self.aggregate(lambda: 0, lambda _k, _v, a: a + 1, lambda _k, a, b: a + b, LONG,
                              name or self._g._name(None, "session-count"))

    def reduce(self, fn: Callable[[V, V], V], name: str | None = None) -> KTable[Windowed[K], V]:
        first: Any = object()  # never stored: the first value replaces it

        def step(a: Any, b: Any) -> Any:
            return b if a is first else fn(a, b)

        return self.aggregate(lambda: first, lambda _k, v, a: step(a, v), lambda _k, a, b: step(a, b),
                              self._g.value_serde, name or self._g._name(None, "session-reduce"))

    def aggregate(self, init: Callable[[], A], agg: Callable[[K, V, A], A], merger: Callable[[K, A, A], A],
                  value_serde: Serde[Any] = JSON, name: str | None = None) -> KTable[Windowed[K], A]:
        """``merger(key, a, b)`` combines two sessions' aggregates when a record bridges them."""
        g = self._g
        name = g._name(name, "session-aggregate")
        up = g._upstream(name)
        w = self.windows
        g._b.add_store(StoreSpec(name, g.key_serde, value_serde, None, max(self.retention_ms, w.gap_ms + w.grace_ms), session=True))
        node = SessionAggregateNode(g._b.name("session_aggregate"), name, w, init, agg, merger, self.emit,
                                    self.retention_ms, self.close_after_idle_ms)
        node.drop_policy = g.on_error
        up.children.append(node)
        return KTable(g._b, node, g.key_serde, value_serde, name, windowed=node)


class KTable(Generic[K, V]):
    """A changelog stream: the latest value per key. ``to_stream()`` gives its updates."""

    def __init__(self, b: _Builder, node: Node, key_serde: Serde[Any], value_serde: Serde[Any], store: str | None,
                 windowed: WindowAggregateNode | SessionAggregateNode | SlidingAggregateNode | None = None) -> None:
        self._b = b
        self._node = node
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.store_name = store
        self._windowed = windowed

    def to_stream(self) -> KStream[K, V]:
        return KStream(self._b, self._node, self.key_serde, self.value_serde)

    def _derive(self, node: Node, value_serde: Serde[Any], name: str | None) -> KTable[Any, Any]:
        if self._windowed is not None:
            raise StreamsError("filter / map_values on windowed tables are not supported yet")
        self._node.children.append(node)
        if name is None:
            return KTable(self._b, node, self.key_serde, value_serde, None)
        self._b.add_store(StoreSpec(name, self.key_serde, value_serde))
        mat = TableSourceNode(self._b.name("table_materialize"), name)
        node.children.append(mat)
        return KTable(self._b, mat, self.key_serde, value_serde, name)

    def filter(self, pred: Callable[[K, V], bool], name: str | None = None) -> KTable[K, V]:
        """A table of the rows that satisfy ``pred``; a row that does not becomes ``None`` (a
        deletion downstream), as Kafka's KTable#filter forwards. ``name`` materializes the result
        in a store of that name (so it can be joined or queried)."""
        return self._derive(TableFilterNode(self._b.name("table_filter"), pred), self.value_serde, name)

    def map_values(self, fn: Callable[[V], V2], value_serde: Serde[Any] | None = None,
                   name: str | None = None) -> KTable[K, V2]:
        """A table of ``fn(value)`` per row (deletions stay deletions)."""
        node = MapValuesNode(self._b.name("table_map_values"), lambda v: None if v is None else fn(v))
        return self._derive(node, value_serde or JSON, name)

    @overload
    def join(self, other: KTable[Any, Any], joiner: Callable[[V], Any], how: Callable[[V, Any], Any], *,
             name: str | None = None, value_serde: Serde[Any] | None = None,
             materialized: str | None = None) -> KTable[K, Any]: ...

    @overload
    def join(self, other: KTable[K, Any], joiner: Callable[[V, Any], Any], how: str = "inner", *,
             value_serde: Serde[Any] | None = None, materialized: str | None = None) -> KTable[K, Any]: ...

    def join(self, other: KTable[Any, Any], joiner: Any, how: Any = "inner", *, name: str | None = None,
             value_serde: Serde[Any] | None = None, materialized: str | None = None) -> KTable[K, Any]:
        """Table-table join on the key: ``joiner(this_value, other_value)`` whenever either table
        changes. ``how``: ``"inner"``, ``"left"`` or ``"outer"`` (missing sides are ``None``); a
        deletion that removes the result emits ``None``. Both tables must be co-partitioned. The
        result is materialized in the store ``materialized`` if given (queryable, and joinable
        again), else not (``to_stream()`` it).

        ``join(other, foreign_key_extractor, joiner, name=...)``: a foreign-key join (Kafka's
        ``KTable#join(KTable, Function, ValueJoiner)``): each row of this table joins the row of
        ``other`` whose key is ``foreign_key_extractor(value)``; the result is keyed by this
        table's key. See :mod:`riverbed.streams.fk_join`."""
        if callable(how):
            return self._fk_join(other, joiner, how, False, name, value_serde, materialized)
        if how not in ("inner", "left", "outer"):
            raise StreamsError(f"how must be 'inner', 'left' or 'outer', not {how!r}")
        for t in (self, other):
            if t._windowed is not None or t.store_name is None:
                raise StreamsError("table-table joins need two materialized, non-windowed tables")
        assert self.store_name is not None and other.store_name is not None
        merged = Node(self._b.name("table_join_merge"))
        for side, table, other_store in (("left", self, other.store_name), ("right", other, self.store_name)):
            node = TableTableJoinNode(self._b.name(f"table_{how}_join_{side}"), side, other_store, joiner, how)
            table._node.children.append(node)
            node.children.append(merged)
        return self._result(merged, value_serde or JSON, materialized)

    def _result(self, node: Node, value_serde: Serde[Any], materialized: str | None) -> KTable[K, Any]:
        """A join's result table, materialized in a store (changelogged) when named."""
        if materialized is None:
            return KTable(self._b, node, self.key_serde, value_serde, None)
        self._b.add_store(StoreSpec(materialized, self.key_serde, value_serde))
        mat = TableSourceNode(self._b.name("table_materialize"), materialized)
        node.children.append(mat)
        return KTable(self._b, mat, self.key_serde, value_serde, materialized)

    def left_join(self, other: KTable[Any, Any], joiner: Callable[..., Any], fk_joiner: Callable[[V, Any], Any] | None = None,
                  *, name: str | None = None, value_serde: Serde[Any] | None = None,
                  materialized: str | None = None) -> KTable[K, Any]:
        """Table-table left join on the key; ``left_join(other, foreign_key_extractor, joiner)``:
        a foreign-key left join (rows without a match join ``None``)."""
        if fk_joiner is not None:
            return self._fk_join(other, joiner, fk_joiner, True, name, value_serde, materialized)
        return self.join(other, joiner, "left", value_serde=value_serde, materialized=materialized)

    def _fk_join(self, other: KTable[Any, Any], extractor: Callable[[V], Any], joiner: Callable[[V, Any], Any],
                 left_join: bool, name: str | None, value_serde: Serde[Any] | None,
                 materialized: str | None = None) -> KTable[K, Any]:
        for t in (self, other):
            if t._windowed is not None or t.store_name is None or not isinstance(
                    t._node, (TableSourceNode, AggregateNode, TableAggregateNode)):
                raise StreamsError("foreign-key joins need two tables with stores: read from topics (app.table), "
                                   "aggregated (count, reduce, aggregate), or materialized with name=... / materialized=...")
            if isinstance(t._node, TableSourceNode):
                t._node.send_old = True  # (aggregations always forward the previous value)
        assert self.store_name is not None and other.store_name is not None
        b = self._b
        name = name or b.name("fk-join").lower()
        sub_topic = f"{b.app_id}-{name}-subscription-registration-topic"
        resp_topic = f"{b.app_id}-{name}-subscription-response-topic"
        sub_store = f"{name}-subscription-store"
        b.add_store(StoreSpec(sub_store, BYTES, BYTES))
        # left side: subscriptions out, keyed by foreign key
        send = FkSubscribeNode(b.name("fk_join_subscribe"), extractor, self.key_serde, self.value_serde,
                               other.key_serde, joiner, left_join)
        self._node.children.append(send)
        send.sink = SinkNode(b.name("fk_subscription_sink"), sub_topic, BYTES, BYTES, internal=True)
        result = Node(b.name("fk_join_result"))
        send.result = result
        # right side: the subscription store, answers to the left rows' partitions
        sub_src = SourceNode(b.name("fk_subscription_source"), sub_topic, BYTES, BYTES, None, "fail",
                             internal=True, sized_by_reader=True)
        b.sources.append(sub_src)
        resp_sink = FkResponseSinkNode(b.name("fk_response_sink"), resp_topic)
        subscription = FkSubscriptionNode(b.name("fk_join_subscription"), sub_store, other.store_name)
        sub_src.children.append(subscription)
        subscription.children.append(resp_sink)
        update = FkRightUpdateNode(b.name("fk_join_right_update"), sub_store, other.key_serde, other.value_serde)
        other._node.children.append(update)
        update.children.append(resp_sink)
        # left side again: answers joined with the current left row
        resp_src = SourceNode(b.name("fk_response_source"), resp_topic, BYTES, BYTES, None, "fail",
                              internal=True, sized_by_reader=True)
        b.sources.append(resp_src)
        response = FkResponseNode(b.name("fk_join_response"), self.store_name, self.key_serde, other.value_serde,
                                  joiner, left_join)
        resp_src.children.append(response)
        response.children.append(result)
        return self._result(result, value_serde or JSON, materialized)

    def outer_join(self, other: KTable[K, Any], joiner: Callable[[Any, Any], Any], *,
                   value_serde: Serde[Any] | None = None, materialized: str | None = None) -> KTable[K, Any]:
        return self.join(other, joiner, "outer", value_serde=value_serde, materialized=materialized)

    def group_by(self, fn: Callable[[K, V], tuple[K2, V2]], key_serde: Serde[Any] | None = None,
                 value_serde: Serde[Any] | None = None, name: str | None = None) -> KGroupedTable[K2, V2]:
        """Re-group the table (Kafka's ``KTable#groupBy``): ``fn(key, value) -> (group, value)``
        for each row; then ``count`` / ``reduce(adder, subtractor)`` /
        ``aggregate(init, adder, subtractor)`` keep one aggregate per group, the row's old value
        subtracted from its old group and its new value added to its new group on every update.
        Goes through the repartition topic ``<app>-<name>-repartition`` (``name``: the
        aggregation's store name unless given). The table needs a store (read from a topic, an
        aggregation, or materialized with ``name=``), so updates carry the row's old value."""
        if self._windowed is not None:
            raise StreamsError("group_by on a windowed table is not supported")
        if self.store_name is None or not isinstance(self._node, (TableSourceNode, AggregateNode, TableAggregateNode)):
            raise StreamsError("a table's group_by needs a table with a store: read from a topic (app.table), "
                               "aggregated, or materialized with name=... / materialized=...")
        if isinstance(self._node, TableSourceNode):
            self._node.send_old = True  # (aggregations always forward the previous value)
        node = TableGroupByNode(self._b.name("table_group_by"), fn)
        self._node.children.append(node)
        return KGroupedTable(self._b, node, key_serde or self.key_serde, value_serde or self.value_serde, name)

    def late_records(self) -> KStream[Any, LateRecord]:
        """The side output of a windowed aggregation: records that arrived after their window
        closed, as :class:`LateRecord` values (the record and the windows it missed)."""
        if self._windowed is None:
            raise StreamsError("late_records() is only for windowed aggregations")
        return KStream(self._b, self._windowed.late, self.key_serde, JSON)


class KGroupedTable(Generic[K, V]):
    """A re-grouped table (Kafka's ``KGroupedTable``): aggregations with an adder and a subtractor."""

    def __init__(self, b: _Builder, node: Node, key_serde: Serde[Any], value_serde: Serde[Any],
                 repartition_name: str | None) -> None:
        self._b = b
        self._node = node
        self.key_serde = key_serde
        self.value_serde = value_serde
        self._repartition_name = repartition_name

    def count(self, name: str | None = None) -> KTable[K, int]:
        """Rows per group (a group whose rows all left counts 0, as Kafka's)."""
        return self._aggregate(lambda: 0, lambda _k, _v, a: a + 1, lambda _k, _v, a: a - 1, LONG,
                               name or self._b.name("count-store").lower())

    def reduce(self, adder: Callable[[V, V], V], subtractor: Callable[[V, V], V], name: str | None = None) -> KTable[K, V]:
        """``adder(agg, new_value)`` and ``subtractor(agg, old_value)``; a group's first value is
        its aggregate."""
        return self._aggregate(None, lambda _k, v, a: adder(a, v), lambda _k, v, a: subtractor(a, v), self.value_serde,
                               name or self._b.name("reduce-store").lower())

    def aggregate(self, init: Callable[[], A], adder: Callable[[K, V, A], A], subtractor: Callable[[K, V, A], A],
                  value_serde: Serde[Any] = JSON, name: str | None = None) -> KTable[K, A]:
        """``adder(group, new_value, agg)`` and ``subtractor(group, old_value, agg)`` (Kafka's
        argument order), starting from ``init()``."""
        return self._aggregate(init, adder, subtractor, value_serde, name or self._b.name("aggregate-store").lower())

    def _aggregate(self, init: Callable[[], Any] | None, adder: Callable[[Any, Any, Any], Any],
                   subtractor: Callable[[Any, Any, Any], Any], value_serde: Serde[Any], name: str) -> KTable[Any, Any]:
        b = self._b
        topic = f"{b.app_id}-{self._repartition_name or name}-repartition"
        change = ChangeSerde(self.value_serde)
        self._node.children.append(SinkNode(b.name("repartition_sink"), topic, self.key_serde, change, internal=True))
        src = SourceNode(b.name("repartition_source"), topic, self.key_serde, change, None, "fail", internal=True)
        b.sources.append(src)
        b.add_store(StoreSpec(name, self.key_serde, value_serde))
        node = TableAggregateNode(b.name("table_aggregate"), name, init, adder, subtractor)
        src.children.append(node)
        return KTable(b, node, self.key_serde, value_serde, name)


class GlobalKTable(Generic[K, V]):
    """A table of every partition of a topic, on every instance (Kafka's ``GlobalKTable``);
    streams join it with a key mapper (``stream.join(global_table, key_mapper, joiner)``)."""

    def __init__(self, spec: GlobalStoreSpec) -> None:
        self.spec = spec
        self.store_name = spec.name
        self.topic = spec.topic
        self.key_serde = spec.key_serde
        self.value_serde = spec.value_serde


class StreamsApp:
    """A stream-processing application: its topology and how to run it.

    ``application_id`` names the consumer group, the internal topics and the state directory.
    """

    def __init__(self, application_id: str, bootstrap: str = "127.0.0.1:9092", *, on_processing_error: str = "fail",
                 dead_letter_topic: str | None = None, dead_letter_headers: DeadLetterHeaders | None = None,
                 interceptors: Iterable[RecordInterceptor] = (), production_error: str = "fail",
                 dropped_records: str = "skip", **config: Any) -> None:
        """``on_processing_error``: ``"fail"`` (default), ``"skip"`` (log and count) or
        ``"dead_letter"`` (log, count and send the input record to ``dead_letter_topic`` with the
        error in ``__streams.errors.*`` headers) when a function of the topology raises.
        ``dead_letter_headers(ctx)`` builds the dead letter's headers instead (for example
        ``riverbed.messaging.streams.dead_letter_headers``). ``interceptors``: hooks around each
        record and each output (``RecordInterceptor``; tracing uses them).
        ``production_error``: the same choice when an output record does not serialize or its
        delivery fails (Kafka's ProductionExceptionHandler; internal topics always fail).
        ``dropped_records``: ``"skip"`` (default: a WARNING line, or the late side output) or
        ``"dead_letter"`` for records the DSL drops (without a key where one is needed, late);
        aggregations may say otherwise (``group_by_key(on_error=...)``).
        ``config``: runtime options (``state_dir``, ``processing_guarantee``, ...; see Runtime)."""
        self.application_id = application_id
        self.errors = ErrorPolicy(on_processing_error, dead_letter_topic, dead_letter_headers=dead_letter_headers,
                                  production_error=production_error, dropped_records=dropped_records)
        self.interceptors = tuple(interceptors)
        self.bootstrap = bootstrap
        self.config = config
        self._b = _Builder(application_id)
        self._runtime: Any = None

    def stream(self, topic: str, key_serde: Serde[Any] = BYTES, value_serde: Serde[Any] = BYTES,
               timestamp_extractor: TimestampExtractor | None = None, on_error: str = "fail") -> KStream[Any, Any]:
        """Records of ``topic``. ``timestamp_extractor(record, partition_time) -> ms`` overrides the
        record timestamp (an extractor may also have a ``fields(key, value, timestamp, headers,
        partition, offset, partition_time) -> ms`` attribute, the same function without a Record,
        which the batch-wise path calls instead); ``on_error`` is ``"fail"`` (raise), ``"skip"`` (log and count) or
        ``"dead_letter"`` (also send to the app's dead-letter topic) for records that do not
        deserialize."""
        src = SourceNode(self._b.name("source"), topic, key_serde, value_serde, timestamp_extractor, on_error)
        self._b.sources.append(src)
        return KStream(self._b, src, key_serde, value_serde)

    def table(self, topic: str, key_serde: Serde[Any] = BYTES, value_serde: Serde[Any] = BYTES,
              name: str | None = None, timestamp_extractor: TimestampExtractor | None = None,
              store_value_serde: Serde[Any] | None = None, on_error: str = "fail") -> KTable[Any, Any]:
        """``topic`` as a table (latest value per key, ``None`` deletes), materialized in a store.
        ``timestamp_extractor`` as for streams; ``store_value_serde`` stores (and changelogs) the
        values in another format than the topic's (default: ``value_serde``); ``on_error`` as for
        streams (records that do not deserialize)."""
        src = SourceNode(self._b.name("source"), topic, key_serde, value_serde, timestamp_extractor, on_error)
        self._b.sources.append(src)
        store = name or f"{topic}-table"
        self._b.add_store(StoreSpec(store, key_serde, store_value_serde or value_serde))
        node = TableSourceNode(self._b.name("table"), store)
        src.children.append(node)
        return KTable(self._b, node, key_serde, store_value_serde or value_serde, store)

    def global_table(self, topic: str, key_serde: Serde[Any] = BYTES, value_serde: Serde[Any] = BYTES,
                     name: str | None = None, on_error: str = "fail") -> GlobalKTable[Any, Any]:
        """``topic`` as a global table: every instance reads all its partitions into the store
        ``name`` (default ``<topic>-global``) before processing starts and keeps it up to date.
        The topic is the store's changelog (no ``-changelog`` topic is made). ``on_error``:
        ``"fail"`` (stop the app, Kafka's default) or ``"skip"`` (log and count) for records
        that do not deserialize."""
        if on_error not in ("fail", "skip"):
            raise StreamsError(f"a global table's on_error must be 'fail' or 'skip', not {on_error!r}")
        store = name or f"{topic}-global"
        if store in self._b.stores or store in self._b.global_stores:
            raise StreamsError(f"store name {store!r} is used twice")
        if any(g.topic == topic for g in self._b.global_stores.values()):
            raise StreamsError(f"topic {topic!r} is a global table twice; reuse the GlobalKTable")
        spec = GlobalStoreSpec(store, topic, key_serde, value_serde, on_error)
        self._b.global_stores[store] = spec
        return GlobalKTable(spec)

    def add_state_store(self, name: str, key_serde: Serde[Any] = BYTES, value_serde: Serde[Any] = BYTES) -> None:
        """A key-value store (with its changelog ``<app>-<name>-changelog``) for processors."""
        self._b.add_store(StoreSpec(name, key_serde, value_serde))

    def topology(self) -> Topology:
        return Topology(self.application_id, list(self._b.sources), dict(self._b.stores), self.errors,
                        dict(self._b.global_stores), self.interceptors)

    def run(self, **kwargs: Any) -> None:
        """Process until :meth:`stop` is called (from a signal handler or another thread)."""
        from .runtime import Runtime

        self._runtime = Runtime(self.topology(), self.bootstrap, **{**self.config, **kwargs})
        self._runtime.run()

    def stop(self) -> None:
        if self._runtime is not None:
            self._runtime.stop()

    def restore_progress(self) -> dict[str, dict[str, int]]:
        """Per ``store/task`` of this instance's last restores: changelog offsets ``restored``
        so far of ``total`` to restore (equal once the task runs); empty before :meth:`run`."""
        if self._runtime is None:
            return {}
        return {name: {"restored": done, "total": total} for name, (done, total) in dict(self._runtime.restore_progress).items()}
