"""Table-table joins end to end (ksqlDB's semantics, a real broker over TCP, the REST API over
HTTP): foreign-key joins (INNER, LEFT) including the retraction when a row's foreign key
changes, an N-way join that starts with a foreign-key join, an aggregation over a join's
result, and pull queries on join results (materialized by their query).

A conformance table in steps: each step's records are produced, then exactly the step's
sink records are awaited before the next step, because a foreign-key join answers through
internal topics (the order of two inputs produced at once is not defined)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker

from .test_sql import Server, produce

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    b = EmbeddedBroker(tmp_path_factory.mktemp("sqljoin-broker"), **FIXTURE_DEFAULTS).start()
    s = Server(b.bootstrap, tmp_path_factory.mktemp("sqljoin-state"), f"j{uuid.uuid4().hex[:6]}_").start()
    yield s
    s.close()
    b.stop()


class Sink:
    """Reads a sink topic from its start, across steps."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"sink-{uuid.uuid4().hex}",
                           "auto.offset.reset": "earliest"})
        self.c.subscribe([topic])

    def take(self, n: int, timeout: float = 30) -> list[tuple[str | None, Any]]:
        out: list[tuple[str | None, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            m = self.c.poll(0.2)
            if m is None or m.error():
                continue
            k, v = m.key(), m.value()
            out.append((None if k is None else k.decode(), None if v is None else json.loads(v)))
        return out

    def nothing_more(self, wait: float = 1.0) -> list[tuple[str | None, Any]]:
        return self.take(1, timeout=wait)

    def close(self) -> None:
        self.c.close()


DDL = """
CREATE TABLE {p}_customers (id STRING PRIMARY KEY, name STRING)
  WITH (kafka_topic='{p}_customers', value_format='JSON', partitions=2);
CREATE TABLE {p}_orders (oid STRING PRIMARY KEY, cid STRING, amount DOUBLE)
  WITH (kafka_topic='{p}_orders', value_format='JSON', partitions=3);
CREATE TABLE {p}_shipping (oid STRING PRIMARY KEY, status STRING)
  WITH (kafka_topic='{p}_shipping', value_format='JSON', partitions=3);
"""

Step = tuple[list[tuple[str, str, Any]], list[tuple[str, Any]]]  # (topic, key, value) in; (key, value) out

# name, statement, steps, a pull query after the last step and its rows
FK_CASES: list[tuple[str, str, list[Step], str, list[list[Any]]]] = [
    ("foreign-key inner join",
     "CREATE TABLE {p}_enriched AS SELECT o.oid, o.amount, c.name FROM {p}_orders o "
     "JOIN {p}_customers c ON o.cid = c.id EMIT CHANGES;",
     # (a new row without a match gives nothing, so the customer may arrive before or after its subscription)
     [([("orders", "o1", {"cid": "c1", "amount": 5}), ("customers", "c1", {"name": "Ann"})],
       [("o1", {"AMOUNT": 5.0, "NAME": "Ann"})]),
      ([("customers", "c1", {"name": "Annie"})], [("o1", {"AMOUNT": 5.0, "NAME": "Annie"})]),
      # the order moves to a customer that does not exist: its row is retracted
      ([("orders", "o1", {"cid": "c2", "amount": 5})], [("o1", None)]),
      ([("customers", "c2", {"name": "Bob"})], [("o1", {"AMOUNT": 5.0, "NAME": "Bob"})]),
      ([("orders", "o2", {"cid": "c1", "amount": 1})], [("o2", {"AMOUNT": 1.0, "NAME": "Annie"})]),
      ([("orders", "o1", {"cid": "c1", "amount": 7})], [("o1", {"AMOUNT": 7.0, "NAME": "Annie"})]),
      ([("customers", "c1", None)], [("o1", None), ("o2", None)])],  # the customer is deleted
     "SELECT * FROM {p}_enriched;", []),
    ("foreign-key left join",
     "CREATE TABLE {p}_enriched AS SELECT o.oid, c.name FROM {p}_orders o "
     "LEFT JOIN {p}_customers c ON o.cid = c.id EMIT CHANGES;",
     [([("orders", "o1", {"cid": "c1", "amount": 5})], [("o1", {"NAME": None})]),
      ([("customers", "c1", {"name": "Ann"})], [("o1", {"NAME": "Ann"})]),
      ([("orders", "o1", {"cid": "c9", "amount": 5})], [("o1", {"NAME": None})]),
      ([("orders", "o2", {"cid": "c1", "amount": 2})], [("o2", {"NAME": "Ann"})]),
      ([("customers", "c1", None)], [("o2", {"NAME": None})]),
      ([("orders", "o2", None)], [("o2", None)])],
     "SELECT * FROM {p}_enriched;", [["o1", None]]),
    ("foreign-key join, then a join on the left key (N-way)",
     "CREATE TABLE {p}_full AS SELECT o.oid, c.name, s.status FROM {p}_orders o "
     "JOIN {p}_customers c ON o.cid = c.id LEFT JOIN {p}_shipping s ON o.oid = s.oid EMIT CHANGES;",
     [([("orders", "o1", {"cid": "c1", "amount": 5}), ("customers", "c1", {"name": "Ann"})],
       [("o1", {"NAME": "Ann", "STATUS": None})]),
      ([("shipping", "o1", {"status": "shipped"})], [("o1", {"NAME": "Ann", "STATUS": "shipped"})]),
      ([("customers", "c1", {"name": "Annie"})], [("o1", {"NAME": "Annie", "STATUS": "shipped"})])],
     "SELECT * FROM {p}_full WHERE oid = 'o1';", [["o1", "Annie", "shipped"]]),
    ("aggregation over a foreign-key join",
     "CREATE TABLE {p}_per_name AS SELECT c.name, COUNT(*) AS n, SUM(o.amount) AS total FROM {p}_orders o "
     "JOIN {p}_customers c ON o.cid = c.id GROUP BY c.name EMIT CHANGES;",
     [([("customers", "c1", {"name": "Ann"}), ("customers", "c2", {"name": "Bob"}),
        ("orders", "o1", {"cid": "c1", "amount": 5})], [("Ann", {"N": 1, "TOTAL": 5.0})]),
      ([("orders", "o2", {"cid": "c1", "amount": 1})], [("Ann", {"N": 2, "TOTAL": 6.0})]),
      # an order moving to another customer leaves one group and joins the other
      ([("orders", "o1", {"cid": "c2", "amount": 5})], [("Ann", {"N": 1, "TOTAL": 1.0}), ("Bob", {"N": 1, "TOTAL": 5.0})])],
     "SELECT * FROM {p}_per_name;", [["Ann", 1, 1.0], ["Bob", 1, 5.0]]),
]


@pytest.mark.parametrize(("statement", "steps", "pull", "pulled"), [c[1:] for c in FK_CASES], ids=[c[0] for c in FK_CASES])
def test_table_table_joins_end_to_end(server: Server, statement: str, steps: list[Step], pull: str,
                                      pulled: list[list[Any]]) -> None:
    p = f"j{uuid.uuid4().hex[:6]}"
    server.ksql(DDL.format(p=p))
    res = server.ksql(statement.format(p=p), **{"auto.offset.reset": "earliest"})
    qid = res[0]["commandStatus"]["queryId"]
    sink = Sink(server.bootstrap, res[0]["statementText"].split()[2].upper())
    try:
        for i, (records, expected) in enumerate(steps):
            for topic, key, value in records:
                produce(server.bootstrap, f"{p}_{topic}", [(key, value, 1_000 + i)])
            got = sink.take(len(expected))
            # (one step's records for different keys may land in different partitions: any order)
            assert sorted(got, key=str) == sorted(expected, key=str), f"step {i}: {got}"
        assert sink.nothing_more() == []
        rows = server.pull_until(pull.format(p=p), lambda rs: sorted(rs, key=str) == sorted(pulled, key=str))
        assert sorted(rows, key=str) == sorted(pulled, key=str)
    finally:
        sink.close()
    server.ksql(f"TERMINATE {qid};")
    internal = [t["name"] for t in server.ksql("SHOW TOPICS EXTENDED;")[0]["topics"] if qid in t["name"]]
    assert internal == []  # its subscription, response and changelog topics went with it


def test_foreign_key_join_goes_on_after_a_restart_of_the_server(server: Server, tmp_path: Path) -> None:
    """The join's stores (the left table, the subscriptions) come back from their changelogs:
    after a restart a customer's change still reaches her orders, once each."""
    s = Server(server.bootstrap, tmp_path / "state", f"r{uuid.uuid4().hex[:6]}_").start()
    p = f"j{uuid.uuid4().hex[:6]}"
    try:
        s.ksql(DDL.format(p=p))
        s.ksql(f"CREATE TABLE {p}_enriched AS SELECT o.oid, c.name FROM {p}_orders o JOIN {p}_customers c "
               "ON o.cid = c.id EMIT CHANGES;", **{"auto.offset.reset": "earliest"})
        sink = Sink(server.bootstrap, f"{p.upper()}_ENRICHED")
        try:
            produce(server.bootstrap, f"{p}_orders", [("o1", {"cid": "c1"}, 1), ("o2", {"cid": "c1"}, 2),
                                                      ("o3", {"cid": "c2"}, 3)])
            produce(server.bootstrap, f"{p}_customers", [("c1", {"name": "Ann"}, 4), ("c2", {"name": "Bob"}, 5)])
            assert sorted(sink.take(3), key=str) == [("o1", {"NAME": "Ann"}), ("o2", {"NAME": "Ann"}), ("o3", {"NAME": "Bob"})]
            s.stop()
            s.start()  # the same service id and state directory: the command topic is replayed
            produce(server.bootstrap, f"{p}_customers", [("c1", {"name": "Annie"}, 6)])
            assert sorted(sink.take(2), key=str) == [("o1", {"NAME": "Annie"}), ("o2", {"NAME": "Annie"})]
            assert sink.nothing_more() == []
            rows = s.pull_until(f"SELECT * FROM {p}_enriched;", lambda rs: len(rs) == 3)
            assert sorted(rows) == [["o1", "Annie"], ["o2", "Annie"], ["o3", "Bob"]]
        finally:
            sink.close()
    finally:
        s.close()


def test_foreign_key_join_errors_are_ksqldbs(server: Server) -> None:
    p = f"j{uuid.uuid4().hex[:6]}"
    server.ksql(DDL.format(p=p))
    P = p.upper()
    e = server.ksql(f"CREATE TABLE {p}_x AS SELECT o.oid, c.name FROM {p}_orders o FULL OUTER JOIN {p}_customers c "
                    "ON o.cid = c.id EMIT CHANGES;", status=400)
    assert "Invalid join type: full-outer join not supported for foreign-key table-table join. " \
           f"Got {P}_ORDERS [FULL] OUTER JOIN {P}_CUSTOMERS." in e["message"]
    e = server.ksql(f"CREATE TABLE {p}_x AS SELECT o.oid, c.name FROM {p}_orders o RIGHT JOIN {p}_customers c "
                    "ON o.cid = c.id EMIT CHANGES;", status=400)
    assert "right-outer join not supported for foreign-key table-table join" in e["message"]
    e = server.ksql(f"CREATE TABLE {p}_x AS SELECT o.oid FROM {p}_orders o JOIN {p}_shipping s ON o.oid = s.oid "
                    f"JOIN {p}_customers c ON o.cid = c.id EMIT CHANGES;", status=400)
    assert "Invalid join condition: foreign-key table-table joins are not supported as part of n-way joins. " \
           "Got O.CID = C.ID." in e["message"]
    e = server.ksql(f"CREATE TABLE {p}_x AS SELECT o.oid FROM {p}_orders o JOIN {p}_customers c ON o.cid = c.name "
                    "EMIT CHANGES;", status=400)
    assert "table-table joins require to join on the primary key of the right input table. Got O.CID = C.NAME." in e["message"]
    assert not [t for t in server.ksql("SHOW TABLES;")[0]["tables"] if t["name"] == f"{P}_X"]
