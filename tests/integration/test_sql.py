"""riverbed.sql end to end: ksqlDB's REST API over HTTP (httpx, a plain client), persistent
queries on a real broker over TCP (records produced and read with confluent-kafka), push and
pull queries, errors, a restart of the server, and the shell. One broker and one server for the
module."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer

from riverbed.client import ClusterSettings
from riverbed.sql.engine import Engine
from riverbed.sql.server import SqlServer
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(tmp_path_factory.mktemp("sql-broker"), **FIXTURE_DEFAULTS).start()
    yield b
    b.stop()


class Server:
    def __init__(self, bootstrap: str, state_dir: Path, service_id: str) -> None:
        self.bootstrap = bootstrap
        self.state_dir = state_dir
        self.service_id = service_id
        self.server: SqlServer | None = None
        self.http = httpx.Client(timeout=30)

    def start(self) -> Server:
        engine = Engine(ClusterSettings(self.bootstrap), service_id=self.service_id, state_dir=self.state_dir,
                        commit_interval_ms=200)
        self.server = SqlServer(engine, "127.0.0.1", 0).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def close(self) -> None:
        self.stop()
        self.http.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def ksql(self, text: str, status: int = 200, **props: str) -> Any:
        r = self.http.post(f"{self.url}/ksql", json={"ksql": text, "streamsProperties": props})
        assert r.status_code == status, r.text
        return r.json()

    def pull(self, sql: str) -> list[list[Any]]:
        r = self.http.post(f"{self.url}/query-stream", json={"sql": sql, "properties": {}},
                           headers={"Accept": "application/json"})
        assert r.status_code == 200, r.text
        body = r.json()
        return list(body[1:])

    def pull_until(self, sql: str, want: Callable[[list[list[Any]]], bool], timeout: float = 20) -> list[list[Any]]:
        deadline = time.monotonic() + timeout
        rows: list[list[Any]] = []
        while time.monotonic() < deadline:
            r = self.http.post(f"{self.url}/query-stream", json={"sql": sql, "properties": {}},
                               headers={"Accept": "application/json"})
            if r.status_code == 200:
                rows = list(r.json()[1:])
                if want(rows):
                    return rows
            time.sleep(0.05)
        raise AssertionError(f"{sql}: last rows {rows}")


@pytest.fixture(scope="module")
def server(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(broker.bootstrap, tmp_path_factory.mktemp("sql-state"), f"t{uuid.uuid4().hex[:6]}_").start()
    yield s
    s.close()


def produce(bootstrap: str, topic: str, records: list[tuple[str | None, Any, int]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    for key, value, ts in records:
        raw = None if value is None else value.encode() if isinstance(value, str) else json.dumps(value).encode()
        p.produce(topic, raw, None if key is None else key.encode(), timestamp=ts)
    assert p.flush(10) == 0


def read(bootstrap: str, topic: str, n: int, timeout: float = 20) -> list[tuple[bytes | None, Any]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    out: list[tuple[bytes | None, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            v = m.value()
            out.append((m.key(), None if v is None else json.loads(v)))
    finally:
        c.close()
    return out


def test_info_and_healthcheck(server: Server) -> None:
    info = server.http.get(f"{server.url}/info").json()
    assert info["KsqlServerInfo"]["serverStatus"] == "RUNNING"
    assert info["KsqlServerInfo"]["ksqlServiceId"] == server.service_id
    health = server.http.get(f"{server.url}/healthcheck").json()
    assert health["isHealthy"] is True and set(health["details"]) == {"metastore", "kafka", "commandRunner"}


# -- the conformance table, end to end: statements, input records, the sink's records ----------------
E2E: list[tuple[str, str, list[tuple[str, str | None, Any, int]], list[tuple[bytes | None, Any]]]] = [
    ("filter",
     "CREATE STREAM {p}_vip AS SELECT * FROM {p}_users WHERE status = 'VIP' EMIT CHANGES;",
     [("users", "u1", {"status": "VIP"}, 1), ("users", "u2", {"status": "regular"}, 2), ("users", "u3", {"status": "VIP"}, 3)],
     [(b"u1", {"STATUS": "VIP"}), (b"u3", {"STATUS": "VIP"})]),
    ("aggregate",
     "CREATE TABLE {p}_spend AS SELECT cid, COUNT(*) AS n, SUM(amount) AS total FROM {p}_orders GROUP BY cid EMIT CHANGES;",
     [("orders", "o1", {"cid": "c1", "amount": 2.5}, 1), ("orders", "o2", {"cid": "c1", "amount": 1.5}, 2)],
     [(b"c1", {"N": 1, "TOTAL": 2.5}), (b"c1", {"N": 2, "TOTAL": 4.0})]),
    ("table aggregate",
     "CREATE TABLE {p}_names AS SELECT name, COUNT(*) AS n FROM {p}_customers GROUP BY name EMIT CHANGES;",
     [("customers", "c1", {"name": "Ann"}, 1), ("customers", "c2", {"name": "Ann"}, 2), ("customers", "c1", {"name": "Bob"}, 3)],
     [(b"Ann", {"N": 1}), (b"Ann", {"N": 2}), (b"Ann", {"N": 1}), (b"Bob", {"N": 1})]),
    ("tumbling",
     "CREATE TABLE {p}_tumble AS SELECT cid, COUNT(*) AS n FROM {p}_orders "
     "WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 0 SECONDS) GROUP BY cid EMIT FINAL;",
     [("orders", "o1", {"cid": "c1", "amount": 1}, 1_000), ("orders", "o2", {"cid": "c1", "amount": 1}, 2_000),
      ("orders", "o3", {"cid": "c1", "amount": 1}, 60_000)],
     [(b"c1" + (0).to_bytes(8, "big"), {"N": 2})]),
    ("hopping",
     "CREATE TABLE {p}_hop AS SELECT cid, COUNT(*) AS n FROM {p}_orders "
     "WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 5 SECONDS) GROUP BY cid EMIT CHANGES;",
     [("orders", "o1", {"cid": "c1", "amount": 1}, 7_000)],
     [(b"c1" + (0).to_bytes(8, "big"), {"N": 1}), (b"c1" + (5_000).to_bytes(8, "big"), {"N": 1})]),
    ("session",
     "CREATE TABLE {p}_sess AS SELECT cid, COUNT(*) AS n FROM {p}_orders WINDOW SESSION (5 SECONDS) "
     "GROUP BY cid EMIT CHANGES;",
     [("orders", "o1", {"cid": "c1", "amount": 1}, 1_000), ("orders", "o2", {"cid": "c1", "amount": 1}, 3_000)],
     [(b"c1" + (1_000).to_bytes(8, "big") * 2, {"N": 1}), (b"c1" + (1_000).to_bytes(8, "big") * 2, None),
      (b"c1" + (3_000).to_bytes(8, "big") + (1_000).to_bytes(8, "big"), {"N": 2})]),
    ("stream-table join",
     "CREATE STREAM {p}_enriched AS SELECT o.oid, o.amount, c.name FROM {p}_orders o "
     "LEFT JOIN {p}_customers c ON o.cid = c.id EMIT CHANGES;",
     [("customers", "c1", {"name": "Ann"}, 1), ("orders", "o1", {"cid": "c1", "amount": 3}, 2),
      ("orders", "o2", {"cid": "c2", "amount": 4}, 3)],
     [(b"c1", {"OID": "o1", "AMOUNT": 3.0, "NAME": "Ann"}), (b"c2", {"OID": "o2", "AMOUNT": 4.0, "NAME": None})]),
    ("stream-stream join",
     "CREATE STREAM {p}_shipped AS SELECT o.oid, s.carrier FROM {p}_orders o JOIN {p}_shipments s "
     "WITHIN 1 HOUR ON o.oid = s.oid EMIT CHANGES;",
     [("orders", "o1", {"cid": "c1", "amount": 3}, 1_000), ("shipments", "s1", {"oid": "o1", "carrier": "ups"}, 2_000),
      ("shipments", "s2", {"oid": "o7", "carrier": "dhl"}, 3_000)],
     [(b"o1", {"CARRIER": "ups"})]),
    ("table-table join",
     "CREATE TABLE {p}_profiles AS SELECT c.id AS id, c.name, a.city FROM {p}_customers c "
     "JOIN {p}_addresses a ON c.id = a.id EMIT CHANGES;",
     [("customers", "c1", {"name": "Ann"}, 1), ("addresses", "c1", {"city": "Oslo"}, 2),
      ("addresses", "c2", {"city": "Rome"}, 3)],
     [(b"c1", {"NAME": "Ann", "CITY": "Oslo"})]),
]

E2E_DDL = """
CREATE STREAM {p}_users (id STRING KEY, status STRING) WITH (kafka_topic='{p}_users', value_format='JSON', partitions=1);
CREATE STREAM {p}_orders (oid STRING KEY, cid STRING, amount DOUBLE) WITH (kafka_topic='{p}_orders', value_format='JSON', partitions=1);
CREATE STREAM {p}_shipments (sid STRING KEY, oid STRING, carrier STRING) WITH (kafka_topic='{p}_shipments', value_format='JSON', partitions=1);
CREATE TABLE {p}_customers (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='{p}_customers', value_format='JSON', partitions=1);
CREATE TABLE {p}_addresses (id STRING PRIMARY KEY, city STRING) WITH (kafka_topic='{p}_addresses', value_format='JSON', partitions=1);
"""


@pytest.mark.parametrize(("statement", "records", "expected"), [c[1:] for c in E2E], ids=[c[0] for c in E2E])
def test_conformance_end_to_end(server: Server, statement: str, records: list[tuple[str, str | None, Any, int]],
                                expected: list[tuple[bytes | None, Any]]) -> None:
    p = f"e{uuid.uuid4().hex[:6]}"
    server.ksql(E2E_DDL.format(p=p))
    res = server.ksql(statement.format(p=p), **{"auto.offset.reset": "earliest"})
    qid = res[0]["commandStatus"]["queryId"]
    assert qid.startswith(("CSAS_", "CTAS_"))
    for topic, key, value, ts in records:  # one at a time, in order (tables before the streams that need them)
        produce(server.bootstrap, f"{p}_{topic}", [(key, value, ts)])
        time.sleep(0.05) if topic in ("customers", "addresses") else None
    sink = res[0]["statementText"].split()[2].upper()
    assert read(server.bootstrap, sink, len(expected)) == expected
    server.ksql(f"TERMINATE {qid};")
    assert qid not in [q["id"] for q in server.ksql("SHOW QUERIES;")[0]["queries"]]
    internal = [t["name"] for t in server.ksql("SHOW TOPICS EXTENDED;")[0]["topics"] if qid in t["name"]]
    assert internal == []  # its repartition and changelog topics went with it


def test_the_lecture_push_and_pull_queries(server: Server) -> None:
    """VIP_USERS from the lecture; a push query over /query (a chunked JSON array) ending at its
    LIMIT; a windowed revenue table read with pull queries by key."""
    server.ksql("CREATE STREAM users (id STRING KEY, status STRING) WITH (kafka_topic='users', value_format='JSON', partitions=2);"
                "CREATE STREAM VIP_USERS AS SELECT * FROM users WHERE status = 'VIP' EMIT CHANGES;")
    produce(server.bootstrap, "users", [("ann", {"status": "VIP"}, 1), ("bob", {"status": "basic"}, 2), ("cy", {"status": "VIP"}, 3)])
    with server.http.stream("POST", f"{server.url}/query", json={
            "ksql": "SELECT id, status FROM VIP_USERS EMIT CHANGES LIMIT 2;",
            "streamsProperties": {"auto.offset.reset": "earliest"}}) as r:
        assert r.status_code == 200
        body = json.loads(r.read())
    assert body[0]["header"]["schema"] == "`ID` STRING KEY, `STATUS` STRING"
    assert sorted(x["row"]["columns"] for x in body[1:3]) == [["ann", "VIP"], ["cy", "VIP"]]
    assert body[3] == {"finalMessage": "Limit Reached"}
    # the server's /metrics counts the running persistent query and the requests answered
    from prometheus_client.parser import text_string_to_metric_families

    answered = ("riverbed_http_requests_total", (("endpoint", "query"), ("method", "POST"), ("service", "sql"), ("status", "200")))
    deadline = time.monotonic() + 10
    while True:  # (a streamed answer is counted once the server has finished it, a moment after the client read it)
        samples = {(m.name, tuple(sorted(m.labels.items()))): m.value for f in text_string_to_metric_families(server.http.get(f"{server.url}/metrics").text) for m in f.samples}
        if answered in samples or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert samples[("riverbed_sql_persistent_queries", (("state", "RUNNING"),))] >= 1
    assert samples[answered] >= 1

    server.ksql("CREATE STREAM sales (id STRING KEY, shop STRING, amount DOUBLE) WITH (kafka_topic='sales', value_format='JSON', partitions=2);"
                "CREATE TABLE revenue AS SELECT shop, SUM(amount) AS total, COUNT(*) AS n FROM sales "
                "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY shop EMIT CHANGES;"
                "CREATE TABLE visits AS SELECT shop, COUNT(*) AS n FROM sales WINDOW SESSION (5 SECONDS) GROUP BY shop EMIT CHANGES;")
    produce(server.bootstrap, "sales", [("s1", {"shop": "north", "amount": 10.0}, 5_000), ("s2", {"shop": "north", "amount": 5.0}, 59_000),
                                        ("s3", {"shop": "north", "amount": 1.0}, 61_000), ("s4", {"shop": "south", "amount": 2.0}, 1_000)])
    rows = server.pull_until("SELECT * FROM revenue WHERE shop = 'north';", lambda rs: len(rs) == 2 and rs[0][3] == 15.0)
    assert rows == [["north", 0, 60_000, 15.0, 2], ["north", 60_000, 120_000, 1.0, 1]]
    rows = server.pull("SELECT shop, total FROM revenue WHERE shop = 'north' AND WINDOWSTART >= 60000;")
    assert rows == [["north", 1.0]]
    rows = server.pull_until("SELECT shop, n, WINDOWSTART, WINDOWEND FROM visits WHERE shop = 'north';",
                             lambda rs: len(rs) == 2 and rs[1][1] == 2)
    assert rows == [["north", 1, 5_000, 5_000], ["north", 2, 59_000, 61_000]]  # session windows
    # delimited /query-stream: a metadata line then one JSON array per line
    r = server.http.post(f"{server.url}/query-stream", json={"sql": "SELECT shop, n FROM revenue;"})
    lines = r.text.strip().split("\n")
    assert json.loads(lines[0])["columnNames"] == ["SHOP", "N"] and json.loads(lines[0])["columnTypes"] == ["STRING", "BIGINT"]
    assert sorted(json.loads(x) for x in lines[1:]) == [["north", 1], ["north", 2], ["south", 1]]


def test_push_query_stream_and_close(server: Server) -> None:
    server.ksql("CREATE STREAM ticks (id STRING KEY, v INT) WITH (kafka_topic='ticks', value_format='JSON', partitions=1);")
    with server.http.stream("POST", f"{server.url}/query-stream", json={"sql": "SELECT id, v * 10 AS x FROM ticks EMIT CHANGES;",
                                                                       "properties": {"auto.offset.reset": "latest"}}) as r:
        lines = r.iter_lines()
        meta = json.loads(next(lines))
        assert meta["columnNames"] == ["ID", "X"] and meta["queryId"].startswith("transient_")
        produce(server.bootstrap, "ticks", [("a", {"v": 1}, 1), ("b", {"v": 2}, 2)])
        assert json.loads(next(lines)) == ["a", 10]
        assert json.loads(next(lines)) == ["b", 20]
        queries = server.ksql("SHOW QUERIES;")[0]["queries"]
        assert meta["queryId"] in [q["id"] for q in queries]
        assert server.http.post(f"{server.url}/close-query", json={"queryId": meta["queryId"]}).status_code == 200
        assert list(lines) == []  # the response ends


def test_errors_are_ksqldb_error_bodies_and_do_not_stop_queries(server: Server) -> None:
    e = server.ksql("SHOW STREAMS;\nSELECT * FORM x;", status=400)
    assert e["@type"] == "statement_error" and e["error_code"] == 40001
    assert e["message"].startswith("line 2:10: Syntax error at or near 'FORM'")
    e = server.ksql("CREATE STREAM s2 AS SELECT * FROM no_such_stream EMIT CHANGES;", status=400)
    assert "NO_SUCH_STREAM does not exist" in e["message"] and e["statementText"].startswith("CREATE STREAM s2")
    server.ksql("CREATE STREAM events (id STRING KEY, n INT) WITH (kafka_topic='events', value_format='JSON', partitions=1);"
                "CREATE STREAM big AS SELECT * FROM events WHERE n > 5 EMIT CHANGES;", **{"auto.offset.reset": "earliest"})
    e = server.ksql("CREATE STREAM bad AS SELECT id FROM events WHERE n = 'x' EMIT CHANGES;", status=400)
    assert e["message"] == "line 1:50: Cannot compare N (INTEGER) to 'x' (VARCHAR(STRING)) with EQUAL."
    e = server.ksql("DROP STREAM events;", status=400)
    assert "The following queries read from this source" in e["message"]
    e = server.ksql("CREATE STREAM events2 (id STRING KEY) WITH (value_format='JSON');", status=400)
    assert "KAFKA_TOPIC" in e["message"]
    # records that do not decode are skipped: the query goes on
    produce(server.bootstrap, "events", [("a", "{not json", 1), ("b", {"n": 9}, 2)])
    assert read(server.bootstrap, "BIG", 1) == [(b"b", {"N": 9})]
    assert all(q["state"] == "RUNNING" for q in server.ksql("SHOW QUERIES;")[0]["queries"])
    r = server.http.post(f"{server.url}/ksql", content=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_show_describe_explain_insert_values(server: Server) -> None:
    server.ksql("CREATE STREAM pets (id STRING KEY, kind STRING, age INT) WITH (kafka_topic='pets', value_format='JSON', partitions=1);"
                "INSERT INTO pets (id, kind, age) VALUES ('p1', 'dog', 3);"
                "INSERT INTO pets (id, kind, age) VALUES ('p2', 'cat', 5);")
    streams = server.ksql("SHOW STREAMS;")[0]
    assert streams["@type"] == "streams"
    assert {"type": "STREAM", "name": "PETS", "topic": "pets", "keyFormat": "KAFKA", "valueFormat": "JSON",
            "isWindowed": False} in streams["streams"]
    d = server.ksql("DESCRIBE pets;")[0]["sourceDescription"]
    assert [(f["name"], f["schema"]["type"], f.get("type")) for f in d["fields"]] == [
        ("ID", "STRING", "KEY"), ("KIND", "STRING", None), ("AGE", "INTEGER", None)]
    assert server.pull("SELECT id, age FROM pets WHERE kind = 'cat';") == [["p2", 5]]
    assert server.server is not None
    server.server.engine.max_pull_rows = 1  # answers are bounded (ksql.query.pull.max.rows)
    try:
        r = server.http.post(f"{server.url}/query-stream", json={"sql": "SELECT * FROM pets;"})
        assert r.status_code == 400 and "more than 1 rows" in r.json()["message"]
        assert server.pull("SELECT * FROM pets LIMIT 1;") == [["p1", "dog", 3]]
    finally:
        server.server.engine.max_pull_rows = 100_000
    plan = server.ksql("EXPLAIN SELECT kind, COUNT(*) FROM pets GROUP BY kind EMIT CHANGES;")[0]["queryDescription"]
    assert "aggregate GROUP BY KIND" in plan["executionPlan"]
    assert plan["topology"].startswith("Sub-topology 0") and "repartition" in plan["topology"]
    topics = server.ksql("SHOW TOPICS;")[0]["topics"]
    assert {"name": "pets", "replicaInfo": [1]} in topics
    r = server.http.post(f"{server.url}/query", json={"ksql": "PRINT 'pets' FROM BEGINNING LIMIT 2;"})
    lines = r.text.strip().split("\n")
    assert r.status_code == 200 and lines[:2] == ["Key format: KAFKA_STRING", "Value format: JSON or KAFKA_STRING"]
    assert [x.split(", key: ")[1] for x in lines[2:]] == ['p1, value: {"KIND":"dog","AGE":3}, partition: 0',
                                                          'p2, value: {"KIND":"cat","AGE":5}, partition: 0']
    r = server.http.post(f"{server.url}/query", json={"ksql": "PRINT 'no-such-topic';"})
    assert r.status_code == 400 and "Could not find topic 'no-such-topic'" in r.json()["message"]


def test_queries_survive_a_restart_of_the_server(server: Server, broker: EmbeddedBroker, tmp_path: Path) -> None:
    s = Server(broker.bootstrap, tmp_path / "state", f"r{uuid.uuid4().hex[:6]}_").start()
    try:
        s.ksql("CREATE STREAM clicks (id STRING KEY, page STRING) WITH (kafka_topic='r_clicks', value_format='JSON', partitions=2);"
               "CREATE TABLE page_views AS SELECT page, COUNT(*) AS n FROM clicks GROUP BY page EMIT CHANGES;",
               **{"auto.offset.reset": "earliest"})
        produce(broker.bootstrap, "r_clicks", [(f"u{i}", {"page": "home" if i % 2 else "cart"}, i) for i in range(10)])
        s.pull_until("SELECT * FROM page_views WHERE page = 'home';", lambda rs: rs == [["home", 5]])
        before = [q["id"] for q in s.ksql("SHOW QUERIES;")[0]["queries"]]
        s.stop()
        s.start()  # a new engine: the command topic brings the table and its query back
        assert [q["id"] for q in s.ksql("SHOW QUERIES;")[0]["queries"]] == before
        produce(broker.bootstrap, "r_clicks", [("u99", {"page": "home"}, 100)])
        assert s.pull_until("SELECT page, n FROM page_views;", lambda rs: sorted(rs) == [["cart", 5], ["home", 6]])
    finally:
        s.close()


def test_shell_runs_a_file(server: Server, tmp_path: Path) -> None:
    script = tmp_path / "script.sql"
    script.write_text("-- a script\nCREATE STREAM notes (id STRING KEY, body STRING)\n"
                      "  WITH (kafka_topic='notes', value_format='JSON', partitions=1);\n"
                      "INSERT INTO notes (id, body) VALUES ('n1', 'hello');\nSHOW STREAMS;\nSELECT * FROM notes;\n"
                      "SELECT nope FROM notes;\nSHOW TABLES;\n")
    r = subprocess.run([sys.executable, "-m", "riverbed", "sql", "--server", server.url, "-f", str(script)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr  # stopped at the failing statement
    assert "Stream created" in r.stdout
    assert "| NOTES " in r.stdout
    assert "| ID | BODY  |\n+----+-------+\n| n1 | hello |" in r.stdout
    assert r.stdout.rstrip().endswith("line 1:8: Column 'NOPE' cannot be resolved.")
    # the interactive shell, statements piped in: multi-line statements, an error does not end it
    session = subprocess.run([sys.executable, "-m", "riverbed", "sql", "--server", server.url],
                             input="SHOW STREEMS;\nSELECT id, body\n  FROM notes\n  WHERE id = 'n1';\nexit\n",
                             capture_output=True, text=True, timeout=60)
    assert session.returncode == 0, session.stderr
    assert "line 1:6: Syntax error at or near 'STREEMS'" in session.stdout
    assert "| ID | BODY  |\n+----+-------+\n| n1 | hello |" in session.stdout
