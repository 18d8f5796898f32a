"""Serialization formats of keys and values (ksqlDB's KEY_FORMAT / VALUE_FORMAT): JSON, KAFKA,
DELIMITED; and the internal row format of state stores, changelogs and repartition topics."""

from __future__ import annotations

import base64
import csv
import io
import json
import struct
from collections.abc import Callable
from decimal import Decimal
from json.encoder import encode_basestring_ascii
from typing import Any

import orjson

from . import types as T
from .errors import SqlError

FORMATS = ("JSON", "KAFKA", "DELIMITED")
REGISTRY_FORMATS = ("AVRO", "JSON_SR", "PROTOBUF")  # with a schema registry (riverbed.sql.schemas)
SCHEMA_FORMATS = (*REGISTRY_FORMATS, "PROTOBUF_NOSR")  # served by schemas.RegistryRowSerde
ALL_FORMATS = (*FORMATS, *SCHEMA_FORMATS)

Columns = list[tuple[str, T.SqlType]]


def check_format(name: str, what: str) -> str:
    up = name.upper()
    if up == "NONE":
        if what == "KEY_FORMAT":
            return up
        raise SqlError("The 'NONE' format can only be used as a KEY_FORMAT")
    if up not in ALL_FORMATS:
        raise SqlError(f"Unknown format: {name}")
    return up


def value_serde(fmt: str, columns: Columns, wrap_single: bool, registry: Any, topic: str, schema_name: str | None = None,
                schema_id: int | None = None, nullable: str | None = None, delimiter: str = ",") -> Any:
    """The serde of a topic's values: RowSerde, or a schema-backed one (AVRO, JSON_SR, PROTOBUF,
    PROTOBUF_NOSR)."""
    if fmt in SCHEMA_FORMATS:
        from .schemas import RegistryRowSerde

        if registry is None and fmt != "PROTOBUF_NOSR":
            raise SqlError(f"VALUE_FORMAT {fmt} needs a schema registry: start the server with --registry-url URL")
        return RegistryRowSerde(fmt, columns, registry, f"{topic}-value", full_name=schema_name, schema_id=schema_id,
                                nullable=nullable)
    return RowSerde(fmt, columns, wrap_single, delimiter)


def coerce(v: Any, t: T.SqlType) -> Any:
    """A decoded value as the column's type (JSON numbers for DECIMAL, strings for numbers, ...).
    Raises ValueError for a value that does not fit."""
    if v is None:
        return None
    n = t.name
    if n in ("INTEGER", "BIGINT"):
        if isinstance(v, bool):
            raise ValueError(f"expected {n}, got a boolean")
        if isinstance(v, float) and not v.is_integer():
            raise ValueError(f"expected {n}, got {v}")
        return int(v)
    if n == "DOUBLE":
        return float(v)
    if n == "DECIMAL":
        return Decimal(str(v))
    if n == "STRING":
        return v if isinstance(v, str) else json.dumps(v) if isinstance(v, dict | list) else str(v)
    if n == "BOOLEAN":
        if isinstance(v, str):
            return v.lower() == "true"
        return bool(v)
    if n in ("TIMESTAMP", "DATE", "TIME"):
        return int(v)
    if n == "BYTES":
        return base64.b64decode(v) if isinstance(v, str) else bytes(v)
    if n == "ARRAY":
        if not isinstance(v, list):
            raise ValueError("expected an array")
        return [coerce(x, t.element or T.ANY) for x in v]
    if n == "MAP":
        if not isinstance(v, dict):
            raise ValueError("expected an object (MAP)")
        return {k: coerce(x, t.element or T.ANY) for k, x in v.items()}
    if n == "STRUCT":
        if not isinstance(v, dict):
            raise ValueError("expected an object (STRUCT)")
        upper = {k.upper(): x for k, x in v.items()}
        return {fn: coerce(upper.get(fn.upper()), ft) for fn, ft in t.fields}
    return v


def to_json_value(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)  # ksqlDB writes DECIMALs as JSON numbers
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, dict):
        return {k: to_json_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_json_value(x) for x in v]
    return v


class RowSerde:
    """A row (dict column -> value) of ``columns`` in a format. JSON objects are matched to
    columns case-insensitively; unknown fields are ignored, missing ones are NULL."""

    def __init__(self, fmt: str, columns: Columns, wrap_single: bool = True, delimiter: str = ",") -> None:
        self.delimiter = delimiter  # DELIMITED: VALUE_DELIMITER / KEY_DELIMITER
        self.fmt = fmt
        self.columns = columns
        self.wrap = wrap_single and fmt != "KAFKA"
        if fmt == "KAFKA" and len(columns) > 1:
            raise SqlError("The 'KAFKA' format only supports a single field. Got: "
                           + ", ".join(f"`{n}` {t}" for n, t in columns))
        self._upper = {n.upper(): (n, t) for n, t in columns}
        # the hot path: JSON objects with the same keys in the same order share a decoding plan
        # the hot path: JSON objects with the same keys in the same order share a decoding plan
        # (a function made for those keys: ``_plan``)
        self._plans: dict[tuple[str, ...], Callable[[dict[str, Any]], dict[str, Any]]] = {}
        self._names = [n for n, _ in columns]
        self._plain = {n for n, t in columns if t.name in ("STRING", "INTEGER", "BIGINT", "BOOLEAN", "DOUBLE", "TIMESTAMP",
                                                           "DATE", "TIME")}
        self._needs_json = [n for n, t in columns if n not in self._plain or _json_special(t)]
        # orjson reads objects of plain columns ~10x faster than json; not DECIMAL (orjson reads
        # big integers as floats), nor ARRAY / MAP / STRUCT (they may hold one); what orjson
        # refuses (NaN, Infinity) goes through json as before
        self._fast_decode = fmt == "JSON" and all(n in self._plain for n in self._names)

    def _plan(self, obj: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """How objects with these keys (in this order) become rows: a function made for them,
        which reads each field that names a column (case-insensitively; a later field naming
        the same column wins), coerces a value not of its column's Python type, and builds the
        row in column order (columns without a field are NULL)."""
        env: dict[str, Any] = {"coerce": coerce}
        lines = ["def row_of(obj):"]
        var: dict[str, str] = {}
        for i, k in enumerate(obj):
            col = self._upper.get(k.upper())
            if col is None:
                continue
            name, t = col
            env[f"P{i}"], env[f"T{i}"] = _PYTYPES.get(t.name, type(None)), t
            lines += [f"    v{i} = obj[{k!r}]",
                      f"    if v{i} is not None and type(v{i}) is not P{i}:",
                      f"        v{i} = coerce(v{i}, T{i})"]
            var[name] = f"v{i}"
        lines.append("    return {" + ", ".join(f"{n!r}: {var.get(n, 'None')}" for n in self._names) + "}")
        exec("\n".join(lines), env)  # (names and keys are written as repr() literals)
        plan: Callable[[dict[str, Any]], dict[str, Any]] = env["row_of"]
        if len(self._plans) < 256:  # bounded: keys come from the data
            self._plans[tuple(obj)] = plan
        return plan

    def serialize(self, row: Any) -> bytes | None:
        if row is None:
            return None
        if self.fmt == "JSON":
            if not self.wrap and len(self.columns) == 1:
                return _ENC.encode(to_json_value(row.get(self.columns[0][0]))).encode()
            out = {n: row.get(n) for n in self._names}
            for n in self._needs_json:
                out[n] = to_json_value(out[n])
            return _encode(out)
        if self.fmt == "KAFKA":
            if not self.columns:
                return b""
            n, t = self.columns[0]
            return kafka_encode(row.get(n), t)
        buf = io.StringIO()
        csv.writer(buf, delimiter=self.delimiter, lineterminator="").writerow(["" if row.get(n) is None else _delim(row.get(n)) for n, _ in self.columns])
        return buf.getvalue().encode()

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        if self.fmt == "JSON":
            if self._fast_decode:
                try:
                    obj = orjson.loads(data)
                except orjson.JSONDecodeError:
                    obj = _JSON.decode(bytes(data).decode())
            else:
                obj = _JSON.decode(bytes(data).decode())
            if not self.wrap and len(self.columns) == 1:
                n, t = self.columns[0]
                return {n: coerce(obj, t)}
            if type(obj) is dict:
                plan = self._plans.get(tuple(obj))
                if plan is None:
                    plan = self._plan(obj)
                return plan(obj)
            if len(self.columns) == 1:  # an unwrapped single value
                n, t = self.columns[0]
                return {n: coerce(obj, t)}
            raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        if self.fmt == "KAFKA":
            if not self.columns:
                return {}
            n, t = self.columns[0]
            return {n: kafka_decode(data, t)}
        fields = next(csv.reader([bytes(data).decode()], delimiter=self.delimiter))
        if len(fields) != len(self.columns):
            raise ValueError(f"expected {len(self.columns)} delimited fields, got {len(fields)}")
        return {n: None if f == "" else coerce(f, t) for (n, t), f in zip(self.columns, fields, strict=True)}


_JSON = json.JSONDecoder()
_ENC = json.JSONEncoder(separators=(",", ":"))


def _encoder(default: Callable[[Any], Any] | None) -> Callable[[Any], bytes]:
    """``json.JSONEncoder(separators=(",", ":"), default=default).encode(v).encode()``, the same
    bytes, with the C encoder made once instead of on every call (a third of the cost for a small
    row; no circular-reference check: rows and states are trees)."""
    enc = json.JSONEncoder(separators=(",", ":"), default=default) if default else _ENC
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # (an interpreter without json's C speedups)
        return lambda v: enc.encode(v).encode()
    make = c_make_encoder(None, enc.default, encode_basestring_ascii, None, ":", ",", False, False, True)

    def encode(v: Any) -> bytes:
        if type(v) is str:
            return encode_basestring_ascii(v).encode()
        return "".join(make(v, 0)).encode()
    return encode


_encode = _encoder(None)
_PYTYPES: dict[str, type] = {"STRING": str, "INTEGER": int, "BIGINT": int, "DOUBLE": float, "BOOLEAN": bool,
                             "TIMESTAMP": int, "DATE": int, "TIME": int}


def _json_special(t: T.SqlType) -> bool:
    return t.name in ("DECIMAL", "BYTES", "ARRAY", "MAP", "STRUCT")


def _delim(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def kafka_encode(v: Any, t: T.SqlType) -> bytes | None:
    """Kafka's serializers: INTEGER 4 bytes, BIGINT 8 bytes big-endian, DOUBLE 8, STRING UTF-8."""
    if v is None:
        return None
    n = t.name
    if n == "INTEGER":
        return struct.pack(">i", int(v))
    if n in ("BIGINT", "TIMESTAMP"):
        return struct.pack(">q", int(v))
    if n == "DOUBLE":
        return struct.pack(">d", float(v))
    if n == "STRING":
        return str(v).encode()
    if n == "BYTES":
        return bytes(v)
    if n == "BOOLEAN":
        return b"\x01" if v else b"\x00"
    raise SqlError(f"The 'KAFKA' format does not support type '{n}'")


def kafka_decode(data: bytes, t: T.SqlType) -> Any:
    n = t.name
    if n == "INTEGER":
        if len(data) != 4:
            raise ValueError(f"Size of data received by IntegerDeserializer is not 4 ({len(data)})")
        return struct.unpack(">i", data)[0]
    if n in ("BIGINT", "TIMESTAMP"):
        if len(data) != 8:
            raise ValueError(f"Size of data received by LongDeserializer is not 8 ({len(data)})")
        return struct.unpack(">q", data)[0]
    if n == "DOUBLE":
        if len(data) != 8:
            raise ValueError(f"Size of data received by DoubleDeserializer is not 8 ({len(data)})")
        return struct.unpack(">d", data)[0]
    if n == "STRING":
        return bytes(data).decode()
    if n == "BOOLEAN":
        return data != b"\x00"
    return bytes(data)


class KeySerde:
    """A key of ``columns`` in a format. One column: the value itself (KAFKA's primitive
    serializers, or a bare JSON / AVRO / JSON_SR value; PROTOBUF always wraps it in a message, as
    ksqlDB does); several (JSON, DELIMITED, AVRO, JSON_SR, PROTOBUF): an object / a delimited
    line / a record, held in the topology as a tuple. No column, or ``NONE``: no key (always
    None). The schema formats register their schema under ``<topic>-key``."""

    def __init__(self, fmt: str, columns: Columns, registry: Any = None, topic: str | None = None,
                 schema_name: str | None = None, schema_id: int | None = None, nullable: str | None = None,
                 delimiter: str = ",") -> None:
        self.fmt = fmt
        self.columns = columns
        if fmt == "KAFKA" and len(columns) > 1:
            raise SqlError("Key format KAFKA supports only one key column; use KEY_FORMAT='JSON' for several")
        if fmt == "NONE" and columns:
            raise SqlError("The 'NONE' format can only be used when no columns are defined. Got: "
                           + ", ".join(f"`{n}` {t}" for n, t in columns))
        self._row: Any
        if fmt in SCHEMA_FORMATS:
            from .schemas import RegistryRowSerde

            if registry is None and fmt != "PROTOBUF_NOSR" and columns:
                raise SqlError(f"KEY_FORMAT {fmt} needs a schema registry: start the server with --registry-url URL")
            self._row = RegistryRowSerde(fmt, columns, registry, f"{topic}-key", unwrapped=True, full_name=schema_name,
                                         schema_id=schema_id, nullable=nullable)
        else:
            self._row = RowSerde("JSON" if fmt == "NONE" else fmt, columns, wrap_single=len(columns) > 1, delimiter=delimiter)
        self._string = fmt == "KAFKA" and len(columns) == 1 and columns[0][1].name == "STRING"

    def serialize(self, key: Any) -> bytes | None:
        if key is None or not self.columns:
            return None
        if self._string and type(key) is str:
            return key.encode()
        if len(self.columns) == 1:
            if self.fmt == "KAFKA":
                return kafka_encode(key, self.columns[0][1])
            out: bytes | None = self._row.serialize({self.columns[0][0]: key})
            return out
        out = self._row.serialize(dict(zip((n for n, _ in self.columns), key, strict=True)))
        return out

    def deserialize(self, data: bytes | None) -> Any:
        if data is None or not self.columns:
            return None
        if self._string:
            return bytes(data).decode()
        if len(self.columns) == 1:
            if self.fmt == "KAFKA":
                return kafka_decode(data, self.columns[0][1])
            return self._row.deserialize(data)[self.columns[0][0]]
        row = self._row.deserialize(data)
        return tuple(row[n] for n, _ in self.columns)

    def to_columns(self, key: Any) -> dict[str, Any]:
        if not self.columns:
            return {}
        if len(self.columns) == 1:
            return {self.columns[0][0]: key}
        if key is None:
            return dict.fromkeys(n for n, _ in self.columns)
        return dict(zip((n for n, _ in self.columns), key, strict=True))


class SessionKeySerde:
    """A session-windowed key: the key's bytes, then the window end and start (8 bytes each,
    big-endian), as Kafka's SessionWindowedSerializer lays it out."""

    def __init__(self, inner: KeySerde) -> None:
        self.inner = inner

    def serialize(self, value: Any) -> bytes | None:
        if value is None:
            return None
        raw = self.inner.serialize(value.key) or b""
        return raw + struct.pack(">qq", value.window.end, value.window.start)

    def deserialize(self, data: bytes | None) -> Any:
        from riverbed.streams import Window, Windowed

        if data is None:
            return None
        end, start = struct.unpack(">qq", data[-16:])
        return Windowed(self.inner.deserialize(bytes(data[:-16])), Window(start, end))


class InternalSerde:
    """Keys inside a query (stores, changelogs, repartition topics): JSON with DECIMAL and BYTES
    values tagged so they come back as they were, and tuples (multi-column keys) as tuples."""

    def serialize(self, v: Any) -> bytes | None:
        if v is None:
            return None
        return _encode(_tag(v))

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        return _untag(_JSON.decode(bytes(data).decode()))


def _default(v: Any) -> Any:
    if isinstance(v, Decimal):
        return {"$d": str(v)}
    if isinstance(v, bytes):
        return {"$b": base64.b64encode(v).decode()}
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


def _hook(d: dict[str, Any]) -> Any:
    if len(d) == 1:
        if "$d" in d:
            return Decimal(d["$d"])
        if "$b" in d:
            return base64.b64decode(d["$b"])
    return d


class InternalValueSerde:
    """Rows and aggregate states inside a query: JSON, DECIMAL and BYTES values tagged (only
    those are visited: the encoder's ``default`` and the decoder's object hook)."""

    _enc = staticmethod(_encoder(_default))
    _dec = json.JSONDecoder(object_hook=_hook)

    def serialize(self, v: Any) -> bytes | None:
        if v is None:
            return None
        if type(v) is list and len(v) == 1 and type(v[0]) is int:  # COUNT's state: the same bytes, at once
            return b"[%d]" % v[0]
        return self._enc(v)

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        # COUNT's state (one non-negative integer) at once; the rest through json (not orjson:
        # it reads integers beyond 64 bits as floats)
        if type(data) is bytes and len(data) <= 21 and data[:1] == b"[" and data[-1:] == b"]":
            inner = data[1:-1]
            if inner.isdigit() and (inner[:1] != b"0" or len(inner) == 1):
                return [int(inner)]
        return self._dec.decode(bytes(data).decode())


def _tag(v: Any) -> Any:
    if isinstance(v, Decimal):
        return {"$d": str(v)}
    if isinstance(v, bytes):
        return {"$b": base64.b64encode(v).decode()}
    if isinstance(v, tuple):
        return {"$t": [_tag(x) for x in v]}
    if isinstance(v, dict):
        return {k: _tag(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_tag(x) for x in v]
    return v


def _untag(v: Any) -> Any:
    if isinstance(v, dict):
        if len(v) == 1:
            (k, x), = v.items()
            if k == "$d":
                return Decimal(x)
            if k == "$b":
                return base64.b64decode(x)
            if k == "$t":
                return tuple(_untag(y) for y in x)
        return {k: _untag(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_untag(x) for x in v]
    return v


INTERNAL = InternalSerde()  # keys
INTERNAL_VALUES = InternalValueSerde()  # rows, aggregate states
