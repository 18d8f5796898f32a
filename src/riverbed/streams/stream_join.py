"""Stream-stream joins (Kafka's windowed KStream-KStream join): inner, left and outer.

Each side buffers its records for ``before + after + grace`` in a store (changelogged like any
store). A record at ``t`` joins every record of the other side with the same key whose time
is within the join window, in buffer order, with output timestamp ``max(t, t_other)``. For left
and outer joins a record that found no partner is emitted with ``None`` for the other side once
its window has closed (``t + after + grace < stream time`` on the left; ``before`` on the right),
as Kafka Streams does since 3.1 to avoid spurious results; a record late on arrival goes to
the log and the ``late_records`` count.

Buffer keys: ``len(key) (4) | key | t (8) | seq (8)``; values: ``matched (1) | value``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .nodes import Node, log
from .records import Record
from .serdes import Serde
from .windows import JoinWindows

if TYPE_CHECKING:
    from .stores import KeyValueStore
    from .task import Task

_Q = struct.Struct(">q")
_L = struct.Struct(">I")


class Buffer:
    """One side's records in a key-value store's engine, ordered by key then time."""

    def __init__(self, store: KeyValueStore, key_serde: Serde[Any], value_serde: Serde[Any]) -> None:
        self.store = store
        self.key_serde = key_serde
        self.value_serde = value_serde

    def _write(self, raw: bytes, value: bytes | None) -> None:
        self.store.engine.put(raw, value)
        if self.store._log is not None:
            self.store._log(raw, value)

    @staticmethod
    def prefix(kb: bytes) -> bytes:
        return _L.pack(len(kb)) + kb

    def add(self, kb: bytes, t: int, seq: int, value: Any, matched: bool) -> bytes:
        raw = self.prefix(kb) + _Q.pack(t) + _Q.pack(seq)
        self._write(raw, (b"\x01" if matched else b"\x00") + (self.value_serde.serialize(value) or b""))
        return raw

    def between(self, kb: bytes, lo: int, hi: int) -> list[tuple[bytes, int, bool, Any]]:
        p = self.prefix(kb)
        out = []
        for raw, v in self.store.engine.range(p + _Q.pack(max(lo, 0)), p + _Q.pack(max(hi + 1, 0))):
            out.append((raw, int(_Q.unpack_from(raw, len(p))[0]), v[:1] == b"\x01", self.value_serde.deserialize(v[1:])))
        return out

    def mark(self, raw: bytes) -> None:
        v = self.store.engine.get(raw)
        if v is not None and v[:1] != b"\x01":
            self._write(raw, b"\x01" + v[1:])

    def all(self) -> list[tuple[bytes, bytes, int, bool, Any]]:
        out = []
        for raw, v in self.store.engine.range(b"", b"\xff" * 5):
            n = _L.unpack_from(raw, 0)[0]
            kb, t = raw[4:4 + n], int(_Q.unpack_from(raw, 4 + n)[0])
            out.append((raw, kb, t, v[:1] == b"\x01", self.value_serde.deserialize(v[1:])))
        return out

    def remove(self, raw: bytes) -> None:
        self._write(raw, None)


class StreamJoinSideNode(Node):
    kind = "stream_join"

    def __init__(self, name: str, side: str, this_store: str, other_store: str, windows: JoinWindows,
                 joiner: Callable[[Any, Any], Any], how: str, serdes: dict[str, tuple[Serde[Any], Serde[Any]]]) -> None:
        super().__init__(name)
        self.side = side
        self.this_store = this_store
        self.other_store = other_store
        self.windows = windows
        self.joiner = joiner
        self.how = how
        self.serdes = serdes  # store -> (key serde, value serde)

    def stores(self) -> list[str]:
        return [self.this_store, self.other_store]

    def _buf(self, task: Task, store: str) -> Buffer:
        k, v = self.serdes[store]
        return Buffer(task.kv_store(store), k, v)

    def _emits_unmatched(self, side: str) -> bool:
        return self.how == "outer" or (self.how == "left" and side == "left")

    def _join(self, mine: Any, other: Any) -> Any:
        return self.joiner(mine, other) if self.side == "left" else self.joiner(other, mine)

    def process(self, task: Task, rec: Record) -> None:
        if rec.key is None or rec.value is None:
            task.skip(rec, f"{self.name}: a record without a key or value cannot be joined", self)
            return
        w = self.windows
        shared = task.node_state(self.children[0] if self.children else self)  # one clock per join
        this, other = self._buf(task, self.this_store), self._buf(task, self.other_store)
        stream_time = max(shared.get("time", -1), rec.timestamp)
        shared["time"] = stream_time
        t = rec.timestamp
        after, before = (w.after_ms, w.before_ms) if self.side == "left" else (w.before_ms, w.after_ms)
        if t + after + w.grace_ms < stream_time:
            task.metrics["late_records"] = task.metrics.get("late_records", 0) + 1
            if not task.drop_to_dead_letter(self, f"{self.name}: late record (timestamp {t}, stream time "
                                                  f"{stream_time}) dropped from the join"):
                log.warning("%s: late record (key %r, timestamp %d, stream time %d) dropped from the join",
                            self.name, rec.key, t, stream_time)
            return
        kb = this.key_serde.serialize(rec.key) or b""
        seq = shared["seq"] = shared.get("seq", 0) + 1
        partners = other.between(kb, t - before, t + after)
        this.add(kb, t, seq, rec.value, bool(partners))
        for oraw, ot, _matched, ov in partners:
            other.mark(oraw)
            self.forward(task, Record(rec.key, self._join(rec.value, ov), max(t, ot), rec.headers))
        if shared.get("expired_at") != stream_time:
            shared["expired_at"] = stream_time
            self._expire(task, stream_time)

    def _expire(self, task: Task, stream_time: int) -> None:
        """Emit closed unmatched records (left/outer) and drop what no new record can join."""
        w = self.windows
        span = w.before_ms + w.after_ms + w.grace_ms
        for store, side in ((self.this_store, self.side), (self.other_store, "right" if self.side == "left" else "left")):
            buf = self._buf(task, store)
            own_after = w.after_ms if side == "left" else w.before_ms
            for raw, kb, t, matched, v in buf.all():
                closed = t + own_after + w.grace_ms < stream_time
                if closed and not matched and self._emits_unmatched(side):
                    key = buf.key_serde.deserialize(kb)
                    out = self.joiner(v, None) if side == "left" else self.joiner(None, v)
                    self.forward(task, Record(key, out, t))
                    buf.mark(raw)
                    matched = True
                if t + span < stream_time and (matched or not self._emits_unmatched(side)):
                    buf.remove(raw)
