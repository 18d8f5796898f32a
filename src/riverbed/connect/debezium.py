"""PostgreSQL values and rows as Debezium's PostgreSQL connector writes them: the Kafka Connect
schema of each column (the type mapping of Debezium's documentation, ``time.precision.mode``
adaptive, ``decimal.handling.mode`` precise/string/double, ``binary.handling.mode`` bytes),
the change-event envelope (before/after/source/op/ts_ms) and its key, in JSON as Kafka
Connect's JsonConverter writes it (with or without the ``schema`` part).

Values arrive in PostgreSQL's text format, produced under the session settings of
``replication.SESSION_OPTIONS`` (ISO dates, UTC, hex bytea).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from .. import __version__ as _riverbed_version

log = logging.getLogger("riverbed.connect")

CONNECTOR_VERSION = f"riverbed-{_riverbed_version}"
UNAVAILABLE = "__debezium_unavailable_value"  # Debezium's unavailable.value.placeholder
EPOCH_DATE = date(1970, 1, 1)
EPOCH = datetime(1970, 1, 1)
POS_INF, NEG_INF = 9223372036854775807, -9223372036854775808

Schema = dict[str, Any]
Converter = Callable[[str], Any]


@dataclass(frozen=True)
class ColumnType:
    """What the connector knows of a column's type from the catalog."""

    oid: int
    typmod: int = -1
    name: str = ""  # pg_type.typname (for non-built-in types)
    kind: str = "b"  # pg_type.typtype: b base, e enum, d domain, ...
    enum_labels: tuple[str, ...] = ()
    element: ColumnType | None = None  # for arrays


def _int(t: str) -> int:
    return int(t)


def _float(t: str) -> float | str:
    v = float(t)
    if v != v or v in (float("inf"), float("-inf")):
        # JSON has no NaN/Infinity: Kafka Connect's JsonConverter (Jackson) writes them quoted
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    return v


def _bool(t: str) -> bool:
    return t == "t"


def _str(t: str) -> str:
    return t


def _bytea(t: str) -> str:
    raw = bytes.fromhex(t[2:]) if t.startswith("\\x") else t.encode()
    return base64.b64encode(raw).decode()


def _date(t: str) -> int:
    if t in ("infinity", "-infinity"):
        return 2147483647 if t == "infinity" else -2147483648
    return (date.fromisoformat(t) - EPOCH_DATE).days


def _timestamp_micros(t: str) -> int:
    if t in ("infinity", "-infinity"):
        return POS_INF if t == "infinity" else NEG_INF
    d = datetime.fromisoformat(t)
    return int((d - EPOCH) // _US)


def _timestamp_millis(t: str) -> int:
    v = _timestamp_micros(t)
    return v if v in (POS_INF, NEG_INF) else v // 1000


def _zoned_timestamp(t: str) -> str:
    if t in ("infinity", "-infinity"):
        return t
    d = datetime.fromisoformat(t).astimezone(UTC)
    text = d.strftime("%Y-%m-%dT%H:%M:%S")
    if d.microsecond:
        text += f".{d.microsecond:06d}".rstrip("0")
    return text + "Z"


def _time_micros(t: str) -> int:
    if t.startswith("24:00"):
        return 86_400_000_000
    v = time.fromisoformat(t)
    return ((v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000 + v.microsecond


def _time_millis(t: str) -> int:
    return _time_micros(t) // 1000


def _zoned_time(t: str) -> str:
    # '10:11:12.5+02' -> the same instant in UTC, as Debezium's ZonedTime: '08:11:12.5Z'
    v = time.fromisoformat(t)
    d = datetime.combine(date(2000, 1, 1), v).astimezone(UTC)
    text = d.strftime("%H:%M:%S")
    if d.microsecond:
        text += f".{d.microsecond:06d}".rstrip("0")
    return text + "Z"


_US = __import__("datetime").timedelta(microseconds=1)

# PostgreSQL interval (IntervalStyle postgres) -> µs, months as Debezium's average 365.25/12 days
_UNIT_US = {"year": 365.25 * 86_400e6, "mon": 365.25 / 12 * 86_400e6, "day": 86_400e6}


def _interval_micros(t: str) -> int:
    total = 0.0
    parts = t.split()
    i = 0
    while i < len(parts):
        tok = parts[i]
        if ":" in tok:
            sign = -1 if tok.startswith("-") else 1
            hms = tok.lstrip("+-").split(":")
            h, m, sec = int(hms[0]), int(hms[1]), float(hms[2]) if len(hms) > 2 else 0.0
            total += sign * ((h * 60 + m) * 60 + sec) * 1e6
            i += 1
            continue
        unit = parts[i + 1].rstrip("s")
        total += int(tok) * _UNIT_US[unit]
        i += 2
    return round(total)


def _decimal_bytes(unscaled: int) -> str:
    n = (unscaled.bit_length() + 8) // 8  # room for the sign bit (two's complement, big-endian)
    return base64.b64encode(unscaled.to_bytes(max(n, 1), "big", signed=True)).decode()


def _decimal_precise(scale: int) -> Converter:
    def conv(t: str) -> Any:
        try:
            d = Decimal(t)
        except InvalidOperation:
            return None
        if not d.is_finite():
            return None  # NaN / Infinity have no Decimal encoding (Debezium writes null too)
        return _decimal_bytes(int(d.scaleb(scale).to_integral_value()))

    return conv


def _variable_decimal(t: str) -> Any:
    d = Decimal(t)
    if not d.is_finite():
        return None
    scale = max(0, -int(d.as_tuple().exponent))
    return {"scale": scale, "value": _decimal_bytes(int(d.scaleb(scale)))}


def _decimal_string(t: str) -> str:
    return t


def _decimal_double(t: str) -> float:
    return float(t)


def parse_array(text: str) -> list[Any]:
    """A PostgreSQL array literal ('{1,2,NULL}', '{"a,b","c\\"d"}', '{{1,2},{3,4}}') as nested
    lists of element texts (None for NULL)."""
    pos = 0
    if text.startswith("["):  # explicit bounds '[0:1]={...}'
        pos = text.index("=") + 1

    def parse(i: int) -> tuple[list[Any], int]:
        if text[i] != "{":
            raise ValueError(f"bad array literal {text!r}")
        i += 1
        out: list[Any] = []
        if text[i] == "}":
            return out, i + 1
        while True:
            if text[i] == "{":
                sub, i = parse(i)
                out.append(sub)
            elif text[i] == '"':
                i += 1
                buf = []
                while text[i] != '"':
                    if text[i] == "\\":
                        i += 1
                    buf.append(text[i])
                    i += 1
                out.append("".join(buf))
                i += 1
            else:
                j = i
                while text[j] not in ",}":
                    j += 1
                raw = text[i:j].strip()
                out.append(None if raw == "NULL" else raw)
                i = j
            if text[i] == ",":
                i += 1
                continue
            if text[i] == "}":
                return out, i + 1
            raise ValueError(f"bad array literal {text!r}")

    result, _ = parse(pos)
    return result


# built-in type OIDs
BOOL, BYTEA, CHAR, NAME, INT8, INT2, INT4, TEXT, OID, JSON, XML = 16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 142
FLOAT4, FLOAT8, BPCHAR, VARCHAR, DATE, TIME, TIMESTAMP, TIMESTAMPTZ, INTERVAL, TIMETZ = 700, 701, 1042, 1043, 1082, 1083, 1114, 1184, 1186, 1266
NUMERIC, UUID, JSONB, INET, CIDR, MACADDR, MONEY = 1700, 2950, 3802, 869, 650, 829, 790
ARRAY_ELEMENTS = {
    1000: BOOL, 1001: BYTEA, 1002: CHAR, 1003: NAME, 1005: INT2, 1007: INT4, 1016: INT8, 1009: TEXT,
    1014: BPCHAR, 1015: VARCHAR, 1021: FLOAT4, 1022: FLOAT8, 1231: NUMERIC, 2951: UUID, 1182: DATE,
    1183: TIME, 1115: TIMESTAMP, 1185: TIMESTAMPTZ, 1187: INTERVAL, 199: JSON, 3807: JSONB, 1028: OID,
}


def _named(type_: str, name: str, **extra: Any) -> Schema:
    return {"type": type_, "name": name, "version": 1, **extra}


def column_mapping(ct: ColumnType, decimal_mode: str = "precise") -> tuple[Schema, Converter, bool]:
    """(Kafka Connect schema without field/optional, text converter, supported?) of a column."""
    o, mod = ct.oid, ct.typmod
    simple: dict[int, tuple[Schema, Converter]] = {
        BOOL: ({"type": "boolean"}, _bool),
        INT2: ({"type": "int16"}, _int),
        INT4: ({"type": "int32"}, _int),
        INT8: ({"type": "int64"}, _int),
        OID: ({"type": "int64"}, _int),
        FLOAT4: ({"type": "float"}, _float),
        FLOAT8: ({"type": "double"}, _float),
        TEXT: ({"type": "string"}, _str),
        VARCHAR: ({"type": "string"}, _str),
        BPCHAR: ({"type": "string"}, _str),
        CHAR: ({"type": "string"}, _str),
        NAME: ({"type": "string"}, _str),
        INET: ({"type": "string"}, _str),
        CIDR: ({"type": "string"}, _str),
        MACADDR: ({"type": "string"}, _str),
        BYTEA: ({"type": "bytes"}, _bytea),
        JSON: (_named("string", "io.debezium.data.Json"), _str),
        JSONB: (_named("string", "io.debezium.data.Json"), _str),
        XML: (_named("string", "io.debezium.data.Xml"), _str),
        UUID: (_named("string", "io.debezium.data.Uuid"), _str),
        DATE: (_named("int32", "io.debezium.time.Date"), _date),
        TIMESTAMPTZ: (_named("string", "io.debezium.time.ZonedTimestamp"), _zoned_timestamp),
        TIMETZ: (_named("string", "io.debezium.time.ZonedTime"), _zoned_time),
        INTERVAL: (_named("int64", "io.debezium.time.MicroDuration"), _interval_micros),
    }
    if o in simple:
        schema, conv = simple[o]
        return dict(schema), conv, True
    if o == TIMESTAMP:
        if 0 <= mod <= 3:
            return _named("int64", "io.debezium.time.Timestamp"), _timestamp_millis, True
        return _named("int64", "io.debezium.time.MicroTimestamp"), _timestamp_micros, True
    if o == TIME:
        if 0 <= mod <= 3:
            return _named("int32", "io.debezium.time.Time"), _time_millis, True
        return _named("int64", "io.debezium.time.MicroTime"), _time_micros, True
    if o == NUMERIC:
        if decimal_mode == "string":
            return {"type": "string"}, _decimal_string, True
        if decimal_mode == "double":
            return {"type": "double"}, _decimal_double, True
        if mod >= 4:
            precision, scale = ((mod - 4) >> 16) & 0xFFFF, (mod - 4) & 0xFFFF
            params = {"scale": str(scale), "connect.decimal.precision": str(precision)}
            return _named("bytes", "org.apache.kafka.connect.data.Decimal", parameters=params), _decimal_precise(scale), True
        fields = [{"type": "int32", "optional": False, "field": "scale"}, {"type": "bytes", "optional": False, "field": "value"}]
        return _named("struct", "io.debezium.data.VariableScaleDecimal", doc="Variable scaled decimal", fields=fields), _variable_decimal, True
    if ct.kind == "e":
        return _named("string", "io.debezium.data.Enum", parameters={"allowed": ",".join(ct.enum_labels)}), _str, True
    if ct.element is not None or o in ARRAY_ELEMENTS:
        elem = ct.element or ColumnType(ARRAY_ELEMENTS[o])
        es, econv, ok = column_mapping(elem, decimal_mode)

        def conv(t: str) -> Any:
            def walk(v: Any) -> Any:
                if isinstance(v, list):
                    return [walk(x) for x in v]
                return None if v is None else econv(v)

            return walk(parse_array(t))

        return {"type": "array", "items": {**es, "optional": True}}, conv, ok
    return {"type": "string"}, _str, False


def _zero(schema: Schema) -> Any:
    t = schema["type"]
    if t.startswith("int"):
        return 0
    if t in ("float", "double"):
        return 0.0
    if t == "boolean":
        return False
    if t == "bytes":
        return "AA==" if schema.get("name") == "org.apache.kafka.connect.data.Decimal" else ""
    if t == "array":
        return []
    if t == "struct":
        return {"scale": 0, "value": "AA=="}
    return ""


@dataclass
class TableSchema:
    """A captured table as the envelope needs it (built from a Relation message + catalog)."""

    schema: str
    table: str
    columns: list[str]
    types: list[ColumnType]
    optional: list[bool]
    key_columns: list[str]
    decimal_mode: str = "precise"
    converters: list[Converter] = field(default_factory=list, init=False)
    fields: list[Schema] = field(default_factory=list, init=False)
    key_index: list[int] = field(default_factory=list, init=False)
    unsupported: list[str] = field(default_factory=list, init=False)
    # what encoders derive from this layout (serialized schemas, registry ids), kept with it
    cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, ct, opt in zip(self.columns, self.types, self.optional, strict=True):
            schema, conv, ok = column_mapping(ct, self.decimal_mode)
            if not ok:
                self.unsupported.append(name)
            self.converters.append(conv)
            self.fields.append({**schema, "optional": opt, "field": name})
        self.key_index = [self.columns.index(k) for k in self.key_columns if k in self.columns]

    def row(self, values: Sequence[object], key_only: bool = False) -> dict[str, Any]:
        """Text values (None for NULL, UNCHANGED_TOAST for an unsent TOAST value) to a payload.
        `key_only`: an old tuple with the key columns only (REPLICA IDENTITY DEFAULT); the other
        NOT NULL columns get their type's zero value, as Debezium's struct defaults do."""
        out: dict[str, Any] = {}
        for i, name in enumerate(self.columns):
            v = values[i] if i < len(values) else None
            if v is None:
                out[name] = _zero(self.fields[i]) if key_only and not self.optional[i] and i not in self.key_index else None
            elif isinstance(v, bytes | str):
                text = v.decode() if isinstance(v, bytes) else v
                try:
                    out[name] = self.converters[i](text)
                except (ValueError, TypeError, IndexError, KeyError, InvalidOperation, OverflowError) as exc:
                    log.warning("%s.%s.%s: value not convertible (%s); passed as a string", self.schema, self.table, name, exc)
                    out[name] = text
            else:  # unchanged TOAST
                t = self.fields[i]["type"]
                out[name] = UNAVAILABLE if t == "string" else (base64.b64encode(UNAVAILABLE.encode()).decode() if t == "bytes" else None)
        return out

    def key(self, row: dict[str, Any]) -> dict[str, Any] | None:
        if not self.key_index:
            return None
        return {self.columns[i]: row[self.columns[i]] for i in self.key_index}

    def key_schema(self, prefix: str) -> Schema:
        fields = [{**self.fields[i], "optional": False} for i in self.key_index]
        return {"type": "struct", "fields": fields, "optional": False, "name": f"{prefix}.{self.schema}.{self.table}.Key"}

    def value_schema(self, prefix: str) -> Schema:
        base = f"{prefix}.{self.schema}.{self.table}"
        row = {"type": "struct", "fields": self.fields, "optional": True, "name": f"{base}.Value"}
        return {
            "type": "struct",
            "fields": [
                {**row, "field": "before"},
                {**row, "field": "after"},
                {**SOURCE_SCHEMA, "field": "source"},
                {"type": "string", "optional": False, "field": "op"},
                {"type": "int64", "optional": True, "field": "ts_ms"},
                {**TRANSACTION_SCHEMA, "field": "transaction"},
            ],
            "optional": False,
            "name": f"{base}.Envelope",
            "version": 1,
        }


def _f(type_: str, fname: str, optional: bool = False, **extra: Any) -> Schema:
    return {"type": type_, "optional": optional, **extra, "field": fname}


SOURCE_SCHEMA: Schema = {
    "type": "struct",
    "fields": [
        _f("string", "version"),
        _f("string", "connector"),
        _f("string", "name"),
        _f("int64", "ts_ms"),
        _f("string", "snapshot", True, name="io.debezium.data.Enum", version=1, parameters={"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"}, default="false"),
        _f("string", "db"),
        _f("string", "sequence", True),
        _f("string", "schema"),
        _f("string", "table"),
        _f("int64", "txId", True),
        _f("int64", "lsn", True),
        _f("int64", "xmin", True),
    ],
    "optional": False,
    "name": "io.debezium.connector.postgresql.Source",
}
TRANSACTION_SCHEMA: Schema = {
    "type": "struct",
    "fields": [_f("string", "id"), _f("int64", "total_order"), _f("int64", "data_collection_order")],
    "optional": True,
    "name": "event.block",
    "version": 1,
}


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (orjson; the standard library for what orjson refuses, such as
    integers past 64 bits)."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class JsonEncoder:
    """Key and value bytes of Kafka Connect's JsonConverter, with the schema part or without
    (``key.converter.schemas.enable`` / ``value.converter.schemas.enable``)."""

    def __init__(self, prefix: str, key_schemas: bool = True, value_schemas: bool = True) -> None:
        self.prefix = prefix
        self.key_schemas, self.value_schemas = key_schemas, value_schemas

    def _schemas(self, t: TableSchema) -> tuple[bytes, bytes]:
        got: tuple[bytes, bytes] | None = t.cache.get(("json", self.prefix))
        if got is None:
            got = (dumps(t.key_schema(self.prefix)), dumps(t.value_schema(self.prefix)))
            t.cache[("json", self.prefix)] = got
        return got

    def key(self, t: TableSchema, key: dict[str, Any] | None) -> bytes | None:
        if key is None:
            return None
        if not self.key_schemas:
            return dumps(key)
        return b'{"schema":' + self._schemas(t)[0] + b',"payload":' + dumps(key) + b"}"

    def value(self, t: TableSchema, envelope: dict[str, Any]) -> bytes:
        if not self.value_schemas:
            return dumps(envelope)
        return b'{"schema":' + self._schemas(t)[1] + b',"payload":' + dumps(envelope) + b"}"

    def forget(self, t: TableSchema) -> None:
        t.cache.pop(("json", self.prefix), None)


def source(prefix: str, db: str, t: TableSchema, ts_ms: int, snapshot: str, tx_id: int | None, lsn: int | None, sequence: str | None) -> dict[str, Any]:
    return {
        "version": CONNECTOR_VERSION,
        "connector": "postgresql",
        "name": prefix,
        "ts_ms": ts_ms,
        "snapshot": snapshot,
        "db": db,
        "sequence": sequence,
        "schema": t.schema,
        "table": t.table,
        "txId": tx_id,
        "lsn": lsn,
        "xmin": None,
    }


def envelope(op: str, before: dict[str, Any] | None, after: dict[str, Any] | None, src: dict[str, Any], ts_ms: int) -> dict[str, Any]:
    return {"before": before, "after": after, "source": src, "op": op, "ts_ms": ts_ms, "transaction": None}
