"""The engine: statements executed against a cluster, persistent queries recorded in a command
topic (and started again from it after a restart), push queries, pull queries.

The command topic (``_confluent-ksql-<service id>_command_topic``, one partition, kept forever)
holds every statement that changes the metastore: CREATE, CREATE ... AS SELECT, INSERT INTO ...
SELECT, DROP, TERMINATE. A statement is checked first (parsed and planned without running),
then written to the topic, then executed; at start the engine replays the topic from the
beginning, so streams, tables and persistent queries come back as they were. A persistent
query's id is made from the offset of its command (``CSAS_VIP_USERS_3``), so a replay gives the
same ids, and so the same consumer groups (``_confluent-ksql-<service id>query_<id>``): a
restarted query resumes from its committed offsets and restores its state from its changelogs.

Several servers with the same service id share the command topic (ksqlDB's cluster): each keeps
consuming it (the command runner thread), and every statement that changes the metastore is
executed by the runner in the topic's order on every server, the server that received it
included: it validates the statement against a metastore caught up to the topic's end, writes
it, then answers with the outcome of its own runner (a statement that lost a race to a
conflicting one written before it fails, on every server alike). Each server runs every
persistent query; their consumers share the partitions through the query's consumer group.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from riverbed.client import ClusterSettings, admin, consumer, ensure_topics, producer
from riverbed.streams.runtime import Runtime

from . import ast as A
from . import types as T
from .catalog import HEADERS_TYPE, PSEUDO, WINDOW_COLUMNS, SourceInfo, header_values
from .compiler import Compiler, Scope, show
from .errors import BAD_STATEMENT, COMMAND_TIMEOUT, NOT_FOUND, SERVER_ERROR, SqlError
from .formats import REGISTRY_FORMATS, check_format, to_json_value
from .parser import parse, parse_select
from .planner import OutputColumn, Plan, Planner, SinkSpec, column_name

log = logging.getLogger("riverbed.sql")

VERSION = "0.29.0-riverbed"  # the ksqlDB version whose REST API this follows
DEFAULT_PROPERTIES = {"auto.offset.reset": "latest", "processing.guarantee": "at_least_once"}


@dataclass
class PersistentQuery:
    id: str
    statement: str
    sink: str
    sink_topic: str
    sources: list[str]
    plan: Plan
    runtime: Runtime | None = None
    thread: threading.Thread | None = None
    state: str = "RUNNING"
    error: str | None = None
    kind: str = "PERSISTENT"
    restarts: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self, timeout: float = 30.0) -> None:
        self.stopped.set()
        if self.runtime is not None:
            self.runtime.stop()
        if self.thread is not None:
            self.thread.join(timeout)


@dataclass
class PushQuery:
    """A transient ``SELECT ... EMIT CHANGES``: rows arrive in ``rows`` until closed or LIMIT."""

    id: str
    columns: list[OutputColumn]
    limit: int | None
    runtime: Runtime
    rows: queue.Queue[list[Any] | None] = field(default_factory=lambda: queue.Queue(maxsize=10_000))
    closed: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    sent: int = 0
    error: str | None = None
    on_close: Callable[[PushQuery], None] | None = None
    ended: bool = False  # the end marker was taken

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self.runtime.stop()
        with contextlib.suppress(queue.Full):
            self.rows.put_nowait(None)
        if self.on_close is not None:
            self.on_close(self)

    def take(self, poll: float = 0.5, most: int = 1_000) -> list[list[Any]] | None:
        """The rows that are there, at most ``most``, waiting up to ``poll`` for the first: a caller
        (the HTTP server) hands them on together, one thread hop and one chunk for all of them
        rather than per row, so a burst (or a pause of this thread) does not leave a queue behind
        that per-row costs would keep from draining. ``[]`` when no row came; ``None`` once the
        query is closed or reached its LIMIT and every row was taken."""
        if self.ended:
            return None
        try:
            row = self.rows.get(timeout=poll)
        except queue.Empty:
            return None if self.closed.is_set() else []
        out: list[list[Any]] = []
        while row is not None:
            out.append(row)
            if len(out) >= most:
                return out
            try:
                row = self.rows.get_nowait()
            except queue.Empty:
                return out
        self.ended = True
        return out or None

    def iter_rows(self, poll: float = 0.5) -> Iterator[list[Any] | None]:
        """Rows as they come; ``None`` now and then while none do (so a caller can check its
        client is still there); ends when the query is closed or reached its LIMIT."""
        while True:
            try:
                row = self.rows.get(timeout=poll)
            except queue.Empty:
                if self.closed.is_set():
                    return
                yield None
                continue
            if row is None:
                return
            yield row


def _schema_json(t: T.SqlType) -> dict[str, Any]:
    name = {"STRING": "STRING", "INTEGER": "INTEGER"}.get(t.name, t.name)
    out: dict[str, Any] = {"type": name, "fields": None, "memberSchema": None}
    if t.name == "ARRAY" or t.name == "MAP":
        out["memberSchema"] = _schema_json(t.element or T.STRING)
    if t.name == "STRUCT":
        out["fields"] = [{"name": n, "schema": _schema_json(ft)} for n, ft in t.fields]
    if t.name == "DECIMAL":
        out["parameters"] = {"precision": t.precision, "scale": t.scale}
    return out


def type_text(t: T.SqlType) -> str:
    """As ksqlDB prints a type in a query's schema header (``STRING``, ``ARRAY<INTEGER>``)."""
    if t.name == "ARRAY":
        return f"ARRAY<{type_text(t.element or T.STRING)}>"
    if t.name == "MAP":
        return f"MAP<{type_text(t.key or T.STRING)}, {type_text(t.element or T.STRING)}>"
    if t.name == "STRUCT":
        return "STRUCT<" + ", ".join(f"`{n}` {type_text(ft)}" for n, ft in t.fields) + ">"
    if t.name == "DECIMAL":
        return f"DECIMAL({t.precision}, {t.scale})"
    if t.name in ("NULL", "ANY"):
        return "STRING"
    return t.name


def schema_text(cols: list[OutputColumn]) -> str:
    return ", ".join(f"`{c.name}` {type_text(c.type)}" + (" KEY" if c.key else "") for c in cols)


def _schema_names(props: dict[str, Any], pos: tuple[int, int]) -> dict[str, Any]:
    """KEY_ / VALUE_SCHEMA_FULL_NAME: the record (Avro) or message (Protobuf) a writer names its
    schema, and the message a Protobuf source's columns are inferred from; KEY_ / VALUE_SCHEMA_ID:
    the registered schema to infer the columns from and to write with."""
    out: dict[str, Any] = {}
    for part in ("key", "value"):
        v = props.get(f"{part.upper()}_SCHEMA_FULL_NAME")
        if v is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", str(v)):
            raise SqlError(f"Invalid {part.upper()}_SCHEMA_FULL_NAME: '{v}' (a name such as 'shop.Order')", *pos)
        out[f"{part}_schema_name"] = None if v is None else str(v)
        sid = props.get(f"{part.upper()}_SCHEMA_ID")
        if sid is not None and not str(sid).isdigit():
            raise SqlError(f"Invalid {part.upper()}_SCHEMA_ID: '{sid}' (a schema id, an integer)", *pos)
        out[f"{part}_schema_id"] = None if sid is None else int(sid)
        rep = props.get(f"{part.upper()}_PROTOBUF_NULLABLE_REPRESENTATION")
        if rep is not None and str(rep).upper() not in ("WRAPPER", "OPTIONAL"):
            raise SqlError(f"Invalid {part.upper()}_PROTOBUF_NULLABLE_REPRESENTATION: '{rep}' (WRAPPER or OPTIONAL)", *pos)
        out[f"{part}_proto_nullable"] = None if rep is None else str(rep).upper()
        delim = props.get(f"{part.upper()}_DELIMITER")
        if delim is not None:
            d = {"TAB": "\t", "SPACE": " "}.get(str(delim).upper(), str(delim))
            if len(d) != 1:
                raise SqlError(f"Invalid delimiter value: '{delim}'. Delimiter must be a single character or TAB or SPACE", *pos)
            out[f"{part}_delimiter"] = d
    return out


def _check_nullable(names: dict[str, Any], kf: str, vf: str, pos: tuple[int, int]) -> None:
    """The format-specific properties fit the formats."""
    for part, fmt in (("key", kf), ("value", vf)):
        if f"{part}_delimiter" in names and fmt != "DELIMITED":
            raise SqlError(f"{part.upper()}_DELIMITER can only be used with {part.upper()}_FORMAT='DELIMITED' (it is {fmt})", *pos)
        if names[f"{part}_proto_nullable"] is not None and fmt not in ("PROTOBUF", "PROTOBUF_NOSR"):
            raise SqlError(f"{part.upper()}_PROTOBUF_NULLABLE_REPRESENTATION can only be used with {part.upper()}_FORMAT "
                           f"PROTOBUF or PROTOBUF_NOSR (it is {fmt})", *pos)


def source_from_ddl(st: A.CreateSource, registry: Any = None) -> SourceInfo:
    """The catalog entry of a CREATE STREAM / TABLE (checked: formats, keys, names)."""
    props = st.props
    topic = props.get("KAFKA_TOPIC")
    if not topic:
        raise SqlError("Missing required property \"KAFKA_TOPIC\" which has no default value.", *st.pos)
    fmt = props.get("FORMAT")
    vf = check_format(str(props.get("VALUE_FORMAT") or fmt or "JSON"), "VALUE_FORMAT")
    kf = check_format(str(props.get("KEY_FORMAT") or fmt or "KAFKA"), "KEY_FORMAT")
    keys: list[tuple[str, T.SqlType]] = []
    values: list[tuple[str, T.SqlType]] = []
    headers: list[tuple[str, T.SqlType, str | None]] = []
    names = _schema_names(props, st.pos)
    _check_nullable(names, kf, vf, st.pos)
    seen: set[str] = set()
    for c in st.columns:
        if c.name in seen:
            raise SqlError(f"Duplicate column names: {c.name}", *c.pos)
        seen.add(c.name)
        if c.name in ("ROWTIME", "ROWPARTITION", "ROWOFFSET", "WINDOWSTART", "WINDOWEND"):
            raise SqlError(f"'{c.name}' is a reserved column name.", *c.pos)
        if c.constraint == "KEY" and st.kind == "TABLE":
            raise SqlError(f"Column `{c.name}` is a 'KEY' column: please use 'PRIMARY KEY' for tables.", *c.pos)
        if c.constraint == "PRIMARY KEY" and st.kind == "STREAM":
            raise SqlError(f"Column `{c.name}` is a 'PRIMARY KEY' column: please use 'KEY' for streams.", *c.pos)
        if c.constraint == "HEADERS":
            if any(h[2] is None for h in headers):
                raise SqlError("Schema already contains a HEADERS column.", *c.pos)
            if c.type != HEADERS_TYPE:
                raise SqlError(f"Invalid type for HEADERS column: expected {type_text(HEADERS_TYPE)}, got {type_text(c.type)}", *c.pos)
            headers.append((c.name, c.type, None))
            continue
        if c.constraint == "HEADER":
            if any(h[2] == c.header for h in headers):
                raise SqlError(f"Schema already contains a HEADER('{c.header}') column.", *c.pos)
            if c.type.name != "BYTES":
                raise SqlError(f"Invalid type for HEADER('{c.header}') column: expected BYTES, got {type_text(c.type)}", *c.pos)
            headers.append((c.name, c.type, c.header))
            continue
        (keys if c.constraint else values).append((c.name, c.type))
    for part, declared in (("VALUE", values), ("KEY", keys)):
        if declared and names[f"{part.lower()}_schema_id"] is not None:
            raise SqlError(f"Table elements and {part}_SCHEMA_ID cannot both exist for create statement.", *st.pos)
    if not values and vf in REGISTRY_FORMATS:  # the value columns from the registry
        if registry is None:
            raise SqlError(f"VALUE_FORMAT {vf} needs a schema registry: start the server with --registry-url URL", *st.pos)
        from .schemas import infer_subject

        try:
            inferred, names["value_schema_id"] = infer_subject(registry, str(topic), vf, "value", names["value_schema_name"],
                                                               names["value_schema_id"])
            values = [c for c in inferred if c[0] not in seen]
        except SqlError as e:
            raise SqlError(e.message, *st.pos) from None
    if not keys and kf in REGISTRY_FORMATS:  # the key columns from the registry (`<topic>-key`)
        if registry is None:
            raise SqlError(f"KEY_FORMAT {kf} needs a schema registry: start the server with --registry-url URL", *st.pos)
        from .schemas import infer_subject

        try:
            inferred, names["key_schema_id"] = infer_subject(registry, str(topic), kf, "key", names["key_schema_name"],
                                                             names["key_schema_id"])
            keys = [c for c in inferred if c[0] not in seen]
        except SqlError as e:
            raise SqlError(e.message, *st.pos) from None
        values = [c for c in values if c[0] not in {n for n, _ in keys}]
    if not keys and not values:
        raise SqlError("The statement does not define any columns.", *st.pos)
    if st.kind == "TABLE" and not keys:
        raise SqlError(f"Tables require a PRIMARY KEY. Please define the PRIMARY KEY. Table: {st.name}", *st.pos)
    ts = props.get("TIMESTAMP")
    if ts is not None:
        ts = str(ts).upper()
        if ts not in seen:
            raise SqlError(f"The TIMESTAMP column set in the WITH clause does not exist in the schema: '{ts}'", *st.pos)
    info = SourceInfo(st.name, st.kind, str(topic), kf, vf, keys, values,
                      int(props["PARTITIONS"]) if "PARTITIONS" in props else None, ts,
                      props.get("TIMESTAMP_FORMAT"), source=st.source, statement=st.text,
                      wrap_single=str(props.get("WRAP_SINGLE_VALUE", "true")).lower() != "false", registry=registry,
                      header_columns=headers, **names)
    info.key_serde()  # checks the formats fit the columns
    info.value_serde()
    return info


class _Submitted(Exception):
    """A statement was validated and written to the command topic at ``offset``: its outcome is
    the command runner's."""

    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


SKIP_FORWARDING = "request.ksql.query.pull.skip.forwarding"  # (ksqlDB's name) a forwarded pull query


class Engine:
    def __init__(self, settings: ClusterSettings, service_id: str = "default_", state_dir: str | Path | None = None,
                 command_topic: str | None = None, properties: dict[str, str] | None = None,
                 commit_interval_ms: int = 2000, instance_id: str | None = None,
                 command_timeout_s: float = 60.0) -> None:
        """``instance_id``: this server's name among the servers sharing the command topic; when
        set, each persistent query's consumer is a static member of its group
        (``group.instance.id = <instance id>-<query id>``), so a restarted server gets its
        partitions back without a rebalance (within the session timeout)."""
        self.settings = settings
        self.service_id = service_id
        self.instance_id = instance_id
        self.server_id = uuid.uuid4().hex  # marks the commands this server wrote
        self.advertised_url: str | None = None  # this server's REST API (pull queries forwarded to it)
        self.command_timeout_s = command_timeout_s
        self.metrics_url: str | None = None  # the server's /metrics (in the queries' status records)
        self.command_topic = command_topic or f"_confluent-ksql-{service_id}_command_topic"
        import tempfile

        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.gettempdir()) / "riverbed-sql" / service_id
        self.properties = {**DEFAULT_PROPERTIES, **(properties or {})}
        self.commit_interval_ms = commit_interval_ms
        self.catalog: dict[str, SourceInfo] = {}
        self.queries: dict[str, PersistentQuery] = {}
        self.push_queries: dict[str, PushQuery] = {}
        self._lock = threading.RLock()
        self._admin = admin(settings)
        self._producer = producer(settings, **{"partitioner": "murmur2_random", "linger.ms": 0})
        self.command_seq = -1  # the offset of the last command executed (by the start's replay or the runner)
        self._executed = threading.Condition()
        self._outcomes: dict[int, dict[str, Any] | SqlError] = {}  # own commands' outcomes, by offset
        self._live = False  # the runner is executing a command this server wrote (and is waiting for)
        self._from_runner = False  # the runner is executing a command (not the start's replay)
        self._runner: threading.Thread | None = None
        self._closing = threading.Event()
        self._end_reader: Any = None  # a consumer for the command topic's end offset
        self.started = False
        self.max_pull_rows = int(self.properties.get("ksql.query.pull.max.rows", 100_000))
        self.registry: Any = None
        if settings.registry_url:
            from .schemas import RegistryClient

            self.registry = RegistryClient(settings.registry_url)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> Engine:
        try:
            ensure_topics(self._admin, {self.command_topic: (1, {"retention.ms": "-1", "cleanup.policy": "delete"})},
                          timeout=20)
        except Exception as e:
            raise SqlError(f"Could not create or find the command topic {self.command_topic} on the Kafka cluster at "
                           f"{self.settings.bootstrap}: {type(e).__name__} {e}".rstrip(), code=SERVER_ERROR) from None
        replayed = 0
        for offset, cmd in self._read_commands():
            try:
                self._execute(parse(cmd["statement"])[0], cmd.get("streamsProperties") or {}, offset, replay=True)
                replayed += 1
            except SqlError as e:
                log.warning("command %d could not be replayed (%s): %s", offset, e, cmd["statement"])
            except Exception:
                log.exception("command %d could not be replayed: %s", offset, cmd["statement"])
            self.command_seq = offset
        log.info("replayed %d commands from %s; %d persistent queries running", replayed, self.command_topic,
                 len(self.queries))
        self._end_reader = consumer(self.settings, f"_riverbed-sql-end-{uuid.uuid4().hex}")
        self._runner = threading.Thread(target=self._run_commands, name="sql-command-runner", daemon=True)
        self._runner.start()
        self.started = True
        return self

    # -- the command runner ------------------------------------------------------------------------------
    def _run_commands(self) -> None:
        """Consume the command topic from after the replayed commands, for as long as the engine
        runs, and execute each command in order (those of the other servers, and this one's)."""
        c = consumer(self.settings, f"_riverbed-sql-runner-{uuid.uuid4().hex}", **{"fetch.wait.max.ms": 50})
        try:
            c.assign([TopicPartition(self.command_topic, 0, self.command_seq + 1)])
            while not self._closing.is_set():
                m = c.poll(0.2)
                if m is None:
                    continue
                merr = m.error()
                if merr is not None:
                    if merr.code() != KafkaError._PARTITION_EOF:
                        log.warning("command runner: %s", merr)
                    continue
                off = int(m.offset() or 0)
                if off <= self.command_seq:
                    continue
                self._run_command(off, m.value())
        except Exception:
            log.exception("the command runner failed")
        finally:
            c.close()

    def _run_command(self, off: int, raw: bytes | None) -> None:
        outcome: dict[str, Any] | SqlError
        own = False
        try:
            cmd = json.loads(raw or b"")
            own = cmd.get("origin") == self.server_id
            with self._lock:
                self._live, self._from_runner = own, True
                try:
                    outcome = self._execute(parse(cmd["statement"])[0], cmd.get("streamsProperties") or {}, off,
                                            replay=True)
                finally:
                    self._live = self._from_runner = False
        except SqlError as e:
            outcome = e
            (log.info if own else log.warning)("command %d failed: %s", off, e)
        except Exception as e:
            log.exception("command %d failed", off)
            outcome = SqlError(f"{type(e).__name__}: {e}", code=SERVER_ERROR)
        with self._executed:
            self.command_seq = off
            if own:
                self._outcomes[off] = outcome
            self._executed.notify_all()

    @property
    def runner_alive(self) -> bool:
        """The command runner is consuming the command topic (``/healthcheck``'s commandRunner)."""
        return self._runner is not None and self._runner.is_alive()

    def wait_for_command(self, seq: int, timeout: float | None = None) -> None:
        """Until the command at offset ``seq`` was executed here (ksqlDB's
        ``commandSequenceNumber`` in a request)."""
        deadline = time.monotonic() + (self.command_timeout_s if timeout is None else timeout)
        with self._executed:
            while self.command_seq < seq:
                left = deadline - time.monotonic()
                if left <= 0 or self._closing.is_set():
                    raise SqlError("Timed out while waiting for a previous command to execute. command sequence "
                                   f"number: {seq}", code=COMMAND_TIMEOUT)
                self._executed.wait(min(left, 0.5))

    def _catch_up(self) -> None:
        """Execute every command written so far before validating a new statement, so that it is
        checked against what the other servers did (ksqlDB waits for its command runner too)."""
        if self._end_reader is None:
            return
        try:
            _lo, hi = self._end_reader.get_watermark_offsets(TopicPartition(self.command_topic, 0), timeout=10)
        except KafkaException as e:
            raise SqlError(f"Could not read the command topic's end offset: {e}", code=SERVER_ERROR) from None
        self.wait_for_command(hi - 1)

    def _outcome(self, off: int) -> dict[str, Any]:
        self.wait_for_command(off)
        with self._executed:
            outcome = self._outcomes.pop(off, None)
        if outcome is None:
            raise SqlError(f"The command at offset {off} was executed, but its outcome is unknown", code=SERVER_ERROR)
        if isinstance(outcome, SqlError):
            raise outcome
        return outcome

    def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            self._runner.join(10)
        if self._end_reader is not None:
            self._end_reader.close()
        for pq in list(self.push_queries.values()):
            pq.close()
        for q in list(self.queries.values()):
            q.stop()
        self._producer.flush(5)
        if self.registry is not None:
            self.registry.http.close()

    def _read_commands(self) -> Iterator[tuple[int, dict[str, Any]]]:
        c = consumer(self.settings, f"_riverbed-sql-{uuid.uuid4().hex}", **{"enable.partition.eof": True})
        try:
            lo, hi = c.get_watermark_offsets(TopicPartition(self.command_topic, 0), timeout=10)
            if hi <= lo:
                return
            c.assign([TopicPartition(self.command_topic, 0, lo)])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                m = c.poll(1.0)
                if m is None:
                    continue
                merr = m.error()
                if merr is not None:
                    if merr.code() == KafkaError._PARTITION_EOF:
                        return
                    raise SqlError(f"cannot read the command topic: {merr}", code=SERVER_ERROR)
                off = int(m.offset() or 0)
                try:
                    cmd = json.loads(m.value() or b"")
                except ValueError:
                    log.warning("command topic offset %d is not JSON; skipped", off)
                    continue
                yield off, cmd
                if off + 1 >= hi:
                    return
        finally:
            c.close()

    def _write_command(self, st: A.Statement, props: dict[str, Any], key: str) -> int:
        value = json.dumps({"statement": st.text, "streamsProperties": props, "originalProperties": {},
                            "origin": self.server_id})
        result: dict[str, Any] = {}

        def done(err: Any, msg: Any) -> None:
            result["err"], result["offset"] = err, None if err else msg.offset()

        self._producer.produce(self.command_topic, value.encode(), key.encode(), on_delivery=done)
        self._producer.flush(30)
        if result.get("err") is not None or result.get("offset") is None:
            raise SqlError(f"Could not write the statement to the command topic: {result.get('err')}", code=SERVER_ERROR)
        return int(result["offset"])

    # -- statements -------------------------------------------------------------------------------------
    def execute(self, text: str, properties: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a script (``POST /ksql``): one entity per statement. Stops at the first error,
        raising SqlError with the failing statement's text in ``statement``."""
        props = {**self.properties, **(properties or {})}
        out: list[dict[str, Any]] = []
        for st in parse(text):
            try:
                if isinstance(st, A.SetProperty):
                    props[st.name] = st.value
                    continue
                if isinstance(st, A.UnsetProperty):
                    props.pop(st.name, None)
                    continue
                if isinstance(st, A.SelectStatement):
                    raise SqlError("The following statement types should be issued to the websocket endpoint "
                                   "'/query': SELECT (use POST /query or /query-stream)", *st.pos)
                if self.started and isinstance(st, (A.CreateSource, A.CreateAs, A.InsertSelect, A.Drop, A.Terminate)):
                    self._catch_up()
                try:
                    out.append(self._execute(st, props, None, replay=False))
                except _Submitted as sub:  # written to the command topic: the runner executes it
                    out.append(self._outcome(sub.offset))
            except SqlError as e:
                e.statement = st.text  # type: ignore[attr-defined]
                e.entities = out  # type: ignore[attr-defined]
                raise
        return out

    def _execute(self, st: A.Statement, props: dict[str, Any], offset: int | None, replay: bool) -> dict[str, Any]:
        with self._lock:
            if isinstance(st, A.CreateSource):
                return self._create_source(st, props, offset, replay)
            if isinstance(st, A.CreateAs):
                return self._create_as(st, props, offset, replay)
            if isinstance(st, A.InsertSelect):
                return self._insert_select(st, props, offset, replay)
            if isinstance(st, A.Drop):
                return self._drop(st, props, offset, replay)
            if isinstance(st, A.Terminate):
                return self._terminate(st, props, offset, replay)
            if isinstance(st, A.InsertValues):
                return self._insert_values(st)
            if isinstance(st, A.Show):
                return self._show(st)
            if isinstance(st, A.DescribeList):
                return self._describe_list(st)
            if isinstance(st, A.Describe):
                return self._describe(st)
            if isinstance(st, A.DescribeFunction):
                return self._describe_function(st)
            if isinstance(st, A.Explain):
                return self._explain(st, props)
            raise SqlError(f"Statement not supported here: {type(st).__name__}", *st.pos)

    def _status(self, st: A.Statement, command_id: str, message: str, seq: int, query_id: str | None = None) -> dict[str, Any]:
        return {"@type": "currentStatus", "statementText": st.text, "commandId": command_id,
                "commandStatus": {"status": "SUCCESS", "message": message, "queryId": query_id},
                "commandSequenceNumber": seq, "warnings": []}

    def _record(self, st: A.Statement, props: dict[str, Any], offset: int | None, replay: bool, key: str) -> int:
        if replay:
            assert offset is not None
            return offset
        off = self._write_command(st, props, key)
        if self._runner is None:  # (not started: no runner; executed here)
            self.command_seq = off
            return off
        raise _Submitted(off)

    # CREATE STREAM / TABLE
    def _check_new_name(self, name: str, kind: str, or_replace: bool, if_not_exists: bool, pos: A.Pos) -> bool:
        """False when IF NOT EXISTS says to do nothing."""
        old = self.catalog.get(name)
        if old is None:
            return True
        if if_not_exists:
            return False
        if not or_replace:
            what = "stream" if old.kind == "STREAM" else "table"
            raise SqlError(f"Cannot add {kind.lower()} '{name}': A {what} with the same name already exists", *pos)
        return True

    def _ensure_topic(self, topic: str, partitions: int | None, pos: A.Pos, create: bool) -> None:
        md = self._admin.list_topics(timeout=10)
        exists = topic in md.topics and md.topics[topic].error is None
        if exists:
            have = len(md.topics[topic].partitions)
            if partitions is not None and have != partitions:
                raise SqlError(f"A Kafka topic with the name '{topic}' already exists, with different partition/"
                               f"replica configuration than required. KSQL expects {partitions} partitions "
                               f"(topic has {have}).", *pos)
            return
        if not create:
            raise SqlError(f"Kafka topic does not exist: {topic}", *pos)
        ensure_topics(self._admin, {topic: (partitions or 1, {})})

    def _create_source(self, st: A.CreateSource, props: dict[str, Any], offset: int | None, replay: bool) -> dict[str, Any]:
        info = source_from_ddl(st, self.registry)
        if not self._check_new_name(st.name, st.kind, st.or_replace, st.if_not_exists, st.pos):
            return self._status(st, f"{st.kind.lower()}/`{st.name}`/create", f"Cannot add {st.kind.lower()} `{st.name}`: already exists (IF NOT EXISTS).", self.command_seq)
        self._ensure_topic(info.topic, info.partitions, st.pos, create=info.partitions is not None or replay)
        seq = self._record(st, props, offset, replay, f"{st.kind.lower()}/`{st.name}`/create")
        self.catalog[st.name] = info
        return self._status(st, f"{st.kind.lower()}/`{st.name}`/create", f"{st.kind.title()} created", seq)

    # CREATE ... AS SELECT / INSERT INTO ... SELECT
    def _app_config(self, props: dict[str, Any], qid: str) -> dict[str, Any]:
        guarantee = str(props.get("processing.guarantee", "at_least_once"))
        return {"state_dir": str(self.state_dir / qid), "processing_guarantee": guarantee,
                "commit_interval_ms": int(props.get("commit.interval.ms", self.commit_interval_ms if guarantee == "at_least_once" else 100)),
                "consumer_config": {"auto.offset.reset": "earliest", **self.settings.client,
                                    **({"group.instance.id": f"{self.instance_id}-{qid}"} if self.instance_id else {}),
                                    # how the other servers find this one's partitions (pull queries
                                    # forwarded here), as Kafka Streams' application.server
                                    **({"client.id": f"_confluent-ksql-{self.service_id}query_{qid}@{self.advertised_url}"}
                                       if self.advertised_url else {}),
                                    **_prefixed(props, "ksql.streams.consumer.")},
                "producer_config": {**self.settings.client, **_prefixed(props, "ksql.streams.producer.")},
                # riverbed.streams' record cache (Kafka's 10 MiB default there) stays off for SQL
                # queries unless asked for: every change is emitted, as before
                "cache_max_bytes": int(props.get("ksql.streams.cache.max.bytes.buffering", 0))}

    def _start_at_end(self, topology: Any) -> None:
        """``auto.offset.reset=latest`` without a race: commit the source topics' current end
        offsets for the query's group before it starts (its consumer then reads from there; its
        internal topics, new and empty, from the beginning)."""
        internal = set(topology.repartition_topics)
        topics = sorted({t for sub in topology.subtopologies for t in sub.sources} - internal)
        c = consumer(self.settings, topology.app_id)
        try:
            offsets = []
            md = c.list_topics(timeout=10)
            for t in topics:
                for p in md.topics[t].partitions if t in md.topics else []:
                    _lo, hi = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)
                    offsets.append(TopicPartition(t, p, hi))
            if offsets:
                c.commit(offsets=offsets, asynchronous=False)
        finally:
            c.close()

    def _await_start_offsets(self, topology: Any, timeout: float = 10.0) -> None:
        """Another server created the query with ``auto.offset.reset=latest`` and commits its
        start offsets (the source topics' ends) just after writing the command: wait for them,
        so this server's consumer does not start its partitions from the beginning."""
        internal = set(topology.repartition_topics)
        topics = sorted({t for sub in topology.subtopologies for t in sub.sources} - internal)
        c = consumer(self.settings, topology.app_id)
        try:
            md = c.list_topics(timeout=10)
            tps = [TopicPartition(t, p) for t in topics if t in md.topics for p in md.topics[t].partitions]
            deadline = time.monotonic() + timeout
            while tps and time.monotonic() < deadline and not self._closing.is_set():
                if all(tp.offset >= 0 for tp in c.committed(tps, timeout=10)):
                    return
                time.sleep(0.05)
            if tps:
                log.warning("query %s: its start offsets were not committed within %.0f s; starting anyway",
                            topology.app_id, timeout)
        except KafkaException as e:
            log.warning("query %s: cannot read its start offsets: %s", topology.app_id, e)
        finally:
            c.close()

    def _plan_persistent(self, q: A.Query, name: str, sink: SinkSpec, qid: str, props: dict[str, Any]) -> Plan:
        if q.emit is None:
            raise SqlError("A persistent query needs EMIT CHANGES (or EMIT FINAL) here", *q.pos)
        if q.limit is not None:
            raise SqlError("LIMIT is not supported for persistent queries", *q.pos)
        planner = Planner(self.catalog, f"_confluent-ksql-{self.service_id}query_{qid}", self.settings.bootstrap)
        return planner.plan(q, sink=sink)

    def _create_as(self, st: A.CreateAs, props: dict[str, Any], offset: int | None, replay: bool) -> dict[str, Any]:
        if not self._check_new_name(st.name, st.kind, st.or_replace, st.if_not_exists, st.pos):
            return self._status(st, f"{st.kind.lower()}/`{st.name}`/create", "already exists (IF NOT EXISTS)", self.command_seq)
        if st.or_replace and st.name in self.catalog:
            raise SqlError("CREATE OR REPLACE of a query's sink is not supported yet", *st.pos)
        wp = st.props
        src = self.catalog.get(st.query.source.name)
        topic = str(wp.get("KAFKA_TOPIC") or st.name)
        vf = check_format(str(wp.get("VALUE_FORMAT") or wp.get("FORMAT") or (src.value_format if src else "JSON")), "VALUE_FORMAT")
        kf = check_format(str(wp.get("KEY_FORMAT") or wp.get("FORMAT") or (src.key_format if src else "KAFKA")), "KEY_FORMAT")
        # a source without a key (NONE) whose result has key columns: ksqlDB's default key format
        none_inherited = kf == "NONE" and not (wp.get("KEY_FORMAT") or wp.get("FORMAT"))
        names = _schema_names(wp, st.pos)
        _check_nullable(names, kf, vf, st.pos)
        sink = SinkSpec(st.name, topic, "KAFKA" if none_inherited else kf, vf, registry=self.registry, **names)
        prefix = "CSAS" if st.kind == "STREAM" else "CTAS"
        # check it plans (names, types, GROUP BY) before recording the command
        probe = self._plan_persistent(st.query, st.name, sink, f"{prefix}_{st.name}_probe", props)
        if probe.kind != st.kind:
            if st.kind == "STREAM":
                raise SqlError("Invalid result type. Your SELECT query produces a TABLE. Please use CREATE TABLE AS SELECT "
                               "statement instead.", *st.pos)
            raise SqlError("Invalid result type. Your SELECT query produces a STREAM. Please use CREATE STREAM AS SELECT "
                           "statement instead.", *st.pos)
        if none_inherited:
            kf = "KAFKA" if probe.key_columns else "NONE"
            sink = SinkSpec(st.name, topic, kf, vf, registry=self.registry, **names)
        if kf == "KAFKA" and len(probe.key_columns) > 1:
            raise SqlError("Key format KAFKA supports only one key column; add KEY_FORMAT='JSON' to the WITH clause", *st.pos)
        partitions = int(wp["PARTITIONS"]) if "PARTITIONS" in wp else self._partitions_of(probe.sources)
        if self._topic_exists(topic):
            self._ensure_topic(topic, partitions if "PARTITIONS" in wp else None, st.pos, create=False)
        else:
            ensure_topics(self._admin, {topic: (partitions, {"cleanup.policy": "compact"} if st.kind == "TABLE" else {})})
        seq = self._record(st, props, offset, replay, f"{st.kind.lower()}/`{st.name}`/create")
        qid = f"{prefix}_{st.name}_{seq}"
        plan = self._plan_persistent(st.query, st.name, sink, qid, props)
        info = SourceInfo(st.name, st.kind, topic, kf, vf, plan.key_columns, plan.value_columns, partitions,
                          statement=st.text, window=plan.window, registry=self.registry, **names)
        self.catalog[st.name] = info
        self._start_query(qid, st.text, info, plan, props, wait=not replay or self._live, new=self._from_runner)
        return self._status(st, f"{st.kind.lower()}/`{st.name}`/create", f"Created query with ID {qid}", seq, qid)

    def _topic_exists(self, topic: str) -> bool:
        md = self._admin.list_topics(timeout=10)
        return topic in md.topics and md.topics[topic].error is None

    def _partitions_of(self, sources: list[str]) -> int:
        md = self._admin.list_topics(timeout=10)
        n = 1
        for s in sources:
            info = self.catalog.get(s)
            if info is not None and info.topic in md.topics:
                n = max(n, len(md.topics[info.topic].partitions))
        return n

    def _insert_select(self, st: A.InsertSelect, props: dict[str, Any], offset: int | None, replay: bool) -> dict[str, Any]:
        target = self.catalog.get(st.target)
        if target is None:
            raise SqlError(f"{st.target} does not exist.", *st.pos)
        if target.kind != "STREAM":
            raise SqlError(f"INSERT INTO can only be used to insert into a stream. {st.target} is a table.", *st.pos)
        sink = SinkSpec(target.name, target.topic, target.key_format, target.value_format, target.wrap_single, self.registry,
                        target.key_schema_name, target.value_schema_name, target.key_schema_id, target.value_schema_id,
                        target.key_proto_nullable, target.value_proto_nullable, target.key_delimiter, target.value_delimiter)
        probe = self._plan_persistent(st.query, target.name, sink, "INSERTQUERY_probe", props)
        if [c for _, c in probe.value_columns] != [c for _, c in target.value_columns] and \
                [n for n, _ in probe.value_columns] != [n for n, _ in target.value_columns]:
            raise SqlError(f"Incompatible schema between results and sink. Result schema is {schema_text(probe.columns)}, "
                           f"but the sink schema is {', '.join(f'`{n}` {type_text(t)}' for n, t in target.columns)}.", *st.pos)
        seq = self._record(st, props, offset, replay, f"stream/`{st.target}`/insert")
        qid = f"INSERTQUERY_{seq}"
        plan = self._plan_persistent(st.query, target.name, sink, qid, props)
        self._start_query(qid, st.text, target, plan, props, wait=not replay or self._live, new=self._from_runner)
        return self._status(st, f"stream/`{st.target}`/insert", f"Created query with ID {qid}", seq, qid)

    def _start_query(self, qid: str, text: str, sink: SourceInfo, plan: Plan, props: dict[str, Any],
                     wait: bool = True, new: bool = False) -> None:
        """``wait``: this server started the query (it commits the start offsets of ``latest``,
        and waits for the assignment); ``new``: another server started it just now (this one
        waits for those start offsets before its consumer joins the group)."""
        topology = plan.app.topology()
        latest = str(props.get("auto.offset.reset", "latest")) == "latest"
        if wait and latest:
            self._start_at_end(topology)  # a new query (not one resumed from the command topic)
        elif new and latest:
            self._await_start_offsets(topology)
        status: dict[str, Any] = {"status_kind": "sql", "status_name": qid, "status_figures": {"service_id": self.service_id, "sink": sink.name, "statement": text[:200]}}
        rt = Runtime(topology, self.settings.bootstrap, **self._app_config(props, qid), **status)
        rt.metrics_url = self.metrics_url
        pq = PersistentQuery(qid, text, sink.name, sink.topic, plan.sources, plan, rt)
        for s in plan.sources:
            self.catalog[s].readers.add(qid)
        sink.writers.add(qid)
        if plan.store is not None and plan.stored_row is not None and sink.kind == "TABLE":
            from .catalog import Materialization

            sink.materialized = Materialization(qid, plan.store, plan.stored_row)

        def run() -> None:
            """Run the query; when it fails (the cluster went away, a transaction was fenced),
            restart it from its last commit after a pause (1 s, doubling to 30 s), as ksqlDB
            restarts failed persistent queries. SHOW QUERIES says ERROR meanwhile."""
            backoff = 1.0
            while not pq.stopped.is_set():
                try:
                    assert pq.runtime is not None
                    pq.runtime.run()
                    return
                except Exception as e:
                    pq.state, pq.error = "ERROR", str(e)
                    log.error("persistent query %s failed (restarting in %.0f s): %s", qid, backoff, e)
                if pq.stopped.wait(backoff):
                    return
                backoff = min(backoff * 2, 30.0)
                pq.restarts += 1
                pq.runtime = Runtime(topology, self.settings.bootstrap, **self._app_config(props, qid), **status)
                pq.runtime.metrics_url = self.metrics_url
                pq.state = "RUNNING"

        pq.thread = threading.Thread(target=run, name=f"query-{qid}", daemon=True)
        self.queries[qid] = pq
        pq.thread.start()
        log.info("started persistent query %s: %s", qid, text)
        if wait:  # until its partitions are assigned: records produced after CREATE returns are seen
            deadline = time.monotonic() + 15
            while not rt.tasks and pq.state == "RUNNING" and time.monotonic() < deadline:
                time.sleep(0.005)

    # DROP / TERMINATE
    def _drop(self, st: A.Drop, props: dict[str, Any], offset: int | None, replay: bool) -> dict[str, Any]:
        info = self.catalog.get(st.name)
        if info is None:
            if st.if_exists:
                return self._status(st, f"{st.kind.lower()}/`{st.name}`/drop", f"Source `{st.name}` does not exist.", self.command_seq)
            raise SqlError(f"{st.kind.title()} {st.name} does not exist.", *st.pos)
        if info.kind != st.kind:
            raise SqlError(f"Incompatible data source type is {info.kind}, but statement was DROP {st.kind}", *st.pos)
        readers = sorted(q for q in info.readers if q in self.queries)
        writers = sorted(q for q in info.writers if q in self.queries)
        if readers:
            raise SqlError(f"Cannot drop {st.name}.\nThe following queries read from this source: [{', '.join(readers)}].\n"
                           "You need to terminate them before dropping " + st.name + ".", *st.pos)
        seq = self._record(st, props, offset, replay, f"{st.kind.lower()}/`{st.name}`/drop")
        for q in writers:  # ksqlDB terminates the query that writes a dropped source
            self._stop_query(q)
        del self.catalog[st.name]
        if st.delete_topic and (not replay or self._live):
            try:
                self._admin.delete_topics([info.topic], request_timeout=30)[info.topic].result(30)
            except KafkaException as e:
                log.warning("could not delete topic %s: %s", info.topic, e)
        return self._status(st, f"{st.kind.lower()}/`{st.name}`/drop", f"Source `{st.name}` (topic: {info.topic}) was dropped.", seq)

    def _stop_query(self, qid: str) -> None:
        """TERMINATE (or the DROP of its sink): stop it, then delete its group, internal topics
        and state directory, as ksqlDB cleans up a terminated query."""
        pq = self.queries.pop(qid, None)
        if pq is None:
            return
        pq.stop()
        if pq.runtime is not None:
            self._delete_internals(pq.runtime)
        import shutil

        shutil.rmtree(self.state_dir / qid, ignore_errors=True)
        for info in self.catalog.values():
            info.readers.discard(qid)
            info.writers.discard(qid)
            if info.materialized is not None and info.materialized.query_id == qid:
                info.materialized = None

    def _terminate(self, st: A.Terminate, props: dict[str, Any], offset: int | None, replay: bool) -> dict[str, Any]:
        if st.query_id is not None:
            if st.query_id in self.push_queries:
                self.push_queries[st.query_id].close()
                return self._status(st, "terminate/`" + st.query_id + "`/execute", "Query terminated.", self.command_seq)
            if st.query_id not in self.queries and not replay:
                raise SqlError(f"Unknown queryId: {st.query_id}", *st.pos, code=BAD_STATEMENT)
        seq = self._record(st, props, offset, replay, f"terminate/`{st.query_id or 'ALL'}`/execute")
        for qid in [st.query_id] if st.query_id else list(self.queries):
            self._stop_query(qid)
        return self._status(st, f"terminate/`{st.query_id or 'ALL'}`/execute", "Query terminated.", seq)

    # INSERT INTO ... VALUES
    def _insert_values(self, st: A.InsertValues) -> dict[str, Any]:
        info = self.catalog.get(st.target)
        if info is None:
            raise SqlError(f"Cannot insert values into an unknown stream/table: {st.target}", *st.pos)
        if info.window is not None or (info.kind == "TABLE" and info.writers):
                raise SqlError(f"Cannot insert values into read-only table: {st.target}", *st.pos)
        header_names = {n for n, _, _ in info.header_columns}
        if header_names & set(st.columns or []):
            raise SqlError(f"Cannot insert into HEADER columns: {', '.join(sorted(header_names & set(st.columns or [])))}", *st.pos)
        names = st.columns or [n for n, _ in info.columns if n not in header_names]
        if len(names) != len(st.values):
            raise SqlError(f"Expected a value for each column. Expected Columns: {names}. Got {len(st.values)} values", *st.pos)
        comp = Compiler(Scope({}), clause="VALUES")
        row: dict[str, Any] = {}
        ts = int(time.time() * 1000)
        for n, e in zip(names, st.values, strict=True):
            c = comp.compile(e)
            if n == "ROWTIME":
                ts = int(c.fn({}))
                continue
            t = info.column_type(n)
            if t is None:
                raise SqlError(f"Column name {n} does not exist.", *e.pos)
            if not T.compatible(t, c.type):
                raise SqlError(f"Expected type {type_text(t)} for field {n} but got {show(e)}({type_text(c.type)})", *e.pos)
            from .compiler import cast_value

            v = c.fn({})
            row[n] = cast_value(v, t) if t.name in ("INTEGER", "BIGINT", "DOUBLE", "DECIMAL", "STRING") else v
        ks = info.key_serde()
        key = None
        if len(info.key_columns) == 1:
            key = row.get(info.key_columns[0][0])
        elif info.key_columns:
            key = tuple(row.get(n) for n, _ in info.key_columns)
        self._produce(info.topic, ks.serialize(key), info.value_serde().serialize(row), ts)
        return {"@type": "currentStatus", "statementText": st.text, "commandId": None,
                "commandStatus": {"status": "SUCCESS", "message": "Inserted 1 row", "queryId": None},
                "commandSequenceNumber": -1, "warnings": []}

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, ts: int) -> None:
        result: dict[str, Any] = {}

        def done(err: Any, _msg: Any) -> None:
            result["err"] = err

        self._producer.produce(topic, value, key, timestamp=ts, on_delivery=done)
        self._producer.flush(30)
        if result.get("err") is not None:
            raise SqlError(f"Failed to insert values into '{topic}': {result['err']}", code=SERVER_ERROR)

    # SHOW / DESCRIBE / EXPLAIN
    def _source_summary(self, info: SourceInfo) -> dict[str, Any]:
        return {"type": info.kind, "name": info.name, "topic": info.topic, "keyFormat": info.key_format,
                "valueFormat": info.value_format, "isWindowed": info.window is not None}

    def _query_summary(self, q: PersistentQuery) -> dict[str, Any]:
        state = q.state if q.state == "ERROR" or q.runtime is None or q.thread is None or q.thread.is_alive() else "NOT_RUNNING"
        return {"queryString": q.statement, "sinks": [q.sink], "sinkKafkaTopics": [q.sink_topic], "id": q.id,
                "statusCount": {state: 1}, "queryType": q.kind, "state": state}

    def _show(self, st: A.Show) -> dict[str, Any]:
        base = {"statementText": st.text, "warnings": []}
        w = st.what
        if w in ("STREAMS", "TABLES"):
            kind = w[:-1]
            items = [self._source_summary(i) for i in sorted(self.catalog.values(), key=lambda i: i.name) if i.kind == kind]
            if st.extended:
                return {"@type": "source_descriptions", **base,
                        "sourceDescriptions": [self._description(i, True) for i in self.catalog.values() if i.kind == kind]}
            return {"@type": w.lower(), **base, w.lower(): items}
        if w == "QUERIES":
            qs = [self._query_summary(q) for q in self.queries.values()]
            qs += [{"queryString": "", "sinks": [], "sinkKafkaTopics": [], "id": p.id, "statusCount": {"RUNNING": 1},
                    "queryType": "PUSH", "state": "RUNNING"} for p in self.push_queries.values()]
            return {"@type": "queries", **base, "queries": qs}
        if w == "TOPICS":
            md = self._admin.list_topics(timeout=10)
            topics = [{"name": n, "replicaInfo": [len(p.replicas) for p in t.partitions.values()]}
                      for n, t in sorted(md.topics.items()) if st.extended or not n.startswith(("_", "__"))]
            return {"@type": "kafka_topics", **base, "topics": topics}
        if w == "PROPERTIES":
            return {"@type": "properties", **base, "properties": [
                {"name": k, "scope": "KSQL", "value": str(v)} for k, v in sorted(self.properties.items())],
                "overwrittenProperties": [], "defaultProperties": sorted(self.properties)}
        if w == "FUNCTIONS":
            from . import functions as F

            fns = [{"name": n, "category": "AGGREGATE" if n in F.AGGREGATES else "SCALAR",
                    "type": "AGGREGATE" if n in F.AGGREGATES else "SCALAR"} for n in sorted({*F.SCALARS, *F.AGGREGATES})]
            return {"@type": "function_names", **base, "functions": fns}
        raise SqlError(f"SHOW {w} is not supported yet", *st.pos)

    def _description(self, info: SourceInfo, extended: bool) -> dict[str, Any]:
        fields = [{"name": n, "schema": _schema_json(t), "type": "KEY"} for n, t in info.key_columns]
        fields += [{"name": n, "schema": _schema_json(t)} for n, t in info.value_columns]
        fields += [{"name": n, "schema": _schema_json(t), "type": "HEADERS" if h is None else f"HEADER('{h}')"}
                   for n, t, h in info.header_columns]
        reads = [self._query_summary(self.queries[q]) for q in sorted(info.readers) if q in self.queries]
        writes = [self._query_summary(self.queries[q]) for q in sorted(info.writers) if q in self.queries]
        return {"name": info.name, "windowType": info.window.kind if info.window else None, "readQueries": reads,
                "writeQueries": writes, "fields": fields, "type": info.kind,
                "timestamp": info.timestamp or "", "statistics": "", "errorStats": "", "extended": extended,
                "keyFormat": info.key_format, "valueFormat": info.value_format, "topic": info.topic,
                "partitions": info.partitions or 0, "replication": 1, "statement": info.statement,
                "queryOffsetSummaries": [], "sourceConstraints": []}

    def _describe(self, st: A.Describe) -> dict[str, Any]:
        info = self.catalog.get(st.name)
        if info is None:
            raise SqlError(f"Could not find STREAM/TABLE '{st.name}' in the Metastore", *st.pos, code=BAD_STATEMENT)
        return {"@type": "sourceDescription", "statementText": st.text, "warnings": [],
                "sourceDescription": self._description(info, st.extended)}

    def _describe_list(self, st: A.DescribeList) -> dict[str, Any]:
        kind = st.what[:-1]
        return {"@type": "source_descriptions", "statementText": st.text, "warnings": [],
                "sourceDescriptions": [self._description(i, st.extended) for i in self.catalog.values() if i.kind == kind]}

    def _describe_function(self, st: A.DescribeFunction) -> dict[str, Any]:
        from . import functions as F

        s, a = F.lookup_scalar(st.name), F.lookup_aggregate(st.name)
        if s is None and a is None:
            raise SqlError(f"Can't find any functions with the name '{st.name}'", *st.pos)
        desc = (s.description if s else a.description if a else "") or ""
        return {"@type": "describe_function", "statementText": st.text, "warnings": [], "name": st.name,
                "description": desc, "author": "riverbed", "version": VERSION, "path": "internal",
                "type": "AGGREGATE" if a else "SCALAR", "functions": []}

    def _explain(self, st: A.Explain, props: dict[str, Any]) -> dict[str, Any]:
        if st.query_id is not None:
            pq = self.queries.get(st.query_id)
            if pq is None:
                raise SqlError(f"Query with id:{st.query_id} does not exist, use SHOW QUERIES to view the full set of queries.", *st.pos)
            plan, text, qid, sinks = pq.plan, pq.statement, pq.id, [pq.sink]
        else:
            assert st.query is not None
            plan = Planner(self.catalog, "explain", self.settings.bootstrap).plan(st.query, emit=lambda *_: None)
            text, qid, sinks = st.text, "", []
        return {"@type": "queryDescription", "statementText": st.text, "warnings": [], "queryDescription": {
            "id": qid, "statementText": text, "windowType": plan.window.kind if plan.window else None,
            "fields": [{"name": c.name, "schema": _schema_json(c.type), **({"type": "KEY"} if c.key else {})} for c in plan.columns],
            "sources": plan.sources, "sinks": sinks, "topology": plan.app.topology().describe(),
            "executionPlan": "\n".join(plan.description), "overriddenProperties": {}, "state": "RUNNING" if qid else None,
            "queryType": "PERSISTENT" if qid else "PUSH"}}

    # -- queries ---------------------------------------------------------------------------------------
    def query(self, text: str, properties: dict[str, Any] | None = None) -> tuple[str, list[OutputColumn], Any]:
        """A SELECT: ``("push", columns, PushQuery)`` or ``("pull", columns, rows)``."""
        sts = parse_select(text)  # (pull queries: parsed once per shape, riverbed.sql.parser)
        if len(sts) == 1 and isinstance(sts[0], A.Print):
            return "print", [], self.print_topic(sts[0])
        if len(sts) != 1 or not isinstance(sts[0], A.SelectStatement):
            raise SqlError("Expected exactly one SELECT statement")
        st = sts[0]
        props = {**self.properties, **(properties or {})}
        if st.query.emit is not None:
            pq = self.push(st.query, props)
            return "push", pq.columns, pq
        cols, rows = self.pull(st.query, text=st.text, props=props)
        return "pull", cols, rows

    def print_topic(self, st: A.Print, poll_s: float = 0.5) -> Iterator[str | None]:
        """``PRINT 'topic' [FROM BEGINNING] [LIMIT n]``: the topic's records as text lines, as
        ksqlDB prints them; ``None`` now and then while none arrive (the caller may stop)."""
        c = consumer(self.settings, f"_riverbed-sql-print-{uuid.uuid4().hex}")
        md = c.list_topics(st.topic, timeout=10)
        t = md.topics.get(st.topic)
        if t is None or t.error is not None:
            c.close()
            raise SqlError(f"Could not find topic '{st.topic}', or the KSQL user does not have permissions to list "
                           "the topic. Topic names are case-sensitive.", *st.pos, code=BAD_STATEMENT)
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

        start = OFFSET_BEGINNING if st.from_beginning else OFFSET_END
        c.assign([TopicPartition(st.topic, p, start) for p in t.partitions])

        def text(raw: bytes | None) -> str:
            if raw is None:
                return "<null>"
            try:
                return bytes(raw).decode()
            except UnicodeDecodeError:
                return bytes(raw).hex()

        def lines() -> Iterator[str | None]:
            n = 0
            try:
                yield "Key format: KAFKA_STRING\nValue format: JSON or KAFKA_STRING"
                while st.limit is None or n < st.limit:
                    m = c.poll(poll_s)
                    if m is None:
                        yield None
                        continue
                    if m.error() is not None:
                        continue
                    ts = m.timestamp()[1]
                    when = time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime(ts / 1000)) + f".{ts % 1000:03d} Z"
                    yield f"rowtime: {when}, key: {text(m.key())}, value: {text(m.value())}, partition: {m.partition()}"
                    n += 1
            finally:
                c.close()
        return lines()

    def push(self, q: A.Query, props: dict[str, Any]) -> PushQuery:
        qid = f"transient_{q.source.name}_{uuid.uuid4().int % 10**19}"
        app_id = f"_confluent-ksql-{self.service_id}{qid}"
        holder: list[PushQuery] = []

        def emit(k: Any, v: Any, _ts: int) -> None:
            if not holder:
                return
            pq = holder[0]
            if v is None and plan.kind == "STREAM":
                return
            row = None if v is None else [to_json_value(v.get(c.name)) for c in plan.columns]
            if row is None:
                return  # a table row's deletion (ksqlDB shows tombstones only with EMIT CHANGES on tables' changelogs)
            while not pq.closed.is_set():
                try:
                    pq.rows.put(row, timeout=0.2)
                    break
                except queue.Full:
                    continue  # the client reads slower than rows arrive: hold the query (bounded memory)
            pq.sent += 1
            if pq.limit is not None and pq.sent >= pq.limit:
                pq.close()

        with self._lock:
            plan = Planner(self.catalog, app_id, self.settings.bootstrap).plan(q, emit=emit)
        topology = plan.app.topology()
        if str(props.get("auto.offset.reset", "latest")) == "latest":
            self._start_at_end(topology)
        # batch_size 1: librdkafka's consume(n, timeout) waits for n records or the timeout, which
        # at 1,000 records/s would hold each row back by up to 100 ms
        rt = Runtime(topology, self.settings.bootstrap, in_memory_stores=True, commit_interval_ms=1000, batch_size=1,
                     consumer_config={"auto.offset.reset": "earliest", **self.settings.client},
                     producer_config=dict(self.settings.client), report_status=False,  # (transient: not a service)
                     cache_max_bytes=0)
        pq = PushQuery(qid, plan.columns, q.limit, rt, on_close=self._push_closed)
        holder.append(pq)

        def run() -> None:
            try:
                rt.run()
            except Exception as e:
                pq.error = str(e)
                log.error("push query %s failed: %s", qid, e)
            finally:
                pq.close()

        pq.thread = threading.Thread(target=run, name=f"push-{qid}", daemon=True)
        self.push_queries[qid] = pq
        pq.thread.start()
        deadline = time.monotonic() + 15
        while not rt.tasks and not pq.closed.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)  # wait for the assignment, so rows produced from now on are seen
        return pq

    def _push_closed(self, pq: PushQuery) -> None:
        self.push_queries.pop(pq.id, None)

        def cleanup() -> None:
            if pq.thread is not None:
                pq.thread.join(30)
            self._delete_internals(pq.runtime)

        threading.Thread(target=cleanup, name=f"cleanup-{pq.id}", daemon=True).start()

    def _delete_internals(self, rt: Runtime) -> None:
        """A finished query's consumer group and internal topics (repartition, changelogs)."""
        app_id = rt.app_id
        try:
            self._admin.delete_consumer_groups([app_id], request_timeout=10)[app_id].result(10)
        except Exception as e:
            log.debug("could not delete group %s: %s", app_id, e)
        internal = list(rt.topology.repartition_topics) + [rt.topology.changelog_topic(s) for s in rt.topology.store_specs]
        if internal:
            try:
                for f in self._admin.delete_topics(internal, request_timeout=10).values():
                    f.result(10)
            except Exception as e:
                log.debug("could not delete %s: %s", internal, e)

    def close_query(self, qid: str) -> bool:
        pq = self.push_queries.get(qid)
        if pq is None:
            return False
        pq.close()
        return True

    def pull(self, q: A.Query, text: str | None = None,
             props: dict[str, Any] | None = None) -> tuple[list[OutputColumn], list[list[Any]]]:
        """A pull query: the table's current rows from its query's store, or a scan of the
        topic (streams, and tables no query materializes), filtered and projected. A table
        materialized by a query whose partitions other servers own too: those servers answer
        for theirs (the statement ``text`` is forwarded to them over HTTP, marked not to be
        forwarded again) and the rows are merged."""
        if q.joins or q.group_by or q.window or q.partition_by or q.having:
            raise SqlError("Pull queries don't support JOIN, GROUP BY, WINDOW, PARTITION BY or HAVING clauses.", *q.pos)
        info = self.catalog.get(q.source.name)
        if info is None:
            raise SqlError(f"{q.source.name} does not exist.", *q.source.pos)
        cols_in = [*info.columns, *(WINDOW_COLUMNS if info.window else []), *PSEUDO]
        scope = Scope({q.source.ref: cols_in})
        comp = Compiler(scope, clause="WHERE")
        pred = comp.predicate(q.where) if q.where is not None else None
        out_cols: list[OutputColumn] = []
        getters: list[Callable[[Any], Any]] = []
        taken: set[str] = set()
        key_names = {n for n, _ in info.key_columns}
        for i, it in enumerate(q.items):
            if it.expr is None:
                star = [*info.key_columns, *(WINDOW_COLUMNS if info.window else []), *info.value_columns,
                        *((n, t) for n, t, _ in info.header_columns)]
                for n, t in star:
                    taken.add(n)
                    out_cols.append(OutputColumn(n, t, n in key_names))
                    getters.append(_getter(n))
                continue
            c = Compiler(scope, clause="SELECT").compile(it.expr)
            name = column_name(it, i, taken)
            out_cols.append(OutputColumn(name, c.type, isinstance(it.expr, A.Column) and it.expr.name in key_names))
            getters.append(c.fn)
        rows: list[list[Any]] = []
        peers: list[str] = []
        if text is not None and info.materialized is not None and \
                str((props or {}).get(SKIP_FORWARDING, "false")).lower() != "true":
            peers = self._peers_of(info.materialized.query_id)
        if peers:
            pq = self.queries.get(info.materialized.query_id) if info.materialized else None
            local = pq is not None and pq.runtime is not None and bool(pq.runtime.tasks)
            lookup = self._key_of(q.where, info)
            owners = self._owners_of_keys(info, lookup[1]) if lookup[0] else None
            if owners is not None:  # a key lookup: only the servers owning the keys' partitions
                local, peers = owners
            rows = [] if not local else self.pull(q)[1]
            for url in peers:
                try:
                    rows.extend(self._forward_pull(url, text or ""))
                except SqlError:
                    if pq is not None and pq.runtime is not None:
                        pq.runtime.forget_members()  # the next pull asks the group again
                    raise
            if q.limit is not None:
                rows = rows[:q.limit]
            return out_cols, rows
        for r in self._rows_of(info, self._key_of(q.where, info)):
            if pred is not None and not pred(r):
                continue
            rows.append([to_json_value(g(r)) for g in getters])
            if q.limit is not None and len(rows) >= q.limit:
                break
            if len(rows) > self.max_pull_rows:  # an answer is held in memory: bounded
                raise SqlError(f"The pull query's answer has more than {self.max_pull_rows} rows; add a LIMIT, or a "
                               "WHERE clause that selects fewer rows (or use a push query)", *q.pos)
        return out_cols, rows

    def _peers_of(self, query_id: str) -> list[str]:
        """The other servers owning partitions of a persistent query (its group's members whose
        client id names their REST API: ``<app id>@<url>``)."""
        pq = self.queries.get(query_id)
        if pq is None or pq.runtime is None or self.advertised_url is None:
            return []
        app_id = pq.runtime.app_id
        try:
            desc = pq.runtime.group_members()  # (cached for a second, and until a rebalance)
        except Exception as e:
            log.warning("pull query: cannot describe group %s: %s", app_id, e)
            return []
        urls: list[str] = []
        for m in desc.members:
            cid = str(m.client_id or "")
            url = cid.split("@", 1)[1] if "@" in cid else None
            if url and url != self.advertised_url and m.assignment.topic_partitions and url not in urls:
                urls.append(url)
        return urls

    def _owners_of_keys(self, info: SourceInfo, keys: list[Any]) -> tuple[bool, list[str]] | None:
        """For a key lookup: (whether this server holds one of the keys' partitions, the other
        servers holding the rest), from each key's partition of the store's input topic (murmur2
        of the key as the query serializes it: a repartition topic, which the query writes); None
        when that cannot be told (then every server owning partitions is asked)."""
        m = info.materialized
        pq = self.queries.get(m.query_id) if m is not None else None
        if m is None or pq is None or pq.runtime is None:
            return None
        rt = pq.runtime
        try:
            from riverbed.streams.query import partition_for

            spec = rt.topology.store_specs[m.store]
            sub = next(s for s in rt.topology.subtopologies if any(x.name == m.store for x in s.stores))
            if not set(sub.sources) <= set(rt.topology.repartition_topics):
                return None  # keys written by the query itself only (by the store's key serde)
            n = max(rt._partitions.get(t, 0) for t in sub.sources)
            if n <= 0:
                return None
            parts = set()
            for k in keys:
                raw = spec.key_serde.serialize(k)
                if raw is None:
                    return None
                parts.add(partition_for(raw, n))
            local = {p for sid, p in list(rt.tasks) if sid == sub.id}
            urls: list[str] = []
            for p in sorted(parts - local):
                owner = rt._owner_of(sub.sources, p)
                if owner is None:
                    return None
                if owner != self.advertised_url and owner not in urls:
                    urls.append(owner)
            return bool(parts & local), urls
        except Exception as e:
            log.warning("pull query: cannot tell the owners of %s's keys (asking every server): %s", info.name, e)
            return None

    def _forward_pull(self, url: str, text: str) -> list[list[Any]]:
        import httpx

        try:
            r = httpx.post(f"{url}/query-stream", json={"sql": text, "properties": {SKIP_FORWARDING: True}},
                           headers={"Accept": "application/json"}, timeout=30)
        except httpx.HTTPError as e:
            raise SqlError(f"The pull query could not be forwarded to {url}, which owns partitions of the table: "
                           f"{type(e).__name__} {e}", code=SERVER_ERROR) from None
        if r.status_code != 200:
            try:
                msg = r.json().get("message")
            except ValueError:
                msg = r.text
            raise SqlError(f"The pull query failed on {url}: {msg}", code=SERVER_ERROR)
        return [list(row) for row in r.json()[1:]]

    MAX_LOOKUP_KEYS = 1000

    @staticmethod
    def _key_of(where: A.Expr | None, info: SourceInfo) -> tuple[bool, Any]:
        """(True, [key, ...]) when the WHERE pins every key column to literals (``k = x``,
        ``k IN (x, y)``, alone or AND-ed with other conditions; several key columns: each
        pinned, the keys are their combinations): the pull query reads those keys from the
        store instead of scanning it. (False, None) otherwise (a scan; the WHERE filters)."""
        if where is None or not info.key_columns:
            return False, None
        from .compiler import cast_value

        types = dict(info.key_columns)
        pinned: dict[str, list[Any]] = {}

        def literal(e: A.Expr, col: str) -> tuple[bool, Any]:
            if isinstance(e, A.Literal) and e.value is not None and e.kind not in ("NULL", "INTERVAL"):
                try:
                    return True, cast_value(e.value, types[col])
                except Exception:
                    return False, None
            return False, None

        def visit(e: A.Expr) -> None:
            if isinstance(e, A.Binary) and e.op == "AND":
                visit(e.left)
                visit(e.right)
                return
            values: list[Any] | None = None
            col: str | None = None
            if isinstance(e, A.Binary) and e.op == "=":
                for a, b in ((e.left, e.right), (e.right, e.left)):
                    if isinstance(a, A.Column) and a.name in types:
                        ok, v = literal(b, a.name)
                        if ok:
                            col, values = a.name, [v]
                            break
            elif isinstance(e, A.InList) and not e.negate and isinstance(e.operand, A.Column) and e.operand.name in types:
                got = [literal(x, e.operand.name) for x in e.items]
                if all(ok for ok, _ in got):
                    col, values = e.operand.name, [v for _, v in got]
            if col is None or values is None:
                return
            if col in pinned:  # k = 1 AND k IN (1, 2): both hold
                values = [v for v in pinned[col] if v in values]
            pinned[col] = values

        visit(where)
        if set(pinned) != set(types):
            return False, None
        names = [n for n, _ in info.key_columns]
        combos: list[tuple[Any, ...]] = [()]
        for n in names:
            combos = [(*c, v) for c in combos for v in dict.fromkeys(pinned[n])]
            if len(combos) > Engine.MAX_LOOKUP_KEYS:
                return False, None
        keys = [c[0] for c in combos] if len(names) == 1 else combos
        return True, keys

    def _rows_of(self, info: SourceInfo, lookup: tuple[bool, Any] = (False, None)) -> Iterator[dict[str, Any]]:
        m = info.materialized
        if m is not None:
            pq = self.queries.get(m.query_id)
            if pq is None or pq.runtime is None:
                raise SqlError(f"The query materializing {info.name} is not running", code=SERVER_ERROR)
            if not pq.runtime.tasks:
                raise SqlError(f"{info.name} is not available for pull queries yet: its query {pq.id} is starting "
                               "(joining its group, restoring its state)", code=SERVER_ERROR)
            entries = pq.runtime.scan(m.store, keys=lookup[1] if lookup[0] else None)
            out = []
            for k, v in entries:
                r = m.row(k, v)
                if r is not None:
                    if info.window is not None:
                        r = {**r, "WINDOWSTART": k.window.start, "WINDOWEND": k.window.end}
                    out.append(r)
            out.sort(key=lambda r: json.dumps([to_json_value(r.get(n)) for n, _ in info.key_columns], default=str)
                     + str(r.get("WINDOWSTART", "")))
            yield from out
            return
        if info.window is not None:
            raise SqlError(f"The windowed table {info.name} is not materialized by a running query", code=NOT_FOUND)
        yield from self._scan_topic(info)

    def _scan_topic(self, info: SourceInfo) -> Iterator[dict[str, Any]]:
        c = consumer(self.settings, f"_riverbed-sql-pull-{uuid.uuid4().hex}")
        ks, vs = info.key_serde(), info.value_serde()
        latest: dict[str, dict[str, Any] | None] = {}
        try:
            md = c.list_topics(info.topic, timeout=10)
            t = md.topics.get(info.topic)
            if t is None or t.error is not None:
                raise SqlError(f"Kafka topic does not exist: {info.topic}", code=NOT_FOUND)
            ends = {}
            assign = []
            for p in t.partitions:
                lo, hi = c.get_watermark_offsets(TopicPartition(info.topic, p), timeout=10)
                if hi > lo:
                    ends[p] = hi
                    assign.append(TopicPartition(info.topic, p, lo))
            if not assign:
                return
            c.assign(assign)
            deadline = time.monotonic() + 30
            while ends and time.monotonic() < deadline:
                for m in c.consume(500, 0.5):
                    if m.error():
                        continue
                    p = int(m.partition() or 0)
                    moff = int(m.offset() or 0)
                    if moff + 1 >= ends.get(p, 0):
                        ends.pop(p, None)
                    try:
                        k = ks.deserialize(m.key())
                        v = vs.deserialize(m.value())
                    except Exception as e:
                        log.warning("pull query: record %s-%d@%d does not decode: %s", info.topic, p, moff, e)
                        continue
                    row = None
                    if v is not None:
                        row = {**v, **ks.to_columns(k), "ROWTIME": m.timestamp()[1], "ROWPARTITION": p, "ROWOFFSET": moff}
                        if info.header_columns:
                            row.update(header_values(m.headers(), info.header_columns))
                    if info.kind == "STREAM":
                        if row is not None:
                            yield row
                    else:
                        latest[json.dumps(to_json_value(k), default=str)] = row
        finally:
            c.close()
        for r in latest.values():
            if r is not None:
                yield r


def _prefixed(props: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Client settings passed as ksqlDB passes them: ``ksql.streams.consumer.session.timeout.ms``."""
    return {k[len(prefix):]: v for k, v in props.items() if k.startswith(prefix)}


def _getter(name: str) -> Callable[[Any], Any]:
    return lambda r: r.get(name)


def error_body(e: SqlError, statement: str | None = None) -> dict[str, Any]:
    """ksqlDB's error entity."""
    return {"@type": "statement_error" if statement is not None else "generic_error", "error_code": e.code,
            "message": str(e), "statementText": statement, "entities": []}
