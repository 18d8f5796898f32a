"""Protobuf schemas: `.proto` text (proto2, proto3) or a base64-encoded serialized
FileDescriptorProto (what confluent-kafka's ProtobufSerializer registers), validated by
building it into a `google.protobuf` descriptor pool with its imports.

Imports resolve to the schema's references by reference name (the import path); the
well-known types (`google/protobuf/*.proto`), `google/type/*.proto` (googleapis-common-protos)
and Confluent's `confluent/meta.proto` and `confluent/type/decimal.proto` are built in, as in
Confluent's registry, and need no reference.

Identity: the registry stores the `.proto` text printed from the descriptor (`canonical`: types
as written); with `normalize=true`, the text with fully-qualified type names and imports,
options, fields and enum values in a fixed order (`normalized`). `serialized()` is the base64
descriptor for `?format=serialized`. Compatibility is in `protobuf_compat`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import importlib
import re
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pb2 as d
from google.protobuf import descriptor_pool, message_factory, text_format
from google.protobuf.message import DecodeError

from .base import InvalidSchema
from .protobuf_print import to_text
from .protobuf_text import to_descriptor

ROOT = "__schema__.proto"  # the name a schema's own file has in its pool
_B64 = re.compile(r"^[A-Za-z0-9+/\s]*={0,2}\s*$")

WELL_KNOWN = ("any", "api", "descriptor", "duration", "empty", "field_mask", "source_context", "struct", "timestamp", "type", "wrappers")
GOOGLE_TYPE = ("calendar_period", "color", "date", "datetime", "dayofweek", "expr", "fraction", "latlng", "money", "month", "postal_address", "quaternion", "timeofday", "interval", "localized_text", "phone_number", "decimal")

# Confluent's own imports, resolved without references (field/message metadata, decimals)
CONFLUENT_META = """syntax = "proto3";
package confluent;

import "google/protobuf/descriptor.proto";

option go_package = "../confluent";

message Meta {
  string doc = 1;
  map<string, string> params = 2;
  repeated string tags = 3;
  repeated Rule rules = 4;
}
message Rule {
  string name = 1;
  string doc = 2;
  string expr = 3;
  string sql = 4;
}
extend google.protobuf.FileOptions { Meta file_meta = 1088; }
extend google.protobuf.MessageOptions { Meta message_meta = 1088; }
extend google.protobuf.FieldOptions { Meta field_meta = 1088; }
extend google.protobuf.EnumOptions { Meta enum_meta = 1088; }
extend google.protobuf.EnumValueOptions { Meta enum_value_meta = 1088; }
"""
CONFLUENT_DECIMAL = """syntax = "proto3";
package confluent.type;

message Decimal {
  bytes value = 1;
  uint32 precision = 2;
  int32 scale = 3;
}
"""
CONFLUENT_LEGACY_DECIMAL = 'syntax = "proto3";\nimport public "confluent/type/decimal.proto";\n'


@functools.cache
def builtin_files() -> dict[str, d.FileDescriptorProto]:
    """Import path -> descriptor of every file resolved without a reference."""
    out: dict[str, d.FileDescriptorProto] = {}
    modules = [f"google.protobuf.{n}_pb2" for n in WELL_KNOWN] + [f"google.type.{n}_pb2" for n in GOOGLE_TYPE]
    for name in modules:
        try:
            module: Any = importlib.import_module(name)
        except ImportError:
            continue  # googleapis-common-protos missing, or a file its version lacks
        proto = d.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        out[proto.name] = proto
    for path, text in (("confluent/meta.proto", CONFLUENT_META), ("confluent/type/decimal.proto", CONFLUENT_DECIMAL), ("confluent/types/decimal.proto", CONFLUENT_LEGACY_DECIMAL)):
        proto = to_descriptor(text)
        proto.name = path
        out[path] = proto
    return out


def is_builtin(name: str) -> bool:
    return name in builtin_files()


@dataclass
class TypeInfo:
    kind: str  # "message" | "enum"
    proto: Any  # DescriptorProto | EnumDescriptorProto
    package: str
    file: str


@dataclass
class ProtobufSchema:
    raw: d.FileDescriptorProto  # as given: type names as written
    file: d.FileDescriptorProto  # as built by the pool: fully-qualified type names, types set
    deps: dict[str, d.FileDescriptorProto] = field(default_factory=dict)  # import path -> built file, transitively
    wire: d.FileDescriptorProto | None = None  # `file` with Confluent's meta options interpreted
    _types: dict[str, TypeInfo] | None = None

    def canonical(self) -> str:
        return to_text(self.raw)

    def normalized(self) -> str:
        """Fully-qualified names, a fixed order, and Confluent's meta options merged into one
        `(confluent.*_meta) = {...}` per element however they were written."""
        merged = d.FileDescriptorProto()
        merged.CopyFrom(self.wire if self.wire is not None else self.file)
        _walk(merged, _uninterpret_options)
        return to_text(merged, normalize=True)

    def serialized(self) -> str:
        """The base64 FileDescriptorProto for `?format=serialized` (confluent-kafka reads it)."""
        out = d.FileDescriptorProto()
        out.CopyFrom(self.wire if self.wire is not None else self.file)
        out.ClearField("name")
        return base64.standard_b64encode(out.SerializeToString()).decode("ascii")

    def names(self) -> list[str]:
        prefix = f"{self.file.package}." if self.file.package else ""
        return [prefix + m.name for m in self.file.message_type]

    def types(self) -> dict[str, TypeInfo]:
        """Fully-qualified name (with a leading dot) -> message or enum, own and imported."""
        if self._types is None:
            found: dict[str, TypeInfo] = {}
            for f in [*self.deps.values(), self.file]:
                scope = f".{f.package}" if f.package else ""
                _collect(found, scope, f.message_type, f.enum_type, f.package, f.name)
            self._types = found
        return self._types


def _collect(out: dict[str, TypeInfo], scope: str, messages: Any, enums: Any, package: str, file: str) -> None:
    for m in messages:
        name = f"{scope}.{m.name}"
        out[name] = TypeInfo("message", m, package, file)
        _collect(out, name, m.nested_type, m.enum_type, package, file)
    for e in enums:
        out[f"{scope}.{e.name}"] = TypeInfo("enum", e, package, file)


def _from_base64(text: str) -> d.FileDescriptorProto | None:
    stripped = text.strip()
    if not stripped or not _B64.match(stripped):
        return None
    try:
        raw = base64.b64decode(stripped, validate=False)
        proto = d.FileDescriptorProto()
        proto.ParseFromString(raw)
    except (binascii.Error, ValueError, DecodeError):
        return None
    if not (proto.message_type or proto.enum_type or proto.syntax or proto.package or proto.dependency):
        return None
    return proto


def parse(text: str, references: dict[str, ProtobufSchema] | None = None) -> ProtobufSchema:
    """Parse `text` (`.proto` text or a base64 FileDescriptorProto) and build it with its
    imports: `references` maps an import path to the schema registered under it."""
    raw = _from_base64(text)
    if raw is None:
        raw = to_descriptor(text)
    else:
        _walk(raw, _uninterpret_options)
    raw.name = ROOT
    available: dict[str, d.FileDescriptorProto] = {}
    for ref_name, ref in (references or {}).items():
        available.update(ref.deps)
        own = d.FileDescriptorProto()
        own.CopyFrom(ref.file)
        own.name = ref_name
        available[ref_name] = own
    pool = descriptor_pool.DescriptorPool()
    deps: dict[str, d.FileDescriptorProto] = {}
    busy: set[str] = set()

    def add(name: str) -> None:
        if name in deps:
            return
        if name in busy:
            raise InvalidSchema(f"Invalid schema: import cycle through {name!r}")
        proto = available.get(name) or builtin_files().get(name)
        if proto is None:
            raise InvalidSchema(f"Invalid schema: import {name!r} is not built in and no reference is named {name!r}")
        busy.add(name)
        for dep in proto.dependency:
            add(dep)
        try:
            pool.Add(proto)
        except Exception as exc:
            raise InvalidSchema(f"Invalid schema: import {name!r}: {exc}") from None
        deps[name] = proto
        busy.discard(name)

    for dep in raw.dependency:
        add(dep)
    try:
        built = pool.Add(raw)
    except Exception as exc:
        raise InvalidSchema(f"Invalid schema: {exc}") from None
    file = d.FileDescriptorProto()
    built.CopyToProto(file)
    # the built copy of a proto3 file keeps its syntax; of proto2, the pool may drop it
    if not file.syntax:
        file.syntax = raw.syntax or "proto2"
    if not raw.syntax:
        raw.syntax = "proto2"
    return ProtobufSchema(raw=raw, file=file, deps=deps, wire=interpret_meta(file))


# -- Confluent's meta options -------------------------------------------------------------------
# `(confluent.field_meta).tags = "PII"` and its kin carry data-contract tags, docs and params
# that confluent-kafka's rule executors read from the descriptor's options as the extension
# `confluent.*_meta` (number 1088). Other custom options stay uninterpreted.

META_OPTIONS = {"confluent.file_meta", "confluent.message_meta", "confluent.field_meta", "confluent.enum_meta", "confluent.enum_value_meta"}
META_NUMBER = 1088


@functools.cache
def _meta_class() -> Any:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(d.DESCRIPTOR.serialized_pb)
    pool.Add(builtin_files()["confluent/meta.proto"])
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("confluent.Meta"))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | 0x80 if n else low)
        if not n:
            return bytes(out)


def _interpret_options(options: Any) -> None:
    meta = None
    keep = []
    for u in options.uninterpreted_option:
        parts = list(u.name)
        if not parts or not parts[0].is_extension or parts[0].name_part.lstrip(".") not in META_OPTIONS:
            keep.append(u)
            continue
        if meta is None:
            meta = _meta_class()()
        try:
            if len(parts) == 1 and u.HasField("aggregate_value"):
                text_format.Merge(u.aggregate_value, meta)
            elif len(parts) == 2 and parts[1].name_part in ("doc", "tags") and u.HasField("string_value"):
                value = u.string_value.decode("utf-8")
                if parts[1].name_part == "tags":
                    meta.tags.append(value)
                else:
                    meta.doc = value
            else:
                keep.append(u)
        except (text_format.ParseError, UnicodeDecodeError) as exc:
            raise InvalidSchema(f"Invalid schema: option ({parts[0].name_part}): {exc}") from None
    if meta is None:
        return
    rest = [type(u)() for u in keep]
    for new, old in zip(rest, keep, strict=True):
        new.CopyFrom(old)
    del options.uninterpreted_option[:]
    options.uninterpreted_option.extend(rest)
    body = meta.SerializeToString()
    options.MergeFromString(_varint(META_NUMBER << 3 | 2) + _varint(len(body)) + body)


def _scan(data: bytes) -> list[tuple[int, bytes, bytes]] | None:
    """(field number, whole record, length-delimited body) of each record; None if odd."""
    out = []
    i = 0
    try:
        while i < len(data):
            start = i
            key, i = _read_varint(data, i)
            number, wire = key >> 3, key & 7
            body = b""
            if wire == 0:
                _, i = _read_varint(data, i)
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            elif wire == 2:
                size, i = _read_varint(data, i)
                body = data[i : i + size]
                i += size
            else:
                return None  # groups: leave such options alone
            if i > len(data):
                return None
            out.append((number, data[start:i], body))
    except IndexError:
        return None
    return out


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _uninterpret_options(options: Any, kind: str) -> None:
    """The reverse of `_interpret_options`, for a descriptor given serialized: a meta extension
    (known to this process or not) becomes the uninterpreted option `(confluent.<kind>) = {..}`,
    so the stored text shows it whatever was imported."""
    data = options.SerializeToString()
    records = _scan(data)
    if records is None or not any(n == META_NUMBER for n, _, _ in records):
        return
    meta = _meta_class()()
    rest = b""
    for number, whole, body in records:
        if number == META_NUMBER:
            meta.MergeFromString(body)
        else:
            rest += whole
    options.Clear()
    options.MergeFromString(rest)
    u = options.uninterpreted_option.add()
    u.name.add(name_part=f"confluent.{kind}", is_extension=True)
    u.aggregate_value = text_format.MessageToString(meta, as_one_line=True)


def _walk(file: d.FileDescriptorProto, fn: Any) -> None:
    """Call fn(options, meta option name) on every options message of a file."""

    def enum(e: d.EnumDescriptorProto) -> None:
        fn(e.options, "enum_meta")
        for v in e.value:
            fn(v.options, "enum_value_meta")

    def message(m: d.DescriptorProto) -> None:
        fn(m.options, "message_meta")
        for f in [*m.field, *m.extension]:
            fn(f.options, "field_meta")
        for e in m.enum_type:
            enum(e)
        for n in m.nested_type:
            message(n)

    fn(file.options, "file_meta")
    for m in file.message_type:
        message(m)
    for e in file.enum_type:
        enum(e)
    for f in file.extension:
        fn(f.options, "field_meta")


def interpret_meta(file: d.FileDescriptorProto) -> d.FileDescriptorProto:
    """A copy of `file` whose `(confluent.*_meta)` options are set as the extension they
    name (unknown-field bytes of number 1088 that a reader with meta.proto loaded decodes)."""
    out = d.FileDescriptorProto()
    out.CopyFrom(file)
    _walk(out, lambda options, kind: _interpret_options(options))
    return out
