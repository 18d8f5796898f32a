"""Windowed aggregation with Kafka Streams' time semantics.

Per task (input partition), the aggregation keeps its *observed stream time*: the largest
record timestamp it has seen, or, when ``close_after_idle`` is set and no record arrived for
that long in wall-clock time, the last one plus the wall-clock time since it arrived. A window
``[start, end)`` is closed once ``end + grace <= observed``. A record updates every window it
falls in that is still open; if it falls in a closed window it goes to the late side output
(with the windows it missed), or, without one, is logged at WARNING and counted.

Emit strategies (Kafka 3.3's ``EmitStrategy``): ``on_update`` forwards the new aggregate of each
window on every update; ``on_window_close`` forwards each window's aggregate exactly once, when
it closes. The observed time and the last emitted bound live in the window store, so they are
restored from the changelog with the aggregates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .nodes import Node, log
from .records import LateRecord, Record
from .stores import window_key
from .windows import TimeWindows, Window, Windowed

if TYPE_CHECKING:
    from .task import Task

_OBSERVED = "observed"
_EMITTED = "emitted"  # windows starting before this bound have been emitted (on_window_close)
_SILENT = Node("no-forward")  # the cache's flush target for updates that forward nothing


class WindowAggregateNode(Node):
    kind = "window_aggregate"

    def __init__(self, name: str, store: str, windows: TimeWindows, init: Callable[[], Any],
                 agg: Callable[[Any, Any, Any], Any], emit: str, retention_ms: int,
                 close_after_idle_ms: int | None) -> None:
        super().__init__(name)
        self.store = store
        self.windows = windows
        self.init = init
        self.agg = agg
        self.emit = emit
        self.retention_ms = max(retention_ms, windows.size_ms + windows.grace_ms)
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
        st = task.window_store(self.store)
        ns = task.node_state(self)
        observed = ns.get(_OBSERVED)
        if observed is None:
            observed = st.get_meta(_OBSERVED)
            observed = -1 if observed is None else observed
        if rec.timestamp > observed:
            observed = rec.timestamp
            if task.cache is not None:  # (one changelog write per commit, not per record)
                mk, mv = st.meta_entry(_OBSERVED, observed)
                task.cache.put(task, self.store, mk, mv, st.write, _SILENT, Record(None, None, observed))
            else:
                st.put_meta(_OBSERVED, observed)
        ns[_OBSERVED] = observed
        ns["idle_base"] = (observed, task.wall_ms)
        w = self.windows
        close_time = observed - w.grace_ms
        kb = st.key_bytes(rec.key)
        missed: list[Window] = []
        for win in w.windows_for(rec.timestamp):
            if win.end <= close_time:
                missed.append(win)
                continue
            got = st.get_ts(kb, win.start)
            old = self.init() if got is None else st.value_serde.deserialize(got[0])
            new = self.agg(rec.key, rec.value, old)
            # the result's timestamp: the largest of the window's records (Kafka's)
            ts = rec.timestamp if got is None else max(got[1], rec.timestamp)
            vb = st.value_serde.serialize(new)
            stored = None if vb is None else st.encode(vb, ts)
            out = rec.with_kv(Windowed(rec.key, win), new)
            out.timestamp = ts
            if task.cache is not None:
                # (on_window_close: nothing is forwarded per update; the cache spares store and
                # changelog writes, and is flushed before windows close)
                task.cache.put(task, self.store, window_key(win.start, kb), stored, st.write,
                               self if self.emit == "on_update" else _SILENT, out)
                continue
            st.write(window_key(win.start, kb), stored)
            if self.emit == "on_update":
                self.forward(task, out)
        if missed:
            self._late(task, rec, missed, observed)
        self._advance(task, st, observed)

    def _late(self, task: Task, rec: Record, missed: list[Window], observed: int) -> None:
        task.metrics["late_records"] = task.metrics.get("late_records", 0) + 1
        dead = task.drop_to_dead_letter(self, f"{self.name}: late record (timestamp {rec.timestamp}, stream time "
                                              f"{observed}) missed windows {[(x.start, x.end) for x in missed]}")
        if self.late.children:
            self.late.forward(task, rec.with_kv(rec.key, LateRecord(rec, missed, observed)))
        elif not dead:
            log.warning("%s: late record (key %r, timestamp %d, stream time %d, grace %d ms) missed windows %s; "
                        "no late side output is attached", self.name, rec.key, rec.timestamp, observed,
                        self.windows.grace_ms, [(x.start, x.end) for x in missed])

    def _advance(self, task: Task, st: Any, observed: int) -> None:
        """Emit the windows that closed (on_window_close) and expire the old ones."""
        w = self.windows
        ns = task.node_state(self)
        # closed: start + size + grace <= observed  <=>  start < observed - size - grace + 1
        closed_below = observed - w.size_ms - w.grace_ms + 1
        if self.emit == "on_window_close":
            emitted = ns.get(_EMITTED)
            if emitted is None:
                emitted = st.get_meta(_EMITTED)
                emitted = 0 if emitted is None else emitted
            if closed_below > emitted:
                self._flush_below(task, closed_below)
                # each final result carries its window's largest record timestamp (Kafka's)
                for start, kb, vb, ts in list(st.starting_between_ts(emitted, closed_below)):
                    key = st.key_serde.deserialize(kb)
                    win = Window(start, start + w.size_ms)
                    out = Record(Windowed(key, win), st.value_serde.deserialize(vb), ts if ts >= 0 else win.end - 1)
                    self.forward(task, out)
                st.put_meta(_EMITTED, closed_below)
                ns[_EMITTED] = closed_below
        expire_below = observed - self.retention_ms + 1  # Kafka keeps starts >= observed - retention + 1
        if expire_below > ns.get("expired", 0):
            self._flush_below(task, expire_below)
            st.expire_before(expire_below)
            ns["expired"] = expire_below

    def _flush_below(self, task: Task, bound: int) -> None:
        """Write (and forward) the cached updates of windows starting before ``bound``: they are
        about to be emitted or expired. Starts are multiples of the advance, so this only has
        work to do when the bound passes one."""
        if task.cache is None:
            return
        ns = task.node_state(self)
        last = (bound - 1) // self.windows.advance_ms  # the last window start below the bound / advance
        if last <= ns.get("flushed_upto", -1):
            return
        ns["flushed_upto"] = last
        task.cache.flush(task.task_id, self.store, below=window_key(max(bound, 0), b""))

    def punctuate(self, task: Task) -> None:
        if self.close_after_idle_ms is None:
            return
        ns = task.node_state(self)
        base = ns.get("idle_base")
        if base is None:
            st = task.window_store(self.store)
            observed = st.get_meta(_OBSERVED)
            if observed is None:
                return  # nothing seen yet: nothing to close
            ns["idle_base"] = base = (observed, task.wall_ms)
        observed0, wall0 = base
        idle = task.wall_ms - wall0
        if idle < self.close_after_idle_ms:
            return
        observed = observed0 + idle
        if observed <= ns.get(_OBSERVED, -1):
            return
        st = task.window_store(self.store)
        ns[_OBSERVED] = observed
        st.put_meta(_OBSERVED, observed)
        self._advance(task, st, observed)
