"""Idempotent consumers: drop an event whose id was already handled within a window, and the
version-id guard for per-entity ordering.

Stores: ``MemoryStore`` (bounded LRU, one process), ``SQLiteStore`` and ``PostgresStore`` (the
mark can share a transaction with the handler's own writes: both commit or neither), ``RedisStore`` (``SET NX
PX``, shared by every consumer of a group). ``idempotent`` marks an id only after its handler
returned, so a handler that raised, or a process that died mid-handler, leaves no mark and the
retry runs (at least once, never lost); a duplicate arriving after the mark is dropped.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

log = logging.getLogger("riverbed.messaging.dedup")


class DedupStore(Protocol):
    def seen(self, event_id: str) -> bool:
        """True when ``event_id`` was marked within the window."""
        ...

    def mark(self, event_id: str) -> None:
        """Remembers ``event_id`` for the window."""
        ...

    def claim(self, event_id: str) -> bool:
        """True the first time ``event_id`` is seen within the window (and marks it)."""
        ...

    def release(self, event_id: str) -> None:
        """Forgets ``event_id``."""
        ...


class MemoryStore:
    """At most ``max_entries`` ids, each remembered for ``window`` seconds."""

    def __init__(
        self,
        max_entries: int = 100_000,
        window: float = 24 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.window = window
        self.clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._seen:  # drop expired ids (oldest first)
            oldest, at = next(iter(self._seen.items()))
            if at > now - self.window:
                break
            del self._seen[oldest]

    def seen(self, event_id: str) -> bool:
        with self._lock:
            self._expire(self.clock())
            return event_id in self._seen

    def mark(self, event_id: str) -> None:
        self.claim(event_id)

    def claim(self, event_id: str) -> bool:
        now = self.clock()
        with self._lock:
            self._expire(now)
            if event_id in self._seen:
                return False
            self._seen[event_id] = now
            while len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
            return True

    def release(self, event_id: str) -> None:
        with self._lock:
            self._seen.pop(event_id, None)

    def __len__(self) -> int:
        return len(self._seen)


class SQLiteStore:
    """Ids in a table of a SQLite database (``path`` or an open connection)."""

    def __init__(
        self,
        db: str | sqlite3.Connection,
        window: float = 7 * 24 * 3600,
        table: str = "processed_events",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not table.isidentifier():
            raise ValueError(f"bad table name {table!r}")
        self.conn = (
            db
            if isinstance(db, sqlite3.Connection)
            else sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        )
        if self.conn.isolation_level is not None:
            raise ValueError(
                "the connection must be in autocommit mode (isolation_level=None): the store issues BEGIN/COMMIT"
            )
        self.window = window
        self.table = table
        self.clock = clock
        self._claims = 0
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (event_id TEXT PRIMARY KEY, seen_at REAL NOT NULL)"
        )

    def _claim_in(self, conn: sqlite3.Connection, event_id: str) -> bool:
        now = self.clock()
        self._claims += 1
        if self._claims % 1000 == 1:  # keep the table bounded by the window
            conn.execute(f"DELETE FROM {self.table} WHERE seen_at < ?", (now - self.window,))
        conn.execute(
            f"DELETE FROM {self.table} WHERE event_id = ? AND seen_at < ?",
            (event_id, now - self.window),
        )
        cur = conn.execute(
            f"INSERT INTO {self.table} (event_id, seen_at) VALUES (?, ?) ON CONFLICT(event_id) DO NOTHING",
            (event_id, now),
        )
        return cur.rowcount == 1

    def claim(self, event_id: str) -> bool:
        with self.transaction() as conn:
            return self._claim_in(conn, event_id)

    def seen(self, event_id: str) -> bool:
        row = self.conn.execute(
            f"SELECT seen_at FROM {self.table} WHERE event_id = ?", (event_id,)
        ).fetchone()
        return row is not None and row[0] >= self.clock() - self.window

    def mark(self, event_id: str) -> None:
        self.claim(event_id)

    def release(self, event_id: str) -> None:
        with self.transaction() as conn:
            conn.execute(f"DELETE FROM {self.table} WHERE event_id = ?", (event_id,))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def once(self, event_id: str) -> Iterator[sqlite3.Connection | None]:
        """One transaction for the mark and the handler's own writes: yields the connection the
        first time (do the work on it), None for a duplicate; an exception rolls both back."""
        with self.transaction() as conn:
            yield conn if self._claim_in(conn, event_id) else None


class PostgresStore:
    """Ids in a table of a PostgreSQL database, through a psycopg 3 connection (autocommit
    mode); ``once()`` shares a transaction with the handler's own writes."""

    def __init__(
        self,
        conn: Any,
        window: float = 7 * 24 * 3600,
        table: str = "processed_events",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not table.isidentifier():
            raise ValueError(f"bad table name {table!r}")
        if not getattr(conn, "autocommit", False):
            raise ValueError(
                "the connection must be in autocommit mode (psycopg.connect(..., autocommit=True))"
            )
        self.conn = conn
        self.window = window
        self.table = table
        self.clock = clock
        self._claims = 0
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (event_id TEXT PRIMARY KEY, seen_at DOUBLE PRECISION NOT NULL)"
        )

    def _claim_in(self, conn: Any, event_id: str) -> bool:
        now = self.clock()
        self._claims += 1
        if self._claims % 1000 == 1:
            conn.execute(f"DELETE FROM {self.table} WHERE seen_at < %s", (now - self.window,))
        # new, or expired (then taken over): one row changed; a live mark: none
        cur = conn.execute(
            f"INSERT INTO {self.table} AS t (event_id, seen_at) VALUES (%s, %s) "
            f"ON CONFLICT (event_id) DO UPDATE SET seen_at = EXCLUDED.seen_at WHERE t.seen_at < %s",
            (event_id, now, now - self.window),
        )
        return bool(cur.rowcount == 1)

    def claim(self, event_id: str) -> bool:
        with self.conn.transaction():
            return self._claim_in(self.conn, event_id)

    def seen(self, event_id: str) -> bool:
        row = self.conn.execute(
            f"SELECT seen_at FROM {self.table} WHERE event_id = %s", (event_id,)
        ).fetchone()
        return row is not None and row[0] >= self.clock() - self.window

    def mark(self, event_id: str) -> None:
        self.conn.execute(
            f"INSERT INTO {self.table} (event_id, seen_at) VALUES (%s, %s) ON CONFLICT (event_id) DO UPDATE SET seen_at = EXCLUDED.seen_at",
            (event_id, self.clock()),
        )

    def release(self, event_id: str) -> None:
        self.conn.execute(f"DELETE FROM {self.table} WHERE event_id = %s", (event_id,))

    @contextmanager
    def once(self, event_id: str) -> Iterator[Any]:
        """One transaction for the mark and the handler's own writes: yields the connection the
        first time (do the work on it), None for a duplicate; an exception rolls both back."""
        with self.conn.transaction():
            yield self.conn if self._claim_in(self.conn, event_id) else None


_MARK_SCRIPT = (
    "for i, k in ipairs(KEYS) do redis.call('SET', k, '1', 'PX', ARGV[1]) end return #KEYS"
)


class RedisStore:
    """Ids as ``<prefix><id>`` keys in Redis with a TTL of ``window`` seconds.

    ``deferred_marks=True`` sends each mark with the next ``seen`` check in one pipeline (one
    round trip per record instead of two); marks still pending when the process stops are lost
    (a later duplicate of those events runs again), so call ``flush()`` before exiting, and
    other processes see a mark only once it is sent.
    """

    def __init__(
        self,
        client: Any,
        window: float = 24 * 3600,
        prefix: str = "riverbed:dedup:",
        deferred_marks: bool = False,
    ) -> None:
        self.client = client
        self.window_ms = max(1, int(window * 1000))
        self.prefix = prefix
        self.deferred_marks = deferred_marks
        self._pending: list[str] = []

    def claim(self, event_id: str) -> bool:
        self.flush()
        return bool(self.client.set(self.prefix + event_id, b"1", nx=True, px=self.window_ms))

    def seen(self, event_id: str) -> bool:
        if not self._pending:
            return bool(self.client.exists(self.prefix + event_id))
        pipe = self.client.pipeline(transaction=False)
        for pending in self._pending:
            pipe.set(self.prefix + pending, b"1", px=self.window_ms)
        pipe.exists(self.prefix + event_id)
        results = pipe.execute()
        self._pending.clear()
        return bool(results[-1])

    def seen_many(self, event_ids: list[str]) -> list[bool]:
        """``seen`` for each id, in one round trip (with any deferred marks): one ``MGET``
        (one command for the whole batch, not one ``EXISTS`` each)."""
        if not event_ids:
            self.flush()
            return []
        keys = [self.prefix + e for e in event_ids]
        if not self._pending:
            values = self.client.mget(keys)
        else:
            pipe = self.client.pipeline(transaction=False)
            self._queue_marks(pipe, self._pending)
            pipe.mget(keys)
            values = pipe.execute()[-1]
            self._pending.clear()
        return [v is not None for v in values]

    def mark_many(self, event_ids: list[str]) -> None:
        """``mark`` for each id, in one round trip and one command (a script setting each key
        with the window as its expiry); deferred with ``deferred_marks``."""
        if self.deferred_marks:
            self._pending.extend(event_ids)
            return
        if event_ids:
            self._queue_marks(self.client, event_ids)

    def _queue_marks(self, target: Any, event_ids: list[str]) -> Any:
        keys = [self.prefix + e for e in event_ids]
        if len(keys) == 1:
            return target.set(keys[0], b"1", px=self.window_ms)
        return target.eval(_MARK_SCRIPT, len(keys), *keys, self.window_ms)

    def mark(self, event_id: str) -> None:
        if self.deferred_marks:
            self._pending.append(event_id)
        else:
            self.client.set(self.prefix + event_id, b"1", px=self.window_ms)

    def flush(self) -> None:
        """Sends the deferred marks."""
        if self._pending:
            self._queue_marks(self.client, self._pending)
            self._pending.clear()

    def release(self, event_id: str) -> None:
        self.flush()
        self.client.delete(self.prefix + event_id)


def event_id(msg: Any) -> str | None:
    """The CloudEvents id of a confluent-kafka message (``ce_id`` header, or ``id`` of a
    structured event), else None."""
    headers = msg.headers() or []
    for name, value in headers:
        if name.lower() == "ce_id" and value:
            try:
                return bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                return None
    value = msg.value()
    if (
        value
        and value[:1] == b"{"
        and any(
            n.lower() == "content-type" and v and v.startswith(b"application/cloudevents")
            for n, v in headers
        )
    ):
        try:
            doc = json.loads(value)
        except (ValueError, RecursionError):
            return None
        return str(doc["id"]) if isinstance(doc, dict) and doc.get("id") else None
    return None


def idempotent(
    handler: Callable[[Any], Any], store: DedupStore, key: Callable[[Any], str | None] = event_id
) -> Callable[[Any], Any]:
    """``handler(msg)`` at most once per event id (within the store's window). Records without
    an id are handled (with a log line): dedup cannot apply to them."""

    def run(msg: Any) -> Any:
        eid = key(msg)
        if eid is None:
            log.warning(
                "%s[%s]@%s has no event id; handled without dedup",
                msg.topic(),
                msg.partition(),
                msg.offset(),
            )
            return handler(msg)
        if store.seen(eid):
            log.info(
                "dropped duplicate event %s (%s[%s]@%s)",
                eid,
                msg.topic(),
                msg.partition(),
                msg.offset(),
            )
            return None
        result = handler(msg)
        store.mark(eid)
        return result

    return run


def seen_many(store: DedupStore, event_ids: list[str]) -> list[bool]:
    """``store.seen`` for each id: one round trip where the store has ``seen_many`` (Redis)."""
    many = getattr(store, "seen_many", None)
    return list(many(event_ids)) if many is not None else [store.seen(e) for e in event_ids]


def mark_many(store: DedupStore, event_ids: list[str]) -> None:
    """``store.mark`` for each id: one round trip where the store has ``mark_many`` (Redis)."""
    many = getattr(store, "mark_many", None)
    if many is not None:
        many(event_ids)
    else:
        for e in event_ids:
            store.mark(e)


class DedupFilter:
    """Batch deduplication for ``consume(n)`` loops: ``filter_batch(msgs)`` drops the records
    whose event id was handled before (one round trip to Redis for the whole batch) or occurs
    earlier in the same batch; ``mark_batch(msgs)`` marks the handled ones (one more round
    trip). Mark only what the handler finished: a record that failed must stay unmarked so its
    retry runs. ``DeadLetterConsumer.poll_batch(dedup=...)`` does both."""

    def __init__(self, store: DedupStore, key: Callable[[Any], str | None] = event_id) -> None:
        self.store = store
        self.key = key
        self.dropped = 0
        self._ids: dict[int, str | None] = {}  # the last batch's ids, by message identity

    def filter_batch(self, msgs: list[Any]) -> list[Any]:
        ids = [self.key(m) for m in msgs]
        self._ids = {id(m): e for m, e in zip(msgs, ids, strict=True)}
        known = seen_many(self.store, [e for e in ids if e is not None])
        seen_before = iter(known)
        in_batch: set[str] = set()
        out = []
        for m, eid in zip(msgs, ids, strict=True):
            if eid is None:
                log.warning(
                    "%s[%s]@%s has no event id; handled without dedup",
                    m.topic(),
                    m.partition(),
                    m.offset(),
                )
                out.append(m)
                continue
            if next(seen_before) or eid in in_batch:
                self.dropped += 1
                log.info(
                    "dropped duplicate event %s (%s[%s]@%s)",
                    eid,
                    m.topic(),
                    m.partition(),
                    m.offset(),
                )
                continue
            in_batch.add(eid)
            out.append(m)
        return out

    def mark_batch(self, msgs: list[Any]) -> None:
        known = self._ids
        ids = (known[id(m)] if id(m) in known else self.key(m) for m in msgs)
        mark_many(self.store, [e for e in ids if e is not None])
        self._ids = {}


class OutOfOrder(Exception):
    """An event arrived ahead of its predecessor; retry it later (the DLQ policy's retry
    topics park it)."""


def version_guard(
    handler: Callable[[Any], Any],
    version_of: Callable[[Any], tuple[str, int]],
    current: Callable[[str], int],
) -> Callable[[Any], Any]:
    """Handles an entity's events in version order: ``version_of(msg)`` -> (entity, version),
    ``current(entity)`` -> the version the store is at. The next version is handled; a version
    further ahead raises :class:`OutOfOrder` (parked and retried by the error policy); a stale
    or repeated version is dropped with a log line."""

    def run(msg: Any) -> Any:
        entity, version = version_of(msg)
        at = current(entity)
        if version <= at:
            log.info("dropped stale event for %s: version %d, store at %d", entity, version, at)
            return None
        if version > at + 1:
            raise OutOfOrder(f"{entity}: version {version} arrived while the store is at {at}")
        return handler(msg)

    return run
