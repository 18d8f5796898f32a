"""Value formats backed by a schema registry (Confluent's wire format: magic byte 0, a 4-byte
schema id, then the payload): ``AVRO`` (fastavro) and ``JSON_SR``; and the columns of a stream or
table inferred from the latest schema of its topic's ``<topic>-value`` subject.

Writers register the schema made from the columns under ``<topic>-value`` (a record named
``KsqlDataSourceSchema`` in ``io.confluent.ksql.avro_schemas``, as ksqlDB names it, every field
optional); readers decode with the writer's schema, found by the id in each record.
"""

from __future__ import annotations

import io
import json
import struct
import threading
from decimal import Decimal
from typing import Any

import fastavro
import httpx

from . import types as T
from .errors import SqlError
from .formats import Columns, coerce, to_json_value

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryClient:
    """The few calls of the registry's REST API the engine needs, with the schemas cached."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=10, headers={"Content-Type": CONTENT_TYPE})
        self._by_id: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _get(self, path: str) -> Any:
        try:
            r = self.http.get(f"{self.url}{path}")
        except httpx.HTTPError as e:
            raise SqlError(f"Schema registry at {self.url} is not reachable: {e}") from None
        if r.status_code != 200:
            raise SqlError(f"Schema registry {path}: {r.status_code} {r.text[:200]}", code=40400 if r.status_code == 404 else 50000)
        return r.json()

    def schema(self, schema_id: int) -> dict[str, Any]:
        with self._lock:
            hit = self._by_id.get(schema_id)
        if hit is None:
            hit = self._get(f"/schemas/ids/{schema_id}")
            with self._lock:
                self._by_id[schema_id] = hit
        return hit

    def latest(self, subject: str) -> dict[str, Any] | None:
        try:
            return dict(self._get(f"/subjects/{subject}/versions/latest"))
        except SqlError as e:
            if e.code == 40400:
                return None
            raise

    def register(self, subject: str, schema: dict[str, Any], schema_type: str) -> int:
        body: dict[str, Any] = {"schema": json.dumps(schema)}
        if schema_type != "AVRO":
            body["schemaType"] = schema_type
        try:
            r = self.http.post(f"{self.url}/subjects/{subject}/versions", json=body)
        except httpx.HTTPError as e:
            raise SqlError(f"Schema registry at {self.url} is not reachable: {e}") from None
        if r.status_code != 200:
            raise SqlError(f"Could not register the schema of subject {subject}: {r.status_code} {r.text[:300]}")
        return int(r.json()["id"])


# -- SQL types <-> Avro / JSON Schema -----------------------------------------------------------------
def avro_type(t: T.SqlType, name: str) -> Any:
    n = t.name
    simple = {"BOOLEAN": "boolean", "INTEGER": "int", "BIGINT": "long", "DOUBLE": "double", "STRING": "string",
              "BYTES": "bytes"}
    if n in simple:
        return simple[n]
    if n == "DECIMAL":
        return {"type": "bytes", "logicalType": "decimal", "precision": t.precision, "scale": t.scale}
    if n == "TIMESTAMP":
        return {"type": "long", "logicalType": "timestamp-millis"}
    if n == "DATE":
        return {"type": "int", "logicalType": "date"}
    if n == "TIME":
        return {"type": "int", "logicalType": "time-millis"}
    if n == "ARRAY":
        return {"type": "array", "items": ["null", avro_type(t.element or T.STRING, name + "_element")]}
    if n == "MAP":
        return {"type": "map", "values": ["null", avro_type(t.element or T.STRING, name + "_value")]}
    if n == "STRUCT":
        return avro_record(list(t.fields), name)
    raise SqlError(f"Type {t} has no Avro form")


def avro_record(columns: Columns, name: str = "KsqlDataSourceSchema",
                namespace: str | None = "io.confluent.ksql.avro_schemas") -> dict[str, Any]:
    rec: dict[str, Any] = {"type": "record", "name": name,
                           "fields": [{"name": n, "type": ["null", avro_type(t, f"{name}_{n}")], "default": None}
                                      for n, t in columns]}
    if namespace:
        rec["namespace"] = namespace
    return rec


def sql_type_of_avro(a: Any) -> T.SqlType:
    if isinstance(a, list):
        rest = [x for x in a if x != "null"]
        if len(rest) != 1:
            raise SqlError(f"Avro unions other than [null, T] are not supported: {a}")
        return sql_type_of_avro(rest[0])
    if isinstance(a, str):
        prim = {"boolean": T.BOOLEAN, "int": T.INTEGER, "long": T.BIGINT, "float": T.DOUBLE, "double": T.DOUBLE,
                "string": T.STRING, "bytes": T.BYTES}
        if a in prim:
            return prim[a]
        raise SqlError(f"Avro type {a!r} is not supported")
    logical = a.get("logicalType")
    if logical == "decimal":
        return T.SqlType("DECIMAL", precision=int(a.get("precision", 38)), scale=int(a.get("scale", 0)))
    if logical == "timestamp-millis":
        return T.TIMESTAMP
    if logical == "date":
        return T.DATE
    if logical == "time-millis":
        return T.TIME
    typ = a.get("type")
    if typ == "array":
        return T.array(sql_type_of_avro(a["items"]))
    if typ == "map":
        return T.map_of(T.STRING, sql_type_of_avro(a["values"]))
    if typ == "record":
        return T.struct([(f["name"].upper(), sql_type_of_avro(f["type"])) for f in a["fields"]])
    if typ == "enum":
        return T.STRING
    return sql_type_of_avro(typ)


def json_schema_type(t: T.SqlType) -> dict[str, Any]:
    n = t.name
    base: dict[str, Any]
    if n == "BOOLEAN":
        base = {"type": "boolean"}
    elif n in ("INTEGER", "BIGINT", "TIMESTAMP", "DATE", "TIME"):
        base = {"type": "integer"}
    elif n in ("DOUBLE", "DECIMAL"):
        base = {"type": "number"}
    elif n == "ARRAY":
        base = {"type": "array", "items": json_schema_type(t.element or T.STRING)}
    elif n == "MAP":
        base = {"type": "object", "additionalProperties": json_schema_type(t.element or T.STRING)}
    elif n == "STRUCT":
        base = json_schema_object(list(t.fields))
    else:
        base = {"type": "string"}
    return {"oneOf": [{"type": "null"}, base]}


def json_schema_object(columns: Columns) -> dict[str, Any]:
    return {"type": "object", "properties": {n: json_schema_type(t) for n, t in columns}}


def sql_type_of_json_schema(s: Any) -> T.SqlType:
    if not isinstance(s, dict):
        return T.STRING
    for key in ("oneOf", "anyOf"):
        if key in s:
            rest = [x for x in s[key] if not (isinstance(x, dict) and x.get("type") == "null")]
            return sql_type_of_json_schema(rest[0]) if rest else T.STRING
    typ = s.get("type")
    if isinstance(typ, list):
        typ = next((x for x in typ if x != "null"), "string")
    if typ == "boolean":
        return T.BOOLEAN
    if typ == "integer":
        return T.BIGINT
    if typ == "number":
        return T.DOUBLE
    if typ == "array":
        return T.array(sql_type_of_json_schema(s.get("items", {})))
    if typ == "object":
        if "properties" in s:
            return T.struct([(k.upper(), sql_type_of_json_schema(v)) for k, v in s["properties"].items()])
        return T.map_of(T.STRING, sql_type_of_json_schema(s.get("additionalProperties", {})))
    return T.STRING


def infer_columns(registry: RegistryClient, topic: str, fmt: str) -> Columns:
    """The value columns of ``topic`` from the latest schema of ``<topic>-value``."""
    latest = registry.latest(f"{topic}-value")
    if latest is None:
        raise SqlError(f"Schema for message values on topic '{topic}' does not exist in the Schema Registry. "
                       f"Subject: {topic}-value")
    schema = json.loads(latest["schema"])
    if fmt == "AVRO":
        if schema.get("type") != "record":
            raise SqlError(f"The Avro schema of {topic}-value is not a record; declare the columns")
        return [(f["name"].upper(), sql_type_of_avro(f["type"])) for f in schema["fields"]]
    if schema.get("type") != "object" or "properties" not in schema:
        raise SqlError(f"The JSON schema of {topic}-value is not an object with properties; declare the columns")
    return [(k.upper(), sql_type_of_json_schema(v)) for k, v in schema["properties"].items()]


# -- serdes ---------------------------------------------------------------------------------------------
_HEADER = struct.Struct(">bI")


def _avro_in(v: Any, t: T.SqlType) -> Any:
    """A SQL value as fastavro writes it."""
    if v is None:
        return None
    if t.name == "DECIMAL":
        return Decimal(str(v)).quantize(Decimal(1).scaleb(-t.scale))
    if t.name == "STRUCT":
        return {n: _avro_in(v.get(n), ft) for n, ft in t.fields}
    if t.name == "ARRAY":
        return [_avro_in(x, t.element or T.STRING) for x in v]
    if t.name == "MAP":
        return {k: _avro_in(x, t.element or T.STRING) for k, x in v.items()}
    return v


def _from_avro(v: Any) -> Any:
    import datetime as dt

    if isinstance(v, dt.datetime):
        return int(v.timestamp() * 1000)
    if isinstance(v, dt.date):
        return (v - dt.date(1970, 1, 1)).days
    if isinstance(v, dt.time):
        return ((v.hour * 60 + v.minute) * 60 + v.second) * 1000 + v.microsecond // 1000
    if isinstance(v, dict):
        return {k: _from_avro(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_avro(x) for x in v]
    return v


class RegistryRowSerde:
    """A row in ``AVRO`` or ``JSON_SR``: decoded with the writer's schema (by id), encoded with
    the schema of ``columns``, registered under ``subject`` on first use."""

    def __init__(self, fmt: str, columns: Columns, registry: RegistryClient, subject: str) -> None:
        self.fmt = fmt
        self.columns = columns
        self.registry = registry
        self.subject = subject
        self._upper = {n.upper(): (n, t) for n, t in columns}
        self._id: int | None = None
        self._writer: Any = None
        self._readers: dict[int, Any] = {}

    def _schema(self) -> tuple[int, Any]:
        if self._id is None:
            if self.fmt == "AVRO":
                schema = avro_record(self.columns)
                self._writer = fastavro.parse_schema(schema)
            else:
                schema = json_schema_object(self.columns)
            self._id = self.registry.register(self.subject, schema, "AVRO" if self.fmt == "AVRO" else "JSON")
        return self._id, self._writer

    def serialize(self, row: Any) -> bytes | None:
        if row is None:
            return None
        sid, writer = self._schema()
        head = _HEADER.pack(0, sid)
        if self.fmt == "AVRO":
            buf = io.BytesIO()
            buf.write(head)
            fastavro.schemaless_writer(buf, writer, {n: _avro_in(row.get(n), t) for n, t in self.columns})
            return buf.getvalue()
        return head + json.dumps({n: to_json_value(row.get(n)) for n, _ in self.columns}, separators=(",", ":")).encode()

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        if len(data) < 5 or data[0] != 0:
            raise ValueError("not in the schema registry's wire format (magic byte 0 and a schema id)")
        sid = int.from_bytes(data[1:5], "big")
        if self.fmt == "AVRO":
            reader = self._readers.get(sid)
            if reader is None:
                reader = fastavro.parse_schema(json.loads(self.registry.schema(sid)["schema"]))
                if len(self._readers) < 64:
                    self._readers[sid] = reader
            obj = _from_avro(fastavro.schemaless_reader(io.BytesIO(data[5:]), reader, None))
        else:
            obj = json.loads(data[5:])
        if not isinstance(obj, dict):
            raise ValueError(f"expected a record, got {type(obj).__name__}")
        out: dict[str, Any] = dict.fromkeys(n for n, _ in self.columns)
        for k, v in obj.items():
            hit = self._upper.get(k.upper())
            if hit is not None:
                out[hit[0]] = coerce(v, hit[1])
        return out
