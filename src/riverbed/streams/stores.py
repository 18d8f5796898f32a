"""State stores: an ordered bytes key-value engine (in memory or SQLite) and typed facades.

Every store is a map of bytes to bytes kept in key order. A *window store* is the same engine
with keys ``0x00 | window start (8 bytes, big-endian) | record key`` so that windows sort by
start and closing or expiring them is one range scan; ``0x01 | name`` keys hold the store's own
bookkeeping (the close watermark of a windowed aggregation), so that it is restored from the
changelog with the data.

Writes go to the engine at once and to the changelog through the task (``log``). The SQLite
engine keeps them in one open SQLite transaction that commits, together with the changelog
offset they reached (the *checkpoint*), only when the task commits. A crash therefore leaves the
file as of the last commit with the checkpoint that matches it, and a restart replays the
changelog from there (docs/adr/0007-streams-state-store.md).
"""

from __future__ import annotations

import bisect
import sqlite3
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .serdes import Serde
from .windows import Window

if TYPE_CHECKING:
    from .cache import RecordCache

LogFn = Callable[[bytes, bytes | None], None]

_WINDOW = b"\x00"
_META = b"\x01"
_START = struct.Struct(">q")


class Engine(ABC):
    """An ordered bytes->bytes map with a commit point."""

    @abstractmethod
    def get(self, key: bytes) -> bytes | None: ...

    @abstractmethod
    def put(self, key: bytes, value: bytes | None) -> None:
        """Set ``key``; ``None`` deletes it."""

    @abstractmethod
    def range(self, lo: bytes, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """Entries with ``lo <= key < hi`` (``hi`` None: to the end), in key order."""

    @abstractmethod
    def commit(self, checkpoint: int | None) -> None:
        """Make the writes so far durable with the changelog offset they reached."""

    @abstractmethod
    def checkpoint(self) -> int | None:
        """The changelog offset the committed state reflects (None: unknown, restore all)."""

    @abstractmethod
    def wipe(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def count(self) -> int:
        return sum(1 for _ in self.range(b"", None))

    def put_many(self, items: list[tuple[bytes, bytes | None]]) -> None:
        """Apply writes in order (restores use it; engines may batch)."""
        for k, v in items:
            self.put(k, v)


class MemoryEngine(Engine):
    """A dict plus a sorted key list; for tests and the test driver. Forgets on close."""

    def __init__(self) -> None:
        self._d: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []
        self._cp: int | None = None

    def get(self, key: bytes) -> bytes | None:
        return self._d.get(key)

    def put(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            if self._d.pop(key, None) is not None:
                del self._keys[bisect.bisect_left(self._keys, key)]
            return
        if key not in self._d:
            bisect.insort(self._keys, key)
        self._d[key] = value

    def range(self, lo: bytes, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        i = bisect.bisect_left(self._keys, lo)
        j = len(self._keys) if hi is None else bisect.bisect_left(self._keys, hi)
        for k in self._keys[i:j]:  # a copy: callers may write while iterating
            yield k, self._d[k]

    def commit(self, checkpoint: int | None) -> None:
        if checkpoint is not None:
            self._cp = checkpoint

    def checkpoint(self) -> int | None:
        return self._cp

    def wipe(self) -> None:
        self._d.clear()
        self._keys.clear()
        self._cp = None

    def close(self) -> None:
        pass

    def count(self) -> int:
        return len(self._d)


class SqliteEngine(Engine):
    """One SQLite file per store and task; writes commit only with a checkpoint."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level="DEFERRED", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER)")
        self._db.commit()

    def get(self, key: bytes) -> bytes | None:
        row = self._db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM kv WHERE k = ?", (key,))
        else:
            self._db.execute("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (key, value))

    def put_many(self, items: list[tuple[bytes, bytes | None]]) -> None:
        last: dict[bytes, bytes | None] = {}
        for k, v in items:  # the last write per key wins, as applying them in order would
            last[k] = v
        dels = [(k,) for k, v in last.items() if v is None]
        puts = [(k, v) for k, v in last.items() if v is not None]
        if dels:
            self._db.executemany("DELETE FROM kv WHERE k = ?", dels)
        if puts:
            self._db.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", puts)

    def range(self, lo: bytes, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        if hi is None:
            rows = self._db.execute("SELECT k, v FROM kv WHERE k >= ? ORDER BY k", (lo,)).fetchall()
        else:
            rows = self._db.execute("SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k", (lo, hi)).fetchall()
        for k, v in rows:
            yield bytes(k), bytes(v)

    def commit(self, checkpoint: int | None) -> None:
        if checkpoint is not None:
            self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('checkpoint', ?)", (checkpoint,))
        self._db.commit()

    def checkpoint(self) -> int | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = 'checkpoint'").fetchone()
        return None if row is None else int(row[0])

    def wipe(self) -> None:
        self._db.execute("DELETE FROM kv")
        self._db.execute("DELETE FROM meta")
        self._db.commit()

    def close(self) -> None:
        self._db.rollback()  # uncommitted writes belong to offsets that were not committed
        self._db.close()

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM kv").fetchone()[0])


def cached_range(store: Any, lo: bytes, hi: bytes | None) -> list[tuple[bytes, bytes]]:
    """The engine's entries in ``[lo, hi)`` with the store's dirty cache entries laid over them."""
    items = list(store.engine.range(lo, hi))
    cache = store.cache
    if cache is None:
        return items
    dirty = [(k, e.value) for k, e in cache.entries_of(store.task_id, store.name) if k >= lo and (hi is None or k < hi)]
    if not dirty:
        return items
    merged = dict(items)
    for k, v in dirty:
        if v is None:
            merged.pop(k, None)
        else:
            merged[k] = v
    return sorted(merged.items())


class KeyValueStore:
    """A typed view of an engine, logging every write to the changelog."""

    def __init__(self, name: str, engine: Engine, key_serde: Serde[Any], value_serde: Serde[Any], log: LogFn | None) -> None:
        self.name = name
        self.engine = engine
        self.key_serde = key_serde
        self.value_serde = value_serde
        self._log = log
        self.cache: RecordCache | None = None  # the task's record cache (aggregations write through it)
        self.task_id = ""

    def _k(self, key: Any) -> bytes:
        raw = self.key_serde.serialize(key)
        if raw is None:
            raise ValueError(f"store {self.name}: a key is needed (got None)")
        return raw

    def get_bytes(self, k: bytes) -> bytes | None:
        """The value bytes of ``k``: a dirty cache entry first, else the engine's."""
        if self.cache is not None:
            e = self.cache.get(self.task_id, self.name, k)
            if e is not None:
                return e.value
        return self.engine.get(k)

    def get(self, key: Any) -> Any:
        raw = self.get_bytes(self._k(key))
        return None if raw is None else self.value_serde.deserialize(raw)

    def write(self, k: bytes, v: bytes | None) -> None:
        """Write to the engine and the changelog (bypassing the cache)."""
        self.engine.put(k, v)
        if self._log is not None:
            self._log(k, v)

    def put(self, key: Any, value: Any) -> None:
        self.write(self._k(key), None if value is None else self.value_serde.serialize(value))

    def delete(self, key: Any) -> None:
        self.put(key, None)

    def all(self) -> Iterator[tuple[Any, Any]]:
        """Every entry in key-byte order (Kafka's ReadOnlyKeyValueStore#all), dirty cache
        entries included."""
        for k, v in cached_range(self, b"", None):
            yield self.key_serde.deserialize(k), self.value_serde.deserialize(v)

    def range(self, lo: Any = None, hi: Any = None) -> Iterator[tuple[Any, Any]]:
        """Entries with ``lo <= key <= hi`` by serialized key bytes, both ends inclusive, ``None``
        unbounded (Kafka's ReadOnlyKeyValueStore#range: ordered by the serialized key, so a
        range over, e.g., JSON or LONG keys follows their bytes, not their values)."""
        lo_b = b"" if lo is None else self._k(lo)
        hi_b = None if hi is None else self._k(hi) + b"\x00"  # the first key after hi
        if hi_b is not None and hi_b <= lo_b:
            return
        for k, v in cached_range(self, lo_b, hi_b):
            yield self.key_serde.deserialize(k), self.value_serde.deserialize(v)

    def __len__(self) -> int:
        return self.engine.count()


def window_key(start: int, key: bytes) -> bytes:
    return _WINDOW + _START.pack(start) + key


def split_window_key(raw: bytes) -> tuple[int, bytes]:
    return int(_START.unpack_from(raw, 1)[0]), raw[9:]


class WindowStore:
    """Aggregates per (key, window start), ordered by window start.

    A *timestamped* store (time-window aggregations, Kafka's TimestampedWindowStore) keeps the
    largest timestamp of the records in each window with its aggregate: engine (and changelog)
    values are ``timestamp (8 bytes) | value``; ``get_raw``/``starting_between``/``all`` strip it,
    ``get_ts``/``starting_between_ts`` return it."""

    def __init__(self, name: str, engine: Engine, size_ms: int, key_serde: Serde[Any], value_serde: Serde[Any],
                 log: LogFn | None, timestamped: bool = False) -> None:
        self.name = name
        self.engine = engine
        self.size_ms = size_ms
        self.key_serde = key_serde
        self.value_serde = value_serde
        self._log = log
        self.timestamped = timestamped
        self.cache: RecordCache | None = None
        self.task_id = ""

    def _split(self, v: bytes) -> tuple[int, bytes]:
        if self.timestamped:
            return int(_START.unpack_from(v)[0]), v[8:]
        return -1, v

    def write(self, raw: bytes, value: bytes | None) -> None:
        self._write(raw, value)

    def _write(self, raw: bytes, value: bytes | None) -> None:
        self.engine.put(raw, value)
        if self._log is not None:
            self._log(raw, value)

    def key_bytes(self, key: Any) -> bytes:
        raw = self.key_serde.serialize(key)
        if raw is None:
            raise ValueError(f"store {self.name}: a key is needed (got None)")
        return raw

    def _get_stored(self, raw: bytes) -> bytes | None:
        if self.cache is not None:
            e = self.cache.get(self.task_id, self.name, raw)
            if e is not None:
                return e.value
        return self.engine.get(raw)

    def get_ts(self, key: bytes, start: int) -> tuple[bytes, int] | None:
        """(value bytes, largest record timestamp) of a window (timestamp -1: not timestamped)."""
        v = self._get_stored(window_key(start, key))
        if v is None:
            return None
        ts, vb = self._split(v)
        return vb, ts

    def get_raw(self, key: bytes, start: int) -> bytes | None:
        v = self._get_stored(window_key(start, key))
        return None if v is None else self._split(v)[1]

    def encode(self, value: bytes, ts: int) -> bytes:
        return _START.pack(ts) + value if self.timestamped else value

    def put_raw(self, key: bytes, start: int, value: bytes | None, ts: int = 0) -> None:
        self._write(window_key(start, key), None if value is None else self.encode(value, ts))

    def get(self, key: Any, start: int) -> Any:
        raw = self.get_raw(self.key_bytes(key), start)
        return None if raw is None else self.value_serde.deserialize(raw)

    def fetch(self, key: Any, time_from: int, time_to: int) -> list[tuple[Window, Any]]:
        """Kafka's ReadOnlyWindowStore#fetch(key, timeFrom, timeTo): ``key``'s windows whose
        start is in ``[time_from, time_to]``, oldest first (dirty cache entries included)."""
        kb = self.key_bytes(key)
        return [(Window(s, s + self.size_ms), v) for s, k, v in self._query(time_from, time_to) if k == kb]

    def fetch_all(self, time_from: int, time_to: int) -> list[tuple[Any, Window, Any]]:
        """Kafka's ReadOnlyWindowStore#fetchAll(timeFrom, timeTo): every key's windows whose
        start is in ``[time_from, time_to]``, by start then key bytes."""
        return [(self.key_serde.deserialize(k), Window(s, s + self.size_ms), v) for s, k, v in self._query(time_from, time_to)]

    def _query(self, time_from: int, time_to: int) -> Iterator[tuple[int, bytes, Any]]:
        lo, hi = max(time_from, 0), min(time_to, (1 << 63) - 2) + 1
        if hi <= lo:
            return
        for raw, v in cached_range(self, window_key(lo, b""), window_key(hi, b"")):
            start, key = split_window_key(raw)
            yield start, key, self.value_serde.deserialize(self._split(v)[1])

    def starting_between(self, lo: int, hi: int) -> Iterator[tuple[int, bytes, bytes]]:
        """Windows with ``lo <= start < hi``: (start, key bytes, value bytes), by start then key
        (dirty cache entries included)."""
        lo = max(lo, 0)
        if hi <= lo:
            return
        for raw, v in cached_range(self, window_key(lo, b""), window_key(hi, b"")):
            start, key = split_window_key(raw)
            yield start, key, self._split(v)[1]

    def starting_between_ts(self, lo: int, hi: int) -> Iterator[tuple[int, bytes, bytes, int]]:
        """As ``starting_between``, with each window's largest record timestamp."""
        lo = max(lo, 0)
        if hi <= lo:
            return
        for raw, v in self.engine.range(window_key(lo, b""), window_key(hi, b"")):
            start, key = split_window_key(raw)
            ts, vb = self._split(v)
            yield start, key, vb, ts

    def expire_before(self, start: int) -> int:
        """Drop windows that start before ``start`` (retention); returns how many."""
        gone = [raw for raw, _ in self.engine.range(window_key(0, b""), window_key(max(start, 0), b""))]
        for raw in gone:
            self._write(raw, None)
        return len(gone)

    def all(self) -> Iterator[tuple[Any, int, Any]]:
        """(key, window start, value) for every window, by start then key."""
        for raw, v in cached_range(self, _WINDOW, _META):
            start, key = split_window_key(raw)
            yield self.key_serde.deserialize(key), start, self.value_serde.deserialize(self._split(v)[1])

    def get_meta(self, name: str) -> int | None:
        raw = self._get_stored(_META + name.encode())
        return None if raw is None else int(_START.unpack(raw)[0])

    def put_meta(self, name: str, value: int) -> None:
        self._write(_META + name.encode(), _START.pack(value))

    @staticmethod
    def meta_entry(name: str, value: int) -> tuple[bytes, bytes]:
        """The engine key and value of a bookkeeping entry (to write it through the cache)."""
        return _META + name.encode(), _START.pack(value)
