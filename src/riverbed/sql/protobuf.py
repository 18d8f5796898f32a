"""``PROTOBUF`` and ``PROTOBUF_NOSR`` rows: SQL columns <-> a proto3 message, as ksqlDB maps them.

Writers describe their columns as ``syntax = "proto3"; message ConnectDefault1 { ... }`` (the name
Kafka Connect's Protobuf converter gives a schema without one; nested structs are
``ConnectDefault2``, ...), fields numbered in column order. Types: ``INTEGER`` int32, ``BIGINT``
int64, ``DOUBLE`` double, ``BOOLEAN`` bool, ``STRING`` string, ``BYTES`` bytes, ``DECIMAL``
``confluent.type.Decimal`` (precision and scale in ``(confluent.field_meta).params``),
``TIMESTAMP`` ``google.protobuf.Timestamp``, ``DATE`` ``google.type.Date``, ``TIME``
``google.type.TimeOfDay``, ``ARRAY`` repeated, ``MAP`` ``map<string, V>``, ``STRUCT`` a nested
message. As in ksqlDB by default, a NULL primitive is written as the type's default (proto3
cannot tell them apart); NULL structs, decimals and times stay NULL.

Readers take any message: other integer kinds map to ``INTEGER`` / ``BIGINT``, ``float`` to
``DOUBLE``, enums to ``STRING`` (the value's name), ``google.protobuf.*Value`` wrappers to their
type (NULL when unset), fields with presence (proto2, proto3 ``optional``) to NULL when unset.

In the schema registry's wire format a record is the magic byte 0, the schema id (4 bytes), the
message indexes (zig-zag varints: a count then the path of the message in the file; ``[0]``, the
first message, is the single byte 0) and the message, as confluent-kafka's ProtobufSerializer
writes it.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from riverbed.client import schema_wire as wire
from riverbed.registry.formats import protobuf as pb

from . import types as T
from .errors import SqlError
from .formats import Columns, coerce

ROOT_NAME = "ConnectDefault1"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EPOCH = dt.date(1970, 1, 1)

_SCALARS = {
    "INTEGER": "int32",
    "BIGINT": "int64",
    "DOUBLE": "double",
    "BOOLEAN": "bool",
    "STRING": "string",
    "BYTES": "bytes",
}
_WELL_KNOWN = {
    "TIMESTAMP": ("google.protobuf.Timestamp", "google/protobuf/timestamp.proto"),
    "DATE": ("google.type.Date", "google/type/date.proto"),
    "TIME": ("google.type.TimeOfDay", "google/type/timeofday.proto"),
    "DECIMAL": ("confluent.type.Decimal", "confluent/type/decimal.proto"),
}
_WRAPPERS = {
    "google.protobuf.DoubleValue": T.DOUBLE,
    "google.protobuf.FloatValue": T.DOUBLE,
    "google.protobuf.Int64Value": T.BIGINT,
    "google.protobuf.UInt64Value": T.BIGINT,
    "google.protobuf.Int32Value": T.INTEGER,
    "google.protobuf.UInt32Value": T.INTEGER,
    "google.protobuf.BoolValue": T.BOOLEAN,
    "google.protobuf.StringValue": T.STRING,
    "google.protobuf.BytesValue": T.BYTES,
}


# -- the schema of columns ----------------------------------------------------------------------------
_WRAPPER_OF = {"INTEGER": "google.protobuf.Int32Value", "BIGINT": "google.protobuf.Int64Value",
               "DOUBLE": "google.protobuf.DoubleValue", "BOOLEAN": "google.protobuf.BoolValue",
               "STRING": "google.protobuf.StringValue", "BYTES": "google.protobuf.BytesValue"}
NULLABLE = ("WRAPPER", "OPTIONAL")  # ksqlDB's *_PROTOBUF_NULLABLE_REPRESENTATION


class _Writer:
    def __init__(self, nullable: str | None = None) -> None:
        self.imports: set[str] = set()
        self.counter = 1
        self.nullable = nullable

    def message(self, name: str, columns: Columns, depth: int) -> list[str]:
        pad = "  " * depth
        lines = [f"{pad}message {name} {{"]
        nested: list[str] = []
        for i, (col, t) in enumerate(columns, 1):
            if not _IDENT.match(col):
                raise SqlError(
                    f"Column {col!r} cannot be a Protobuf field name (letters, digits and '_' only)"
                )
            typ, opts = self.field_type(t, nested, depth + 1)
            lines.append(f"{pad}  {typ} {col} = {i}{opts};")
        return [*lines, *nested, f"{pad}}}"]

    def field_type(
        self, t: T.SqlType, nested: list[str], depth: int, in_container: bool = False
    ) -> tuple[str, str]:
        n = t.name
        if n in _SCALARS:
            if not in_container and self.nullable == "OPTIONAL":
                return f"optional {_SCALARS[n]}", ""
            if not in_container and self.nullable == "WRAPPER":
                self.imports.add("google/protobuf/wrappers.proto")
                return _WRAPPER_OF[n], ""
            return _SCALARS[n], ""
        if n in _WELL_KNOWN:
            full, path = _WELL_KNOWN[n]
            self.imports.add(path)
            if n == "DECIMAL":
                self.imports.add("confluent/meta.proto")
                return full, (
                    f' [(confluent.field_meta) = {{ params: [ {{ key: "precision", value: "{t.precision}" }},'
                    f' {{ key: "scale", value: "{t.scale}" }} ] }}]'
                )
            return full, ""
        if n == "ARRAY":
            if in_container:
                raise SqlError(f"Protobuf cannot hold {t}: an array or map inside an array or map")
            inner, opts = self.field_type(t.element or T.STRING, nested, depth, in_container=True)
            return f"repeated {inner}", opts
        if n == "MAP":
            if in_container:
                raise SqlError(f"Protobuf cannot hold {t}: an array or map inside an array or map")
            inner, opts = self.field_type(t.element or T.STRING, nested, depth, in_container=True)
            return f"map<string, {inner}>", opts
        if n == "STRUCT":
            self.counter += 1
            name = f"ConnectDefault{self.counter}"
            nested.extend(self.message(name, list(t.fields), depth))
            return name, ""
        raise SqlError(f"Type {t} has no Protobuf form")


def proto_text(columns: Columns, full_name: str | None = None, nullable: str | None = None) -> str:
    """The ``.proto`` of a row of ``columns``: one message, ``ConnectDefault1``, or named by
    ``full_name`` (``package.Message``, as ksqlDB's VALUE_SCHEMA_FULL_NAME). ``nullable``
    (``WRAPPER`` / ``OPTIONAL``): primitives as ``google.protobuf.*Value`` wrappers or proto3
    ``optional`` fields, so that NULL and the type's default stay apart."""
    w = _Writer(nullable)
    package, _, name = (full_name or "").rpartition(".")
    body = w.message(name or ROOT_NAME, columns, 0)
    head = ['syntax = "proto3";', ""]
    if package:
        head += [f"package {package};", ""]
    head += [f'import "{p}";' for p in sorted(w.imports)]
    if w.imports:
        head.append("")
    return "\n".join([*head, *body]) + "\n"


def build(
    text: str, references: dict[str, pb.ProtobufSchema] | None = None
) -> tuple[pb.ProtobufSchema, Any]:
    """The parsed schema and a descriptor pool holding it (and its imports)."""
    try:
        schema = pb.parse(text, references)
    except Exception as e:
        raise SqlError(f"Invalid Protobuf schema: {e}") from None
    pool = descriptor_pool.DescriptorPool()
    for f in schema.deps.values():
        pool.Add(f)
    pool.Add(schema.wire if schema.wire is not None else schema.file)
    return schema, pool


def message_at(schema: pb.ProtobufSchema, pool: Any, indexes: list[int]) -> Descriptor:
    """The message at ``indexes`` (a path of positions: top-level message, then nested ones)."""
    desc: Descriptor = wire.message_at(pool.FindFileByName(pb.ROOT), indexes)
    return desc


def message_class(desc: Descriptor) -> Any:
    return message_factory.GetMessageClass(desc)


# -- inference: a message's fields as columns --------------------------------------------------------
_INT32 = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_FIXED32,
}
_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED64,
}


def _repeated(f: FieldDescriptor) -> bool:
    flag = getattr(f, "is_repeated", None)  # protobuf >= 6; `label` before
    return bool(flag) if flag is not None else f.label == FieldDescriptor.LABEL_REPEATED


def _is_map(f: FieldDescriptor) -> bool:
    m = f.message_type
    return _repeated(f) and m is not None and m.GetOptions().map_entry


def _decimal_params(f: FieldDescriptor) -> tuple[int, int]:
    """Precision and scale from ``(confluent.field_meta).params``, found in the field's options
    as text (the meta extension is number 1088); ksqlDB's defaults (64, 0) otherwise."""
    raw = f.GetOptions().SerializeToString()
    found = dict(re.findall(rb"\n[\x05\x09](precision|scale)\x12.([0-9]+)", raw, re.S))
    precision = int(found.get(b"precision", b"64"))
    scale = int(found.get(b"scale", b"0"))
    return precision, scale


def field_sql_type(f: FieldDescriptor) -> T.SqlType:
    if _is_map(f):
        return T.map_of(T.STRING, _single_type(f.message_type.fields_by_name["value"]))
    t = _single_type(f)
    return T.array(t) if _repeated(f) else t


def _single_type(f: FieldDescriptor) -> T.SqlType:
    ft = f.type
    if ft in _INT32:
        return T.INTEGER
    if ft in _INT64:
        return T.BIGINT
    if ft in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return T.DOUBLE
    if ft == FieldDescriptor.TYPE_BOOL:
        return T.BOOLEAN
    if ft == FieldDescriptor.TYPE_STRING or ft == FieldDescriptor.TYPE_ENUM:
        return T.STRING
    if ft == FieldDescriptor.TYPE_BYTES:
        return T.BYTES
    m = f.message_type
    full = m.full_name
    if full == "google.protobuf.Timestamp":
        return T.TIMESTAMP
    if full == "google.type.Date":
        return T.DATE
    if full == "google.type.TimeOfDay":
        return T.TIME
    if full == "confluent.type.Decimal":
        p, s = _decimal_params(f)
        return T.SqlType("DECIMAL", precision=p, scale=s)
    if full in _WRAPPERS:
        return _WRAPPERS[full]
    return T.struct([(sf.name.upper(), field_sql_type(sf)) for sf in m.fields])


def infer(text: str, references: dict[str, pb.ProtobufSchema] | None = None, full_name: str | None = None) -> Columns:
    """The columns of the first message of a ``.proto`` (ksqlDB reads the first one), or of the
    message ``full_name``."""
    schema, pool = build(text, references)
    if full_name:
        try:
            desc = pool.FindMessageTypeByName(full_name)
        except KeyError:
            names = ", ".join(schema.names())
            raise SqlError(f"Schema does not contain the message '{full_name}' (its messages: {names})") from None
    else:
        desc = message_at(schema, pool, [0])
    return [(f.name.upper(), field_sql_type(f)) for f in desc.fields]


# -- values -------------------------------------------------------------------------------------------
def _read(msg: Any, f: FieldDescriptor) -> Any:
    v = getattr(msg, f.name)
    if _is_map(f):
        vf = f.message_type.fields_by_name["value"]
        return {str(k): _value(x, vf) for k, x in v.items()}
    if _repeated(f):
        return [_value(x, f) for x in v]
    if f.has_presence and not msg.HasField(f.name):
        return None
    return _value(v, f)


def _value(v: Any, f: FieldDescriptor) -> Any:
    if f.type == FieldDescriptor.TYPE_ENUM:
        ev = f.enum_type.values_by_number.get(v)
        return ev.name if ev is not None else str(v)
    if f.type != FieldDescriptor.TYPE_MESSAGE:
        return v
    full = f.message_type.full_name
    if full == "google.protobuf.Timestamp":
        return v.seconds * 1000 + v.nanos // 1_000_000
    if full == "google.type.Date":
        return (dt.date(v.year or 1970, v.month or 1, v.day or 1) - _EPOCH).days
    if full == "google.type.TimeOfDay":
        return ((v.hours * 60 + v.minutes) * 60 + v.seconds) * 1000 + v.nanos // 1_000_000
    if full == "confluent.type.Decimal":
        unscaled = int.from_bytes(v.value, "big", signed=True) if v.value else 0
        return Decimal(unscaled).scaleb(-v.scale)
    if full in _WRAPPERS:
        return v.value
    return {sf.name: _read(v, sf) for sf in f.message_type.fields}


def to_row(msg: Any) -> dict[str, Any]:
    return {f.name: _read(msg, f) for f in msg.DESCRIPTOR.fields}


def _write(msg: Any, f: FieldDescriptor, v: Any, t: T.SqlType) -> None:
    if v is None:
        return  # proto3: the default value (primitives), unset (messages)
    if _is_map(f):
        vf = f.message_type.fields_by_name["value"]
        target = getattr(msg, f.name)
        for k, x in v.items():
            if x is None:
                continue
            if vf.type == FieldDescriptor.TYPE_MESSAGE:
                _fill(target[str(k)], vf, x, t.element or T.STRING)
            else:
                target[str(k)] = _scalar(x, t.element or T.STRING)
        return
    if _repeated(f):
        target = getattr(msg, f.name)
        et = t.element or T.STRING
        for x in v:
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                _fill(target.add(), f, x, et)
            else:
                target.append(_enum(f, _scalar(x, et)))
        return
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        _fill(getattr(msg, f.name), f, v, t)
        getattr(msg, f.name).SetInParent()
        return
    setattr(msg, f.name, _enum(f, _scalar(v, t)))


def _enum(f: FieldDescriptor, v: Any) -> Any:
    """A STRING written into an enum field: the number of the value of that name."""
    if f.type == FieldDescriptor.TYPE_ENUM and isinstance(v, str):
        ev = f.enum_type.values_by_name.get(v)
        if ev is None:
            raise ValueError(f"{v!r} is not a value of enum {f.enum_type.full_name}")
        return ev.number
    return v


def _scalar(v: Any, t: T.SqlType) -> Any:
    if v is None:
        return None
    n = t.name
    if n in ("INTEGER", "BIGINT"):
        return int(v)
    if n == "DOUBLE":
        return float(v)
    if n == "BYTES":
        return bytes(v)
    if n == "STRING":
        return str(v)
    return v


def _fill(target: Any, f: FieldDescriptor, v: Any, t: T.SqlType) -> None:
    """Sets the message ``target`` (of field ``f``'s message type) from the SQL value ``v``."""
    if v is None:
        return
    full = f.message_type.full_name
    if full == "google.protobuf.Timestamp":
        ms = int(v)
        target.seconds, target.nanos = ms // 1000, (ms % 1000) * 1_000_000
    elif full == "google.type.Date":
        day = _EPOCH + dt.timedelta(days=int(v))
        target.year, target.month, target.day = day.year, day.month, day.day
    elif full == "google.type.TimeOfDay":
        ms = int(v)
        target.hours, target.minutes = ms // 3_600_000, ms // 60_000 % 60
        target.seconds, target.nanos = ms // 1000 % 60, ms % 1000 * 1_000_000
    elif full == "confluent.type.Decimal":
        d = Decimal(str(v)).quantize(Decimal(1).scaleb(-t.scale))
        unscaled = int(d.scaleb(t.scale))
        target.value = unscaled.to_bytes(
            max(1, (unscaled.bit_length() + 8) // 8), "big", signed=True
        )
        target.precision, target.scale = t.precision, t.scale
    elif full in _WRAPPERS:
        target.value = _scalar(v, _WRAPPERS[full])
    else:
        fields = {n.upper(): ft for n, ft in t.fields}
        upper = {k.upper(): x for k, x in v.items()}
        for sf in f.message_type.fields:
            _write(target, sf, upper.get(sf.name.upper()), fields.get(sf.name.upper(), T.STRING))
        target.SetInParent()


def from_row(cls: Any, row: dict[str, Any], columns: Columns) -> Any:
    """A message of ``cls`` from a row; columns match fields case-insensitively (a schema from
    the registry may name them ``order_id`` where the column is ``ORDER_ID``)."""
    msg = cls()
    fields = {f.name.upper(): f for f in msg.DESCRIPTOR.fields}
    for n, t in columns:
        f = fields.get(n.upper())
        if f is not None:
            _write(msg, f, row.get(n), t)
    return msg


def columns_of_row(row: dict[str, Any], columns: Columns) -> dict[str, Any]:
    """A decoded message's fields as the columns (matched case-insensitively, coerced)."""
    upper = {n.upper(): (n, t) for n, t in columns}
    out: dict[str, Any] = dict.fromkeys(n for n, _ in columns)
    for k, v in row.items():
        hit = upper.get(k.upper())
        if hit is not None:
            out[hit[0]] = coerce(v, hit[1])
    return out
