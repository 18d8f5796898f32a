"""The planner's semantics, table-driven through riverbed.streams' TestDriver (no broker): each
case is DDL, a query, input records and the rows ksqlDB's documented semantics give."""

from __future__ import annotations

import json
from typing import Any

import pytest

from riverbed.sql import ast as A
from riverbed.sql import types as T
from riverbed.sql.catalog import SourceInfo
from riverbed.sql.engine import source_from_ddl
from riverbed.sql.errors import SqlError
from riverbed.sql.parser import parse, parse_one
from riverbed.sql.planner import Planner, SinkSpec
from riverbed.streams import BYTES, TestDriver

DDL = """
CREATE STREAM users (id STRING KEY, status STRING, age INT, address STRUCT<city STRING>, tags ARRAY<STRING>)
  WITH (kafka_topic='users', value_format='JSON');
CREATE STREAM orders (oid STRING KEY, cid STRING, amount DOUBLE, item STRING)
  WITH (kafka_topic='orders', value_format='JSON');
CREATE STREAM shipments (sid STRING KEY, oid STRING, carrier STRING)
  WITH (kafka_topic='shipments', value_format='JSON');
CREATE TABLE customers (id STRING PRIMARY KEY, name STRING, tier STRING)
  WITH (kafka_topic='customers', value_format='JSON');
CREATE TABLE addresses (id STRING PRIMARY KEY, city STRING)
  WITH (kafka_topic='addresses', value_format='JSON');
CREATE STREAM clicks (uid INT KEY, page STRING) WITH (kafka_topic='clicks', value_format='DELIMITED');
CREATE TABLE orders_t (oid STRING PRIMARY KEY, cid STRING, amount DOUBLE)
  WITH (kafka_topic='orders_t', value_format='JSON');
CREATE TABLE tiers (id STRING PRIMARY KEY, level INT) WITH (kafka_topic='tiers', value_format='JSON');
"""


def catalog() -> dict[str, SourceInfo]:
    out = {}
    for st in parse(DDL):
        assert isinstance(st, A.CreateSource)
        out[st.name] = source_from_ddl(st)
    return out


Rec = tuple[str, Any, Any, int]  # topic, key (str or None), value (dict, str or None), timestamp


def run(query: str, records: list[Rec], wall_ms: int | None = None) -> list[tuple[Any, Any]]:
    """Rows (key, row) the push query emits for the records, in order."""
    st = parse_one(query)
    assert isinstance(st, A.SelectStatement)
    rows: list[tuple[Any, Any]] = []
    plan = Planner(catalog(), "t", "unused").plan(st.query, emit=lambda k, v, _t: rows.append((k, v)))
    cols = [c.name for c in plan.columns]
    with TestDriver(plan.app, wall_clock_ms=0) as d:
        for topic, key, value, ts in records:
            raw_v = None if value is None else value.encode() if isinstance(value, str) else json.dumps(value).encode()
            d.pipe_raw(topic, None if key is None else key.encode(), raw_v, ts)
        if wall_ms is not None:
            d.advance_wall_clock(wall_ms)
    out = []
    for k, v in rows:
        if hasattr(k, "window"):
            k = (k.key, k.window.start, k.window.end)
        out.append((k, None if v is None else [v.get(c) for c in cols]))
    return out


def u(key: str, ts: int, **v: Any) -> Rec:
    return ("users", key, v, ts)


def o(key: str, ts: int, cid: str, amount: float, item: str = "x") -> Rec:
    return ("orders", key, {"cid": cid, "amount": amount, "item": item}, ts)


def ot(key: str, ts: int, cid: str | None, amount: float) -> Rec:
    return ("orders_t", key, {"cid": cid, "amount": amount}, ts)


CASES: list[tuple[str, str, list[Rec], list[tuple[Any, Any]]]] = [
    ("filter (the lecture's VIP_USERS)",
     "SELECT * FROM users WHERE status = 'VIP' EMIT CHANGES;",
     [u("a", 1, status="VIP", age=30), u("b", 2, status="regular", age=20), u("c", 3, status="VIP")],
     [("a", ["a", "VIP", 30, None, None]), ("c", ["c", "VIP", None, None, None])]),
    ("NULL comparisons are not true; IS NULL is",
     "SELECT id FROM users WHERE age > 18 OR status IS NULL EMIT CHANGES;",
     [u("a", 1, age=30, status="x"), u("b", 2, status="x"), u("c", 3, age=3)],
     [("a", ["a"]), ("c", ["c"])]),
    ("projection, expressions, CASE, CAST, struct and array access",
     "SELECT id, UCASE(status) AS s, age * 2 AS twice, CASE WHEN age >= 18 THEN 'adult' ELSE 'minor' END AS kind, "
     "CAST(age AS STRING) + '!' AS txt, address->city AS city, tags[1] AS first_tag, tags[-1] AS last_tag "
     "FROM users EMIT CHANGES;",
     [u("a", 1, status="vip", age=30, address={"CITY": "Oslo"}, tags=["x", "y"]), u("b", 2, status="n", age=10)],
     [("a", ["a", "VIP", 60, "adult", "30!", "Oslo", "x", "y"]), ("b", ["b", "N", 20, "minor", "10!", None, None, None])]),
    ("LIKE, IN, BETWEEN",
     "SELECT id FROM users WHERE status LIKE 'v%' AND age BETWEEN 10 AND 20 AND id IN ('a', 'b') EMIT CHANGES;",
     [u("a", 1, status="vip", age=15), u("b", 2, status="vip", age=25), u("c", 3, status="vip", age=15)],
     [("a", ["a"])]),
    ("PARTITION BY re-keys the stream",
     "SELECT cid, oid, amount FROM orders PARTITION BY cid EMIT CHANGES;",
     [o("o1", 1, "c1", 5.0)],
     [("c1", ["c1", "o1", 5.0])]),
    ("GROUP BY with every update (COUNT, SUM, AVG, MIN, MAX)",
     "SELECT cid, COUNT(*) AS n, SUM(amount) AS total, AVG(amount) AS mean, MIN(amount) AS lo, MAX(amount) AS hi "
     "FROM orders GROUP BY cid EMIT CHANGES;",
     [o("o1", 1, "c1", 10.0), o("o2", 2, "c2", 1.0), o("o3", 3, "c1", 20.0)],
     [("c1", ["c1", 1, 10.0, 10.0, 10.0, 10.0]), ("c2", ["c2", 1, 1.0, 1.0, 1.0, 1.0]),
      ("c1", ["c1", 2, 30.0, 15.0, 10.0, 20.0])]),
    ("LATEST/EARLIEST_BY_OFFSET, COLLECT_LIST/SET, COUNT_DISTINCT, TOPK",
     "SELECT cid, LATEST_BY_OFFSET(item) AS last, EARLIEST_BY_OFFSET(item) AS first, COLLECT_LIST(item) AS l, "
     "COLLECT_SET(item) AS s, COUNT_DISTINCT(item) AS d, TOPK(amount, 2) AS top FROM orders GROUP BY cid EMIT CHANGES;",
     [o("o1", 1, "c1", 1.0, "a"), o("o2", 2, "c1", 3.0, "b"), o("o3", 3, "c1", 2.0, "a")],
     [("c1", ["c1", "a", "a", ["a"], ["a"], 1, [1.0]]), ("c1", ["c1", "b", "a", ["a", "b"], ["a", "b"], 2, [3.0, 1.0]]),
      ("c1", ["c1", "a", "a", ["a", "b", "a"], ["a", "b"], 2, [3.0, 2.0]])]),
    ("HAVING: a row that stops matching becomes a tombstone",
     "SELECT cid, SUM(amount) AS total FROM orders GROUP BY cid HAVING SUM(amount) < 10 EMIT CHANGES;",
     [o("o1", 1, "c1", 4.0), o("o2", 2, "c1", 8.0)],
     [("c1", ["c1", 4.0]), ("c1", None)]),
    ("GROUP BY over a table: a row moving to another group, then deleted",
     "SELECT tier, COUNT(*) AS n, COLLECT_LIST(name) AS names FROM customers WHERE name <> 'X' GROUP BY tier EMIT CHANGES;",
     [("customers", "c1", {"name": "Ann", "tier": "gold"}, 1), ("customers", "c2", {"name": "Bob", "tier": "gold"}, 2),
      ("customers", "c1", {"name": "Ann", "tier": "silver"}, 3), ("customers", "c2", None, 4),
      ("customers", "c1", {"name": "X", "tier": "silver"}, 5)],
     [("gold", ["gold", 1, ["Ann"]]), ("gold", ["gold", 2, ["Ann", "Bob"]]), ("gold", ["gold", 1, ["Bob"]]),
      ("silver", ["silver", 1, ["Ann"]]), ("gold", ["gold", 0, []]), ("silver", ["silver", 0, []])]),
    ("tumbling window: WINDOWSTART/WINDOWEND, late record after grace dropped",
     "SELECT cid, COUNT(*) AS n, WINDOWSTART AS ws, WINDOWEND AS we FROM orders "
     "WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY cid EMIT CHANGES;",
     [o("o1", 1_000, "c1", 1), o("o2", 9_999, "c1", 1), o("o3", 10_000, "c1", 1), o("o4", 2_000, "c1", 1)],
     [(("c1", 0, 10_000), ["c1", 1, 0, 10_000]), (("c1", 0, 10_000), ["c1", 2, 0, 10_000]),
      (("c1", 10_000, 20_000), ["c1", 1, 10_000, 20_000])]),
    ("hopping window: a record counts in each window that covers it",
     "SELECT cid, COUNT(*) AS n FROM orders WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 5 SECONDS) "
     "GROUP BY cid EMIT CHANGES;",
     [o("o1", 7_000, "c1", 1)],
     [(("c1", 0, 10_000), ["c1", 1]), (("c1", 5_000, 15_000), ["c1", 1])]),
    ("session window: a bridging record merges two sessions",
     "SELECT cid, COUNT(*) AS n, WINDOWSTART AS ws, WINDOWEND AS we FROM orders WINDOW SESSION (5 SECONDS) "
     "GROUP BY cid EMIT CHANGES;",
     [o("o1", 1_000, "c1", 1), o("o2", 9_000, "c1", 1), o("o3", 5_000, "c1", 1)],
     [(("c1", 1_000, 1_000), ["c1", 1, 1_000, 1_000]), (("c1", 9_000, 9_000), ["c1", 1, 9_000, 9_000]),
      (("c1", 1_000, 1_000), None), (("c1", 9_000, 9_000), None),
      (("c1", 1_000, 9_000), ["c1", 3, 1_000, 9_000])]),
    ("EMIT FINAL: one row per window, when it closes",
     "SELECT cid, COUNT(*) AS n FROM orders WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 1 SECOND) "
     "GROUP BY cid EMIT FINAL;",
     [o("o1", 1_000, "c1", 1), o("o2", 2_000, "c1", 1), o("o3", 10_500, "c1", 1), o("o4", 11_000, "c1", 1)],
     [(("c1", 0, 10_000), ["c1", 2])]),
    ("stream-table LEFT JOIN (the table's value at the stream record's time)",
     "SELECT o.oid, o.amount, c.name FROM orders o LEFT JOIN customers c ON o.cid = c.id EMIT CHANGES;",
     [("customers", "c1", {"name": "Ann", "tier": "gold"}, 1), o("o1", 2, "c1", 5.0), o("o2", 3, "c2", 6.0),
      ("customers", "c1", {"name": "Annie", "tier": "gold"}, 4), o("o3", 5, "c1", 7.0)],
     [("c1", ["c1", "o1", 5.0, "Ann"]), ("c2", ["c2", "o2", 6.0, None]), ("c1", ["c1", "o3", 7.0, "Annie"])]),
    ("stream-table INNER JOIN drops records without a match",
     "SELECT o.oid, c.name FROM orders o JOIN customers c ON o.cid = c.id EMIT CHANGES;",
     [("customers", "c1", {"name": "Ann"}, 1), o("o1", 2, "c1", 5.0), o("o2", 3, "c2", 6.0)],
     [("c1", ["c1", "o1", "Ann"])]),
    ("stream-stream INNER JOIN WITHIN",
     "SELECT o.oid, s.carrier FROM orders o JOIN shipments s WITHIN 1 HOUR ON o.oid = s.oid EMIT CHANGES;",
     [o("o1", 1_000, "c1", 5.0), ("shipments", "s1", {"oid": "o1", "carrier": "ups"}, 2_000),
      ("shipments", "s2", {"oid": "o9", "carrier": "dhl"}, 3_000),
      ("shipments", "s3", {"oid": "o1", "carrier": "late"}, 1_000 + 3_600_001)],
     [("o1", ["o1", "ups"])]),
    ("stream-stream JOIN WITHIN (before, after): a shipment 1 s before to 1 h after the order",
     "SELECT o.oid, s.carrier FROM orders o JOIN shipments s WITHIN (1 SECOND, 1 HOUR) ON o.oid = s.oid EMIT CHANGES;",
     [o("o1", 10_000, "c1", 5.0), ("shipments", "s1", {"oid": "o1", "carrier": "before"}, 9_000),
      ("shipments", "s2", {"oid": "o1", "carrier": "too-early"}, 8_999),
      ("shipments", "s3", {"oid": "o1", "carrier": "after"}, 10_000 + 3_600_000),
      ("shipments", "s4", {"oid": "o1", "carrier": "too-late"}, 10_000 + 3_600_001)],
     [("o1", ["o1", "before"]), ("o1", ["o1", "after"])]),
    ("stream-stream RIGHT JOIN WITHIN (before, after): bounds stay relative to the left record",
     "SELECT s.oid AS oid, o.amount, s.carrier FROM orders o RIGHT JOIN shipments s WITHIN (1 SECOND, 1 HOUR) "
     "ON o.oid = s.oid EMIT CHANGES;",
     [o("o1", 10_000, "c1", 5.0), o("o2", 10_000, "c1", 6.0),
      ("shipments", "s1", {"oid": "o1", "carrier": "ups"}, 9_000),
      ("shipments", "s2", {"oid": "o2", "carrier": "dhl"}, 8_999)],
     [("o1", ["o1", 5.0, "ups"])]),
    ("table-table FULL OUTER JOIN on primary keys",
     "SELECT c.id AS id, c.name, a.city FROM customers c FULL OUTER JOIN addresses a ON c.id = a.id EMIT CHANGES;",
     [("customers", "c1", {"name": "Ann"}, 1), ("addresses", "c1", {"city": "Oslo"}, 2),
      ("addresses", "c2", {"city": "Rome"}, 3)],
     [("c1", ["c1", "Ann", None]), ("c1", ["c1", "Ann", "Oslo"]), ("c2", [None, None, "Rome"])]),
    ("three-way join: a stream with two tables",
     "SELECT o.oid, c.name, a.city FROM orders o JOIN customers c ON o.cid = c.id "
     "LEFT JOIN addresses a ON c.id = a.id EMIT CHANGES;",
     [("customers", "c1", {"name": "Ann"}, 1), ("addresses", "c1", {"city": "Oslo"}, 2),
      ("customers", "c2", {"name": "Bob"}, 3), o("o1", 4, "c1", 5.0), o("o2", 5, "c2", 6.0), o("o3", 6, "c9", 7.0)],
     [("c1", ["c1", "o1", "Ann", "Oslo"]), ("c2", ["c2", "o2", "Bob", None])]),
    ("three-way join: a table, then a stream WITHIN, keyed by another column",
     "SELECT o.oid, c.name, s.carrier FROM orders o JOIN customers c ON o.cid = c.id "
     "JOIN shipments s WITHIN 1 HOUR ON o.oid = s.oid EMIT CHANGES;",
     [("customers", "c1", {"name": "Ann"}, 1), o("o1", 1_000, "c1", 5.0),
      ("shipments", "s1", {"oid": "o1", "carrier": "ups"}, 2_000), ("shipments", "s2", {"oid": "o2", "carrier": "dhl"}, 3_000)],
     [("o1", ["o1", "Ann", "ups"])]),
    ("table-table foreign-key INNER JOIN: keyed by the left key; a changed foreign key moves the row",
     "SELECT o.oid, o.amount, c.name FROM orders_t o JOIN customers c ON o.cid = c.id EMIT CHANGES;",
     [("customers", "c1", {"name": "Ann"}, 1), ot("o1", 2, "c1", 5.0), ("customers", "c1", {"name": "Annie"}, 3),
      ot("o1", 4, "c2", 5.0), ("customers", "c2", {"name": "Bob"}, 5), ot("o1", 6, None, 5.0),
      ot("o2", 7, "c1", 1.0), ("orders_t", "o2", None, 8)],
     [("o1", ["o1", 5.0, "Ann"]), ("o1", ["o1", 5.0, "Annie"]), ("o1", None), ("o1", ["o1", 5.0, "Bob"]),
      ("o1", None), ("o2", ["o2", 1.0, "Annie"]), ("o2", None)]),
    ("table-table foreign-key LEFT JOIN: rows without a match join NULLs; a right deletion too",
     "SELECT o.oid, c.name FROM orders_t o LEFT JOIN customers c ON o.cid = c.id EMIT CHANGES;",
     [ot("o1", 1, "c9", 2.0), ("customers", "c9", {"name": "Zed"}, 2), ("customers", "c9", None, 3),
      ot("o1", 4, None, 2.0)],
     [("o1", ["o1", None]), ("o1", ["o1", "Zed"]), ("o1", ["o1", None]), ("o1", ["o1", None])]),
    ("a foreign-key join first, then a join on the left table's key (ksqlDB's N-way rule)",
     "SELECT o.oid, c.name, t.level FROM orders_t o JOIN customers c ON o.cid = c.id "
     "LEFT JOIN tiers t ON o.oid = t.id EMIT CHANGES;",
     [("customers", "c1", {"name": "Ann"}, 1), ot("o1", 2, "c1", 5.0), ("tiers", "o1", {"level": 3}, 3),
      ("customers", "c1", {"name": "Annie"}, 4)],
     [("o1", ["o1", "Ann", None]), ("o1", ["o1", "Ann", 3]), ("o1", ["o1", "Annie", 3])]),
    ("three tables joined on their primary keys",
     "SELECT c.id, c.name, a.city, t.level FROM customers c JOIN addresses a ON c.id = a.id "
     "LEFT JOIN tiers t ON c.id = t.id EMIT CHANGES;",
     [("customers", "c1", {"name": "Ann"}, 1), ("tiers", "c1", {"level": 2}, 2), ("addresses", "c1", {"city": "Oslo"}, 3),
      ("tiers", "c1", {"level": 5}, 4), ("addresses", "c1", None, 5)],
     [("c1", ["c1", "Ann", "Oslo", 2]), ("c1", ["c1", "Ann", "Oslo", 5]), ("c1", None)]),
    ("an aggregation over a foreign-key join's result: an order moving to another customer moves its amount",
     "SELECT c.name, COUNT(*) AS n, SUM(o.amount) AS total FROM orders_t o JOIN customers c ON o.cid = c.id "
     "GROUP BY c.name EMIT CHANGES;",
     [("customers", "c1", {"name": "Ann"}, 1), ("customers", "c2", {"name": "Bob"}, 2), ot("o1", 3, "c1", 5.0),
      ot("o2", 4, "c1", 1.0), ot("o1", 5, "c2", 5.0)],
     [("Ann", ["Ann", 1, 5.0]), ("Ann", ["Ann", 2, 6.0]), ("Ann", ["Ann", 1, 1.0]), ("Bob", ["Bob", 1, 5.0])]),
    ("DELIMITED values and an INT key",
     "SELECT uid, page FROM clicks WHERE page <> 'home' EMIT CHANGES;",
     [("clicks", None, "home", 1), ("clicks", None, "cart", 2)],
     [(None, [None, "cart"])]),
    ("a record that does not decode is skipped, the query goes on",
     "SELECT id FROM users EMIT CHANGES;",
     [("users", "a", "{not json", 1), u("b", 2, status="x")],
     [("b", ["b"])]),
]


@pytest.mark.parametrize(("query", "records", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_conformance(query: str, records: list[Rec], expected: list[tuple[Any, Any]]) -> None:
    assert run(query, records) == expected


def test_sink_writes_key_and_value_formats() -> None:
    st = parse_one("CREATE TABLE per_customer AS SELECT cid, COUNT(*) AS n FROM orders GROUP BY cid EMIT CHANGES;")
    assert isinstance(st, A.CreateAs)
    plan = Planner(catalog(), "t", "unused").plan(st.query, sink=SinkSpec("PER_CUSTOMER", "out", "KAFKA", "JSON"))
    assert [(c.name, c.key) for c in plan.columns] == [("CID", True), ("N", False)]
    with TestDriver(plan.app) as d:
        for rec in (o("o1", 1, "c1", 1), o("o2", 2, "c1", 1)):
            d.pipe_raw(rec[0], rec[1].encode(), json.dumps(rec[2]).encode(), rec[3])
        assert d.read("out", BYTES, BYTES) == [(b"c1", b'{"N":1}'), (b"c1", b'{"N":2}')]
        assert plan.store is not None and plan.stored_row is not None
        stored = dict(d.store(plan.store).all())
        assert plan.stored_row("c1", stored["c1"]) == {"CID": "c1", "N": 2}


@pytest.mark.parametrize(("query", "line", "column", "fragment"), [
    ("SELECT nope FROM users EMIT CHANGES;", 1, 8, "Column 'NOPE' cannot be resolved"),
    ("SELECT id FROM nowhere EMIT CHANGES;", 1, 16, "NOWHERE does not exist"),
    ("SELECT id FROM users\nWHERE age = 'x' EMIT CHANGES;", 2, 7, "Cannot compare AGE (INTEGER) to 'x'"),
    ("SELECT id FROM users WHERE age EMIT CHANGES;", 1, 28, "not BOOLEAN"),
    ("SELECT cid, item, COUNT(*) FROM orders GROUP BY cid EMIT CHANGES;", 1, 13,
     "Non-aggregate SELECT expression(s) not part of GROUP BY: ITEM"),
    ("SELECT cid, SUM(item) FROM orders GROUP BY cid EMIT CHANGES;", 1, 13, "SUM"),
    ("SELECT id FROM users WHERE COUNT(*) > 1 EMIT CHANGES;", 1, 28, "aggregate"),
    ("SELECT o.oid FROM orders o JOIN shipments s ON o.oid = s.oid EMIT CHANGES;", 1, 48, "WITHIN"),
    ("SELECT c.id FROM customers c JOIN orders o ON c.id = o.cid EMIT CHANGES;", 1, 47, "table-stream joins"),
    ("SELECT o.oid FROM orders o JOIN customers c ON o.cid = c.name EMIT CHANGES;", 1, 56, "primary key"),
    ("SELECT NO_SUCH_FN(id) FROM users EMIT CHANGES;", 1, 8, "NO_SUCH_FN"),
    ("SELECT tier, MIN(name) FROM customers GROUP BY tier EMIT CHANGES;", 1, 14, "not supported in an aggregation over a TABLE"),
    ("SELECT address->zip FROM users EMIT CHANGES;", 1, 8, "ZIP"),
    ("SELECT o.oid FROM orders_t o FULL OUTER JOIN customers c ON o.cid = c.id EMIT CHANGES;", 1, 61,
     "Invalid join type: full-outer join not supported for foreign-key table-table join. "
     "Got ORDERS_T [FULL] OUTER JOIN CUSTOMERS."),
    ("SELECT o.oid FROM orders_t o RIGHT JOIN customers c ON o.cid = c.id EMIT CHANGES;", 1, 56,
     "Invalid join type: right-outer join not supported for foreign-key table-table join. "
     "Got ORDERS_T RIGHT [OUTER] JOIN CUSTOMERS."),
    ("SELECT o.oid FROM orders_t o JOIN customers c ON o.oid = c.name EMIT CHANGES;", 1, 58,
     "Invalid join condition: table-table joins require to join on the primary key of the right input table. "
     "Got O.OID = C.NAME."),
    ("SELECT c.id FROM customers c JOIN addresses a ON c.id = a.id\nJOIN tiers t ON name = t.id EMIT CHANGES;", 2, 17,
     "Invalid join condition: foreign-key table-table joins are not supported as part of n-way joins. "
     "Got C.NAME = T.ID."),
    ("SELECT o.oid FROM orders_t o JOIN customers c ON o.amount = c.id EMIT CHANGES;", 1, 50, "types don't match"),
    ("SELECT o.oid FROM orders_t o JOIN customers c WITHIN 1 HOUR ON o.cid = c.id EMIT CHANGES;", 1, 64,
     "A window definition was provided for a Table-Table join."),
])
def test_semantic_errors_have_line_and_column(query: str, line: int, column: int, fragment: str) -> None:
    st = parse_one(query)
    assert isinstance(st, A.SelectStatement)
    with pytest.raises(SqlError) as ei:
        Planner(catalog(), "t", "unused").plan(st.query, emit=lambda *_: None)
    assert fragment in ei.value.message
    assert (ei.value.line, ei.value.column) == (line, column), str(ei.value)


def test_udf_and_udaf() -> None:
    from riverbed.sql import types, udaf, udf

    @udf("SHOUT", returns=types.STRING)
    def shout(s: str, n: int = 1) -> str:
        return s.upper() + "!" * n

    @udaf("PRODUCT", returns=types.DOUBLE)
    class Product:
        def init(self) -> float:
            return 1.0

        def add(self, acc: float, x: float | None) -> float:
            return acc if x is None else acc * x

        def merge(self, a: float, b: float) -> float:
            return a * b

        def result(self, acc: float) -> float:
            return acc

    assert run("SELECT SHOUT(status, 2) AS s FROM users EMIT CHANGES;", [u("a", 1, status="hi")]) == [("a", ["a", "HI!!"])]
    assert run("SELECT cid, PRODUCT(amount) AS p FROM orders GROUP BY cid EMIT CHANGES;",
               [o("o1", 1, "c1", 2.0), o("o2", 2, "c1", 3.5)]) == [("c1", ["c1", 2.0]), ("c1", ["c1", 7.0])]


@pytest.mark.parametrize(("where", "expected"), [
    ("id = 'a'", (True, ["a"])),
    ("'a' = id AND n > 1", (True, ["a"])),
    ("id IN ('b', 'a', 'b')", (True, ["b", "a"])),
    ("id IN ('a', 'b') AND id = 'b'", (True, ["b"])),
    ("id = 'a' OR id = 'b'", (False, None)),
    ("id > 'a'", (False, None)),
    ("id NOT IN ('a')", (False, None)),
    ("n = 1", (False, None)),
])
def test_pull_query_key_lookups(where: str, expected: tuple[bool, Any]) -> None:
    from riverbed.sql.engine import Engine

    info = SourceInfo("T", "TABLE", "t", "KAFKA", "JSON", [("ID", T.STRING)], [("N", T.INTEGER)])
    q = parse_one(f"SELECT * FROM t WHERE {where};").query  # type: ignore[attr-defined]
    assert Engine._key_of(q.where, info) == expected


def test_pull_query_multi_column_key_lookups() -> None:
    from riverbed.sql.engine import Engine

    info = SourceInfo("T", "TABLE", "t", "JSON", "JSON", [("A", T.STRING), ("B", T.INTEGER)], [("N", T.INTEGER)])

    def key_of(where: str) -> tuple[bool, Any]:
        return Engine._key_of(parse_one(f"SELECT * FROM t WHERE {where};").query.where, info)  # type: ignore[attr-defined]

    assert key_of("a = 'x' AND b IN (1, 2)") == (True, [("x", 1), ("x", 2)])
    assert key_of("a = 'x'") == (False, None)  # B is not pinned: a scan
    many = ", ".join(str(i) for i in range(40))
    assert key_of(f"a IN ({', '.join(repr(str(i)) for i in range(40))}) AND b IN ({many})") == (False, None)  # 1,600 keys: a scan


def test_join_select_star_keys_the_result_by_the_join_key_column() -> None:
    """As in ksqlDB: ``SELECT *`` over a join names columns ``ALIAS_COL``; the key column is the
    join key's (the left table's primary key for a foreign-key join)."""
    st = parse_one("CREATE TABLE t AS SELECT * FROM orders_t o JOIN customers c ON o.cid = c.id EMIT CHANGES;")
    assert isinstance(st, A.CreateAs)
    plan = Planner(catalog(), "t", "unused").plan(st.query, sink=SinkSpec("T", "out", "KAFKA", "JSON"))
    assert [(c.name, c.key) for c in plan.columns][:4] == [("O_OID", True), ("O_CID", False), ("O_AMOUNT", False),
                                                           ("C_ID", False)]
    assert sum(c.key for c in plan.columns) == 1


def test_single_aggregate_state_keeps_its_stored_shape() -> None:
    """COUNT(*) and a lone aggregate take the planner's short path; the state in the store stays a
    one-element list, so stores and changelogs written before read the same."""
    st = parse_one("CREATE TABLE per_customer AS SELECT cid, COUNT(*) AS n FROM orders GROUP BY cid EMIT CHANGES;")
    assert isinstance(st, A.CreateAs)
    plan = Planner(catalog(), "t", "unused").plan(st.query, sink=SinkSpec("PER_CUSTOMER", "out", "KAFKA", "JSON"))
    with TestDriver(plan.app) as d:
        for rec in (o("o1", 1, "c1", 1), o("o2", 2, "c1", 1), o("o3", 3, "c2", 5)):
            d.pipe_raw(rec[0], rec[1].encode(), json.dumps(rec[2]).encode(), rec[3])
        assert plan.store is not None
        assert dict(d.store(plan.store).all()) == {"c1": [2], "c2": [1]}
    assert run("SELECT cid, SUM(amount) AS s FROM orders GROUP BY cid EMIT CHANGES;",
               [o("o1", 1, "c1", 2.5), ("orders", "o2", {"cid": "c1", "amount": None}, 2), o("o3", 3, "c1", 5)]) == [
        ("c1", ["c1", 2.5]), ("c1", ["c1", 2.5]), ("c1", ["c1", 7.5])]
