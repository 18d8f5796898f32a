"""HEADERS and HEADER('k') columns: a record's headers read as columns (every header as
ARRAY<STRUCT<KEY, VALUE>>, or one header's last value as BYTES), in pull scans, push queries and
persistent queries (whose sinks carry them as value columns, as ksqlDB's do); ksqlDB's errors for
bad declarations and for INSERT INTO a header column."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from riverbed.client import ClusterSettings
from riverbed.sql.engine import Engine
from riverbed.sql.errors import SqlError
from riverbed.sql.parser import parse_one
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedBroker, Engine]]:
    broker = EmbeddedBroker(tmp_path_factory.mktemp("sqlhdr"), **FIXTURE_DEFAULTS).start()
    engine = Engine(
        ClusterSettings(broker.bootstrap),
        service_id=f"hd{uuid.uuid4().hex[:4]}_",
        state_dir=Path(tmp_path_factory.mktemp("sqlhdr-state")),
        commit_interval_ms=200,
    ).start()
    yield broker, engine
    engine.close()
    broker.stop()


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_header_columns(env: tuple[EmbeddedBroker, Engine]) -> None:
    broker, engine = env
    engine.execute(
        "CREATE STREAM events (id STRING KEY, v INT, trace BYTES HEADER('trace'), "
        "hs ARRAY<STRUCT<`KEY` STRING, `VALUE` BYTES>> HEADERS) "
        "WITH (kafka_topic='events', value_format='JSON', partitions=1);"
    )
    fields = engine.execute("DESCRIBE events;")[0]["sourceDescription"]["fields"]
    assert [(f["name"], f.get("type")) for f in fields] == [
        ("ID", "KEY"),
        ("V", None),
        ("TRACE", "HEADER('trace')"),
        ("HS", "HEADERS"),
    ]
    engine.execute(
        "CREATE STREAM traced AS SELECT id, FROM_BYTES(trace, 'utf8') AS t, ARRAY_LENGTH(hs) AS n "
        "FROM events EMIT CHANGES;",
        {"auto.offset.reset": "earliest"},
    )
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(
        "events", b'{"v": 1}', b"a", headers=[("trace", b"t-1"), ("other", b"x"), ("trace", b"t-2")]
    )
    p.produce("events", b'{"v": 2}', b"b")
    assert p.flush(10) == 0
    _cols, rows = engine.pull(parse_one("SELECT * FROM events;").query)  # type: ignore[attr-defined]
    assert rows == [
        [
            "a",
            1,
            b64("t-2"),
            [
                {"KEY": "trace", "VALUE": b64("t-1")},
                {"KEY": "other", "VALUE": b64("x")},
                {"KEY": "trace", "VALUE": b64("t-2")},
            ],
        ],  # the last value of a repeated header
        ["b", 2, None, []],
    ]
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "hdr-check",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe(["TRACED"])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 2 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got.append((m.key(), json.loads(m.value() or b"null")))
    c.close()
    assert got == [(b"a", {"T": "t-2", "N": 3}), (b"b", {"T": None, "N": 0})]


def test_header_column_errors(env: tuple[EmbeddedBroker, Engine]) -> None:
    _broker, engine = env
    with pytest.raises(
        SqlError, match=r"Invalid type for HEADER\('x'\) column: expected BYTES, got STRING"
    ):
        engine.execute(
            "CREATE STREAM bad1 (h STRING HEADER('x'), v INT) WITH (kafka_topic='bad', value_format='JSON', partitions=1);"
        )
    with pytest.raises(SqlError, match="Invalid type for HEADERS column"):
        engine.execute(
            "CREATE STREAM bad2 (h BYTES HEADERS, v INT) WITH (kafka_topic='bad', value_format='JSON', partitions=1);"
        )
    with pytest.raises(SqlError, match="Schema already contains a HEADERS column"):
        engine.execute(
            "CREATE STREAM bad3 (a ARRAY<STRUCT<`KEY` STRING, `VALUE` BYTES>> HEADERS, "
            "b ARRAY<STRUCT<`KEY` STRING, `VALUE` BYTES>> HEADERS, v INT) "
            "WITH (kafka_topic='bad', value_format='JSON', partitions=1);"
        )
    engine.execute(
        "CREATE STREAM hv (id STRING KEY, v INT, h BYTES HEADER('h')) "
        "WITH (kafka_topic='hv', value_format='JSON', partitions=1);"
        "INSERT INTO hv (id, v) VALUES ('a', 1);"
    )  # header columns are left out
    with pytest.raises(SqlError, match="Cannot insert into HEADER columns: H"):
        engine.execute("INSERT INTO hv (id, v, h) VALUES ('a', 1, TO_BYTES('x', 'utf8'));")
