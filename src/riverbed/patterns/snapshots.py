"""Snapshots: an aggregate's state at a version, so a load replays only the later events.

A snapshot records the aggregate version it covers, the event partition and offset of that
version's event (the replay starts just after it), the shape version of the state
(``Aggregate.snapshot_version``) and the state as JSON. Stores: ``SqliteSnapshotStore``,
``PostgresSnapshotStore`` and ``KafkaSnapshotStore`` (a compacted topic, key = type:id).
A policy says when to take one: ``EveryNEvents(100)``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from riverbed import client
from riverbed.client import ClusterSettings

from .envelope import format_time, parse_time, utc_now

log = logging.getLogger("riverbed.patterns.snapshots")


@dataclass(frozen=True)
class Snapshot:
    aggregate_type: str
    aggregate_id: str
    version: int  # the aggregate version the state includes
    partition: int
    offset: int  # offset of the event that made `version`
    schema_version: int  # Aggregate.snapshot_version when it was taken
    state: str  # JSON of the aggregate's fields (kept as text: a corrupt one is detected on use)
    event_time: datetime  # time of the event that made `version` (for time travel)
    taken_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "aggregateType": self.aggregate_type, "aggregateId": self.aggregate_id, "version": self.version,
            "partition": self.partition, "offset": self.offset, "schemaVersion": self.schema_version,
            "state": self.state, "eventTime": format_time(self.event_time), "takenAt": format_time(self.taken_at),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Snapshot:
        return cls(str(obj["aggregateType"]), str(obj["aggregateId"]), int(obj["version"]), int(obj["partition"]), int(obj["offset"]),
                   int(obj["schemaVersion"]), str(obj["state"]), parse_time(obj["eventTime"]), parse_time(obj["takenAt"]))


class SnapshotStore(Protocol):
    def put(self, snapshot: Snapshot) -> None: ...

    def get(self, aggregate_type: str, aggregate_id: str) -> Snapshot | None: ...

    def delete(self, aggregate_type: str, aggregate_id: str) -> None: ...

    def for_partition(self, aggregate_type: str, partition: int) -> list[Snapshot]:
        """Every snapshot of the aggregates in an event partition (for an owner's restore)."""
        ...


@dataclass(frozen=True)
class EveryNEvents:
    """Take a snapshot each time the version crosses a multiple of ``n``."""

    n: int = 100

    def due(self, old_version: int, new_version: int) -> bool:
        return new_version // self.n > old_version // self.n


_DDL = """CREATE TABLE IF NOT EXISTS {t} (
    aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, version BIGINT NOT NULL,
    part INTEGER NOT NULL, "offset" BIGINT NOT NULL, schema_version INTEGER NOT NULL,
    state TEXT NOT NULL, event_time TEXT NOT NULL, taken_at TEXT NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id))"""
_COLS = 'aggregate_type, aggregate_id, version, part, "offset", schema_version, state, event_time, taken_at'


def _row(s: Snapshot) -> tuple[Any, ...]:
    return (s.aggregate_type, s.aggregate_id, s.version, s.partition, s.offset, s.schema_version, s.state, format_time(s.event_time), format_time(s.taken_at))


def _from_row(r: Any) -> Snapshot:
    return Snapshot(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), int(r[5]), r[6], parse_time(r[7]), parse_time(r[8]))


class SqliteSnapshotStore:
    """Snapshots in a SQLite file (one row per aggregate: the newest snapshot)."""

    def __init__(self, path: str, table: str = "snapshots") -> None:
        self.table = table
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_DDL.format(t=table))
        self._lock = threading.Lock()

    def put(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._db.execute(f"INSERT OR REPLACE INTO {self.table} ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?)", _row(snapshot))

    def get(self, aggregate_type: str, aggregate_id: str) -> Snapshot | None:
        with self._lock:
            r = self._db.execute(f"SELECT {_COLS} FROM {self.table} WHERE aggregate_type=? AND aggregate_id=?", (aggregate_type, aggregate_id)).fetchone()
        return None if r is None else _from_row(r)

    def delete(self, aggregate_type: str, aggregate_id: str) -> None:
        with self._lock:
            self._db.execute(f"DELETE FROM {self.table} WHERE aggregate_type=? AND aggregate_id=?", (aggregate_type, aggregate_id))

    def for_partition(self, aggregate_type: str, partition: int) -> list[Snapshot]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLS} FROM {self.table} WHERE aggregate_type=? AND part=?", (aggregate_type, partition)).fetchall()
        return [_from_row(r) for r in rows]

    def close(self) -> None:
        self._db.close()


class PostgresSnapshotStore:
    """Snapshots in a PostgreSQL table (psycopg 3)."""

    def __init__(self, dsn: str, table: str = "riverbed_snapshots") -> None:
        import psycopg

        self.table = table
        self._db = psycopg.connect(dsn, autocommit=True)
        self._db.execute(_DDL.format(t=table))
        self._lock = threading.Lock()

    def put(self, snapshot: Snapshot) -> None:
        sql = (f"INSERT INTO {self.table} ({_COLS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET "
               'version=EXCLUDED.version, part=EXCLUDED.part, "offset"=EXCLUDED."offset", schema_version=EXCLUDED.schema_version, '
               "state=EXCLUDED.state, event_time=EXCLUDED.event_time, taken_at=EXCLUDED.taken_at")
        with self._lock:
            self._db.execute(sql, _row(snapshot))

    def get(self, aggregate_type: str, aggregate_id: str) -> Snapshot | None:
        with self._lock:
            r = self._db.execute(f"SELECT {_COLS} FROM {self.table} WHERE aggregate_type=%s AND aggregate_id=%s", (aggregate_type, aggregate_id)).fetchone()
        return None if r is None else _from_row(r)

    def delete(self, aggregate_type: str, aggregate_id: str) -> None:
        with self._lock:
            self._db.execute(f"DELETE FROM {self.table} WHERE aggregate_type=%s AND aggregate_id=%s", (aggregate_type, aggregate_id))

    def for_partition(self, aggregate_type: str, partition: int) -> list[Snapshot]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLS} FROM {self.table} WHERE aggregate_type=%s AND part=%s", (aggregate_type, partition)).fetchall()
        return [_from_row(r) for r in rows]

    def close(self) -> None:
        self._db.close()


class KafkaSnapshotStore:
    """Snapshots in a compacted topic (key ``<type>:<id>``, value the snapshot as JSON; a
    tombstone deletes). The topic is read into memory once and followed on each ``get``."""

    def __init__(self, settings: ClusterSettings, topic: str, partitions: int = 1) -> None:
        self.topic = topic
        client.ensure_topics(client.admin(settings), {topic: (partitions, {"cleanup.policy": "compact"})})
        self._producer = client.producer(settings, **{"linger.ms": 0})
        self._consumer = client.consumer(settings, f"riverbed-snapshots-{uuid.uuid4().hex[:8]}", **{"enable.partition.eof": True, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10})
        md = self._consumer.list_topics(topic, timeout=30).topics[topic]
        self._parts = sorted(md.partitions)
        self._consumer.assign([TopicPartition(topic, p, 0) for p in self._parts])
        self._cache: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def _catch_up(self, timeout: float = 30.0) -> None:
        ends = {}
        for p in self._parts:
            _, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout)
            ends[p] = high
        pos = {tp.partition: tp.offset for tp in self._consumer.position([TopicPartition(self.topic, p) for p in self._parts])}
        waiting = {p for p in self._parts if ends[p] > max(pos.get(p, 0), 0)}
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            msgs: list[Any] = self._consumer.consume(1000, 0.05)
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        waiting.discard(m.partition())
                        continue
                    raise KafkaException(err)
                key = (m.key() or b"").decode()
                value = m.value()
                self._cache[key] = None if value is None else value.decode(errors="replace")
                if m.offset() + 1 >= ends[m.partition()]:
                    waiting.discard(m.partition())

    def put(self, snapshot: Snapshot) -> None:
        key = f"{snapshot.aggregate_type}:{snapshot.aggregate_id}"
        value = json.dumps(snapshot.to_json(), separators=(",", ":"))
        self._producer.produce(self.topic, key=key.encode(), value=value.encode())
        self._producer.flush(30)
        with self._lock:
            self._cache[key] = value

    def put_raw(self, aggregate_type: str, aggregate_id: str, value: bytes) -> None:
        """Writes any bytes as a snapshot (for fault-injection tests and repairs)."""
        self._producer.produce(self.topic, key=f"{aggregate_type}:{aggregate_id}".encode(), value=value)
        self._producer.flush(30)

    def get(self, aggregate_type: str, aggregate_id: str) -> Snapshot | None:
        key = f"{aggregate_type}:{aggregate_id}"
        with self._lock:
            self._catch_up()
            raw = self._cache.get(key)
        if raw is None:
            return None
        try:
            return Snapshot.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("snapshot %s in %s is corrupt (%s); ignoring it", key, self.topic, exc)
            return None

    def for_partition(self, aggregate_type: str, partition: int) -> list[Snapshot]:
        with self._lock:
            self._catch_up()
            items = [(k, v) for k, v in self._cache.items() if v is not None and k.startswith(f"{aggregate_type}:")]
        out = []
        for key, raw in items:
            try:
                snap = Snapshot.from_json(json.loads(raw))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("snapshot %s in %s is corrupt (%s); ignoring it", key, self.topic, exc)
                continue
            if snap.partition == partition:
                out.append(snap)
        return out

    def delete(self, aggregate_type: str, aggregate_id: str) -> None:
        key = f"{aggregate_type}:{aggregate_id}"
        self._producer.produce(self.topic, key=key.encode(), value=None)
        self._producer.flush(30)
        with self._lock:
            self._cache[key] = None

    def close(self) -> None:
        self._producer.flush(5)
        self._producer.close()
        self._consumer.close()


def make_snapshot(aggregate_type: str, aggregate_id: str, version: int, partition: int, offset: int, schema_version: int, state: dict[str, Any], event_time: datetime) -> Snapshot:
    return Snapshot(aggregate_type, aggregate_id, version, partition, offset, schema_version, json.dumps(state, separators=(",", ":"), sort_keys=True), event_time, utc_now())
