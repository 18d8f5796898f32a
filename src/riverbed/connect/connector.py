"""The PostgreSQL connector: publication and slot, the initial snapshot, then streaming of the
slot's changes as Debezium change events; the slot's confirmed LSN and the offsets topic advance
only past transactions whose every record Kafka acknowledged."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ..client import ClusterSettings, admin, ensure_topics, producer
from . import pgoutput as pg
from .catalog import Catalog, SlotState, match_tables
from .config import ConnectorConfig, ConnectorError
from .debezium import JsonEncoder, TableSchema, dumps, envelope, source
from .offsets import OffsetStore
from .outbox import EventRouter, Headers
from .replication import ReplicationConnection, ReplicationError, session_options

log = logging.getLogger("riverbed.connect")

__all__ = ["ConnectorError", "PostgresConnector", "SlotInvalidated", "SlotLagExceeded"]


_FATAL = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
          KafkaError.INVALID_RECORD, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.POLICY_VIOLATION}


class _Stopped(Exception):
    """stop() was called while the connector waited (snapshot): a clean end, not an error."""


class SlotInvalidated(ConnectorError):
    pass


class SlotLagExceeded(ConnectorError):
    pass


@dataclass
class _Txn:
    xid: int
    final_lsn: int
    commit_ts: int
    end_lsn: int = 0
    committed: bool = False
    skip: bool = False  # delivered before a restart (commit before the stored offset)
    outstanding: int = 0
    after_ack: list[Callable[[], None]] = field(default_factory=list)


@dataclass
class Stats:
    changes: int = 0
    records: int = 0
    transactions: int = 0
    snapshot_rows: int = 0
    acked_lsn: int = 0
    received_lsn: int = 0
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    state: str = "starting"


class PostgresConnector:
    def __init__(self, config: ConnectorConfig, cluster: ClusterSettings) -> None:
        self.cfg = config
        self.cluster = cluster
        self.stats = Stats()
        self.offsets = OffsetStore(cluster, config.offset_storage_topic, config.name, config.topic_prefix, config.topic_replication_factor)
        json_encoder = JsonEncoder(config.topic_prefix, config.key_schemas, config.value_schemas)
        self.key_encoder: Any = json_encoder
        self.value_encoder: Any = json_encoder
        if "avro" in (config.key_converter, config.value_converter):
            url = config.registry_url or cluster.registry_url
            if not url:
                raise ConnectorError(f"connector {config.name}: the avro converter needs value.converter.schema.registry.url or the cluster's schema.registry.url")
            from .avro import AvroEncoder

            avro = AvroEncoder(config.topic_prefix, url)
            self.key_encoder = avro if config.key_converter == "avro" else json_encoder
            self.value_encoder = avro if config.value_converter == "avro" else json_encoder
        self.router = EventRouter(config.outbox, config.value_schemas) if config.outbox else None
        self._stop = threading.Event()
        self.paused = threading.Event()
        self._topics: set[str] = set()
        self._failed: KafkaError | None = None
        self._warned: set[str] = set()
        self.producer: Producer | None = None
        self.db: psycopg.Connection[Any] | None = None
        self.repl: ReplicationConnection | None = None
        self._last_status = 0.0
        self._captured: set[int] = set()
        self._admin: Any = None

    # ---- lifecycle -------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def pause(self) -> None:
        """Stop reading changes (at a transaction boundary) until resume(); the slot keeps them."""
        self.paused.set()

    def resume(self) -> None:
        self.paused.clear()

    def run_forever(self, backoff: float = 1.0) -> None:
        """run() again after a database or cluster failure (resuming from the offsets), until
        stop() or an error it must not retry."""
        while not self._stop.is_set():
            try:
                self.run()
                return
            except _Stopped:
                self.stats.state = "stopped"
                return
            except ConnectorError:
                raise
            except (ReplicationError, psycopg.Error, KafkaException, TimeoutError, OSError, RuntimeError) as exc:
                if isinstance(exc, ReplicationError) and exc.sqlstate == "42704" and "publication" in str(exc):
                    self.stats.state = "failed: publication dropped"
                    raise ConnectorError(f"{exc}; the publication was dropped while the slot still had changes to decode: "
                                         "run `riverbed connect reset` (a new slot and snapshot)") from None
                self.stats.state = "restarting"
                log.warning("connector %s: %s: %s; restarting in %.1fs", self.cfg.name, type(exc).__name__, exc, backoff)
                self._guard()  # the slot keeps growing while the connector cannot run
                self._stop.wait(backoff)

    def _guard(self) -> None:
        """The slot-lag guardrail from a fresh database connection (while restarting)."""
        if not self.cfg.slot_max_lag_bytes:
            return
        try:
            with self._connect_db() as conn:
                self._check_lag(Catalog(conn))
        except psycopg.Error as exc:
            log.warning("connector %s: slot lag not checked: %s", self.cfg.name, str(exc).strip())

    def _close(self, flush_timeout: float) -> None:
        for enc in {id(self.key_encoder): self.key_encoder, id(self.value_encoder): self.value_encoder}.values():
            if hasattr(enc, "close"):
                enc.close()
        if self.repl is not None:
            self.repl.close()
            self.repl = None
        if self.producer is not None:
            self.producer.flush(flush_timeout)  # a record not acknowledged now is replayed later
            self.producer = None
        if self.db is not None:
            self.db.close()
            self.db = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException:
            self._close(1.0)
            raise
        self._close(10.0)

    def _connect_db(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.cfg.conninfo(), autocommit=True, options=session_options(), application_name="riverbed-connect")

    def _run(self) -> None:
        cfg = self.cfg
        self._failed = None
        self.db = self._connect_db()
        catalog = Catalog(self.db, cfg.decimal_handling_mode)
        self.catalog = catalog
        self.offsets.ensure_topic()
        stored = self.offsets.load()
        self.producer = producer(self.cluster, **{"linger.ms": 5, "partitioner": "murmur2_random", "compression.type": "lz4", **cfg.producer})
        self._setup_publication(catalog)
        slot = catalog.slot(cfg.slot_name)
        completed = bool(stored and stored.get("snapshot_completed", True))
        if slot.exists and slot.wal_status == "lost":
            if cfg.snapshot_mode != "when_needed":
                raise SlotInvalidated(f"replication slot {cfg.slot_name} was invalidated (max_slot_wal_keep_size): changes were lost; "
                                      "run `riverbed connect reset` and start again, or use snapshot.mode=when_needed")
            log.error("connector %s: slot %s invalidated; dropping it and taking a new snapshot", cfg.name, cfg.slot_name)
            catalog.drop_slot(cfg.slot_name)
            slot, completed = SlotState(False), False
        mode = cfg.snapshot_mode
        need_snapshot = (mode in ("initial", "initial_only") and not completed) or (mode == "when_needed" and (not completed or not slot.exists))
        self.repl = ReplicationConnection(cfg.conninfo())
        if need_snapshot:
            if slot.exists:
                log.warning("connector %s: snapshot not completed; recreating slot %s for a new consistent snapshot", cfg.name, cfg.slot_name)
                self.repl.close()
                catalog.drop_slot(cfg.slot_name)
                self.repl = ReplicationConnection(cfg.conninfo())
            info = self.repl.create_slot(cfg.slot_name, export_snapshot=True)
            self._snapshot(catalog, info.snapshot_name or "", info.consistent_point)
            start = info.consistent_point
            if mode == "initial_only":
                self.stats.state = "snapshot completed"
                log.info("connector %s: snapshot.mode=initial_only: snapshot done, not streaming", cfg.name)
                if not cfg.slot_drop_on_stop:
                    return
                self.repl.close()
                catalog.drop_slot(cfg.slot_name)
                return
        else:
            if not slot.exists:
                if stored is not None and mode in ("initial", "initial_only"):
                    raise SlotInvalidated(f"replication slot {cfg.slot_name} is gone but offsets exist: changes may be lost; "
                                          "run `riverbed connect reset` or use snapshot.mode=when_needed")
                self.repl.create_slot(cfg.slot_name, export_snapshot=False)
            start = int(stored.get("lsn", 0)) if stored else 0
        self._stream(catalog, start)

    def _setup_publication(self, catalog: Catalog) -> None:
        cfg = self.cfg
        tables = match_tables(catalog.user_tables(), cfg.table_include_list, cfg.table_exclude_list)
        if cfg.table_without_primary_key == "full":
            for s, t, _oid, has_pk in tables:
                if not has_pk:
                    log.warning("connector %s: %s.%s has no primary key: REPLICA IDENTITY FULL, records without a key", cfg.name, s, t)
                    catalog.set_replica_identity_full(s, t)
        elif cfg.publication_autocreate_mode == "filtered":
            for s, t, _oid, has_pk in tables:
                if not has_pk:
                    log.warning("connector %s: %s.%s has no primary key: not captured (table.without.primary.key=skip)", cfg.name, s, t)
            tables = [x for x in tables if x[3]]
        if cfg.publication_autocreate_mode == "all_tables":
            catalog.create_publication(cfg.publication_name, None)
        elif cfg.publication_autocreate_mode == "filtered":
            catalog.create_publication(cfg.publication_name, [(s, t) for s, t, _o, _k in tables])
        elif not catalog.publication_exists(cfg.publication_name):
            raise ConnectorError(f"publication {cfg.publication_name} does not exist (publication.autocreate.mode=disabled)")
        self._captured = {oid for _s, _t, oid, _k in tables}

    # ---- producing -------------------------------------------------------------------------
    def _ensure_topic(self, topic: str) -> None:
        if topic not in self._topics:
            if self._admin is None:
                self._admin = admin(self.cluster)
            ensure_topics(self._admin, {topic: (self.cfg.topic_partitions, {})}, replication=self.cfg.topic_replication_factor, timeout=10.0)
            self._topics.add(topic)

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, txn: _Txn | None, headers: Headers | None = None) -> None:
        assert self.producer is not None
        self._ensure_topic(topic)
        cb = None
        if txn is not None:
            txn.outstanding += 1

            def cb(err: KafkaError | None, _msg: Message, txn: _Txn = txn) -> None:
                if err is not None:
                    self._failed = err
                    return
                txn.outstanding -= 1

        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=headers, on_delivery=cb)
                break
            except KafkaException as exc:
                self._failed = exc.args[0]
                self._check_failed()
            except BufferError:  # the local queue is full: wait for acknowledgements
                self.producer.poll(0.05)
                self._check_failed()
                self._keep_stream_alive()
        self.stats.records += 1

    def _check_failed(self) -> None:
        if self._failed is not None:
            err, self._failed = self._failed, None
            if err.code() in _FATAL:  # replaying would fail the same way: stop, say why
                raise ConnectorError(f"Kafka refused a record: {err.str()} ({err.name()})")
            raise KafkaException(err)

    def _keep_stream_alive(self) -> None:
        """While blocked on Kafka, keep answering the server (wal_sender_timeout)."""
        now = time.monotonic()
        if self.repl is not None and self.repl.streaming and now - self._last_status > self.cfg.status_update_interval_ms / 1000:
            self._send_status()

    # ---- snapshot ----------------------------------------------------------------------------
    def _snapshot(self, catalog: Catalog, snapshot_name: str, lsn: int) -> None:
        cfg = self.cfg
        self.stats.state = "snapshot"
        tables = [t for t in catalog.tables(cfg.publication_name) if t[2] in self._captured]
        log.info("connector %s: snapshot of %d tables at %s", cfg.name, len(tables), pg.format_lsn(lsn))
        self.offsets.write(self._producer(), {"lsn": lsn, "snapshot": True, "snapshot_completed": False, "ts_usec": int(time.time() * 1e6)})
        ts_ms = int(time.time() * 1000)
        txn = _Txn(0, lsn, 0)
        pending: tuple[TableSchema, dict[str, Any], str] | None = None
        first = True
        with psycopg.connect(cfg.conninfo(), options=session_options()) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # what an imported snapshot needs
            conn.read_only = True
            conn.execute("SET TRANSACTION SNAPSHOT %s" % psycopg.sql.quote(snapshot_name))  # noqa: UP031 - a literal, quoted
            for schema, table, oid in tables:
                got = catalog.table_schema(oid)
                if got is None:
                    continue
                ts, _ident = got
                if not ts.key_index and cfg.table_without_primary_key == "skip":
                    self._warn_once(f"nopk:{oid}", "%s.%s has no primary key: not captured", schema, table)
                    continue
                self._report_unsupported(ts)
                cols = psycopg.sql.SQL(", ").join(psycopg.sql.Identifier(c) for c in ts.columns)
                query = psycopg.sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(cols, psycopg.sql.Identifier(schema, table))
                table_first = True
                with conn.cursor().copy(query) as copy:
                    for row in copy.rows():
                        if pending is not None:
                            self._emit_read(*pending, txn, lsn, ts_ms)
                        mark = "first" if first else ("first_in_data_collection" if table_first else "true")
                        pending = (ts, ts.row(row), mark)
                        first = table_first = False
                        self.stats.snapshot_rows += 1
                        if self.stats.snapshot_rows % 1000 == 0:
                            self._producer().poll(0)
                            self._check_failed()
                            if self._stop.is_set():
                                raise _Stopped()
                if pending is not None and pending[0] is ts and not table_first:
                    pending = (pending[0], pending[1], "last_in_data_collection" if pending[2] == "true" else pending[2])
            conn.rollback()
        if pending is not None:
            self._emit_read(pending[0], pending[1], "last", txn, lsn, ts_ms)
        self._flush_all()
        self.offsets.write(self._producer(), {"lsn": lsn, "snapshot": False, "snapshot_completed": True, "ts_usec": int(time.time() * 1e6)})
        self._flush_all()
        log.info("connector %s: snapshot done, %d rows", cfg.name, self.stats.snapshot_rows)

    def _emit_read(self, ts: TableSchema, row: dict[str, Any], mark: str, txn: _Txn, lsn: int, ts_ms: int) -> None:
        src = source(self.cfg.topic_prefix, self.cfg.dbname, ts, ts_ms, mark, None, lsn, None)
        self._emit(ts, "r", None, row, src, txn)

    def _flush_all(self) -> None:
        p = self._producer()
        while p.flush(1.0) > 0:
            self._check_failed()
            if self._stop.is_set():
                raise _Stopped()
        self._check_failed()

    def _producer(self) -> Producer:
        assert self.producer is not None
        return self.producer

    # ---- events ------------------------------------------------------------------------------
    def _topic(self, ts: TableSchema) -> str:
        return f"{self.cfg.topic_prefix}.{ts.schema}.{ts.table}"

    def _emit(self, ts: TableSchema, op: str, before: dict[str, Any] | None, after: dict[str, Any] | None, src: dict[str, Any], txn: _Txn) -> None:
        if self.router is not None and self.router.applies(ts):
            routed = self.router.route(ts, op, after)
            if routed is not None:
                topic, key, value, headers, event_id = routed
                self._produce(topic, key, value, txn, headers)
                if self.router.cfg.delete_after_capture and event_id is not None:
                    key_ = (ts.schema, ts.table)

                    def later(key_: tuple[str, str] = key_, event_id: Any = event_id) -> None:
                        self._outbox_deletes.setdefault(key_, []).append(event_id)

                    txn.after_ack.append(later)
            return
        row = after if after is not None else before
        key = self.key_encoder.key(ts, ts.key(row)) if row is not None else None
        value = self.value_encoder.value(ts, envelope(op, before, after, src, int(time.time() * 1000)))
        self._produce(self._topic(ts), key, value, txn)
        if op == "d" and self.cfg.tombstones_on_delete and key is not None:
            self._produce(self._topic(ts), key, None, txn)

    def _warn_once(self, key: str, msg: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("connector %s: " + msg, self.cfg.name, *args)

    def _report_unsupported(self, ts: TableSchema) -> None:
        for col in ts.unsupported:
            self._warn_once(f"type:{ts.schema}.{ts.table}.{col}", "%s.%s.%s: type not mapped; values passed as strings", ts.schema, ts.table, col)

    # ---- streaming ---------------------------------------------------------------------------
    def _stream(self, catalog: Catalog, start: int) -> None:
        cfg = self.cfg
        assert self.repl is not None
        self.repl.start(cfg.slot_name, start, [cfg.publication_name])
        self.stats.state = "streaming"
        log.info("connector %s: streaming from %s", cfg.name, pg.format_lsn(start))
        self._skip_before = start
        self._acked = start
        self._offset_written = start
        self._last_status = self._last_offset = self._last_heartbeat = self._last_lag = time.monotonic()
        self._outbox_deletes: dict[tuple[str, str], list[Any]] = {}
        relations: dict[int, tuple[TableSchema, str] | None] = {}
        pending: deque[_Txn] = deque()
        txn: _Txn | None = None
        p = self._producer()
        while not self._stop.is_set():
            # paused: read nothing (the server holds the WAL), keep answering it
            data = None if self.paused.is_set() and txn is None else self.repl.read(0.05)
            if data is None and self.paused.is_set():
                self._stop.wait(0.05)
            now = time.monotonic()
            if data is not None:
                frame = pg.decode_stream(data)
                if isinstance(frame, pg.Keepalive):
                    if txn is None and not pending and frame.end_lsn > self._acked:
                        self._acked = frame.end_lsn
                    if frame.reply_requested:
                        self._send_status()
                else:
                    self.stats.received_lsn = max(self.stats.received_lsn, frame.start_lsn)
                    msg = pg.decode(frame.payload)
                    if isinstance(msg, pg.Begin):
                        txn = _Txn(msg.xid, msg.final_lsn, msg.commit_ts)
                        txn.skip = msg.final_lsn < self._skip_before
                    elif isinstance(msg, pg.Commit):
                        if txn is not None:
                            if not txn.skip:
                                self.stats.transactions += 1
                            txn.end_lsn, txn.committed = msg.end_lsn, True
                            pending.append(txn)
                        txn = None
                    elif isinstance(msg, pg.Relation):
                        got = catalog.table_schema(msg.oid, msg)
                        if got is not None:
                            self.key_encoder.forget(got[0])
                            self.value_encoder.forget(got[0])
                            self._report_unsupported(got[0])
                            if not got[0].key_index and got[1] != "f" and self.cfg.table_without_primary_key == "skip":
                                self._warn_once(f"nopk:{msg.oid}", "%s.%s has no primary key: not captured", msg.namespace, msg.name)
                                got = None
                            elif msg.oid not in self._captured and not match_tables([(msg.namespace, msg.name, msg.oid, True)], cfg.table_include_list, cfg.table_exclude_list):
                                got = None
                        relations[msg.oid] = got
                    elif txn is not None and not txn.skip:
                        self._change(msg, relations, txn, frame.start_lsn)
                p.poll(0)
            else:
                p.poll(0.0)
            self._check_failed()
            while pending and pending[0].committed and pending[0].outstanding == 0:
                done = pending.popleft()
                for fn in done.after_ack:
                    fn()
                self._acked = max(self._acked, done.end_lsn)
            self.stats.acked_lsn = self._acked
            self.stats.lag_seconds = (time.time() - pg.unix_ms(pending[0].commit_ts) / 1000) if pending else 0.0
            if now - self._last_offset >= cfg.offset_flush_interval_ms / 1000 and self._acked > self._offset_written:
                self._write_offset()
                self._last_offset = now
            if now - self._last_status >= cfg.status_update_interval_ms / 1000:
                self._send_status()
            if cfg.heartbeat_interval_ms and now - self._last_heartbeat >= cfg.heartbeat_interval_ms / 1000:
                self._heartbeat()
                self._last_heartbeat = now
            if now - self._last_lag >= cfg.slot_lag_check_interval_ms / 1000:
                self._check_lag(catalog)
                self._last_lag = time.monotonic()
        # stopping: deliver what is in flight (for a while), record the position reached
        self._producer().flush(10)
        self._check_failed()
        while pending and pending[0].committed and pending[0].outstanding == 0:
            self._acked = max(self._acked, pending.popleft().end_lsn)
        self._write_offset()
        self._send_status()
        if cfg.slot_drop_on_stop:
            self.repl.close()
            catalog.drop_slot(cfg.slot_name)
        self.stats.state = "stopped"

    def _write_offset(self) -> None:
        if self._outbox_deletes:
            self._run_outbox_deletes()
        lsn = self._acked
        self.offsets.write(self._producer(), {"lsn": lsn, "lsn_commit": lsn, "snapshot_completed": True, "ts_usec": int(time.time() * 1e6)})
        self._offset_written = lsn

    def _run_outbox_deletes(self) -> None:
        assert self.db is not None
        for (schema, table), ids in self._outbox_deletes.items():
            col = self.router.cfg.field_event_id if self.router else "id"
            self.db.execute(psycopg.sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(psycopg.sql.Identifier(schema, table), psycopg.sql.Identifier(col)), (ids,))
        self._outbox_deletes.clear()

    def _send_status(self) -> None:
        if self.repl is not None and self.repl.streaming:
            self.repl.send(pg.standby_status(self._acked, self._acked, self._acked, pg.now_pg_micros()))
        self._last_status = time.monotonic()

    def _heartbeat(self) -> None:
        cfg = self.cfg
        if cfg.heartbeat_action_query and self.db is not None:
            try:
                self.db.execute(cfg.heartbeat_action_query.encode())
            except psycopg.Error as exc:
                log.warning("connector %s: heartbeat.action.query failed: %s", cfg.name, str(exc).strip())
        topic = f"{cfg.heartbeat_topic_prefix}.{cfg.topic_prefix}"
        key: Any = {"serverName": cfg.topic_prefix}
        value: Any = {"ts_ms": int(time.time() * 1000)}
        if cfg.key_schemas:
            key = {"schema": {"type": "struct", "fields": [{"type": "string", "optional": False, "field": "serverName"}], "optional": False, "name": "io.debezium.connector.common.ServerNameKey"}, "payload": key}
        if cfg.value_schemas:
            value = {"schema": {"type": "struct", "fields": [{"type": "int64", "optional": False, "field": "ts_ms"}], "optional": False, "name": "io.debezium.connector.common.Heartbeat"}, "payload": value}
        self._produce(topic, dumps(key), dumps(value), None)

    def _check_lag(self, catalog: Catalog) -> None:
        cfg = self.cfg
        state = catalog.slot(cfg.slot_name)
        self.stats.lag_bytes = state.lag_bytes
        if state.wal_status == "lost":
            raise SlotInvalidated(f"replication slot {cfg.slot_name} was invalidated while streaming")
        if cfg.slot_max_lag_bytes and state.lag_bytes is not None and state.lag_bytes > cfg.slot_max_lag_bytes:
            msg = f"slot {cfg.slot_name} lags {state.lag_bytes} bytes (slot.max.lag.bytes={cfg.slot_max_lag_bytes})"
            if cfg.slot_lag_action == "warn":
                log.warning("connector %s: %s", cfg.name, msg)
                return
            log.error("connector %s: %s: stopping%s", cfg.name, msg, " and dropping the slot" if cfg.slot_lag_action == "drop" else "")
            self.stats.state = "failed: slot lag"
            if cfg.slot_lag_action == "drop":
                if self.repl is not None:
                    self.repl.close()
                catalog.drop_slot(cfg.slot_name)
            raise SlotLagExceeded(msg)

    def _change(self, msg: Any, relations: dict[int, tuple[TableSchema, str] | None], txn: _Txn, lsn: int) -> None:
        cfg = self.cfg
        if isinstance(msg, pg.Truncate):
            if "t" in cfg.skipped_operations:
                return
            for oid in msg.relation_oids:
                got = relations.get(oid)
                if got is None:
                    continue
                src = self._source(got[0], txn, lsn)
                value = self.value_encoder.value(got[0], envelope("t", None, None, src, int(time.time() * 1000)))
                self._produce(self._topic(got[0]), None, value, txn)
                self.stats.changes += 1
            return
        if not isinstance(msg, pg.Insert | pg.Update | pg.Delete):
            return
        got = relations.get(msg.relation_oid)
        if got is None:
            return
        ts = got[0]
        src = self._source(ts, txn, lsn)
        self.stats.changes += 1
        if isinstance(msg, pg.Insert):
            if "c" not in cfg.skipped_operations:
                self._emit(ts, "c", None, ts.row(msg.new), src, txn)
        elif isinstance(msg, pg.Update):
            if "u" in cfg.skipped_operations:
                return
            after = ts.row(msg.new)
            before = None if msg.old is None else ts.row(msg.old, key_only=msg.old_kind == "K")
            if before is not None and ts.key_index and ts.key(before) != ts.key(after):
                # the primary key changed: Debezium's delete (+ tombstone) of the old key, then a create
                self._emit(ts, "d", before, None, src, txn)
                self._emit(ts, "c", None, after, src, txn)
                return
            self._emit(ts, "u", before if msg.old_kind == "O" else None, after, src, txn)
        elif isinstance(msg, pg.Delete) and "d" not in cfg.skipped_operations:
            self._emit(ts, "d", ts.row(msg.old, key_only=msg.old_kind == "K"), None, src, txn)

    def _source(self, ts: TableSchema, txn: _Txn, lsn: int) -> dict[str, Any]:
        # [commit LSN of the event's transaction, LSN of the change]: strictly increasing in
        # stream order (transactions arrive in commit order), unlike `lsn` alone, which goes
        # back when transactions overlap; consumers drop redeliveries by comparing it
        seq = dumps([str(txn.final_lsn), str(lsn)]).decode()
        return source(self.cfg.topic_prefix, self.cfg.dbname, ts, pg.unix_ms(txn.commit_ts), "false", txn.xid, lsn, seq)
