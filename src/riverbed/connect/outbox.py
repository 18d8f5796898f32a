"""The transactional outbox: Debezium's outbox ``EventRouter`` applied to captured outbox rows,
a helper that writes an outbox row inside the caller's own transaction (psycopg 3 connection or
SQLAlchemy session), and a polling relay for databases without logical replication.

The outbox table (column names configurable, Debezium's defaults)::

    CREATE TABLE event_outbox (
        id uuid PRIMARY KEY, aggregatetype text NOT NULL, aggregateid text NOT NULL,
        type text NOT NULL, payload jsonb, created_at timestamptz NOT NULL DEFAULT clock_timestamp());
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

from ..client import ClusterSettings, admin, ensure_topics, producer
from .config import OutboxConfig
from .debezium import TableSchema, dumps

log = logging.getLogger("riverbed.connect")

__all__ = ["OUTBOX_DDL", "EventRouter", "PollingRelay", "write_outbox_event", "write_outbox_event_async"]

OUTBOX_DDL = """CREATE TABLE IF NOT EXISTS {table} (
    id uuid PRIMARY KEY,
    aggregatetype text NOT NULL,
    aggregateid text NOT NULL,
    type text NOT NULL,
    payload jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
)"""

Headers = list[tuple[str, str | bytes | None]]
Routed = tuple[str, bytes | None, bytes | None, Headers, Any]


class EventRouter:
    """Debezium's outbox EventRouter: an outbox insert becomes a record on
    ``outbox.event.<aggregatetype>`` (``route.topic.replacement``), keyed by ``aggregateid``,
    the payload as value, the event id in an ``id`` header (and additional fields as headers or
    envelope fields). Updates are ignored with a warning and deletes silently, as Debezium does."""

    def __init__(self, cfg: OutboxConfig, value_schemas: bool = False) -> None:
        self.cfg = cfg
        self.value_schemas = value_schemas
        self._warned = False

    def applies(self, ts: TableSchema) -> bool:
        return self.cfg.table is None or self.cfg.table == f"{ts.schema}.{ts.table}"

    def route(self, ts: TableSchema, op: str, row: Mapping[str, Any] | None) -> Routed | None:
        c = self.cfg
        if op == "u" and not self._warned:
            self._warned = True
            log.warning("outbox %s.%s: updates of outbox rows are ignored", ts.schema, ts.table)
        if op not in ("c", "r") or row is None:
            return None
        missing = [f for f in (c.field_event_id, c.route_by_field) if f not in row]
        if missing:
            log.warning("outbox %s.%s: row without %s; skipped", ts.schema, ts.table, ", ".join(missing))
            return None
        return route_row(c, row, self.value_schemas)


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v) if isinstance(v, dict | list) else str(v)


def route_row(c: OutboxConfig, row: Mapping[str, Any], value_schemas: bool = False) -> Routed:
    """topic, key, value, headers and event id of one outbox row (column name -> value, the
    payload as JSON text or an already parsed object)."""
    topic = c.route_topic_replacement.replace("${routedByValue}", _text(row[c.route_by_field]))
    key_v = row.get(c.field_event_key)
    key = None if key_v is None else _text(key_v).encode()
    event_id = row[c.field_event_id]
    headers: Headers = [("id", _text(event_id).encode())]
    envelope_fields: dict[str, Any] = {}
    for column, where, alias in c.additional_placement:
        v = row.get(column)
        if where == "header":
            if v is not None:
                headers.append((alias, _text(v).encode()))
        else:
            envelope_fields[alias] = v
    payload = row.get(c.field_payload)
    if payload is None:
        value = None
    else:
        text = _text(payload)
        if c.expand_json_payload:
            body: Any = json.loads(text)
            value = dumps({"payload": body, **envelope_fields}) if envelope_fields else text.encode()
        elif envelope_fields:
            value = dumps({"payload": text, **envelope_fields})
        elif value_schemas:
            value = dumps({"schema": {"type": "string", "optional": True, "name": "io.debezium.data.Json", "version": 1}, "payload": text})
        else:
            value = dumps(text)
    return topic, key, value, headers, event_id


def write_outbox_event(
    target: Any,
    aggregatetype: str,
    aggregateid: str | int,
    event_type: str,
    payload: Any,
    table: str = "event_outbox",
    event_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """INSERT one outbox row inside the caller's transaction: `target` is a psycopg 3
    connection or cursor (the row commits or rolls back with the caller's own writes), or a
    SQLAlchemy Session / Connection. `table` may be 'schema.table'. Returns the event id."""
    eid = event_id or uuid.uuid4()
    body = payload if isinstance(payload, str) else json.dumps(payload)
    parts = table.split(".")
    if isinstance(target, psycopg.Connection | psycopg.Cursor):
        q = sql.SQL("INSERT INTO {} (id, aggregatetype, aggregateid, type, payload) VALUES (%s, %s, %s, %s, %s::jsonb)").format(sql.Identifier(*parts))
        target.execute(q, (eid, aggregatetype, str(aggregateid), event_type, body))
        return eid
    if hasattr(target, "execute") and type(target).__module__.startswith("sqlalchemy"):
        from sqlalchemy import text  # optional dependency: only when the caller uses SQLAlchemy

        quoted = ".".join('"' + p.replace('"', '""') + '"' for p in parts)
        target.execute(
            text(f"INSERT INTO {quoted} (id, aggregatetype, aggregateid, type, payload) VALUES (:id, :at, :aid, :ty, CAST(:p AS jsonb))"),
            {"id": str(eid), "at": aggregatetype, "aid": str(aggregateid), "ty": event_type, "p": body},
        )
        return eid
    raise TypeError(f"write_outbox_event wants a psycopg Connection/Cursor or a SQLAlchemy Session/Connection, not {type(target).__name__}")


async def write_outbox_event_async(
    conn: psycopg.AsyncConnection[Any] | psycopg.AsyncCursor[Any],
    aggregatetype: str,
    aggregateid: str | int,
    event_type: str,
    payload: Any,
    table: str = "event_outbox",
    event_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """write_outbox_event for a psycopg 3 AsyncConnection / AsyncCursor (an async web handler)."""
    eid = event_id or uuid.uuid4()
    body = payload if isinstance(payload, str) else json.dumps(payload)
    q = sql.SQL("INSERT INTO {} (id, aggregatetype, aggregateid, type, payload) VALUES (%s, %s, %s, %s, %s::jsonb)").format(sql.Identifier(*table.split(".")))
    await conn.execute(q, (eid, aggregatetype, str(aggregateid), event_type, body))
    return eid


class PollingRelay:
    """The lecture's "separate worker": polls the outbox table, publishes the rows with the
    EventRouter's mapping, and deletes them once Kafka acknowledged them.

    Trade-offs against log-based capture (docs/connect.md): polling load on the database and a
    latency of up to `poll_interval`; at-least-once (a crash between the acknowledgement and the
    DELETE re-publishes the batch; consumers deduplicate on the ``id`` header); order is the
    order of `order_by` (created_at, then id), which is not commit order when transactions
    overlap; rows are locked with FOR UPDATE SKIP LOCKED, so several relays can share a table.
    """

    def __init__(self, conninfo: str, cluster: ClusterSettings, table: str = "event_outbox", config: OutboxConfig | None = None,
                 poll_interval: float = 0.2, batch_size: int = 500, order_by: str = "created_at") -> None:
        self.conninfo, self.cluster, self.table = conninfo, cluster, table
        self.cfg = config or OutboxConfig()
        self.poll_interval, self.batch_size, self.order_by = poll_interval, batch_size, order_by
        self.published = 0
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def poll_once(self, conn: psycopg.Connection[Any], prod: Any, topics: set[str]) -> int:
        c = self.cfg
        parts = self.table.split(".")
        q = sql.SQL("SELECT * FROM {} ORDER BY {}, {} LIMIT %s FOR UPDATE SKIP LOCKED").format(
            sql.Identifier(*parts), sql.Identifier(self.order_by), sql.Identifier(c.field_event_id))
        with conn.transaction():
            cur = conn.execute(q, (self.batch_size,))
            names = [d.name for d in cur.description or []]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
            if not rows:
                return 0
            errors: list[Any] = []
            ids = []
            for row in rows:
                topic, key, value, headers, eid = route_row(c, row)
                if topic not in topics:
                    ensure_topics(admin(self.cluster), {topic: (1, {})})
                    topics.add(topic)
                prod.produce(topic, key=key, value=value, headers=headers, on_delivery=lambda err, _m: errors.append(err) if err else None)
                ids.append(eid)
            if prod.flush(30) > 0 or errors:
                raise RuntimeError(f"outbox relay: Kafka did not acknowledge the batch: {errors[:1]}")
            conn.execute(sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(sql.Identifier(*parts), sql.Identifier(c.field_event_id)), (ids,))
        self.published += len(rows)
        return len(rows)

    def run(self) -> None:
        prod = producer(self.cluster, **{"linger.ms": 5})
        topics: set[str] = set()
        with psycopg.connect(self.conninfo) as conn:
            while not self._stop.is_set():
                if self.poll_once(conn, prod, topics) < self.batch_size:
                    self._stop.wait(self.poll_interval)
        time.sleep(0)
