"""The Debezium type mapping, envelope schema, config parsing and outbox routing, without a
database (the integration tests cover them against PostgreSQL)."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.connect.config import ConfigError, ConnectorConfig, OutboxConfig, resolve_secret
from riverbed.connect.debezium import (
    ColumnType,
    JsonEncoder,
    TableSchema,
    column_mapping,
    parse_array,
)
from riverbed.connect.outbox import route_row


def conv(oid: int, text: str, typmod: int = -1, mode: str = "precise") -> object:
    return column_mapping(ColumnType(oid, typmod), mode)[1](text)


def test_decimal_modes() -> None:
    typmod = ((10 << 16) | 2) + 4  # numeric(10,2)
    schema, c, ok = column_mapping(ColumnType(1700, typmod))
    assert ok and schema["name"] == "org.apache.kafka.connect.data.Decimal" and schema["parameters"] == {"scale": "2", "connect.decimal.precision": "10"}
    assert c("1.50") == "AJY="  # unscaled 150, big-endian two's complement
    assert c("-0.01") == base64.b64encode(b"\xff").decode()
    assert c("NaN") is None
    assert conv(1700, "2.25") == {"scale": 2, "value": base64.b64encode(b"\x00\xe1").decode()}
    assert conv(1700, "12.340", typmod, "string") == "12.340"
    assert conv(1700, "12.5", typmod, "double") == 12.5


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=3, allow_nan=False))
def test_precise_decimal_round_trip(d: Decimal) -> None:
    out = conv(1700, str(d), ((20 << 16) | 3) + 4)
    assert isinstance(out, str)
    raw = base64.b64decode(out)
    assert Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-3) == d


def test_temporal_types() -> None:
    assert conv(1184, "2024-05-06 05:08:09.1234+00") == "2024-05-06T05:08:09.1234Z"
    assert conv(1184, "2024-05-06 05:08:09+00") == "2024-05-06T05:08:09Z"
    assert conv(1114, "1970-01-01 00:00:01.5") == 1_500_000  # MicroTimestamp
    assert conv(1114, "1970-01-01 00:00:01.5", typmod=3) == 1500  # Timestamp (ms) for precision <= 3
    assert conv(1114, "infinity") == 9223372036854775807
    assert conv(1082, "1970-01-11") == 10
    assert conv(1083, "01:00:00.25") == 3_600_250_000
    assert conv(1266, "10:11:12.5+02") == "08:11:12.5Z"
    assert conv(1186, "1 day 02:00:00") == 93_600_000_000
    assert conv(1186, "1 mon") == round(365.25 / 12 * 86_400e6)


def test_other_types() -> None:
    assert conv(17, "\\x00ff") == "AP8="
    assert conv(16, "t") is True
    assert conv(701, "NaN") == "NaN" and conv(701, "-Infinity") == "-Infinity" and conv(700, "1.5") == 1.5
    assert conv(3802, '{"a": 1}') == '{"a": 1}'
    assert column_mapping(ColumnType(3802))[0]["name"] == "io.debezium.data.Json"
    assert column_mapping(ColumnType(2950))[0]["name"] == "io.debezium.data.Uuid"
    assert conv(1007, "{1,NULL,3}") == [1, None, 3]
    assert conv(1009, '{"a,b","c\\"d",NULL}') == ["a,b", 'c"d', None]
    enum = column_mapping(ColumnType(99999, -1, "mood", "e", ("sad", "ok")))[0]
    assert enum["name"] == "io.debezium.data.Enum" and enum["parameters"] == {"allowed": "sad,ok"}
    schema, c, ok = column_mapping(ColumnType(600))  # point: not mapped -> a string, flagged
    assert not ok and schema == {"type": "string"} and c("(1,2)") == "(1,2)"


def test_parse_array_nested() -> None:
    assert parse_array("{{1,2},{3,4}}") == [["1", "2"], ["3", "4"]]
    assert parse_array("{}") == []
    assert parse_array("[0:1]={a,b}") == ["a", "b"]


def test_row_bad_value_passed_as_string_and_key_only_defaults() -> None:
    ts = TableSchema("public", "t", ["id", "when", "name"], [ColumnType(23), ColumnType(1082), ColumnType(25)], [False, True, False], ["id"])
    assert ts.row([b"1", b"not a date", b"x"]) == {"id": 1, "when": "not a date", "name": "x"}
    assert ts.row([b"1", None, None], key_only=True) == {"id": 1, "when": None, "name": ""}
    enc = JsonEncoder("srv")
    key = json.loads(enc.key(ts, {"id": 1}) or b"")
    assert key["schema"]["name"] == "srv.public.t.Key" and key["payload"] == {"id": 1}
    assert JsonEncoder("srv", key_schemas=False).key(ts, {"id": 1}) == b'{"id":1}'
    vs = ts.value_schema("srv")
    assert vs["name"] == "srv.public.t.Envelope"
    assert [f["field"] for f in vs["fields"]] == ["before", "after", "source", "op", "ts_ms", "transaction"]


def test_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    monkeypatch.setenv("PGPW", "from-env")
    assert resolve_secret("${env:PGPW}") == "from-env"
    assert resolve_secret(f"${{file:{secret}}}") == "from-file"
    cfg = ConnectorConfig.from_props({"name": "a", "topic.prefix": "p", "database": {"password": "${env:PGPW}", "hostname": "h"}, "bogus": 1})
    assert cfg.password == "from-env" and cfg.hostname == "h" and cfg.unknown == ("bogus",)
    assert "from-env" not in repr(cfg) and "from-env" not in str(cfg.redacted())
    assert cfg.skipped_operations == frozenset({"t"}) and cfg.snapshot_mode == "initial"
    for bad in ({"topic.prefix": "p"}, {"name": "a"}, {"name": "a", "topic.prefix": "p", "snapshot.mode": "sometimes"},
                {"name": "a", "topic.prefix": "p", "plugin.name": "wal2json"}, {"name": "a", "topic.prefix": "p", "slot.name": "Bad-Name"},
                {"name": "a", "topic.prefix": "p", "database.password": "${env:NOT_SET_ANYWHERE_X}"}):
        with pytest.raises(ConfigError):
            ConnectorConfig.from_props(bad)


def test_outbox_routing() -> None:
    cfg = OutboxConfig.from_props({"table.fields.additional.placement": "type:header:eventType,created:envelope:at"})
    row = {"id": "e1", "aggregatetype": "User", "aggregateid": "7", "type": "UserCreated", "payload": '{"x": 1}', "created": "t"}
    topic, key, value, headers, eid = route_row(cfg, row)
    assert (topic, key, eid) == ("outbox.event.User", b"7", "e1")
    assert headers == [("id", b"e1"), ("eventType", b"UserCreated")]
    assert json.loads(value or b"") == {"payload": '{"x": 1}', "at": "t"}
    plain = route_row(OutboxConfig(expand_json_payload=True, route_topic_replacement="events.${routedByValue}"), row)
    assert plain[0] == "events.User" and plain[2] == b'{"x": 1}'
    with pytest.raises(ConfigError):
        OutboxConfig.from_props({"table.fields.additional.placement": "type:nowhere"})


def test_avro_schema_of_an_envelope_round_trips() -> None:
    import io

    import fastavro

    from riverbed.connect.avro import avro_schema, datum
    from riverbed.connect.debezium import envelope, source

    types = [ColumnType(21), ColumnType(1700, ((8 << 16) | 2) + 4), ColumnType(1700), ColumnType(1007), ColumnType(99, -1, "mood", "e", ("a", "b")),
             ColumnType(17), ColumnType(701), ColumnType(1184)]
    names = ["small", "price", "anyscale", "nums", "m", "raw", "f", "at"]
    ts = TableSchema("public", "t-1", ["id", *names], [ColumnType(23), *types], [False] + [True] * len(names), ["id"])
    schema = avro_schema(ts.value_schema("9srv"))
    assert schema["name"] == "Envelope" and schema["namespace"] == "_9srv.public.t_1"
    parsed = fastavro.parse_schema(schema)
    row = ts.row([b"1", b"7", b"12.34", b"0.5", b"{1,NULL}", b"a", b"\\x00ff", b"NaN", b"2024-01-02 03:04:05+00"])
    env = envelope("c", None, row, source("9srv", "db", ts, 1, "false", 5, 10, '["10","10"]'), 2)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, datum(ts.value_schema("9srv"), env))
    back = fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), parsed)
    assert back["after"]["price"] == Decimal("12.34") and back["after"]["small"] == 7 and back["after"]["nums"] == [1, None]
    assert back["after"]["anyscale"] == {"scale": 1, "value": b"\x05"} and back["after"]["raw"] == b"\x00\xff"
    assert back["after"]["f"] != back["after"]["f"]  # NaN
    assert back["before"] is None and back["source"]["connector"] == "postgresql" and back["op"] == "c"
    assert schema["fields"][1]["type"] == ["null", "_9srv.public.t_1.Value"]  # defined once, then named
    small = next(f for f in schema["fields"][0]["type"][1]["fields"] if f["name"] == "small")
    assert small["type"] == ["null", {"type": "int", "connect.type": "int16"}]


def _pg_array(items: list[str | None]) -> str:
    """An array literal as PostgreSQL's array_out writes it (quotes when needed)."""
    out = []
    for v in items:
        if v is None:
            out.append("NULL")
        elif v == "" or v.upper() == "NULL" or any(c in v for c in ' {},"\\') or v != v.strip():
            out.append('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            out.append(v)
    return "{" + ",".join(out) + "}"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=8)), max_size=6))
def test_parse_array_round_trip(items: list[str | None]) -> None:
    assert parse_array(_pg_array(items)) == items


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_malformed_array_text_is_passed_as_a_string(text: str) -> None:
    ts = TableSchema("public", "t", ["a"], [ColumnType(1009)], [True], [])
    out = ts.row([text.encode()])["a"]  # never raises
    assert isinstance(out, list | str)
