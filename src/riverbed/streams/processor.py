"""The lower-level processor API: user processors with state stores and punctuation.

```python
class Dedup(Processor):
    def init(self, ctx):
        self.ctx = ctx
        self.seen = ctx.get_store("seen")
        ctx.schedule(60_000, "wall_clock", self.report)
    def process(self, record):
        if self.seen.get(record.key) is None:
            self.seen.put(record.key, record.timestamp)
            self.ctx.forward(record.key, record.value)
    def report(self, now):
        ...

app.add_state_store("seen", STRING, LONG)
app.stream("in", STRING, STRING).process(Dedup, stores=["seen"]).to("out")
```

One processor instance per task (input partition). ``schedule(interval, "stream_time", fn)``
calls ``fn(stream_time)`` when the task's stream time has advanced by ``interval`` since the
last call (once, however far it jumped, as Kafka's punctuation does); ``"wall_clock"`` calls
``fn(now_ms)`` on the runtime's punctuation ticks (or the test driver's
``advance_wall_clock``) once ``interval`` has passed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .nodes import Node
from .records import Record, StreamsError

if TYPE_CHECKING:
    from .task import Task


class Processor:
    """Subclass and override ``process`` (and ``init`` / ``close`` as needed)."""

    def init(self, ctx: ProcessorContext) -> None:
        pass

    def process(self, record: Record) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass
class Schedule:
    interval_ms: int
    kind: str
    fn: Callable[[int], None]
    next_ms: int | None = None  # None: first tick only sets the start
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class ProcessorContext:
    def __init__(self, task: Task, node: ProcessNode) -> None:
        self._task = task
        self._node = node

    @property
    def partition(self) -> int:
        return self._task.partition

    @property
    def task_id(self) -> str:
        return self._task.task_id

    @property
    def stream_time(self) -> int:
        return self._task.stream_time

    @property
    def wall_clock_ms(self) -> int:
        return self._task.wall_ms

    def get_store(self, name: str) -> Any:
        if name not in self._node.store_names:
            raise StreamsError(f"processor {self._node.name} did not declare store {name!r} (process(..., stores=[...]))")
        return self._task.store(name)

    def forward(self, key: Any, value: Any, timestamp: int | None = None,
                headers: list[tuple[str, bytes]] | None = None) -> None:
        ts = self._task.stream_time if timestamp is None else timestamp
        self._node.forward(self._task, Record(key, value, max(ts, 0), headers))

    def schedule(self, interval_ms: int, kind: str, fn: Callable[[int], None]) -> Schedule:
        if kind not in ("stream_time", "wall_clock"):
            raise StreamsError(f"punctuation kind must be 'stream_time' or 'wall_clock', not {kind!r}")
        if interval_ms <= 0:
            raise StreamsError("the punctuation interval must be positive")
        s = Schedule(interval_ms, kind, fn)
        self._task.schedules.append(s)
        return s


def fire(schedules: list[Schedule], kind: str, now: int) -> None:
    for s in list(schedules):
        if s.cancelled or s.kind != kind or now < 0:
            continue
        if s.next_ms is None:
            s.next_ms = now + s.interval_ms
        elif now >= s.next_ms:
            s.next_ms = now + s.interval_ms
            s.fn(now)


class ProcessNode(Node):
    kind = "processor"

    def __init__(self, name: str, factory: Callable[[], Processor], store_names: list[str]) -> None:
        super().__init__(name)
        self.factory = factory
        self.store_names = store_names

    def stores(self) -> list[str]:
        return list(self.store_names)

    def init_task(self, task: Task) -> None:
        proc = self.factory()
        task.node_state(self)["processor"] = proc
        proc.init(ProcessorContext(task, self))

    def close_task(self, task: Task) -> None:
        proc = task.node_state(self).get("processor")
        if proc is not None:
            proc.close()

    def process(self, task: Task, rec: Record) -> None:
        task.node_state(self)["processor"].process(rec)
