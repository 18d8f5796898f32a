"""The SQL parser: ksqlDB statements to the syntax tree, and syntax errors with line and column."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from riverbed.sql import ast as A
from riverbed.sql.errors import SqlError
from riverbed.sql.parser import parse, parse_one


def test_create_stream_with_key_and_properties() -> None:
    st = parse_one("CREATE STREAM users (id STRING KEY, status VARCHAR, tags ARRAY<STRING>, "
                   "addr STRUCT<city STRING, zip INT>, m MAP<STRING, DOUBLE>) "
                   "WITH (kafka_topic='users', value_format='json', partitions=3);")
    assert isinstance(st, A.CreateSource)
    assert (st.kind, st.name) == ("STREAM", "USERS")
    assert [(c.name, str(c.type), c.constraint) for c in st.columns] == [
        ("ID", "VARCHAR(STRING)", "KEY"), ("STATUS", "VARCHAR(STRING)", None), ("TAGS", "ARRAY<VARCHAR(STRING)>", None),
        ("ADDR", "STRUCT<`CITY` VARCHAR(STRING), `ZIP` INTEGER>", None), ("M", "MAP<VARCHAR(STRING), DOUBLE>", None)]
    assert st.props == {"KAFKA_TOPIC": "users", "VALUE_FORMAT": "json", "PARTITIONS": 3}


def test_create_table_primary_key_and_quoted_names_keep_case() -> None:
    st = parse_one("create table if not exists `Customers` (`Id` INT PRIMARY KEY, name STRING) with (kafka_topic='c');")
    assert isinstance(st, A.CreateSource)
    assert st.name == "Customers" and st.if_not_exists
    assert [(c.name, c.constraint) for c in st.columns] == [("Id", "PRIMARY KEY"), ("NAME", None)]


def test_csas_filter_the_lecture() -> None:
    st = parse_one("CREATE STREAM VIP_USERS AS SELECT * FROM users WHERE status = 'VIP' EMIT CHANGES;")
    assert isinstance(st, A.CreateAs)
    q = st.query
    assert q.items[0].expr is None and q.source.name == "USERS" and q.emit == "CHANGES"
    assert q.where == A.Binary("=", A.Column("STATUS"), A.Literal("VIP", "STRING"))
    assert st.text == "CREATE STREAM VIP_USERS AS SELECT * FROM users WHERE status = 'VIP' EMIT CHANGES;"


def test_windows_and_aggregates() -> None:
    q = parse_one("SELECT k, COUNT(*) AS c, COUNT_DISTINCT(x), WINDOWSTART FROM s "
                  "WINDOW HOPPING (SIZE 1 MINUTE, ADVANCE BY 10 SECONDS, RETENTION 2 DAYS, GRACE PERIOD 5 SECONDS) "
                  "GROUP BY k EMIT FINAL;").query  # type: ignore[attr-defined]
    assert q.window == A.WindowSpec("HOPPING", 60_000, 10_000, 5_000, 2 * 86_400_000)
    assert q.items[1].expr == A.Call("COUNT", [], star=True) and q.items[1].alias == "C"
    assert q.emit == "FINAL" and q.group_by == [A.Column("K")]
    q = parse_one("SELECT k FROM s WINDOW SESSION (30 SECONDS) GROUP BY k EMIT CHANGES;").query  # type: ignore[attr-defined]
    assert q.window == A.WindowSpec("SESSION", 30_000)


def test_joins() -> None:
    q = parse_one("SELECT o.id, c.name FROM orders o LEFT OUTER JOIN customers AS c WITHIN (1 HOUR, 2 HOURS) "
                  "GRACE PERIOD 1 MINUTE ON o.cid = c.id EMIT CHANGES;").query  # type: ignore[attr-defined]
    j = q.joins[0]
    assert (q.source.name, q.source.alias, j.how, j.right.ref) == ("ORDERS", "O", "LEFT", "C")
    assert j.within_ms == (3_600_000, 7_200_000) and j.grace_ms == 60_000
    assert j.on == A.Binary("=", A.Column("CID", "O"), A.Column("ID", "C"))
    q = parse_one("SELECT * FROM a FULL JOIN b ON a.k = b.k;").query  # type: ignore[attr-defined]
    assert q.joins[0].how == "FULL" and q.emit is None


def test_expressions() -> None:
    q = parse_one("SELECT CASE WHEN a > 1 THEN 'x' ELSE 'y' END, CAST(b AS DECIMAL(4, 2)), s->f[1], "
                  "m['k'], -2, 1.5, 2e3, a || 'z', x NOT BETWEEN 1 AND 2, y IS NOT NULL, z NOT LIKE 'a%', "
                  "w IN (1, 2), ARRAY[1, 2], MAP('a' := 1), STRUCT(f := 1), TRANSFORM(arr, x => x + 1), "
                  "NOT (a = 1 OR b <> 2 AND c >= 3) FROM t;").query  # type: ignore[attr-defined]
    e = [i.expr for i in q.items]
    assert isinstance(e[0], A.Case) and e[0].default == A.Literal("y", "STRING")
    assert isinstance(e[1], A.Cast) and str(e[1].to) == "DECIMAL(4, 2)"
    assert e[2] == A.Subscript(A.Deref(A.Column("S"), "F"), A.Literal(1, "INTEGER"))
    assert e[4] == A.Literal(-2, "INTEGER") and e[5] == A.Literal(Decimal("1.5"), "DECIMAL")
    assert e[6] == A.Literal(2000.0, "DOUBLE")
    assert e[7] == A.Binary("||", A.Column("A"), A.Literal("z", "STRING"))
    assert isinstance(e[8], A.Between) and e[8].negate
    assert e[9] == A.IsNull(A.Column("Y"), True)
    assert isinstance(e[10], A.Like) and e[10].negate
    assert isinstance(e[11], A.InList) and len(e[11].items) == 2
    assert isinstance(e[15], A.Call) and isinstance(e[15].args[1], A.Lambda)
    # AND binds tighter than OR
    n = e[16]
    assert isinstance(n, A.Unary) and isinstance(n.operand, A.Binary) and n.operand.op == "OR"
    assert isinstance(n.operand.right, A.Binary) and n.operand.right.op == "AND"


def test_other_statements() -> None:
    sts = parse("SHOW STREAMS; LIST TOPICS EXTENDED; DESCRIBE EXTENDED vip; DESCRIBE TABLES; "
                "DROP TABLE IF EXISTS t DELETE TOPIC; TERMINATE CSAS_VIP_1; TERMINATE ALL; "
                "SET 'auto.offset.reset' = 'earliest'; UNSET 'auto.offset.reset'; EXPLAIN CTAS_X_2; "
                "INSERT INTO s (a, b) VALUES ('x', 1); INSERT INTO s SELECT * FROM t EMIT CHANGES; PRINT 'topic' FROM BEGINNING LIMIT 3;")
    assert sts == [A.Show("STREAMS"), A.Show("TOPICS", True), A.Describe("VIP", True), A.DescribeList("TABLES"),
                   A.Drop("TABLE", "T", True, True), A.Terminate("CSAS_VIP_1"), A.Terminate(None),
                   A.SetProperty("auto.offset.reset", "earliest"), A.UnsetProperty("auto.offset.reset"),
                   A.Explain("CTAS_X_2", None),
                   A.InsertValues("S", ["A", "B"], [A.Literal("x", "STRING"), A.Literal(1, "INTEGER")]),
                   sts[11], A.Print("topic", True, 3)]
    assert isinstance(sts[11], A.InsertSelect)


def test_keywords_are_names_where_a_name_is_expected() -> None:
    q = parse_one("SELECT size, session, key FROM t WHERE size > 1;").query  # type: ignore[attr-defined]
    assert [i.expr.name for i in q.items] == ["SIZE", "SESSION", "KEY"]


def test_comments_and_statement_texts() -> None:
    sts = parse("-- a comment\nSHOW STREAMS;\n/* block */ SHOW TABLES")
    assert [s.text for s in sts] == ["SHOW STREAMS;", "SHOW TABLES;"]
    assert sts[1].pos == (3, 13)


@pytest.mark.parametrize(("text", "line", "column", "fragment"), [
    ("SELECT * FORM x;", 1, 10, "'FORM'"),
    ("SHOW STREAMS;\nSELECT a,, b FROM x;", 2, 10, "','"),
    ("CREATE STREAM s (a INT) WITH (x=1", 1, 33, "end of input"),
    ("SELECT a FROM s WINDOW TUMBLING (SIZE 1 FORTNIGHT);", 1, 41, "Invalid time unit"),
    ("CREATE STREAM s (a FOO) WITH (kafka_topic='x');", 1, 20, "Unknown type: FOO"),
    ("select $ from x;", 1, 8, "unexpected character"),
])
def test_syntax_errors_name_line_and_column(text: str, line: int, column: int, fragment: str) -> None:
    with pytest.raises(SqlError) as ei:
        parse(text)
    assert (ei.value.line, ei.value.column) == (line, column)
    assert fragment in ei.value.message
    assert str(ei.value).startswith(f"line {line}:{column}: ")


@pytest.mark.parametrize("texts", [
    ["SELECT * FROM t WHERE id = 'u1';", "SELECT * FROM t WHERE id = 'u7';", "SELECT * FROM t WHERE id = 'it''s';"],
    ["SELECT a, 'ab' AS c FROM t\nWHERE id IN ('x', 'yz') AND b LIKE 'q%';", "SELECT a, 'cd' AS c FROM t\nWHERE id IN ('', 'a''') AND b LIKE '%%';"],
    ["SELECT * FROM t WHERE s LIKE 'a!%' ESCAPE '!';", "SELECT * FROM t WHERE s LIKE 'b#%' ESCAPE '#';"],  # (ESCAPE is no literal)
    ["SELECT * FROM t WHERE id = 'a'; SELECT 1 FROM t;"],
    ["SELECT * FROM t -- it's\nWHERE id = 'a';", "SELECT `it's` FROM t WHERE id = 'b';", "SELECT * /* ' */ FROM t;"],
    ["SELECT * FROM t WHERE ts > 'a' EMIT CHANGES;", "SELECT * FROM t WHERE ts > 'b' EMIT CHANGES LIMIT 3;"],
])
def test_selects_parsed_once_per_shape_are_parsed_as_they_are(texts: list[str]) -> None:
    """parse_select gives what parse gives (values, positions, statement text), for texts that
    share a template (same shape, literals of the same lengths) or not."""
    from riverbed.sql.parser import parse_select

    for _ in range(2):
        for text in texts:
            got, want = parse_select(text), parse(text)
            assert got == want
            assert [s.text for s in got] == [s.text for s in want]
            assert [s.pos for s in got] == [s.pos for s in want]
            lits = [e for e in _walk(got) if isinstance(e, A.Literal)]
            assert [(e.value, e.pos) for e in lits] == [(e.value, e.pos) for e in _walk(want) if isinstance(e, A.Literal)]


def test_a_select_parsed_from_its_template_is_a_copy() -> None:
    from riverbed.sql.parser import _TEMPLATES, parse_select

    a = parse_select("SELECT * FROM t WHERE id = 'k1' AND n = 'zz';")[0]
    assert "SELECT * FROM t WHERE id = 'xx' AND n = 'xx';" in _TEMPLATES
    assert isinstance(a, A.SelectStatement)
    a.query.items.clear()
    b = parse_select("SELECT * FROM t WHERE id = 'k2' AND n = 'yy';")[0]
    assert isinstance(b, A.SelectStatement) and b.query.items and b.text == "SELECT * FROM t WHERE id = 'k2' AND n = 'yy';"
    with pytest.raises(SqlError) as e:
        parse_select("SELECT * FROM t WHERE id = 'k3' AND;")
    assert (e.value.line, e.value.column) == (1, 36)


def _walk(node: Any) -> list[Any]:
    import dataclasses

    out = [node]
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            out += _walk(getattr(node, f.name))
    elif isinstance(node, (list, tuple)):
        for x in node:
            out += _walk(x)
    return out
