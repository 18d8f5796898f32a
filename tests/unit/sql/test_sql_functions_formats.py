"""Scalar functions (a table of calls and results), NULL semantics, and the formats' round trips
(Hypothesis, modest example counts)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.sql import ast as A
from riverbed.sql import types as T
from riverbed.sql.compiler import Compiler, Scope
from riverbed.sql.formats import (
    INTERNAL,
    INTERNAL_VALUES,
    KeySerde,
    RowSerde,
    kafka_decode,
    kafka_encode,
)
from riverbed.sql.parser import parse_one

ROW = {"S": "Hello World", "N": 7, "D": 2.5, "A": [3, 1, 2], "M": {"k": "v"}, "Z": None,
       "J": '{"a": {"b": [10, 20]}}', "TS": 1_700_000_000_123}
SCOPE = Scope({"T": [("S", T.STRING), ("N", T.INTEGER), ("D", T.DOUBLE), ("A", T.array(T.INTEGER)),
                     ("M", T.map_of(T.STRING, T.STRING)), ("Z", T.STRING), ("J", T.STRING), ("TS", T.BIGINT)]})


def ev(expr: str) -> Any:
    q = parse_one(f"SELECT {expr} FROM t;").query  # type: ignore[attr-defined]
    e = q.items[0].expr
    assert isinstance(e, A.Expr)
    return Compiler(SCOPE).compile(e).fn(ROW)


@pytest.mark.parametrize(("expr", "want"), [
    ("UCASE(s)", "HELLO WORLD"), ("LCASE(s)", "hello world"), ("LEN(s)", 11), ("SUBSTRING(s, 7)", "World"),
    ("SUBSTRING(s, 1, 5)", "Hello"), ("SUBSTRING(s, -5)", "World"), ("CONCAT(s, '!', NULL)", "Hello World!"),
    ("CONCAT_WS('-', 'a', NULL, 'b')", "a-b"), ("REPLACE(s, 'World', 'There')", "Hello There"),
    ("TRIM('  x ')", "x"), ("LPAD('7', 3, '0')", "007"), ("RPAD('ab', 4, '.')", "ab.."), ("INSTR(s, 'o')", 5),
    ("SPLIT('a,b,c', ',')", ["a", "b", "c"]), ("REGEXP_REPLACE(s, '[aeiou]', '')", "Hll Wrld"),
    ("REGEXP_EXTRACT('([0-9]+)', 'abc123def', 1)", "123"), ("INITCAP('hello there')", "Hello There"),
    ("MASK('Ab1-')", "Xxn-"), ("ENCODE('hi', 'utf8', 'hex')", "6869"),
    ("ABS(-3)", 3), ("CEIL(d)", 3.0), ("FLOOR(d)", 2.0), ("ROUND(d)", 3), ("ROUND(2.345, 2)", 2.35), ("SIGN(-2)", -1),
    ("SQRT(16)", 4.0), ("POWER(2, 10)", 1024.0), ("GREATEST(1, 5, 3)", 5), ("LEAST(4, 2)", 2), ("n % 4", 3), ("n / 2", 3),
    ("d * 2", 5.0), ("n / 0", None),
    ("COALESCE(z, 'x')", "x"), ("IFNULL(z, 'y')", "y"), ("NULLIF(n, 7)", None), ("z IS NULL", True),
    ("UCASE(z)", None), ("z = 'a'", None), ("z = 'a' OR TRUE", True), ("z = 'a' AND FALSE", False),
    ("ARRAY_LENGTH(a)", 3), ("ARRAY_CONTAINS(a, 2)", True), ("ARRAY_MAX(a)", 3), ("ARRAY_SORT(a)", [1, 2, 3]),
    ("ARRAY_SORT(a, 'DESC')", [3, 2, 1]), ("ARRAY_JOIN(a, '|')", "3|1|2"), ("SLICE(a, 2, 3)", [1, 2]),
    ("MAP_KEYS(m)", ["k"]), ("m['k']", "v"), ("a[2]", 1), ("a[9]", None),
    ("TRANSFORM(a, x => x * 10)", [30, 10, 20]), ("FILTER(a, x => x > 1)", [3, 2]), ("REDUCE(a, 0, (s, x) => s + x)", 6),
    ("EXTRACTJSONFIELD(j, '$.a.b[1]')", "20"), ("JSON_ARRAY_LENGTH('[1,2]')", 2), ("IS_JSON_STRING('{')", False),
    ("TIMESTAMPTOSTRING(ts, 'yyyy-MM-dd HH:mm:ss.SSS')", "2023-11-14 22:13:20.123"),
    ("STRINGTOTIMESTAMP('2023-11-14 22:13:20', 'yyyy-MM-dd HH:mm:ss')", 1_700_000_000_000),
    ("CAST('12' AS INT) + 1", 13), ("CAST('x' AS INT)", None), ("CAST(n AS STRING)", "7"), ("CAST(d AS DECIMAL(4, 2))", Decimal("2.50")),
    ("CASE n WHEN 7 THEN 'seven' ELSE 'other' END", "seven"), ("n BETWEEN 1 AND 7", True), ("s LIKE 'Hel%d'", True),
    ("s LIKE 'h%'", False), ("'a_c' LIKE 'a\\_c' ESCAPE '\\'", True), ("n IN (1, 7)", True), ("n NOT IN (1, 2)", True),
    ("n IN (1, NULL)", None), ("ARRAY[1, 2]", [1, 2]), ("STRUCT(x := 1)->x", 1), ("s || '!'", "Hello World!"),
])
def test_scalar_functions(expr: str, want: Any) -> None:
    assert ev(expr) == want


def test_unknown_function_and_wrong_arity() -> None:
    from riverbed.sql.errors import SqlError

    with pytest.raises(SqlError, match="Can't find any functions with the name 'NOPE'"):
        ev("NOPE(1)")
    with pytest.raises(SqlError, match="does not accept 3 argument"):
        ev("UCASE(s, s, s)")


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=8)


@settings(max_examples=60, deadline=None)
@given(json_values)
def test_internal_serdes_round_trip(v: Any) -> None:
    assert INTERNAL_VALUES.deserialize(INTERNAL_VALUES.serialize(v)) == v
    assert INTERNAL.deserialize(INTERNAL.serialize(v)) == v


@settings(max_examples=40, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=3), st.binary(max_size=6),
       st.tuples(st.text(max_size=4), st.integers()))
def test_internal_serdes_keep_decimals_bytes_and_tuples(d: Decimal, b: bytes, t: tuple[str, int]) -> None:
    assert INTERNAL_VALUES.deserialize(INTERNAL_VALUES.serialize({"d": d, "b": b})) == {"d": d, "b": b}
    assert INTERNAL.deserialize(INTERNAL.serialize(t)) == t


COLS = [("ID", T.STRING), ("N", T.BIGINT), ("X", T.DOUBLE), ("OK", T.BOOLEAN)]
rows = st.fixed_dictionaries({"ID": st.none() | st.text(alphabet="abc,\"' x", max_size=6), "N": st.none() | st.integers(-2**63, 2**63 - 1),
                              "X": st.none() | st.floats(allow_nan=False, allow_infinity=False), "OK": st.none() | st.booleans()})


@settings(max_examples=60, deadline=None)
@given(rows)
def test_row_formats_round_trip(row: dict[str, Any]) -> None:
    assert RowSerde("JSON", COLS).deserialize(RowSerde("JSON", COLS).serialize(row)) == row
    delim = RowSerde("DELIMITED", COLS)
    back = delim.deserialize(delim.serialize(row))
    if row["ID"] != "":  # DELIMITED cannot tell an empty string from NULL (as in ksqlDB)
        assert back == row


@settings(max_examples=40, deadline=None)
@given(st.integers(-2**31, 2**31 - 1), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=10))
def test_kafka_format_is_kafkas_serializers(i: int, big: int, f: float, s: str) -> None:
    assert kafka_decode(kafka_encode(i, T.INTEGER) or b"", T.INTEGER) == i
    assert len(kafka_encode(i, T.INTEGER) or b"") == 4 and len(kafka_encode(big, T.BIGINT) or b"") == 8
    assert kafka_decode(kafka_encode(big, T.BIGINT) or b"", T.BIGINT) == big
    assert kafka_decode(kafka_encode(f, T.DOUBLE) or b"", T.DOUBLE) == f
    ks = KeySerde("KAFKA", [("K", T.STRING)])
    assert ks.deserialize(ks.serialize(s)) == s and ks.serialize(s) == s.encode()


def test_json_fields_match_columns_case_insensitively_and_coerce() -> None:
    serde = RowSerde("JSON", COLS)
    assert serde.deserialize(b'{"id": "a", "n": "12", "x": 1, "ok": true, "extra": 1}') == {"ID": "a", "N": 12, "X": 1.0, "OK": True}
    with pytest.raises(ValueError):
        serde.deserialize(b'{"n": 1.5}')
    with pytest.raises(ValueError):
        serde.deserialize(b"[1, 2]")
    assert RowSerde("JSON", [("V", T.INTEGER)], wrap_single=False).deserialize(b"5") == {"V": 5}


def test_protobuf_columns_round_trip_and_infer() -> None:
    from decimal import Decimal

    from riverbed.sql import protobuf as P
    from riverbed.sql.errors import SqlError
    from riverbed.sql.schemas import RegistryRowSerde

    cols = [("ID", T.STRING), ("N", T.INTEGER), ("D", T.SqlType("DECIMAL", precision=6, scale=2)), ("TS", T.TIMESTAMP),
            ("DT", T.DATE), ("TM", T.TIME), ("A", T.array(T.STRING)), ("M", T.map_of(T.STRING, T.DOUBLE)),
            ("S", T.struct([("X", T.INTEGER), ("Y", T.array(T.struct([("Z", T.STRING)])))])), ("OK", T.BOOLEAN)]
    text = P.proto_text(cols)
    assert "message ConnectDefault1 {" in text and "confluent.type.Decimal D = 3" in text
    assert P.infer(text) == cols  # DECIMAL's precision and scale come back from the field's meta params
    serde = RegistryRowSerde("PROTOBUF_NOSR", cols, None, "t-value")
    row = {"ID": "a", "N": -3, "D": Decimal("-12.50"), "TS": 1700000000123, "DT": 19000, "TM": 3723004, "A": ["x"],
           "M": {"k": 1.5}, "S": {"X": 1, "Y": [{"Z": "q"}]}, "OK": True}
    assert serde.deserialize(serde.serialize(row)) == row
    # NULL primitives are the type's default, as ksqlDB writes proto3; NULL messages stay NULL
    empty = serde.deserialize(serde.serialize(dict.fromkeys(row)))
    assert empty == {"ID": "", "N": 0, "D": None, "TS": None, "DT": None, "TM": None, "A": [], "M": {}, "S": None, "OK": False}
    with pytest.raises(SqlError, match="array or map inside an array or map"):
        P.proto_text([("AA", T.array(T.array(T.INTEGER)))])


@pytest.mark.parametrize("nullable", ["WRAPPER", "OPTIONAL"])
def test_protobuf_nullable_representations_keep_null_apart_from_defaults(nullable: str) -> None:
    from riverbed.sql import protobuf as P
    from riverbed.sql.schemas import RegistryRowSerde

    cols = [("N", T.INTEGER), ("S", T.STRING), ("A", T.array(T.INTEGER)), ("ST", T.struct([("X", T.BIGINT)]))]
    text = P.proto_text(cols, nullable=nullable)
    assert ("google.protobuf.Int32Value N = 1;" if nullable == "WRAPPER" else "optional int32 N = 1;") in text
    assert "repeated int32 A = 3;" in text  # array elements cannot be NULL in Protobuf: plain
    assert P.infer(text) == cols
    serde = RegistryRowSerde("PROTOBUF_NOSR", cols, None, "t-value", nullable=nullable)
    for row in ({"N": None, "S": None, "A": [], "ST": {"X": None}}, {"N": 0, "S": "", "A": [0], "ST": {"X": 0}}):
        assert serde.deserialize(serde.serialize(row)) == row


def test_delimited_value_delimiter() -> None:
    from riverbed.sql.engine import source_from_ddl
    from riverbed.sql.errors import SqlError

    def info(props: str) -> Any:
        return source_from_ddl(parse_one(f"CREATE STREAM s (id STRING KEY, a INT, b STRING) WITH (kafka_topic='s', {props});"))

    serde = info("value_format='DELIMITED', value_delimiter='|'").value_serde()
    assert serde.serialize({"A": 1, "B": "x,y"}) == b"1|x,y"
    assert serde.deserialize(b"2|z") == {"A": 2, "B": "z"}
    assert info("value_format='DELIMITED', value_delimiter='TAB'").value_serde().serialize({"A": 1, "B": "x"}) == b"1\tx"
    with pytest.raises(SqlError, match="Delimiter must be a single character"):
        info("value_format='DELIMITED', value_delimiter='||'")
    with pytest.raises(SqlError, match="VALUE_DELIMITER can only be used with VALUE_FORMAT='DELIMITED'"):
        info("value_format='JSON', value_delimiter='|'")


def test_json_fast_paths_match_the_json_module() -> None:
    """Values of plain columns are read with orjson, and what it refuses (NaN, Infinity) with
    json as before; rows and states are written as json.JSONEncoder writes them."""
    import json

    cols = [("S", T.STRING), ("N", T.BIGINT), ("D", T.DOUBLE), ("B", T.BOOLEAN)]
    s = RowSerde("JSON", cols)
    assert s.deserialize(b'{"s": "\\u00e9x", "n": 12, "d": 1.5, "b": true}') == {"S": "éx", "N": 12, "D": 1.5, "B": True}
    got = s.deserialize(b'{"S": "a", "D": NaN}')
    assert got["S"] == "a" and got["D"] != got["D"] and got["N"] is None
    with pytest.raises(ValueError):
        s.deserialize(b'{"S": ')
    # DECIMAL columns keep json's exact integers (orjson would read a big one as a float)
    dec = RowSerde("JSON", [("X", T.SqlType("DECIMAL", precision=38, scale=0))])
    assert dec.deserialize(b'{"X": 123456789012345678901234567890}') == {"X": Decimal("123456789012345678901234567890")}
    enc = json.JSONEncoder(separators=(",", ":"))
    row = {"S": "é\n\"", "N": 2**70, "D": float("nan"), "B": False}
    assert s.serialize(row) == enc.encode(row).encode()
    state = [3, {"k": [1.5, None, "x"]}, Decimal("1.50"), b"\x01"]
    assert INTERNAL_VALUES.deserialize(INTERNAL_VALUES.serialize(state)) == state
    assert INTERNAL.deserialize(INTERNAL.serialize(("a", 1))) == ("a", 1)
    assert KeySerde("KAFKA", [("K", T.STRING)]).serialize("ké") == "ké".encode()


def test_json_decoding_plans_per_key_order() -> None:
    """Each key order gets its own decoding function: later fields naming the same column win,
    keys and column names that need quoting in code are read as they are, missing columns are
    NULL, rows come out in column order."""
    cols = [("ID", T.STRING), ("it's", T.BIGINT), ("N", T.BIGINT), ("X", T.DOUBLE)]
    serde = RowSerde("JSON", cols)
    assert serde.deserialize(b'{"n": 1, "N": "2", "x": 3}') == {"ID": None, "it's": None, "N": 2, "X": 3.0}
    assert list(serde.deserialize(b'{"x": 1.5, "id": "a"}')) == ["ID", "it's", "N", "X"]
    assert serde.deserialize(b'{"IT\'S": 4, "a\\"b\\\\": 1, "id": null}') == {"ID": None, "it's": 4, "N": None, "X": None}
    assert serde.deserialize(b'{"n": 1, "N": "2", "x": 3}') == {"ID": None, "it's": None, "N": 2, "X": 3.0}  # (its plan again)
    with pytest.raises(ValueError):
        serde.deserialize(b'{"n": "one"}')


@pytest.mark.parametrize("where", ["n = 7", "7 = n", "n < 8", "8 < n", "z = 'a'", "'a' = z", "s != 'x'", "n >= 7.0",
                                   "n = 7 AND s = 'Hello World'", "d > 2"])
def test_where_tests_of_a_column_and_a_literal_match_the_expression(where: str) -> None:
    """A WHERE of ``column <op> literal`` has its own test function; it gives what the compiled
    expression gives (NULL: false) on rows with the column set, different and NULL."""
    q = parse_one(f"SELECT * FROM t WHERE {where};").query  # type: ignore[attr-defined]
    c = Compiler(SCOPE, clause="WHERE")
    fn, test = c.compile(q.where).fn, c.predicate(q.where)
    assert (c.compile(q.where).test is not None) == (" AND " not in where)
    for row in (ROW, {**ROW, "N": 9, "S": "x", "Z": "a", "D": 1.0}, {**ROW, "N": None, "S": None, "D": None}):
        assert test(row) is (fn(row) is True), row


@pytest.mark.parametrize("v", [[0], [7], [10**19], [-12], [2**70], [True], [1.5], [float("nan")], [float("inf")],
                               {"a": [1, None]}, ["\ud800"], [Decimal("1.50")], "s", 3])
def test_internal_values_are_jsons_bytes_and_read_back_as_json_reads_them(v: Any) -> None:
    """Rows and states keep their stored bytes (changelogs written before read the same) and
    come back as the json decoder with the tagging hook gives them (COUNT's state at once)."""
    import json

    from riverbed.sql.formats import InternalValueSerde, _default

    data = INTERNAL_VALUES.serialize(v)
    assert data == json.dumps(v, separators=(",", ":"), default=_default).encode()
    got, want = INTERNAL_VALUES.deserialize(data), InternalValueSerde._dec.decode(data.decode())
    assert repr(got) == repr(want) and type(got) is type(want)
