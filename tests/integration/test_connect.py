"""riverbed.connect against a real PostgreSQL (wal_level=logical, private instance) and a real
riverbed broker: snapshot -> stream boundary, inserts/updates/deletes/truncate, type mapping,
the connector killed with -9 mid-stream, the slot-lag guardrail, the outbox, the CLI. Records
are decoded by tests/integration/connect_helpers.py, written against Debezium's format."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import KafkaException

from riverbed.client import ClusterSettings
from riverbed.connect.catalog import Catalog
from riverbed.connect.config import ConnectorConfig
from riverbed.connect.connector import PostgresConnector, SlotLagExceeded
from riverbed.connect.pgoutput import parse_lsn
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker, free_port
from riverbed.testing.servers import PostgresServer

from .connect_helpers import events, position, read_topic, replay, wait_for

pytestmark = pytest.mark.integration
_n = itertools.count()


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer(settings={"wal_level": "logical", "max_replication_slots": 20, "max_wal_senders": 20}) as server:
        yield server


@pytest.fixture(scope="module")
def kafka() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(**FIXTURE_DEFAULTS) as b:
        yield b


@pytest.fixture
def db(pg: PostgresServer) -> str:
    """A fresh database; its conninfo."""
    name = f"t{os.getpid()}_{next(_n)}"
    with psycopg.connect(pg.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return f"host=127.0.0.1 port={pg.port} user=postgres dbname={name}"


def config(dsn: str, **extra: Any) -> ConnectorConfig:
    n = next(_n)
    props = {"name": f"c{n}", "topic.prefix": f"p{n}", "database.dsn": dsn, "database.dbname": dsn.rsplit("=", 1)[1],
             "slot.name": f"slot{os.getpid()}_{n}", "offset.flush.interval.ms": 100, "status.update.interval.ms": 200, **extra}
    return ConnectorConfig.from_props(props)


class Running:
    def __init__(self, cfg: ConnectorConfig, bootstrap: str) -> None:
        self.connector = PostgresConnector(cfg, ClusterSettings(bootstrap))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._body, daemon=True)

    def _body(self) -> None:
        try:
            self.connector.run_forever(backoff=0.2)
        except BaseException as exc:  # the test asserts on it
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.connector.stop()
        self.thread.join(30)


def execute(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        for s in statements:
            c.execute(s.encode())


def caught_up(dsn: str, slot: str) -> None:
    """Wait until the slot confirmed everything written so far (so every record is on its topic)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        target = parse_lsn(c.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])  # type: ignore[index]

        def done() -> bool:
            row = c.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
            return row is not None and row[0] is not None and parse_lsn(row[0]) >= target

        wait_for(done, 60, f"slot {slot} to confirm {target}")


def test_snapshot_stream_boundary_crud_and_types(db: str, kafka: EmbeddedBroker) -> None:
    execute(db,
            "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), ratio numeric, at timestamptz, "
            "local timestamp, day date, doc jsonb, uid uuid, raw bytea, tags text[], nums int[], m mood, f float8)",
            "INSERT INTO items SELECT g, 'n' || g, g * 1.25, g / 4.0, '2024-05-06 07:08:09.123456+02', '2024-05-06 07:08:09', "
            "'2024-05-06', jsonb_build_object('g', g), md5(g::text)::uuid, '\\x00ff'::bytea, ARRAY['a,b', 'c\"d', NULL], "
            "ARRAY[1, 2], 'happy', 0.5 FROM generate_series(1, 200) g")
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:  # commits while the snapshot is being taken and streaming starts
        with psycopg.connect(db, autocommit=True) as c:
            i = 1000
            while not stop.is_set() and i < 1400:
                c.execute("INSERT INTO items (id, name) VALUES (%s, 'w')", (i,))
                written.append(i)
                i += 1
                time.sleep(0.002)

    cfg = config(db, **{"skipped.operations": "none"})
    topic = f"{cfg.topic_prefix}.public.items"
    w = threading.Thread(target=writer)
    w.start()
    with Running(cfg, kafka.bootstrap) as run:
        wait_for(lambda: run.connector.stats.state == "streaming", 30, "streaming")
        w.join()
        execute(db, "UPDATE items SET name = 'u1' WHERE id = 1", "UPDATE items SET id = 5000 WHERE id = 2",
                "DELETE FROM items WHERE id = 3", "TRUNCATE items")
        caught_up(db, cfg.slot_name)
        evts = events(kafka.bootstrap, topic)
    assert run.error is None
    # snapshot -> stream: every row exactly once, no gap, no duplicate
    ids = [e.after["id"] for e in evts if e.op in ("r", "c") and e.after is not None and e.after["id"] < 5000]
    assert sorted(ids) == list(range(1, 201)) + written
    reads = [e for e in evts if e.op == "r"]
    assert reads[0].source["snapshot"] == "first" and reads[-1].source["snapshot"] == "last"
    assert all(e.source["lsn"] == reads[0].source["lsn"] for e in reads)
    assert len(reads) >= 200
    row1 = next(e.after for e in reads if e.after and e.after["id"] == 1)
    assert row1["price"] == Decimal("1.25") and row1["ratio"] == Decimal("0.25")
    assert row1["at"].isoformat() == "2024-05-06T05:08:09.123456+00:00"
    assert row1["local"].isoformat() == "2024-05-06T07:08:09" and str(row1["day"]) == "2024-05-06"
    assert row1["doc"] == {"g": 1} and row1["raw"] == b"\x00\xff" and row1["m"] == "happy"
    assert row1["tags"] == ["a,b", 'c"d', None] and row1["nums"] == [1, 2] and row1["f"] == 0.5
    assert len(row1["uid"]) == 36
    tail = evts[-7:]
    assert [e.op for e in tail] == ["u", "d", None, "c", "d", None, "t"]
    assert tail[0].after is not None and tail[0].after["name"] == "u1" and tail[0].key == {"id": 1}
    assert tail[1].key == {"id": 2} and tail[2].key == {"id": 2} and tail[3].key == {"id": 5000}  # key change: d, tombstone, c
    assert tail[4].before is not None and tail[4].before["id"] == 3 and tail[5].key == {"id": 3}
    assert tail[6].key is None
    # stream order: source.sequence never goes back (no crash here, so no redelivery either)
    seqs = [position(e) for e in evts if e.op not in (None, "r", "t")]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) - 1  # the key change's d and c share one position


CDC_TOML = """
[cluster]
bootstrap.servers = "{bootstrap}"

[[connector]]
name = "{name}"
topic.prefix = "{prefix}"
database.dsn = "{dsn}"
database.password = "${{env:CONNECT_TEST_PG_PASSWORD}}"
slot.name = "{slot}"
publication.autocreate.mode = "filtered"
table.include.list = "public\\\\.t[0-9]"
offset.flush.interval.ms = 50
value.converter.schemas.enable = false
"""


def test_kill9_mid_stream_no_change_lost(db: str, kafka: EmbeddedBroker, tmp_path: Path) -> None:
    """3 tables, ~3,000 row changes, the connector process killed with -9 twice at random
    moments: after deduplication by LSN every change is on its topic once, in commit order per
    key, and the rebuilt tables equal the database row by row."""
    tables = ["t1", "t2", "t3"]
    execute(db, *[f"CREATE TABLE {t} (id int PRIMARY KEY, v int NOT NULL, s text)" for t in tables],
            *[f"INSERT INTO {t} SELECT g, 0, 'seed' FROM generate_series(1, 50) g" for t in tables])
    n = next(_n)
    prefix, slot = f"k{n}", f"kslot{os.getpid()}_{n}"
    cfg_file = tmp_path / "cdc.toml"
    cfg_file.write_text(CDC_TOML.format(bootstrap=kafka.bootstrap, name=f"kill{n}", prefix=prefix, dsn=db, slot=slot))
    env = {**os.environ, "CONNECT_TEST_PG_PASSWORD": "not-used-with-trust"}

    port = free_port()

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "riverbed", "connect", "run", str(cfg_file), "--log-level", "WARNING", "--listen", f"127.0.0.1:{port}"], env=env)

    def streaming() -> bool:
        with psycopg.connect(db, autocommit=True) as c:
            return c.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone() == (True,)

    rng = random.Random(13)
    changes = 0
    proc = start()
    wait_for(streaming, 30, "the connector streaming")
    kills = 0
    try:
        # two connections whose transactions overlap (odd keys on one, even on the other, so no
        # lock waits): the change LSNs of different transactions interleave in the WAL
        with psycopg.connect(db, autocommit=False) as ca, psycopg.connect(db, autocommit=False) as cb:
            for batch in range(150):
                time.sleep(0.005)
                for _ in range(rng.randint(1, 40)):
                    side = rng.randint(0, 1)
                    c = (ca, cb)[side]
                    t = rng.choice(tables)
                    k = rng.randint(0, 59) * 2 + 1 + side
                    op = rng.random()
                    if op < 0.5:
                        cur = c.execute(f"INSERT INTO {t} VALUES (%s, %s, 'i') ON CONFLICT (id) DO UPDATE SET v = {t}.v + 1, s = 'c'", (k, batch))
                    elif op < 0.85:
                        cur = c.execute(f"UPDATE {t} SET v = v + 1, s = %s WHERE id = %s", (f"u{batch}", k))
                    else:
                        cur = c.execute(f"DELETE FROM {t} WHERE id = %s", (k,))
                    changes += cur.rowcount
                for c in rng.sample([ca, cb], 2):
                    c.commit()
                if batch in (40, 95):  # kill -9 mid-stream at a moment the writer does not choose
                    wait_for(streaming, 30, "the connector streaming")
                    time.sleep(rng.uniform(0.0, 0.2))
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                    kills += 1
                    proc = start()
        caught_up(db, slot)
        # the running connector's HTTP side: Prometheus metrics and Kafka Connect's status shape
        metrics = wait_for(lambda: _get(f"http://127.0.0.1:{port}/metrics"), 30, "/metrics")
        assert f'riverbed_connect_changes_total{{connector="kill{n}"}}' in metrics and "riverbed_connect_slot_lag_seconds" in metrics
        status = json.loads(_get(f"http://127.0.0.1:{port}/connectors/kill{n}/status") or "{}")
        assert status["connector"]["state"] == "RUNNING" and status["tasks"][0]["state"] == "RUNNING"
        assert httpx.get(f"http://127.0.0.1:{port}/connectors/nope/status").status_code == 404
        base = f"http://127.0.0.1:{port}/connectors/kill{n}"
        assert httpx.put(f"{base}/pause").status_code == 202
        assert json.loads(_get(f"{base}/status") or "{}")["connector"]["state"] == "PAUSED"
        with psycopg.connect(db, autocommit=True) as c:  # held by the slot while paused
            changes += c.execute("INSERT INTO t1 VALUES (1000, 0, 'paused')").rowcount
        assert httpx.put(f"{base}/resume").status_code == 202
        assert json.loads(_get(f"{base}/status") or "{}")["connector"]["state"] == "RUNNING"
        caught_up(db, slot)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert kills == 2 and changes > 2500
    applied_total = reads = 0
    with psycopg.connect(db) as c:
        for t in tables:
            evts = events(kafka.bootstrap, f"{prefix}.public.{t}")
            state, applied = replay(evts)
            applied_total += applied
            reads += sum(e.op == "r" for e in evts)
            rows = {r[0]: {"id": r[0], "v": r[1], "s": r[2]} for r in c.execute(f"SELECT id, v, s FROM {t}")}
            assert state == rows, t
            per_key: dict[int, list[tuple[int, int]]] = {}
            for e in evts:  # commit order per key: a redelivery repeats an earlier position, never reorders
                row = e.after or e.before
                if e.op in ("c", "u", "d") and row is not None:
                    seen = per_key.setdefault(row["id"], [])
                    pos = position(e)
                    assert not seen or pos > seen[-1] or pos in seen, (t, row["id"], pos, seen[-3:])
                    if not seen or pos > seen[-1]:
                        seen.append(pos)
    assert reads == 150  # one snapshot: the restarts resumed from their offsets
    assert applied_total == changes


def _get(url: str) -> str | None:
    try:
        r = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return r.text if r.status_code == 200 else None


def test_slot_lag_guardrail_drops_the_slot(db: str) -> None:
    """Kafka goes away while writes continue: the slot's lag passes slot.max.lag.bytes and the
    connector stops and drops its slot instead of letting WAL pile up."""
    execute(db, "CREATE TABLE g (id serial PRIMARY KEY, pad text)")
    cfg = config(db, **{"slot.max.lag.bytes": 256 * 1024, "slot.lag.action": "drop", "slot.lag.check.interval.ms": 100})
    broker = EmbeddedBroker(**FIXTURE_DEFAULTS).start()
    try:
        with Running(cfg, broker.bootstrap) as run:
            wait_for(lambda: run.connector.stats.state == "streaming", 30, "streaming")
            execute(db, "INSERT INTO g (pad) VALUES ('before')")
            wait_for(lambda: run.connector.stats.records >= 1, 30, "the first record")
            broker.stop()
            with psycopg.connect(db, autocommit=True) as c:
                deadline = time.monotonic() + 60
                while run.thread.is_alive() and time.monotonic() < deadline:
                    c.execute("INSERT INTO g (pad) SELECT repeat('x', 1000) FROM generate_series(1, 20)")
                    time.sleep(0.01)
            run.thread.join(30)
            assert isinstance(run.error, SlotLagExceeded), run.error
    finally:
        broker.stop()
    with psycopg.connect(db, autocommit=True) as c:
        assert not Catalog(c).slot(cfg.slot_name).exists


def test_outbox_event_router_and_helper(db: str, kafka: EmbeddedBroker) -> None:
    from riverbed.connect.outbox import OUTBOX_DDL, write_outbox_event

    execute(db, "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL)", OUTBOX_DDL.format(table="event_outbox"))
    cfg = config(db, **{"publication.autocreate.mode": "filtered", "table.include.list": "public.event_outbox",
                        "transforms": "outbox", "transforms.outbox.type": "io.debezium.transforms.outbox.EventRouter",
                        "transforms.outbox.table.fields.additional.placement": "type:header:eventType",
                        "transforms.outbox.delete.after.capture": "true"})
    with Running(cfg, kafka.bootstrap) as run:
        wait_for(lambda: run.connector.stats.state == "streaming", 30, "streaming")
        ids = []
        with psycopg.connect(db) as c:
            for email in ("a@x", "b@x"):
                uid = c.execute("INSERT INTO users (email) VALUES (%s) RETURNING id", (email,)).fetchone()[0]  # type: ignore[index]
                ids.append(write_outbox_event(c, "User", uid, "UserCreated", {"id": uid, "email": email}))
                c.commit()
            c.execute("INSERT INTO users (email) VALUES ('rolled@back')")
            write_outbox_event(c, "User", 99, "UserCreated", {"id": 99})
            c.rollback()
        got = wait_for(lambda: (r := read_topic(kafka.bootstrap, "outbox.event.User")) and len(r) >= 2 and r, 30, "outbox records")
        with psycopg.connect(db) as c:
            wait_for(lambda: c.execute("SELECT count(*) FROM event_outbox").fetchone()[0] == 0, 30, "outbox rows deleted")  # type: ignore[index]
    assert len(got) == 2
    for (key, value, _off, headers), eid, uid in zip(got, ids, (1, 2), strict=True):
        assert key == str(uid).encode()
        assert value is not None
        v = json.loads(value)  # JsonConverter with schemas: an io.debezium.data.Json string
        assert v["schema"]["name"] == "io.debezium.data.Json"
        assert json.loads(v["payload"]) == {"id": uid, "email": "a@x" if uid == 1 else "b@x"}
        h = dict(headers)
        assert h["id"] == str(eid).encode() and h["eventType"] == b"UserCreated"


def test_polling_relay(db: str, kafka: EmbeddedBroker) -> None:
    from riverbed.connect.config import OutboxConfig
    from riverbed.connect.outbox import OUTBOX_DDL, PollingRelay, write_outbox_event

    execute(db, OUTBOX_DDL.format(table="event_outbox"))
    n = next(_n)
    with psycopg.connect(db) as c:
        for i in range(5):
            write_outbox_event(c, f"Order{n}", i, "OrderPlaced", {"n": i})
        c.commit()
    relay = PollingRelay(db, ClusterSettings(kafka.bootstrap), config=OutboxConfig(expand_json_payload=True), poll_interval=0.05)
    t = threading.Thread(target=relay.run)
    t.start()
    try:
        got = wait_for(lambda: (r := read_topic(kafka.bootstrap, f"outbox.event.Order{n}")) and len(r) >= 5 and r, 30, "relay records")
    finally:
        relay.stop()
        t.join(10)
    assert [v for _k, v, _o, _h in got] == [f'{{"n": {i}}}'.encode() for i in range(5)]
    with psycopg.connect(db) as c:
        assert c.execute("SELECT count(*) FROM event_outbox").fetchone() == (0,)


def reported(bootstrap: str, kind: str) -> list[Any]:
    """The services of `kind` that report in, read from the status topic."""
    from riverbed.client.status import ServiceDirectory

    d = ServiceDirectory({"bootstrap.servers": bootstrap})
    try:
        return [e for e in d.update(1).values() if e.kind == kind]
    except KafkaException:  # no status topic yet
        return []
    finally:
        d.close()


def test_cli_two_connectors_in_one_process_status_offsets_reset(db: str, kafka: EmbeddedBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from riverbed.cli.main import main

    execute(db, "CREATE TABLE s (id int PRIMARY KEY)", "CREATE TABLE s2 (id int PRIMARY KEY)", "INSERT INTO s VALUES (1)", "INSERT INTO s2 VALUES (1)")
    n = next(_n)
    prefix, slot, slot2 = f"s{n}", f"sslot{os.getpid()}_{n}", f"sslot{os.getpid()}_{n}_b"
    first = CDC_TOML.format(bootstrap=kafka.bootstrap, name=f"cli{n}", prefix=prefix, dsn=db, slot=slot).replace("t[0-9]", "s") + "slot.max.lag.bytes = 1\n"
    second = first.split("[[connector]]", 1)[1].replace(f"cli{n}", f"cli{n}b").replace(slot, slot2).replace("public\\\\.s", "public\\\\.s2")
    second = second.replace('slot.name', f'publication.name = "pub{n}b"\nslot.name')
    cfg_file = tmp_path / "cdc.toml"
    cfg_file.write_text(first + "\n[[connector]]" + second)
    port = free_port()
    env = {**os.environ, "CONNECT_TEST_PG_PASSWORD": "s3cret-never-logged"}
    proc = subprocess.Popen([sys.executable, "-m", "riverbed", "connect", "run", str(cfg_file), "--listen", f"127.0.0.1:{port}"],
                            env=env, stderr=subprocess.PIPE)
    try:
        assert json.loads(wait_for(lambda: _get(f"http://127.0.0.1:{port}/connectors"), 30, "/connectors")) == [f"cli{n}", f"cli{n}b"]
        # a new slot confirms its consistent point at once, before the snapshot's rows are on
        # their topics: wait for the rows themselves
        for topic in (f"{prefix}.public.s", f"{prefix}.public.s2"):
            assert wait_for(lambda topic=topic: [e.op for e in events(kafka.bootstrap, topic)] or None, 30, f"snapshot of {topic}") == ["r"]
        caught_up(db, slot)
        caught_up(db, slot2)
        # both connectors report in (docs/adr/0015-services-report-in.md)
        wait_for(lambda: sorted((e.name, e.state, e.metrics_url, e.figures.get("snapshot_rows")) for e in reported(kafka.bootstrap, "connect")
                                if e.name.startswith(f"cli{n}")) == [(f"cli{n}", "streaming", f"http://127.0.0.1:{port}/metrics", 1),
                                                                      (f"cli{n}b", "streaming", f"http://127.0.0.1:{port}/metrics", 1)] or None,
                 30, "both connectors streaming in their status records")
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and b"s3cret" not in err and b"********" in err  # the password is masked in the start-up log
    # a clean stop: tombstones, the connectors leave the list
    assert [e for e in reported(kafka.bootstrap, "connect") if e.name.startswith(f"cli{n}")] == []
    execute(db, "INSERT INTO s VALUES (2)")  # lag while the connector is down
    os.environ["CONNECT_TEST_PG_PASSWORD"] = "s3cret-never-logged"
    try:
        assert main(["connect", "status", str(cfg_file)]) == 0
        out = capsys.readouterr().out
        assert f"slot {slot} inactive" in out and "EXCEEDED" in out and "s3cret" not in out
        assert main(["connect", "offsets", str(cfg_file)]) == 0
        assert f'"server": "{prefix}"' in capsys.readouterr().out
        assert main(["connect", "reset", str(cfg_file), "--connector", f"cli{n}"]) == 0
        assert f"slot {slot} dropped" in capsys.readouterr().out
        with psycopg.connect(db, autocommit=True) as c:
            assert not Catalog(c).slot(slot).exists and Catalog(c).slot(slot2).exists
        assert main(["connect", "status", str(tmp_path / "missing.toml")]) == 2
    finally:
        del os.environ["CONNECT_TEST_PG_PASSWORD"]

def test_schema_change_heartbeats_and_idle_slot(db: str, kafka: EmbeddedBroker) -> None:
    """ALTER TABLE ADD/DROP COLUMN mid-stream; heartbeat records and heartbeat.action.query;
    writes to a table outside the publication do not pin WAL (the slot keeps confirming)."""
    execute(db, "CREATE TABLE a (id int PRIMARY KEY, x int)", "CREATE TABLE other (id serial PRIMARY KEY, pad text)",
            "CREATE TABLE hb (id int PRIMARY KEY, ts timestamptz)")
    cfg = config(db, **{"publication.autocreate.mode": "filtered", "table.include.list": "public.a,public.hb",
                        "heartbeat.interval.ms": 100, "heartbeat.action.query": "INSERT INTO hb VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET ts = now()"})
    with Running(cfg, kafka.bootstrap) as run:
        wait_for(lambda: run.connector.stats.state == "streaming", 30, "streaming")
        execute(db, "INSERT INTO a VALUES (1, 1)", "ALTER TABLE a ADD COLUMN y text NOT NULL DEFAULT 'd'", "INSERT INTO a VALUES (2, 2, 'two')",
                "ALTER TABLE a DROP COLUMN x", "INSERT INTO a VALUES (3, 'three')")
        execute(db, *["INSERT INTO other (pad) SELECT repeat('o', 500) FROM generate_series(1, 100)"] * 20)
        caught_up(db, cfg.slot_name)
        hb = wait_for(lambda: read_topic(kafka.bootstrap, f"__debezium-heartbeat.{cfg.topic_prefix}"), 30, "heartbeats")
        # the action query's row changes are captured like any other
        wait_for(lambda: read_topic(kafka.bootstrap, f"{cfg.topic_prefix}.public.hb"), 30, "the heartbeat table's changes")
    evts = [e for e in events(kafka.bootstrap, f"{cfg.topic_prefix}.public.a") if e.op]
    assert [e.after for e in evts] == [{"id": 1, "x": 1}, {"id": 2, "x": 2, "y": "two"}, {"id": 3, "y": "three"}]
    assert json.loads(hb[0][1])["payload"]["ts_ms"] > 0


def test_database_restart_mid_stream(pg: PostgresServer, db: str, kafka: EmbeddedBroker) -> None:
    """PostgreSQL restarted (immediate stop) mid-stream: the connector reconnects and resumes
    from its offsets, no committed change lost."""
    execute(db, "CREATE TABLE r (id int PRIMARY KEY)")
    cfg = config(db, **{"publication.autocreate.mode": "filtered", "table.include.list": "public.r"})
    with Running(cfg, kafka.bootstrap) as run:
        wait_for(lambda: run.connector.stats.state == "streaming", 30, "streaming")
        execute(db, *[f"INSERT INTO r VALUES ({i})" for i in range(100)])
        pg.restart("immediate")
        execute(db, *[f"INSERT INTO r VALUES ({i})" for i in range(100, 200)])
        caught_up(db, cfg.slot_name)
        state, applied = replay(events(kafka.bootstrap, f"{cfg.topic_prefix}.public.r"))
        with psycopg.connect(db) as c:  # an immediate stop may lose commits not yet flushed (synchronous_commit=off)
            in_db = [r[0] for r in c.execute("SELECT id FROM r ORDER BY id")]
        assert sorted(state) == in_db and applied == len(in_db) and in_db[-100:] == list(range(100, 200))
        assert run.error is None


def test_dropped_publication_stops_with_an_error(db: str, kafka: EmbeddedBroker) -> None:
    from riverbed.connect.connector import ConnectorError

    execute(db, "CREATE TABLE dp (id int PRIMARY KEY)")
    cfg = config(db, **{"publication.autocreate.mode": "filtered", "table.include.list": "public.dp", "publication.name": f"pub{next(_n)}"})
    with Running(cfg, kafka.bootstrap) as run:
        wait_for(lambda: run.connector.stats.state == "streaming", 30, "streaming")
        execute(db, f"DROP PUBLICATION {cfg.publication_name}", "INSERT INTO dp VALUES (1)")
        run.thread.join(30)
        assert isinstance(run.error, ConnectorError) and "riverbed connect reset" in str(run.error)


def test_slot_invalidated_by_max_slot_wal_keep_size(pg: PostgresServer, db: str, kafka: EmbeddedBroker) -> None:
    """The connector is down while more WAL than max_slot_wal_keep_size is written: PostgreSQL
    invalidates the slot. snapshot.mode=initial stops with an error saying changes were lost;
    when_needed drops the slot and takes a new snapshot, and the topic again holds every row."""
    from riverbed.connect.connector import SlotInvalidated

    execute(pg.dsn, "ALTER SYSTEM SET max_slot_wal_keep_size = '16MB'", "SELECT pg_reload_conf()")
    try:
        dsn = db
        execute(dsn, "CREATE TABLE iv (id int PRIMARY KEY, pad text)", "INSERT INTO iv VALUES (0, 'x')")
        cfg = config(dsn, **{"publication.autocreate.mode": "filtered", "table.include.list": "public.iv"})
        with Running(cfg, kafka.bootstrap) as run:
            wait_for(lambda: run.connector.stats.state == "streaming", 30, "streaming")
            caught_up(dsn, cfg.slot_name)
        with psycopg.connect(dsn, autocommit=True) as c:
            for i in range(1, 6):
                c.execute("INSERT INTO iv SELECT g, repeat(md5(g::text), 300) FROM generate_series(%s::int, %s::int) g", (i * 1000, i * 1000 + 999))
                c.execute("SELECT pg_switch_wal()")
                c.execute("CHECKPOINT")
            wait_for(lambda: Catalog(c).slot(cfg.slot_name).wal_status == "lost", 30, "the slot invalidated")
        with Running(cfg, kafka.bootstrap) as run:
            run.thread.join(30)
        assert isinstance(run.error, SlotInvalidated) and "reset" in str(run.error)
        healed = ConnectorConfig.from_props({**_props(cfg), "snapshot.mode": "when_needed"})
        with Running(healed, kafka.bootstrap) as run:
            wait_for(lambda: run.connector.stats.state == "streaming", 60, "streaming after a new snapshot")
            assert run.connector.stats.snapshot_rows == 5001
        with psycopg.connect(dsn, autocommit=True) as c:
            assert Catalog(c).slot(cfg.slot_name).wal_status in ("reserved", "extended")
    finally:
        execute(pg.dsn, "ALTER SYSTEM RESET max_slot_wal_keep_size", "SELECT pg_reload_conf()")


def _props(cfg: ConnectorConfig) -> dict[str, Any]:
    return {"name": cfg.name, "topic.prefix": cfg.topic_prefix, "database.dsn": cfg.dsn, "database.dbname": cfg.dbname, "slot.name": cfg.slot_name,
            "publication.autocreate.mode": cfg.publication_autocreate_mode, "table.include.list": ",".join(cfg.table_include_list)}


def test_avro_through_the_schema_registry(db: str, kafka: EmbeddedBroker) -> None:
    """key.converter / value.converter = AvroConverter: Confluent's own AvroDeserializer reads
    the records through the registry (riverbed's, a real HTTP service on the same broker)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from riverbed.registry.service import RegistryConfig, RegistryService

    execute(db, "CREATE TABLE av (id int PRIMARY KEY, price numeric(8,2) NOT NULL, at timestamptz, tags text[], raw bytea, small smallint)",
            "INSERT INTO av VALUES (1, 9.99, '2024-01-02 03:04:05+00', ARRAY['x', NULL], '\\x01', 7)")
    with RegistryService(RegistryConfig(bootstrap=kafka.bootstrap, listen="127.0.0.1:0")) as reg:
        cfg = config(db, **{"key.converter": "io.confluent.connect.avro.AvroConverter", "value.converter": "io.confluent.connect.avro.AvroConverter",
                            "value.converter.schema.registry.url": reg.url, "publication.autocreate.mode": "filtered", "table.include.list": "public.av"})
        with Running(cfg, kafka.bootstrap) as run:
            wait_for(lambda: run.connector.stats.state == "streaming", 30, "streaming")
            execute(db, "UPDATE av SET price = 10.50 WHERE id = 1", "DELETE FROM av WHERE id = 1")
            caught_up(db, cfg.slot_name)
        topic = f"{cfg.topic_prefix}.public.av"
        records = read_topic(kafka.bootstrap, topic)
        client = SchemaRegistryClient({"url": reg.url})
        try:
            de = AvroDeserializer(client)
            vctx, kctx = SerializationContext(topic, MessageField.VALUE), SerializationContext(topic, MessageField.KEY)
            values = [None if v is None else de(v, vctx) for _k, v, _o, _h in records]
            keys = [de(k, kctx) for k, _v, _o, _h in records]
            subjects = client.get_subjects()
        finally:
            client.close()
    assert sorted(s for s in subjects if s.startswith(topic)) == [f"{topic}-key", f"{topic}-value"]
    assert [None if v is None else v["op"] for v in values] == ["r", "u", "d", None]
    assert keys == [{"id": 1}] * 4
    r, u = values[0], values[1]
    assert r is not None and u is not None
    assert r["after"] == {"id": 1, "price": Decimal("9.99"), "at": "2024-01-02T03:04:05Z", "tags": ["x", None], "raw": b"\x01", "small": 7}
    assert u["after"]["price"] == Decimal("10.50") and u["source"]["connector"] == "postgresql" and u["source"]["table"] == "av"


def test_broker_killed_mid_stream(db: str, tmp_path: Path) -> None:
    """The broker process killed with -9 while changes stream, restarted on the same port and
    data: the connector rides it out (producer retries, restarts) and no change is lost."""
    from riverbed.testing import BrokerProcess

    execute(db, "CREATE TABLE bk (id int PRIMARY KEY, v int)")
    broker = BrokerProcess(tmp_path / "broker").start()
    try:
        cfg = config(db, **{"publication.autocreate.mode": "filtered", "table.include.list": "public.bk", "value.converter.schemas.enable": False,
                            "producer.override.reconnect.backoff.max.ms": 200})
        with Running(cfg, broker.bootstrap) as run:
            wait_for(lambda: run.connector.stats.state == "streaming", 30, "streaming")
            execute(db, *[f"INSERT INTO bk VALUES ({i}, 0)" for i in range(200)])
            wait_for(lambda: run.connector.stats.records >= 50, 30, "some records")
            broker.kill()
            execute(db, *[f"UPDATE bk SET v = v + 1 WHERE id = {i}" for i in range(0, 200, 3)])
            broker.start()
            caught_up(db, cfg.slot_name)
            evts = events(broker.bootstrap, f"{cfg.topic_prefix}.public.bk")
        state, applied = replay(evts)
        with psycopg.connect(db) as c:
            rows = {r[0]: {"id": r[0], "v": r[1]} for r in c.execute("SELECT id, v FROM bk")}
        assert state == rows and applied == 200 + len(range(0, 200, 3))
    finally:
        broker.kill()


def test_outbox_helper_in_a_sqlalchemy_session(db: str) -> None:
    """write_outbox_event joins the caller's SQLAlchemy transaction: commit keeps both rows,
    rollback drops both."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.orm import Session

    from riverbed.connect.outbox import OUTBOX_DDL, write_outbox_event

    execute(db, "CREATE TABLE accounts (id int PRIMARY KEY)", OUTBOX_DDL.format(table="event_outbox"))
    p = psycopg.conninfo.conninfo_to_dict(db)
    engine = sqlalchemy.create_engine(f"postgresql+psycopg://{p['user']}@{p['host']}:{p['port']}/{p['dbname']}")
    try:
        with Session(engine) as session, session.begin():
            session.execute(sqlalchemy.text("INSERT INTO accounts VALUES (1)"))
            eid = write_outbox_event(session, "Account", 1, "AccountOpened", {"id": 1})
        with Session(engine) as session:
            session.execute(sqlalchemy.text("INSERT INTO accounts VALUES (2)"))
            write_outbox_event(session, "Account", 2, "AccountOpened", {"id": 2})
            session.rollback()
    finally:
        engine.dispose()
    with psycopg.connect(db) as c:
        assert c.execute("SELECT id FROM accounts").fetchall() == [(1,)]
        assert c.execute("SELECT id, aggregateid, type, payload FROM event_outbox").fetchall() == [(eid, "1", "AccountOpened", {"id": 1})]


def test_tables_without_primary_key_unsupported_types_and_snapshot_modes(db: str, kafka: EmbeddedBroker) -> None:
    """table.without.primary.key skip (warned, not captured) / full (REPLICA IDENTITY FULL set
    by the connector, null keys, whole before rows); an unmapped type (point) as a string;
    snapshot.mode initial_only (snapshot, then stop) and no_data (stream only)."""
    execute(db, "CREATE TABLE nopk (a int, p point)", "INSERT INTO nopk VALUES (1, '(1,2)')", "CREATE TABLE withpk (id int PRIMARY KEY)",
            "INSERT INTO withpk VALUES (1)")
    skip = config(db, **{"publication.autocreate.mode": "filtered", "table.include.list": "public.nopk,public.withpk", "publication.name": f"pub{next(_n)}"})
    with Running(skip, kafka.bootstrap) as run:
        wait_for(lambda: run.connector.stats.state == "streaming", 30, "streaming")
    assert run.connector.stats.snapshot_rows == 1  # withpk only
    assert read_topic(kafka.bootstrap, f"{skip.topic_prefix}.public.nopk") == []

    full = config(db, **{"table.without.primary.key": "full", "publication.autocreate.mode": "filtered", "table.include.list": "public.nopk",
                         "publication.name": f"pub{next(_n)}", "snapshot.mode": "no_data"})
    with Running(full, kafka.bootstrap) as run:
        wait_for(lambda: run.connector.stats.state == "streaming", 30, "streaming")
        execute(db, "UPDATE nopk SET a = 2", "DELETE FROM nopk")
        caught_up(db, full.slot_name)
    evts = events(kafka.bootstrap, f"{full.topic_prefix}.public.nopk")
    assert [e.op for e in evts] == ["u", "d"]  # no_data: no snapshot records; no key, so no tombstone
    assert evts[0].key is None and evts[0].before == {"a": 1, "p": "(1,2)"} and evts[0].after == {"a": 2, "p": "(1,2)"}
    assert evts[1].before == {"a": 2, "p": "(1,2)"}

    only = config(db, **{"snapshot.mode": "initial_only", "publication.autocreate.mode": "filtered", "table.include.list": "public.withpk",
                         "publication.name": f"pub{next(_n)}"})
    with Running(only, kafka.bootstrap) as run:
        run.thread.join(30)
    assert run.error is None and run.connector.stats.state == "snapshot completed"
    assert [e.op for e in events(kafka.bootstrap, f"{only.topic_prefix}.public.withpk")] == ["r"]


def test_record_kafka_refuses_stops_the_connector(db: str, kafka: EmbeddedBroker) -> None:
    """A record the cluster can never take (larger than message.max.bytes) stops the connector
    with the reason instead of replaying it forever."""
    from riverbed.connect.connector import ConnectorError

    execute(db, "CREATE TABLE huge (id int PRIMARY KEY, pad text)")
    cfg = config(db, **{"publication.autocreate.mode": "filtered", "table.include.list": "public.huge", "producer.override.message.max.bytes": 2000})
    with Running(cfg, kafka.bootstrap) as run:
        wait_for(lambda: run.connector.stats.state == "streaming", 30, "streaming")
        execute(db, "INSERT INTO huge VALUES (1, repeat('x', 5000))")
        run.thread.join(30)
    assert isinstance(run.error, ConnectorError) and "MSG_SIZE_TOO_LARGE" in str(run.error)


def test_dropped_slot(db: str, kafka: EmbeddedBroker) -> None:
    """The slot dropped while the connector is down (offsets exist): snapshot.mode=initial stops
    with an error instead of silently skipping what happened meanwhile; when_needed takes a
    new snapshot."""
    from riverbed.connect.connector import SlotInvalidated

    execute(db, "CREATE TABLE ds (id int PRIMARY KEY)", "INSERT INTO ds VALUES (1)")
    cfg = config(db, **{"publication.autocreate.mode": "filtered", "table.include.list": "public.ds"})
    with Running(cfg, kafka.bootstrap) as run:
        wait_for(lambda: run.connector.stats.state == "streaming", 30, "streaming")
    with psycopg.connect(db, autocommit=True) as c:
        assert Catalog(c).drop_slot(cfg.slot_name)
    execute(db, "INSERT INTO ds VALUES (2)")  # not in the topic: no slot kept it
    with Running(cfg, kafka.bootstrap) as run:
        run.thread.join(30)
    assert isinstance(run.error, SlotInvalidated) and "is gone" in str(run.error)
    with Running(ConnectorConfig.from_props({**_props(cfg), "snapshot.mode": "when_needed"}), kafka.bootstrap) as run:
        wait_for(lambda: run.connector.stats.state == "streaming", 30, "streaming")
    reads = [e.after for e in events(kafka.bootstrap, f"{cfg.topic_prefix}.public.ds") if e.op == "r"]
    assert reads == [{"id": 1}, {"id": 1}, {"id": 2}]
