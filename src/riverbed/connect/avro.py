"""Avro change events through a Confluent-compatible schema registry, as Confluent's
AvroConverter writes them for Debezium: the Kafka Connect schema turned into an Avro schema
(records for structs, ``["null", T]`` unions with default null for optional fields,
``connect.name`` / ``connect.version`` / ``connect.parameters`` for Connect's logical names,
``logicalType: decimal`` for Decimal), registered under ``<topic>-key`` / ``<topic>-value``
(TopicNameStrategy), framed as magic byte 0 + 4-byte schema id + Avro binary."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
from decimal import Decimal
from typing import Any

import fastavro
import httpx

from .config import ConnectorError
from .debezium import Schema, TableSchema

__all__ = ["AvroEncoder", "RegistryError", "avro_schema"]

_PRIMITIVE = {"int8": "int", "int16": "int", "int32": "int", "int64": "long", "float": "float", "float32": "float",
              "double": "double", "float64": "double", "boolean": "boolean", "string": "string", "bytes": "bytes"}
DECIMAL = "org.apache.kafka.connect.data.Decimal"


class RegistryError(ConnectorError):
    """The schema registry refused a schema (an incompatible change, say)."""


def _sanitize(name: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return "_" + out if out[:1].isdigit() else out


def avro_schema(s: Schema, defined: set[str] | None = None) -> Any:
    """The Avro schema of a Kafka Connect schema (as riverbed.connect.debezium builds them)."""
    defined = set() if defined is None else defined
    t, name = s["type"], s.get("name")
    if t == "struct":
        full = ".".join(_sanitize(p) for p in (name or "io.confluent.connect.avro.ConnectDefault").split("."))
        if full in defined:
            return full
        defined.add(full)
        ns, _, short = full.rpartition(".")
        rec: dict[str, Any] = {"type": "record", "name": short}
        if ns:
            rec["namespace"] = ns
        rec["fields"] = [_field(f, defined) for f in s["fields"]]
        if "version" in s:
            rec["connect.version"] = s["version"]
        if "doc" in s:
            rec["doc"] = s["doc"]
        if name:
            rec["connect.name"] = name
        return rec
    if t == "array":
        items = avro_schema(s["items"], defined)
        return {"type": "array", "items": ["null", items] if s["items"].get("optional") else items}
    out: dict[str, Any] = {"type": _PRIMITIVE[t]}
    if t in ("int8", "int16"):
        out["connect.type"] = t
    if name:
        if "version" in s:
            out["connect.version"] = s["version"]
        if s.get("parameters"):
            out["connect.parameters"] = dict(s["parameters"])
        out["connect.name"] = name
        if name == DECIMAL:
            out["logicalType"] = "decimal"
            out["scale"] = int(s["parameters"]["scale"])
            out["precision"] = int(s["parameters"].get("connect.decimal.precision", 64)) or 64
    return out if len(out) > 1 else out["type"]


def _field(f: Schema, defined: set[str]) -> dict[str, Any]:
    inner = avro_schema(f, defined)
    out: dict[str, Any] = {"name": _sanitize(f["field"])}
    if f.get("optional"):
        out["type"] = ["null", inner]
        out["default"] = None
    else:
        out["type"] = inner
        if "default" in f:
            out["default"] = f["default"]
    return out


def datum(s: Schema, v: Any) -> Any:
    """A JSON-converter payload value as the Avro writer wants it (bytes, Decimal, records)."""
    if v is None:
        return None
    t, name = s["type"], s.get("name")
    if t == "struct":
        return {_sanitize(f["field"]): datum(f, v.get(f["field"])) for f in s["fields"]}
    if t == "array":
        return [datum(s["items"], x) for x in v]
    if t in ("float", "double") and isinstance(v, str):
        return float(v)  # "NaN" / "Infinity" as the JSON side writes them
    if t == "bytes":
        raw = base64.b64decode(v) if isinstance(v, str) else v
        if name == DECIMAL:
            return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-int(s["parameters"]["scale"]))
        return raw
    return v


class AvroEncoder:
    """Key and value bytes in Confluent's Avro wire format; schemas registered once per
    table layout (a new Relation message, e.g. after ALTER TABLE, registers a new version)."""

    def __init__(self, prefix: str, registry_url: str, timeout: float = 30.0) -> None:
        self.prefix = prefix
        self.url, self.timeout = registry_url.rstrip("/"), timeout
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def _register(self, subject: str, schema: Any) -> int:
        if self.http.is_closed:  # closed when the connector stopped; it may run again
            self.http = httpx.Client(base_url=self.url, timeout=self.timeout)
        try:
            r = self.http.post(f"/subjects/{subject}/versions", json={"schema": json.dumps(schema)},
                               headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        except httpx.HTTPError as exc:
            raise OSError(f"schema registry: {exc}") from None  # retried: the registry may come back
        if r.status_code >= 500:
            raise OSError(f"schema registry: HTTP {r.status_code} {r.text[:200]}")
        if r.status_code != 200:
            raise RegistryError(f"schema registry refused the schema of {subject}: HTTP {r.status_code} {r.text[:300]}")
        return int(r.json()["id"])

    def _entry(self, t: TableSchema, part: str) -> tuple[int, Any, Schema]:
        got: tuple[int, Any, Schema] | None = t.cache.get(("avro", self.url, part))
        if got is None:
            connect = t.key_schema(self.prefix) if part == "key" else t.value_schema(self.prefix)
            avro = avro_schema(connect)
            sid = self._register(f"{self.prefix}.{t.schema}.{t.table}-{part}", avro)
            got = (sid, fastavro.parse_schema(avro), connect)
            t.cache[("avro", self.url, part)] = got
        return got

    def _frame(self, entry: tuple[int, Any, Schema], payload: Any) -> bytes:
        sid, parsed, connect = entry
        buf = io.BytesIO()
        buf.write(struct.pack(">bI", 0, sid))
        fastavro.schemaless_writer(buf, parsed, datum(connect, payload))
        return buf.getvalue()

    def key(self, t: TableSchema, key: dict[str, Any] | None) -> bytes | None:
        return None if key is None else self._frame(self._entry(t, "key"), key)

    def value(self, t: TableSchema, envelope: dict[str, Any]) -> bytes:
        return self._frame(self._entry(t, "value"), envelope)

    def forget(self, t: TableSchema) -> None:
        t.cache.pop(("avro", self.url, "key"), None)
        t.cache.pop(("avro", self.url, "value"), None)

    def close(self) -> None:
        self.http.close()
