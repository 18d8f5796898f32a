"""Record caching (Kafka Streams' ``statestore.cache.max.bytes``, formerly
``cache.max.bytes.buffering``).

Aggregations (``count`` / ``reduce`` / ``aggregate``, and time-windowed ones) write their new
values into this cache instead of straight to the store, its changelog and the downstream
nodes. A key updated again while its entry is dirty replaces the entry, so within a commit
interval only a key's last value reaches the store, the changelog and the output. Entries are
written and forwarded (in the order they were last dirtied, as Kafka's named caches) when the
task commits, when the cache grows past ``max_bytes`` (the least recently dirtied entries first,
Kafka's eviction), and, for windowed aggregations, when windows close or expire. Reads of the
store (by the aggregation itself and by interactive queries) see the dirty entries.

One cache per instance (Kafka: per stream thread), shared by its tasks. ``max_bytes=0`` turns
caching off: every update is written and forwarded at once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .records import Record, StreamsError

if TYPE_CHECKING:
    from .nodes import Node
    from .task import Task

log = logging.getLogger("riverbed.streams")

DEFAULT_CACHE_MAX_BYTES = 10 * 1024 * 1024  # Kafka's statestore.cache.max.bytes default
_OVERHEAD = 100  # bytes counted per entry on top of its key and value (Kafka counts ~ the same)


@dataclass
class CacheEntry:
    task: Task
    write: Callable[[bytes, bytes | None], None]  # engine + changelog write of the store
    node: Node  # whose children get ``record`` on flush
    record: Record
    value: bytes | None
    size: int


class RecordCache:
    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise StreamsError(f"cache_max_bytes must not be negative, not {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str, bytes], CacheEntry] = OrderedDict()
        self._per_store: dict[tuple[str, str], int] = {}  # dirty entries per (task, store)
        self.bytes = 0
        self.evictions = 0
        self.flushed = 0  # entries written and forwarded
        self.absorbed = 0  # updates that replaced a dirty entry (never written or forwarded)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, task_id: str, store: str, key: bytes) -> CacheEntry | None:
        return self._entries.get((task_id, store, key))

    def entries_of(self, task_id: str, store: str) -> Iterator[tuple[bytes, CacheEntry]]:
        if not self._per_store.get((task_id, store)):
            return
        for (t, s, k), e in list(self._entries.items()):
            if t == task_id and s == store:
                yield k, e

    def put(self, task: Task, store: str, key: bytes, value: bytes | None, write: Callable[[bytes, bytes | None], None],
            node: Node, record: Record) -> None:
        ck = (task.task_id, store, key)
        old = self._entries.pop(ck, None)
        if old is None:
            self._per_store[ck[:2]] = self._per_store.get(ck[:2], 0) + 1
        else:
            self.bytes -= old.size
            self.absorbed += 1
            record.old = old.record.old  # the value before this flush period (Kafka's Change.oldValue)
        e = CacheEntry(task, write, node, record, value, len(key) + (len(value) if value else 0) + _OVERHEAD)
        self._entries[ck] = e  # (re-)dirtied: last in flush and eviction order
        self.bytes += e.size
        while self.bytes > self.max_bytes and self._entries:
            self.evictions += 1
            self._flush_one(next(iter(self._entries)))

    def flush(self, task_id: str | None = None, store: str | None = None, below: bytes | None = None) -> None:
        """Write and forward the dirty entries (of one task / store; with keys before ``below``),
        in dirtied order. Entries
        added meanwhile (a forwarded record updating another cached store) stay for the next
        flush, unless they belong to what is being flushed."""
        while True:
            if task_id is not None and store is not None and not self._per_store.get((task_id, store)):
                return
            keys = [ck for ck in self._entries if (task_id is None or ck[0] == task_id) and (store is None or ck[1] == store)
                    and (below is None or ck[2] < below)]
            if not keys:
                return
            for ck in keys:
                self._flush_one(ck)

    def drop(self, task_id: str) -> None:
        """Forget a closed task's dirty entries without writing them (closing without a commit:
        its offsets were not committed either, so the records are processed again)."""
        for ck in [ck for ck in self._entries if ck[0] == task_id]:
            self.bytes -= self._entries.pop(ck).size
            self._per_store[ck[:2]] -= 1

    def _flush_one(self, ck: tuple[str, str, bytes]) -> None:
        e = self._entries.pop(ck, None)
        if e is None:
            return
        self.bytes -= e.size
        self._per_store[ck[:2]] -= 1
        self.flushed += 1
        e.task.forward_flushed(e.node, e.record, lambda: e.write(ck[2], e.value))
