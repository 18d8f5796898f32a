"""Re-grouping and re-aggregating a table (Kafka's ``KTable#groupBy`` and ``KGroupedTable``).

A table update for key ``k`` from ``old`` to ``new`` is mapped with the user's selector into
a *change* for each group it touches: ``selector(k, old)`` gives the group the old value
leaves (subtracted there), ``selector(k, new)`` the group the new value joins (added there).
Changes travel through the repartition topic ``<app>-<name>-repartition`` keyed by group, as
one record carrying both values when both land in the same group (Kafka 3.5's KIP-904: the
subtractor runs before the adder, one update downstream), else as two records (the
subtraction first). The aggregation applies ``subtractor(group, old, agg)`` then
``adder(group, new, agg)`` and forwards the new aggregate.

Repartition value layout (internal to riverbed): one flag byte (bit 0: an old value follows,
bit 1: a new value follows), the old value's length (4 bytes, big-endian) and bytes, then the
new value's bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .nodes import Node
from .records import Record, StreamsError
from .serdes import Serde

if TYPE_CHECKING:
    from .task import Task

_LEN = struct.Struct(">I")


@dataclass(slots=True)
class Change:
    """A table update as its groups see it: the value leaving (``old``) and joining (``new``)."""

    new: Any
    old: Any


class ChangeSerde:
    """Serializes a :class:`Change` with the inner value serde (the layout in the module doc)."""

    def __init__(self, inner: Serde[Any]) -> None:
        self.inner = inner

    def serialize(self, value: Change | None) -> bytes | None:
        if value is None:
            return None
        old = None if value.old is None else self.inner.serialize(value.old)
        new = None if value.new is None else self.inner.serialize(value.new)
        flags = (1 if old is not None else 0) | (2 if new is not None else 0)
        old_b = old or b""
        return bytes([flags]) + _LEN.pack(len(old_b)) + old_b + (new or b"")

    def deserialize(self, data: bytes | None) -> Change | None:
        if data is None:
            return None
        if len(data) < 5:
            raise StreamsError(f"not a table change record ({len(data)} bytes)")
        flags = data[0]
        (n,) = _LEN.unpack_from(data, 1)
        if 5 + n > len(data):
            raise StreamsError("a table change record is truncated")
        old = self.inner.deserialize(bytes(data[5:5 + n])) if flags & 1 else None
        new = self.inner.deserialize(bytes(data[5 + n:])) if flags & 2 else None
        return Change(new, old)


class TableGroupByNode(Node):
    """Maps a table update (``rec.value`` new, ``rec.old`` old) to changes keyed by group."""

    kind = "table_group_by"

    def __init__(self, name: str, selector: Callable[[Any, Any], tuple[Any, Any]]) -> None:
        super().__init__(name)
        self.selector = selector

    def _select(self, key: Any, value: Any) -> tuple[Any, Any]:
        out = self.selector(key, value)
        if not isinstance(out, tuple) or len(out) != 2:
            raise StreamsError(f"{self.name}: a table's group_by function returns (new key, new value), not {out!r}")
        return out

    def process(self, task: Task, rec: Record) -> None:
        if rec.key is None:
            task.skip(rec, f"{self.name}: a table record needs a key", self)
            return
        old_g = self._select(rec.key, rec.old) if rec.old is not None else None
        new_g = self._select(rec.key, rec.value) if rec.value is not None else None
        if old_g is not None and new_g is not None and old_g[0] == new_g[0]:
            if old_g[0] is None:
                task.skip(rec, f"{self.name}: the group_by function gave no key", self)
                return
            self.forward(task, rec.with_kv(new_g[0], Change(new_g[1], old_g[1])))
            return
        for g, change in ((old_g, None if old_g is None else Change(None, old_g[1])),
                          (new_g, None if new_g is None else Change(new_g[1], None))):
            if g is None or change is None:
                continue
            if g[0] is None:  # (Kafka drops records whose new key is null, with a log line)
                task.skip(rec, f"{self.name}: the group_by function gave no key", self)
                continue
            self.forward(task, rec.with_kv(g[0], change))


class TableAggregateNode(Node):
    """Kafka's KTableAggregate / KTableReduce: subtract the old value from the group's aggregate,
    add the new one, store and forward the result (with the previous aggregate as ``old``)."""

    kind = "table_aggregate"

    def __init__(self, name: str, store: str, init: Callable[[], Any] | None,
                 adder: Callable[[Any, Any, Any], Any], subtractor: Callable[[Any, Any, Any], Any]) -> None:
        super().__init__(name)
        self.store = store
        self.init = init  # None: a reduce (the first value is the aggregate)
        self.adder = adder
        self.subtractor = subtractor

    def stores(self) -> list[str]:
        return [self.store]

    def process(self, task: Task, rec: Record) -> None:
        change = rec.value
        if rec.key is None or not isinstance(change, Change):
            task.skip(rec, f"{self.name}: a table change needs a key and a value", self)
            return
        st = task.kv_store(self.store)
        prev = st.get(rec.key)
        agg = prev
        if change.old is not None and agg is not None:
            agg = self.subtractor(rec.key, change.old, agg)
        if change.new is not None:
            if agg is None:
                agg = change.new if self.init is None else self.adder(rec.key, change.new, self.init())
            else:
                agg = self.adder(rec.key, change.new, agg)
        st.put(rec.key, agg)
        out = rec.with_kv(rec.key, agg)
        out.old = prev
        self.forward(task, out)
