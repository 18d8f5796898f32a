"""Sliding-window aggregation (Kafka's ``SlidingWindows``), computed from the records.

The node keeps the key's records of the last ``time difference + grace`` (and a little) in the
window store's engine, and the windows' aggregates as a window store. A record at ``t`` updates
(recomputing from the records, in timestamp order) every window that contains it: its own left
window ``[t - d, t]`` (``[0, d]`` for early records), the left windows of the key's records in
``(t, t + d]`` and the right windows of its records in ``[t - d - 1, t - 1]``; and it creates its
own right window ``[t + 1, t + 1 + d]`` when records fall in it. This is the set of windows
Kafka Streams' incremental algorithm maintains; recomputing costs O(records in a window) per
window, which is fine for the window sizes of this slice (docs/streams.md "Not yet").

Engine keys besides the window store's: ``0x03 | len(key) | key | t | seq`` -> the record's
value, and ``0x04 | t | len(key) | key | seq`` -> empty (to expire records by time).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .nodes import Node, log
from .records import LateRecord, Record
from .serdes import Serde
from .windows import SlidingWindows, Window, Windowed

if TYPE_CHECKING:
    from .stores import WindowStore
    from .task import Task

_Q = struct.Struct(">q")
_L = struct.Struct(">I")


class SlidingAggregateNode(Node):
    kind = "sliding_aggregate"

    def __init__(self, name: str, store: str, windows: SlidingWindows, init: Callable[[], Any],
                 agg: Callable[[Any, Any, Any], Any], emit: str, value_serde: Serde[Any]) -> None:
        super().__init__(name)
        self.store = store
        self.windows = windows
        self.init = init
        self.agg = agg
        self.emit = emit
        self.value_serde = value_serde  # of the records kept to recompute windows
        self.late = Node(f"{name}-late")

    def stores(self) -> list[str]:
        return [self.store]

    def successors(self) -> list[Node]:
        return [*self.children, self.late]

    # -- the records kept per key ---------------------------------------------------------
    @staticmethod
    def _rec_prefix(kb: bytes) -> bytes:
        return b"\x03" + _L.pack(len(kb)) + kb

    def _records(self, st: WindowStore, kb: bytes, lo: int, hi: int) -> list[tuple[int, Any]]:
        """The key's records with ``lo <= t <= hi``, oldest first: (t, value)."""
        p = self._rec_prefix(kb)
        out = []
        for raw, v in st.engine.range(p + _Q.pack(max(lo, 0)), p + _Q.pack(max(hi + 1, 0))):
            out.append((int(_Q.unpack_from(raw, len(p))[0]), self.value_serde.deserialize(v)))
        return out

    def _keep(self, st: WindowStore, kb: bytes, t: int, value: Any) -> None:
        seq = (st.get_meta("seq") or 0) + 1
        st.put_meta("seq", seq)
        v = self.value_serde.serialize(value)
        st._write(self._rec_prefix(kb) + _Q.pack(t) + _Q.pack(seq), v)
        st._write(b"\x04" + _Q.pack(t) + _L.pack(len(kb)) + kb + _Q.pack(seq), b"")

    def _expire_records(self, st: WindowStore, before: int) -> None:
        for raw, _ in list(st.engine.range(b"\x04", b"\x04" + _Q.pack(max(before, 0)))):
            t = _Q.unpack_from(raw, 1)[0]
            n = _L.unpack_from(raw, 9)[0]
            kb = raw[13:13 + n]
            seq = raw[13 + n:]
            st._write(self._rec_prefix(kb) + _Q.pack(t) + seq, None)
            st._write(raw, None)

    # -- processing ---------------------------------------------------------------------------
    def process(self, task: Task, rec: Record) -> None:
        if rec.key is None or rec.value is None:
            task.skip(rec, f"{self.name}: a record without a key or value cannot be aggregated", self)
            return
        st = task.window_store(self.store)
        ns = task.node_state(self)
        observed = ns.get("observed")
        if observed is None:
            observed = st.get_meta("observed")
            observed = -1 if observed is None else observed
        if rec.timestamp > observed:
            observed = rec.timestamp
            st.put_meta("observed", observed)
        ns["observed"] = observed
        d, t = self.windows.time_difference_ms, rec.timestamp
        close = observed - self.windows.grace_ms
        if t + 1 + d <= close:
            self._late(task, rec, [Window(max(0, t - d), max(0, t - d) + d)], observed)
            self._advance(task, st, close)
            return
        kb = st.key_bytes(rec.key)
        near = self._records(st, kb, t - d - 1, t + 1 + d)
        self._keep(st, kb, t, rec.value)
        starts = {max(0, t - d)}
        for s, _v in near:
            if t < s <= t + d:
                starts.add(max(0, s - d))
            if t - d - 1 <= s <= t - 1:
                starts.add(s + 1)
        if any(t < s <= t + 1 + d for s, _v in near) and st.get_raw(kb, t + 1) is None:
            starts.add(t + 1)
        records = sorted([*near, (t, rec.value)], key=lambda x: x[0])
        missed = []
        for start in sorted(starts):
            end = start + d
            if end < close:
                missed.append(Window(start, end))
                continue
            inside = [(s, v) for s, v in records if start <= s <= end]
            acc = self.init()
            for _s, v in inside:
                acc = self.agg(rec.key, v, acc)
            st.put_raw(kb, start, st.value_serde.serialize(acc))
            if self.emit == "on_update":
                self.forward(task, Record(Windowed(rec.key, Window(start, end)), acc, max(s for s, _ in inside), rec.headers))
        if missed:
            self._late(task, rec, missed, observed)
        self._advance(task, st, close)

    def _late(self, task: Task, rec: Record, missed: list[Window], observed: int) -> None:
        task.metrics["late_records"] = task.metrics.get("late_records", 0) + 1
        dead = task.drop_to_dead_letter(self, f"{self.name}: late record (timestamp {rec.timestamp}, stream time "
                                              f"{observed}) missed windows {[(x.start, x.end) for x in missed]}")
        if self.late.children:
            self.late.forward(task, rec.with_kv(rec.key, LateRecord(rec, missed, observed)))
        elif not dead:
            log.warning("%s: late record (key %r, timestamp %d, stream time %d) missed sliding windows %s",
                        self.name, rec.key, rec.timestamp, observed, [(w.start, w.end) for w in missed])

    def _advance(self, task: Task, st: WindowStore, close: int) -> None:
        d = self.windows.time_difference_ms
        ns = task.node_state(self)
        closed_below = close - d  # closed: start + d < close
        if self.emit == "on_window_close":
            emitted = ns.get("emitted")
            if emitted is None:
                emitted = st.get_meta("emitted") or 0
            if closed_below > emitted:
                for start, kb, vb in list(st.starting_between(emitted, closed_below)):
                    key = st.key_serde.deserialize(kb)
                    # the largest timestamp of the window's records (Kafka's), not its end
                    inside = self._records(st, kb, start, start + d)
                    ts = max((t for t, _v in inside), default=start + d)
                    self.forward(task, Record(Windowed(key, Window(start, start + d)), st.value_serde.deserialize(vb), ts))
                st.put_meta("emitted", closed_below)
                ns["emitted"] = closed_below
        # closed windows can no longer change; records older than any open window's reach go
        if closed_below > ns.get("expired", 0):
            st.expire_before(closed_below)
            self._expire_records(st, closed_below - d - 1)
            ns["expired"] = closed_below
