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
from typing import Any

from .serdes import Serde

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


class KeyValueStore:
    """A typed view of an engine, logging every write to the changelog."""

    def __init__(self, name: str, engine: Engine, key_serde: Serde[Any], value_serde: Serde[Any], log: LogFn | None) -> None:
        self.name = name
        self.engine = engine
        self.key_serde = key_serde
        self.value_serde = value_serde
        self._log = log

    def _k(self, key: Any) -> bytes:
        raw = self.key_serde.serialize(key)
        if raw is None:
            raise ValueError(f"store {self.name}: a key is needed (got None)")
        return raw

    def get(self, key: Any) -> Any:
        raw = self.engine.get(self._k(key))
        return None if raw is None else self.value_serde.deserialize(raw)

    def put(self, key: Any, value: Any) -> None:
        k = self._k(key)
        v = None if value is None else self.value_serde.serialize(value)
        self.engine.put(k, v)
        if self._log is not None:
            self._log(k, v)

    def delete(self, key: Any) -> None:
        self.put(key, None)

    def all(self) -> Iterator[tuple[Any, Any]]:
        for k, v in self.engine.range(b"", None):
            yield self.key_serde.deserialize(k), self.value_serde.deserialize(v)

    def __len__(self) -> int:
        return self.engine.count()


def window_key(start: int, key: bytes) -> bytes:
    return _WINDOW + _START.pack(start) + key


def split_window_key(raw: bytes) -> tuple[int, bytes]:
    return int(_START.unpack_from(raw, 1)[0]), raw[9:]


class WindowStore:
    """Aggregates per (key, window start), ordered by window start."""

    def __init__(self, name: str, engine: Engine, size_ms: int, key_serde: Serde[Any], value_serde: Serde[Any], log: LogFn | None) -> None:
        self.name = name
        self.engine = engine
        self.size_ms = size_ms
        self.key_serde = key_serde
        self.value_serde = value_serde
        self._log = log

    def _write(self, raw: bytes, value: bytes | None) -> None:
        self.engine.put(raw, value)
        if self._log is not None:
            self._log(raw, value)

    def key_bytes(self, key: Any) -> bytes:
        raw = self.key_serde.serialize(key)
        if raw is None:
            raise ValueError(f"store {self.name}: a key is needed (got None)")
        return raw

    def get_raw(self, key: bytes, start: int) -> bytes | None:
        return self.engine.get(window_key(start, key))

    def put_raw(self, key: bytes, start: int, value: bytes | None) -> None:
        self._write(window_key(start, key), value)

    def get(self, key: Any, start: int) -> Any:
        raw = self.get_raw(self.key_bytes(key), start)
        return None if raw is None else self.value_serde.deserialize(raw)

    def starting_between(self, lo: int, hi: int) -> Iterator[tuple[int, bytes, bytes]]:
        """Windows with ``lo <= start < hi``: (start, key bytes, value bytes), by start then key."""
        lo = max(lo, 0)
        if hi <= lo:
            return
        for raw, v in self.engine.range(window_key(lo, b""), window_key(hi, b"")):
            start, key = split_window_key(raw)
            yield start, key, v

    def expire_before(self, start: int) -> int:
        """Drop windows that start before ``start`` (retention); returns how many."""
        gone = [raw for raw, _ in self.engine.range(window_key(0, b""), window_key(max(start, 0), b""))]
        for raw in gone:
            self._write(raw, None)
        return len(gone)

    def all(self) -> Iterator[tuple[Any, int, Any]]:
        """(key, window start, value) for every window, by start then key."""
        for raw, v in self.engine.range(_WINDOW, _META):
            start, key = split_window_key(raw)
            yield self.key_serde.deserialize(key), start, self.value_serde.deserialize(v)

    def get_meta(self, name: str) -> int | None:
        raw = self.engine.get(_META + name.encode())
        return None if raw is None else int(_START.unpack(raw)[0])

    def put_meta(self, name: str, value: int) -> None:
        self._write(_META + name.encode(), _START.pack(value))
