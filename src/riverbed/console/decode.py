"""Turning a record's key, value and headers into something a person can read.

Order of attempts for a value: Confluent's wire format (magic byte 0 + 4-byte schema id, then
Avro / Protobuf (message indexes first) / JSON Schema payload) decoded with the schema the
registry holds under that id; then JSON; then UTF-8 text; else hex. Nothing here raises on bad
bytes: an undecodable payload is shown as hex with the reason."""

from __future__ import annotations

import io
import json
import logging
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("riverbed.console")

MAGIC = 0
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


def _zigzag_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
    return (result >> 1) ^ -(result & 1), i


def message_indexes(payload: bytes) -> tuple[list[int], int]:
    """Confluent's Protobuf message-index list at the start of `payload` (a single 0 byte is
    the first message); returns the indexes and where the message bytes begin."""
    count, i = _zigzag_varint(payload, 0)
    if count == 0:
        return [0], i
    if count < 0 or count > 100:
        raise ValueError(f"bad message index count {count}")
    out = []
    for _ in range(count):
        idx, i = _zigzag_varint(payload, i)
        out.append(idx)
    return out, i


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
    indexes, start = message_indexes(payload)
    built = pb.parse(schema["schema"])
    pool = descriptor_pool.DescriptorPool()
    for dep in built.deps.values():
        pool.Add(dep)
    fd = pool.Add(built.file)
    desc = fd.message_types_by_name[built.file.message_type[indexes[0]].name]
    for idx in indexes[1:]:
        desc = desc.nested_types[idx]
    msg = message_factory.GetMessageClass(desc)()
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
    if len(data) >= 5 and data[0] == MAGIC and registry is not None and registry.url is not None:
        schema_id = struct.unpack(">I", data[1:5])[0]
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
