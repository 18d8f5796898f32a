"""Turning a record's key, value and headers into something a person can read.

Order of attempts for a value: Confluent's wire format (magic byte 0 + 4-byte schema id, then
Avro / Protobuf (message indexes first) / JSON Schema payload) decoded with the schema the
registry holds under that id; then JSON; then UTF-8 text; else hex. Nothing here raises on bad
bytes: an undecodable payload is shown as hex with the reason."""

from __future__ import annotations

import io
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

from riverbed.client import schema_wire as wire

log = logging.getLogger("riverbed.console")

HEX_PREVIEW = 4096


@dataclass
class Decoded:
    kind: str  # avro | protobuf | json-schema | json | text | hex | null
    text: str
    size: int
    schema_id: int | None = None
    note: str | None = None
    truncated: bool = False
    value: Any = None  # parsed JSON-like value, for JSON path filters


@dataclass
class CloudEvent:
    mode: str  # binary | structured
    attributes: dict[str, str] = field(default_factory=dict)


class SchemaRegistry:
    """A small client of the registry's REST API (Confluent's): schemas by id are immutable,
    so they are cached for the life of the console."""

    def __init__(self, url: str | None, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/") if url else None
        self.http = httpx.Client(base_url=self.url or "http://invalid", timeout=timeout)
        self._by_id: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def schema(self, schema_id: int) -> dict[str, Any]:
        with self._lock:
            cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        if self.url is None:
            raise LookupError("no schema registry configured (--registry-url)")
        resp = self.http.get(f"/schemas/ids/{schema_id}")
        if resp.status_code != 200:
            raise LookupError(f"schema id {schema_id}: registry answered HTTP {resp.status_code}")
        body = resp.json()
        with self._lock:
            self._by_id[schema_id] = body
        return dict(body)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _hex(data: bytes, note: str | None = None) -> Decoded:
    preview = data[:HEX_PREVIEW]
    return Decoded("hex", " ".join(preview[i:i + 16].hex(" ") for i in range(0, len(preview), 16)), len(data), note=note, truncated=len(data) > HEX_PREVIEW)


def _decode_avro(schema: dict[str, Any], payload: bytes) -> Any:
    import fastavro

    if schema.get("references"):
        raise ValueError("Avro schemas with references are not decoded yet")
    parsed = fastavro.parse_schema(json.loads(schema["schema"]))
    buf = io.BytesIO(payload)
    value = fastavro.schemaless_reader(buf, parsed, None)
    if buf.tell() != len(payload):
        raise ValueError(f"{len(payload) - buf.tell()} bytes left after the Avro record")
    return value


def _decode_protobuf(schema: dict[str, Any], payload: bytes) -> Any:
    from google.protobuf import descriptor_pool, json_format, message_factory

    from riverbed.registry.formats import protobuf as pb

    if schema.get("references"):
        raise ValueError("Protobuf schemas with references are not decoded yet")
    indexes, start = wire.read_indexes(payload)
    built = pb.parse(schema["schema"])
    pool = descriptor_pool.DescriptorPool()
    for dep in built.deps.values():
        pool.Add(dep)
    fd = pool.Add(built.file)
    msg = message_factory.GetMessageClass(wire.message_at(fd, indexes))()
    msg.ParseFromString(payload[start:])
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def decode(data: bytes | None, registry: SchemaRegistry | None, max_bytes: int) -> Decoded:
    if data is None:
        return Decoded("null", "null", 0)
    if len(data) > max_bytes:
        d = _hex(data[:HEX_PREVIEW])
        try:
            text = data[:HEX_PREVIEW].decode("utf-8")
            d = Decoded("text", text, len(data))
        except UnicodeDecodeError:
            pass
        d.size, d.truncated, d.note = len(data), True, f"{len(data)} bytes: too large to show whole"
        return d
    schema_id = wire.schema_id(data)
    if schema_id is not None and registry is not None and registry.url is not None:
        try:
            schema = registry.schema(schema_id)
            kind = str(schema.get("schemaType", "AVRO")).upper()
            if kind == "AVRO":
                value, name = _decode_avro(schema, data[5:]), "avro"
            elif kind == "PROTOBUF":
                value, name = _decode_protobuf(schema, data[5:]), "protobuf"
            else:
                value, name = json.loads(data[5:]), "json-schema"
            value = _jsonable(value)
            return Decoded(name, json.dumps(value, indent=2, ensure_ascii=False), len(data), schema_id, value=value)
        except (LookupError, httpx.HTTPError) as exc:
            return _hex(data, f"schema id {schema_id}: {exc}")
        except Exception as exc:  # a payload that does not match its schema
            return _hex(data, f"not decodable with schema id {schema_id}: {type(exc).__name__}: {exc}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _hex(data)
    if any(ord(c) < 32 and c not in "\t\r\n" for c in text):
        return _hex(data)
    try:
        value = json.loads(text)
    except ValueError:
        return Decoded("text", text, len(data))
    return Decoded("json", json.dumps(value, indent=2, ensure_ascii=False), len(data), value=value)


def cloudevent(headers: list[tuple[str, bytes | None]], value: Any) -> CloudEvent | None:
    """A CloudEvent in binary mode (``ce_*`` headers) or structured mode (content-type
    application/cloudevents+json and the event as the JSON value)."""
    attrs: dict[str, str] = {}
    content_type = ""
    for name, raw in headers:
        text = (raw or b"").decode("utf-8", "replace")
        if name.startswith("ce_"):
            attrs[name[3:]] = text
        elif name.lower() == "content-type":
            content_type = text
    if "specversion" in attrs:
        if content_type:
            attrs.setdefault("datacontenttype", content_type)
        return CloudEvent("binary", attrs)
    if content_type.startswith("application/cloudevents+json") and isinstance(value, dict):
        return CloudEvent("structured", {k: str(v) for k, v in value.items() if k != "data" and k != "data_base64"})
    return None
