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
import threading
from decimal import Decimal
from typing import Any

import fastavro
import httpx

from riverbed.client import schema_wire as wire

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

    def version(self, subject: str, version: int | str) -> dict[str, Any]:
        return dict(self._get(f"/subjects/{subject}/versions/{version}"))

    def protobuf_references(self, refs: list[dict[str, Any]] | None, _depth: int = 0) -> dict[str, Any]:
        """Import path -> parsed schema of a Protobuf schema's references (transitively)."""
        from riverbed.registry.formats import protobuf as pb

        out: dict[str, Any] = {}
        if _depth > 16:
            raise SqlError("Protobuf schema references nest too deep")
        for ref in refs or []:
            row = self.version(ref["subject"], ref["version"])
            inner = self.protobuf_references(row.get("references"), _depth + 1)
            try:
                out[ref["name"]] = pb.parse(row["schema"], inner)
            except Exception as e:
                raise SqlError(f"Invalid Protobuf schema {ref['subject']} version {ref['version']}: {e}") from None
        return out

    def register(self, subject: str, schema: dict[str, Any] | str, schema_type: str) -> int:
        body: dict[str, Any] = {"schema": schema if isinstance(schema, str) else json.dumps(schema)}
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
    return infer_subject(registry, topic, fmt, "value")[0]


def _schema_type(fmt: str) -> str:
    return {"AVRO": "AVRO", "PROTOBUF": "PROTOBUF"}.get(fmt, "JSON")


def infer_subject(registry: RegistryClient, topic: str, fmt: str, part: str, full_name: str | None = None,
                  schema_id: int | None = None) -> tuple[Columns, int]:
    """The columns of the latest schema of ``<topic>-<part>`` (``value`` or ``key``), or of the
    schema ``schema_id``; of the Protobuf message ``full_name`` if given (else the file's first
    message). With the schema's id: writers to the source use that schema, as ksqlDB does."""
    if schema_id is not None:
        latest = dict(registry.schema(schema_id), id=schema_id)
        if latest.get("schemaType", "AVRO") != _schema_type(fmt):
            raise SqlError(f"Schema id {schema_id} is {latest.get('schemaType', 'AVRO')}, not a {fmt} schema")
    else:
        found = registry.latest(f"{topic}-{part}")
        if found is None:
            raise SqlError(f"Schema for message {part}s on topic '{topic}' does not exist in the Schema Registry. "
                           f"Subject: {topic}-{part}")
        latest = found
    return _infer(latest, topic, fmt, part, full_name, registry), int(latest["id"])


def _infer(latest: dict[str, Any], topic: str, fmt: str, part: str, full_name: str | None, registry: RegistryClient) -> Columns:
    if fmt == "PROTOBUF":
        from .protobuf import infer

        return infer(latest["schema"], registry.protobuf_references(latest.get("references")), full_name)
    schema = json.loads(latest["schema"])
    if part == "key" and not (isinstance(schema, dict) and schema.get("type") in ("record", "object")):
        # an unwrapped key: one column, named as ksqlDB names it
        t = sql_type_of_avro(schema) if fmt == "AVRO" else sql_type_of_json_schema(schema)
        return [("ROWKEY", t)]
    if fmt == "AVRO":
        if schema.get("type") != "record":
            raise SqlError(f"The Avro schema of {topic}-{part} is not a record; declare the columns")
        return [(f["name"].upper(), sql_type_of_avro(f["type"])) for f in schema["fields"]]
    if schema.get("type") != "object" or "properties" not in schema:
        raise SqlError(f"The JSON schema of {topic}-{part} is not an object with properties; declare the columns")
    return [(k.upper(), sql_type_of_json_schema(v)) for k, v in schema["properties"].items()]


# -- serdes ---------------------------------------------------------------------------------------------
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


def _avro_named(v: Any, schema: Any) -> Any:
    """A datum whose record fields are named as ``schema`` names them (columns are upper-cased:
    ``ORDERID`` is written as the schema's ``orderId``)."""
    if v is None:
        return None
    if isinstance(schema, list):
        rest = [s for s in schema if s != "null"]
        return _avro_named(v, rest[0]) if len(rest) == 1 else v
    if isinstance(schema, dict):
        t = schema.get("type")
        if t == "record" and isinstance(v, dict):
            upper = {k.upper(): x for k, x in v.items()}
            return {f["name"]: _avro_named(upper.get(f["name"].upper()), f["type"]) for f in schema["fields"]}
        if t == "array" and isinstance(v, list):
            return [_avro_named(x, schema["items"]) for x in v]
        if t == "map" and isinstance(v, dict):
            return {k: _avro_named(x, schema["values"]) for k, x in v.items()}
    return v


class RegistryRowSerde:
    """A row in ``AVRO``, ``JSON_SR`` or ``PROTOBUF``: decoded with the writer's schema (by id),
    encoded with the schema of ``columns``, registered under ``subject`` on first use.
    ``unwrapped`` (keys of one column in AVRO / JSON_SR, as ksqlDB writes them): the schema is
    the column's type and the payload its bare value."""

    def __init__(self, fmt: str, columns: Columns, registry: RegistryClient | None, subject: str,
                 unwrapped: bool = False, full_name: str | None = None, schema_id: int | None = None,
                 nullable: str | None = None) -> None:
        self.fmt = fmt
        self.columns = columns
        self.registry = registry
        self.subject = subject
        self.unwrapped = unwrapped and len(columns) == 1 and fmt in ("AVRO", "JSON_SR")
        self.full_name = full_name
        self.schema_id = schema_id  # write with this registered schema (a source whose columns were inferred)
        self._indexes = b"\x00"
        self._names: dict[str, str] = {}  # JSON_SR with a registered schema: column -> property name
        self._avro_schema: Any = None
        self._upper = {n.upper(): (n, t) for n, t in columns}
        self._id: int | None = None
        self._writer: Any = None
        self._readers: dict[Any, Any] = {}
        if fmt in ("PROTOBUF", "PROTOBUF_NOSR"):
            from . import protobuf as P

            self._proto_text = P.proto_text(columns, full_name, nullable)  # checks every column has a Protobuf form
            schema, pool = P.build(self._proto_text)
            self._writer = P.message_class(P.message_at(schema, pool, [0]))

    def _registered(self, schema_id: int) -> None:
        """Writes with the registered schema ``schema_id``: its Avro record, its Protobuf message
        (``full_name``, else the first) and message indexes, its JSON properties' names."""
        assert self.registry is not None
        row = self.registry.schema(schema_id)
        if row.get("schemaType", "AVRO") != _schema_type(self.fmt):
            raise SqlError(f"Schema id {schema_id} is {row.get('schemaType', 'AVRO')}, not a {self.fmt} schema")
        if self.fmt == "AVRO":
            self._avro_schema = json.loads(row["schema"])
            self._writer = fastavro.parse_schema(self._avro_schema)
        elif self.fmt == "PROTOBUF":
            from . import protobuf as P

            schema, pool = P.build(row["schema"], self.registry.protobuf_references(row.get("references")))
            desc = pool.FindMessageTypeByName(self.full_name) if self.full_name else P.message_at(schema, pool, [0])
            self._writer = P.message_class(desc)
            self._indexes = wire.write_indexes(wire.indexes_of(desc))
        else:
            props = json.loads(row["schema"]).get("properties")
            if isinstance(props, dict):
                self._names = {k.upper(): k for k in props}
        self._id = schema_id

    def _schema(self) -> tuple[int, Any]:
        if self._id is None and self.schema_id is not None:
            self._registered(self.schema_id)
        if self._id is None:
            assert self.registry is not None
            schema: Any
            if self.fmt == "AVRO":
                if self.unwrapped:
                    n, t = self.columns[0]
                    schema = ["null", avro_type(t, n)]
                elif self.full_name:
                    namespace, _, name = self.full_name.rpartition(".")
                    schema = avro_record(self.columns, name, namespace or None)
                else:
                    schema = avro_record(self.columns)
                self._writer = fastavro.parse_schema(schema)
            elif self.fmt == "PROTOBUF":
                schema = self._proto_text
            else:
                schema = json_schema_type(self.columns[0][1]) if self.unwrapped else json_schema_object(self.columns)
            self._id = self.registry.register(self.subject, schema, {"AVRO": "AVRO", "PROTOBUF": "PROTOBUF"}.get(self.fmt, "JSON"))
        return self._id, self._writer

    def serialize(self, row: Any) -> bytes | None:
        if row is None:
            return None
        if self.fmt == "PROTOBUF_NOSR":
            from .protobuf import from_row

            return bytes(from_row(self._writer, row, self.columns).SerializeToString())
        sid, writer = self._schema()
        head = wire.frame(sid)
        if self.fmt == "PROTOBUF":
            from .protobuf import from_row

            return head + self._indexes + bytes(from_row(writer, row, self.columns).SerializeToString())
        if self.fmt == "AVRO":
            buf = io.BytesIO()
            buf.write(head)
            if self.unwrapped:
                n, t = self.columns[0]
                datum: Any = _avro_in(row.get(n), t)
            else:
                datum = {n: _avro_in(row.get(n), t) for n, t in self.columns}
            if self._avro_schema is not None:
                datum = _avro_named(datum, self._avro_schema)
            fastavro.schemaless_writer(buf, writer, datum)
            return buf.getvalue()
        if self.unwrapped:
            return head + json.dumps(to_json_value(row.get(self.columns[0][0])), separators=(",", ":")).encode()
        return head + json.dumps({self._names.get(n.upper(), n): to_json_value(row.get(n)) for n, _ in self.columns},
                                 separators=(",", ":")).encode()

    def _protobuf_reader(self, sid: int, indexes: list[int]) -> Any:
        from . import protobuf as P

        hit = self._readers.get((sid, *indexes))
        if hit is None:
            assert self.registry is not None
            row = self.registry.schema(sid)
            if row.get("schemaType", "AVRO") != "PROTOBUF":
                raise ValueError(f"schema {sid} is {row.get('schemaType', 'AVRO')}, not PROTOBUF")
            schema, pool = P.build(row["schema"], self.registry.protobuf_references(row.get("references")))
            hit = P.message_class(P.message_at(schema, pool, indexes))
            if len(self._readers) < 64:
                self._readers[(sid, *indexes)] = hit
        return hit

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        if self.fmt == "PROTOBUF_NOSR":
            from .protobuf import columns_of_row, to_row

            msg = self._writer()
            msg.ParseFromString(bytes(data))
            return columns_of_row(to_row(msg), self.columns)
        sid = wire.schema_id(data)
        if sid is None:
            raise ValueError("not in the schema registry's wire format (magic byte 0 and a schema id)")
        if self.fmt == "PROTOBUF":
            from .protobuf import columns_of_row, to_row

            indexes, pos = wire.read_indexes(bytes(data), 5)
            msg = self._protobuf_reader(sid, indexes)()
            msg.ParseFromString(bytes(data[pos:]))
            return columns_of_row(to_row(msg), self.columns)
        if self.fmt == "AVRO":
            reader = self._readers.get(sid)
            if reader is None:
                assert self.registry is not None
                reader = fastavro.parse_schema(json.loads(self.registry.schema(sid)["schema"]))
                if len(self._readers) < 64:
                    self._readers[sid] = reader
            obj = _from_avro(fastavro.schemaless_reader(io.BytesIO(data[5:]), reader, None))
        else:
            obj = json.loads(data[5:])
        if self.unwrapped and (not isinstance(obj, dict) or self.columns[0][1].name in ("STRUCT", "MAP")):
            n, t = self.columns[0]
            return {n: coerce(obj, t)}
        if not isinstance(obj, dict):
            raise ValueError(f"expected a record, got {type(obj).__name__}")
        out: dict[str, Any] = dict.fromkeys(n for n, _ in self.columns)
        for k, v in obj.items():
            hit = self._upper.get(k.upper())
            if hit is not None:
                out[hit[0]] = coerce(v, hit[1])
        return out
