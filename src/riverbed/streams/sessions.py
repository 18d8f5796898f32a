"""Session windows: a session store and the session aggregation, with Kafka Streams' semantics.

A record at ``t`` for key ``k`` merges every session of ``k`` with ``end >= t - gap`` and
``start <= t + gap`` (and itself) into one session ``[min start, max end]`` whose aggregate
merges theirs (``merger``) and then adds the record (``aggregator``). With
``close = observed stream time - gap - grace``, a merged session with ``end < close`` is late:
the record goes to the late side output instead. ``on_update`` forwards a ``None`` for each
session merged away, then the new session; ``on_window_close`` forwards each session once, when
``end < close``. Forwarded records carry the session's end as timestamp.

Store layout (in the ordered engine): ``0x00 | len(key) (4) | key | end (8) | start (8)`` ->
aggregate; a time index ``0x02 | end (8) | len(key) (4) | key | start (8)`` -> empty, to close
and expire sessions by end; ``0x01 | name`` bookkeeping. Every entry goes to the changelog,
so a restore rebuilds the index too.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .nodes import Node, log
from .records import LateRecord, Record
from .serdes import Serde
from .stores import Engine, LogFn
from .windows import SessionWindows, Window, Windowed

if TYPE_CHECKING:
    from .task import Task

_Q = struct.Struct(">q")
_L = struct.Struct(">I")
_MAXQ = (1 << 63) - 1


class SessionStore:
    def __init__(self, name: str, engine: Engine, key_serde: Serde[Any], value_serde: Serde[Any], log: LogFn | None) -> None:
        self.name = name
        self.engine = engine
        self.key_serde = key_serde
        self.value_serde = value_serde
        self._log = log

    def _write(self, raw: bytes, value: bytes | None) -> None:
        self.engine.put(raw, value)
        if self._log is not None:
            self._log(raw, value)

    @staticmethod
    def _prefix(key: bytes) -> bytes:
        return b"\x00" + _L.pack(len(key)) + key

    def key_bytes(self, key: Any) -> bytes:
        raw = self.key_serde.serialize(key)
        if raw is None:
            raise ValueError(f"store {self.name}: a key is needed (got None)")
        return raw

    def find(self, key: bytes, earliest_end: int, latest_start: int) -> list[tuple[int, int, bytes]]:
        """Sessions of ``key`` with ``end >= earliest_end`` and ``start <= latest_start``:
        (start, end, aggregate bytes), by end."""
        p = self._prefix(key)
        out = []
        for raw, v in self.engine.range(p + _Q.pack(max(earliest_end, 0)), p + _Q.pack(_MAXQ) + b"\xff"):
            end, start = _Q.unpack_from(raw, len(p))[0], _Q.unpack_from(raw, len(p) + 8)[0]
            if start <= latest_start:
                out.append((start, end, v))
        return out

    def put(self, key: bytes, start: int, end: int, value: bytes | None) -> None:
        self._write(self._prefix(key) + _Q.pack(end) + _Q.pack(start), value)
        self._write(b"\x02" + _Q.pack(end) + _L.pack(len(key)) + key + _Q.pack(start), None if value is None else b"")

    def ended_between(self, lo: int, hi: int) -> Iterator[tuple[bytes, int, int, bytes]]:
        """Sessions with ``lo <= end < hi``: (key bytes, start, end, aggregate bytes), by end then key."""
        for raw, _ in list(self.engine.range(b"\x02" + _Q.pack(max(lo, 0)), b"\x02" + _Q.pack(max(hi, 0)))):
            end = _Q.unpack_from(raw, 1)[0]
            n = _L.unpack_from(raw, 9)[0]
            key = raw[13:13 + n]
            start = _Q.unpack_from(raw, 13 + n)[0]
            v = self.engine.get(self._prefix(key) + _Q.pack(end) + _Q.pack(start))
            if v is not None:
                yield key, start, end, v

    def expire_ended_before(self, end: int) -> int:
        gone = list(self.ended_between(0, end))
        for key, s, e, _v in gone:
            self.put(key, s, e, None)
        return len(gone)

    def all(self) -> Iterator[tuple[Any, Window, Any]]:
        """(key, session window, aggregate) for every session, by key bytes then end."""
        for raw, v in self.engine.range(b"\x00", b"\x01"):
            n = _L.unpack_from(raw, 1)[0]
            key = raw[5:5 + n]
            end, start = _Q.unpack_from(raw, 5 + n)[0], _Q.unpack_from(raw, 13 + n)[0]
            yield self.key_serde.deserialize(key), Window(start, end), self.value_serde.deserialize(v)

    def get_meta(self, name: str) -> int | None:
        raw = self.engine.get(b"\x01" + name.encode())
        return None if raw is None else int(_Q.unpack(raw)[0])

    def put_meta(self, name: str, value: int) -> None:
        self._write(b"\x01" + name.encode(), _Q.pack(value))


class SessionAggregateNode(Node):
    kind = "session_aggregate"

    def __init__(self, name: str, store: str, windows: SessionWindows, init: Callable[[], Any],
                 agg: Callable[[Any, Any, Any], Any], merger: Callable[[Any, Any, Any], Any], emit: str,
                 retention_ms: int, close_after_idle_ms: int | None = None) -> None:
        super().__init__(name)
        self.store = store
        self.windows = windows
        self.init = init
        self.agg = agg
        self.merger = merger
        self.emit = emit
        self.retention_ms = max(retention_ms, windows.gap_ms + windows.grace_ms)
        self.close_after_idle_ms = close_after_idle_ms
        self.late = Node(f"{name}-late")

    def stores(self) -> list[str]:
        return [self.store]

    def successors(self) -> list[Node]:
        return [*self.children, self.late]

    def process(self, task: Task, rec: Record) -> None:
        if rec.key is None or rec.value is None:
            task.skip(rec, f"{self.name}: a record without a key or value cannot be aggregated", self)
            return
        st = task.session_store(self.store)
        ns = task.node_state(self)
        observed = ns.get("observed")
        if observed is None:
            observed = st.get_meta("observed")
            observed = -1 if observed is None else observed
        if rec.timestamp > observed:
            observed = rec.timestamp
            st.put_meta("observed", observed)
        ns["observed"] = observed
        ns["idle_base"] = (observed, task.wall_ms)
        gap, t = self.windows.gap_ms, rec.timestamp
        close = observed - self.windows.grace_ms - gap
        kb = st.key_bytes(rec.key)
        merged = st.find(kb, t - gap, t + gap)
        start, end = t, t
        acc = self.init()
        for s, e, v in merged:
            acc = self.merger(rec.key, acc, st.value_serde.deserialize(v))
            start, end = min(start, s), max(end, e)
        if end < close:
            task.metrics["late_records"] = task.metrics.get("late_records", 0) + 1
            win = Window(start, end)
            dead = task.drop_to_dead_letter(self, f"{self.name}: late record (timestamp {t}, stream time {observed}) "
                                                  f"for closed session {(start, end)}")
            if self.late.children:
                self.late.forward(task, rec.with_kv(rec.key, LateRecord(rec, [win], observed)))
            elif not dead:
                log.warning("%s: late record (key %r, timestamp %d, stream time %d) for closed session %s",
                            self.name, rec.key, t, observed, (start, end))
        else:
            for s, e, _v in merged:
                if (s, e) != (start, end):
                    st.put(kb, s, e, None)
                    if self.emit == "on_update":
                        self.forward(task, Record(Windowed(rec.key, Window(s, e)), None, e, rec.headers))
            acc = self.agg(rec.key, rec.value, acc)
            st.put(kb, start, end, st.value_serde.serialize(acc))
            if self.emit == "on_update":
                self.forward(task, Record(Windowed(rec.key, Window(start, end)), acc, end, rec.headers))
        self._advance(task, st, close)

    def _advance(self, task: Task, st: SessionStore, close: int) -> None:
        ns = task.node_state(self)
        if self.emit == "on_window_close":
            emitted = ns.get("emitted")
            if emitted is None:
                emitted = st.get_meta("emitted") or 0
            if close > emitted:
                for kb, s, e, v in list(st.ended_between(emitted, close)):
                    key = st.key_serde.deserialize(kb)
                    self.forward(task, Record(Windowed(key, Window(s, e)), st.value_serde.deserialize(v), e))
                st.put_meta("emitted", close)
                ns["emitted"] = close
        # keep sessions that end at or after observed - retention (>= gap + grace: never an open one)
        expire_below = ns["observed"] - self.retention_ms
        if expire_below > ns.get("expired", 0):
            st.expire_ended_before(expire_below)
            ns["expired"] = expire_below

    def punctuate(self, task: Task) -> None:
        """With ``close_after_idle``: after that long without a record, stream time moves on
        with the wall clock from the last record's timestamp (as for time windows)."""
        if self.close_after_idle_ms is None:
            return
        ns = task.node_state(self)
        st = task.session_store(self.store)
        base = ns.get("idle_base")
        if base is None:
            observed = st.get_meta("observed")
            if observed is None:
                return
            ns["idle_base"] = base = (observed, task.wall_ms)
            ns.setdefault("observed", observed)
        observed0, wall0 = base
        idle = task.wall_ms - wall0
        if idle < self.close_after_idle_ms or observed0 + idle <= ns.get("observed", -1):
            return
        ns["observed"] = observed0 + idle
        st.put_meta("observed", ns["observed"])
        self._advance(task, st, ns["observed"] - self.windows.grace_ms - self.windows.gap_ms)
