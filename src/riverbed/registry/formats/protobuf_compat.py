"""Protobuf compatibility in the terms Confluent documents for Protobuf schemas.

`differences(original, update)` lists what changed between two schemas, each named as
Confluent names it (PACKAGE_CHANGED, MESSAGE_REMOVED, FIELD_KIND_CHANGED, ...), and
`incompatibilities` keeps those outside the compatible set. Fields are matched by number (the
wire identity); messages and enums by name. Scalar types may change within a wire-compatible
group (int32/uint32/int64/uint64/bool and enums; sint32/sint64; fixed32/sfixed32;
fixed64/sfixed64; string/bytes). BACKWARD checks (original=old, update=new), FORWARD the
reverse, FULL both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pb2 as d

from .base import Incompatibility
from .protobuf import ProtobufSchema, TypeInfo

F = d.FieldDescriptorProto

COMPATIBLE = frozenset({
    "MESSAGE_ADDED", "MESSAGE_MOVED", "ENUM_ADDED", "ENUM_REMOVED", "ENUM_CONST_ADDED", "ENUM_CONST_CHANGED",
    "ENUM_CONST_REMOVED", "FIELD_ADDED", "FIELD_REMOVED", "FIELD_NAME_CHANGED", "FIELD_STRING_OR_BYTES_LABEL_CHANGED",
    "ONEOF_ADDED", "ONEOF_REMOVED", "ONEOF_FIELD_ADDED",
})

DESCRIPTIONS = {
    "PACKAGE_CHANGED": "The package at '{path}' in the new schema differs from the old schema's",
    "MESSAGE_REMOVED": "The message at '{path}' in the old schema is missing in the new schema",
    "FIELD_KIND_CHANGED": "The kind (scalar, message or map) of the field at '{path}' in the new schema differs from the old schema's",
    "FIELD_SCALAR_KIND_CHANGED": "The scalar type of the field at '{path}' in the new schema is not wire-compatible with the old schema's",
    "FIELD_NAMED_TYPE_CHANGED": "The message type of the field at '{path}' in the new schema differs from the old schema's",
    "REQUIRED_FIELD_ADDED": "The required field at '{path}' in the new schema is missing in the old schema",
    "REQUIRED_FIELD_REMOVED": "The required field at '{path}' in the old schema is missing in the new schema",
    "ONEOF_FIELD_REMOVED": "The field at '{path}' of a oneof in the old schema is missing in the new schema",
    "MULTIPLE_FIELDS_MOVED_TO_ONEOF": "More than one field of the old schema moved into the oneof at '{path}' in the new schema",
    "FIELD_MOVED_TO_EXISTING_ONEOF": "A field of the old schema moved into the existing oneof at '{path}' in the new schema",
}

# wire-compatible groups of scalar types (an enum is a varint: GENERAL_NUMBER)
SCALAR_GROUPS = {
    F.TYPE_INT32: "GENERAL_NUMBER", F.TYPE_INT64: "GENERAL_NUMBER", F.TYPE_UINT32: "GENERAL_NUMBER",
    F.TYPE_UINT64: "GENERAL_NUMBER", F.TYPE_BOOL: "GENERAL_NUMBER", F.TYPE_ENUM: "GENERAL_NUMBER",
    F.TYPE_SINT32: "SIGNED_NUMBER", F.TYPE_SINT64: "SIGNED_NUMBER",
    F.TYPE_STRING: "STRING_OR_BYTES", F.TYPE_BYTES: "STRING_OR_BYTES",
    F.TYPE_FIXED32: "FIXED32", F.TYPE_SFIXED32: "FIXED32",
    F.TYPE_FIXED64: "FIXED64", F.TYPE_SFIXED64: "FIXED64",
    F.TYPE_FLOAT: "FLOAT", F.TYPE_DOUBLE: "DOUBLE",
}


@dataclass
class _Ctx:
    old: dict[str, TypeInfo]
    new: dict[str, TypeInfo]
    found: list[tuple[str, str]] = field(default_factory=list)
    # (old message, new message) -> compatible? (True while being compared: recursion)
    compared: dict[tuple[str, str], bool] = field(default_factory=dict)

    def add(self, kind: str, path: str) -> None:
        if (kind, path) not in self.found:
            self.found.append((kind, path))


def differences(original: ProtobufSchema, update: ProtobufSchema) -> list[tuple[str, str]]:
    """Every difference (type, path) from `original` to `update`."""
    ctx = _Ctx(original.types(), update.types())
    a, b = original.file, update.file
    if a.package != b.package:
        ctx.add("PACKAGE_CHANGED", "#/")
    _types(ctx, "#", _prefix(a.package), _prefix(b.package), list(a.message_type), list(b.message_type), list(a.enum_type), list(b.enum_type))
    return ctx.found


def incompatibilities(original: ProtobufSchema, update: ProtobufSchema) -> list[Incompatibility]:
    out = []
    for kind, path in differences(original, update):
        if kind not in COMPATIBLE:
            out.append(Incompatibility(kind, path, DESCRIPTIONS.get(kind, kind).format(path=path)))
    return out


def _prefix(package: str) -> str:
    return f".{package}" if package else ""


def _types(ctx: _Ctx, path: str, old_scope: str, new_scope: str, old_msgs: list[Any], new_msgs: list[Any], old_enums: list[Any], new_enums: list[Any]) -> None:
    olds = {m.name: (i, m) for i, m in enumerate(x for x in old_msgs if not x.options.map_entry)}
    news = {m.name: (i, m) for i, m in enumerate(x for x in new_msgs if not x.options.map_entry)}
    for name in [*olds, *(n for n in news if n not in olds)]:
        here = f"{path}/{name}"
        if name not in news:
            ctx.add("MESSAGE_REMOVED", here)
        elif name not in olds:
            ctx.add("MESSAGE_ADDED", here)
        else:
            _message(ctx, here, f"{old_scope}.{name}", f"{new_scope}.{name}")
            if olds[name][0] != news[name][0]:
                ctx.add("MESSAGE_MOVED", here)  # compatible: message indexes refer to the writer's schema
    olde = {e.name: e for e in old_enums}
    newe = {e.name: e for e in new_enums}
    for name in [*olde, *(n for n in newe if n not in olde)]:
        here = f"{path}/{name}"
        if name not in newe:
            ctx.add("ENUM_REMOVED", here)
        elif name not in olde:
            ctx.add("ENUM_ADDED", here)
        else:
            _enum(ctx, here, olde[name], newe[name])


def _enum(ctx: _Ctx, path: str, old: d.EnumDescriptorProto, new: d.EnumDescriptorProto) -> None:
    olds = {v.number: v.name for v in old.value}
    news = {v.number: v.name for v in new.value}
    for n in sorted(olds.keys() | news.keys()):
        if n not in news:
            ctx.add("ENUM_CONST_REMOVED", f"{path}/{n}")
        elif n not in olds:
            ctx.add("ENUM_CONST_ADDED", f"{path}/{n}")
        elif olds[n] != news[n]:
            ctx.add("ENUM_CONST_CHANGED", f"{path}/{n}")


def _message(ctx: _Ctx, path: str, old_name: str, new_name: str) -> bool:
    """Compare two messages once (recursive types end here); True when compatible."""
    key = (old_name, new_name)
    if key in ctx.compared:
        return ctx.compared[key]
    ctx.compared[key] = True
    before = len(ctx.found)
    old, new = ctx.old[old_name].proto, ctx.new[new_name].proto
    _fields(ctx, path, old, new)
    _types(ctx, path, old_name, new_name, list(old.nested_type), list(new.nested_type), list(old.enum_type), list(new.enum_type))
    ok = all(kind in COMPATIBLE for kind, _ in ctx.found[before:])
    ctx.compared[key] = ok
    return ok


def _oneof_members(m: d.DescriptorProto) -> dict[str, dict[int, Any]]:
    out: dict[str, dict[int, Any]] = {}
    for f in m.field:
        if f.HasField("oneof_index") and not f.proto3_optional:
            out.setdefault(m.oneof_decl[f.oneof_index].name, {})[f.number] = f
    return out


def _fields(ctx: _Ctx, path: str, old: d.DescriptorProto, new: d.DescriptorProto) -> None:
    old_plain = {f.number: f for f in old.field if not f.HasField("oneof_index") or f.proto3_optional}
    new_plain = {f.number: f for f in new.field if not f.HasField("oneof_index") or f.proto3_optional}
    old_all = {f.number: f for f in old.field}
    new_all = {f.number: f for f in new.field}
    old_oneofs, new_oneofs = _oneof_members(old), _oneof_members(new)
    old_in_oneof = {n: name for name, fs in old_oneofs.items() for n in fs}
    new_in_oneof = {n: name for name, fs in new_oneofs.items() for n in fs}
    for name, members in new_oneofs.items():
        moved = sum(1 for n in members if n in old_plain)
        existing = sum(1 for n in members if n not in old_plain and n in old_in_oneof)
        for n in members:
            old_plain.pop(n, None)  # moved into a oneof: not a removed field
        if moved > 1:
            ctx.add("MULTIPLE_FIELDS_MOVED_TO_ONEOF", f"{path}/{name}")
        elif moved == 1 and existing > 0:
            ctx.add("FIELD_MOVED_TO_EXISTING_ONEOF", f"{path}/{name}")
    for name in [*old_oneofs, *(n for n in new_oneofs if n not in old_oneofs)]:
        here = f"{path}/{name}"
        if name not in new_oneofs:
            ctx.add("ONEOF_REMOVED", here)
        elif name not in old_oneofs:
            ctx.add("ONEOF_ADDED", here)
        else:
            a, b = old_oneofs[name], new_oneofs[name]
            for n in sorted(a.keys() | b.keys()):
                if n not in b:
                    if n not in new_all:  # moved out of the oneof is not removed
                        ctx.add("ONEOF_FIELD_REMOVED", f"{here}/{n}")
                elif n not in a:
                    ctx.add("ONEOF_FIELD_ADDED", f"{here}/{n}")
                else:
                    _field(ctx, f"{here}/{n}", a[n], b[n])
    for n in sorted(old_plain.keys() | new_plain.keys()):
        here = f"{path}/{n}"
        of, nf = old_plain.get(n), new_plain.get(n)
        if nf is None and of is not None:
            ctx.add("REQUIRED_FIELD_REMOVED" if of.label == F.LABEL_REQUIRED else "FIELD_REMOVED", here)
        elif of is None and nf is not None:
            ctx.add("REQUIRED_FIELD_ADDED" if nf.label == F.LABEL_REQUIRED else "FIELD_ADDED", here)
        elif of is not None and nf is not None:
            _field(ctx, here, of, nf)
    # fields whose oneof membership changed are compared by number too
    for n in sorted(old_all.keys() & new_all.keys()):
        a_one, b_one = old_in_oneof.get(n), new_in_oneof.get(n)
        if (a_one is None and b_one is None) or (a_one is not None and a_one == b_one):
            continue
        _field(ctx, f"{path}/{n}", old_all[n], new_all[n])


def _kind(types: dict[str, TypeInfo], f: Any) -> str:
    if f.type == F.TYPE_MESSAGE or f.type == F.TYPE_GROUP:
        info = types.get(f.type_name)
        if info is not None and info.proto.options.map_entry:
            return "MAP"
        return "MESSAGE"
    return "SCALAR"


def _field(ctx: _Ctx, path: str, old: Any, new: Any) -> None:
    if old.name != new.name:
        ctx.add("FIELD_NAME_CHANGED", path)
    _field_type(ctx, path, old, new)


def _field_type(ctx: _Ctx, path: str, old: Any, new: Any) -> None:
    ok, nk = _kind(ctx.old, old), _kind(ctx.new, new)
    if ok != nk:
        ctx.add("FIELD_KIND_CHANGED", path)
    elif ok == "SCALAR":
        if SCALAR_GROUPS.get(old.type) != SCALAR_GROUPS.get(new.type):
            ctx.add("FIELD_SCALAR_KIND_CHANGED", path)
    elif ok == "MAP":
        a, b = ctx.old[old.type_name].proto, ctx.new[new.type_name].proto
        for i in (0, 1):
            _field_type(ctx, path, a.field[i], b.field[i])
    else:
        a_info, b_info = ctx.old.get(old.type_name), ctx.new.get(new.type_name)
        if a_info is None or b_info is None:
            if old.type_name != new.type_name:
                ctx.add("FIELD_NAMED_TYPE_CHANGED", path)
            return
        if _local(old.type_name, a_info) != _local(new.type_name, b_info) or not _message(ctx, f"#/{_local(old.type_name, a_info)}", old.type_name, new.type_name):
            ctx.add("FIELD_NAMED_TYPE_CHANGED", path)


def _local(full: str, info: TypeInfo) -> str:
    """A type's name within its package (a package change alone is PACKAGE_CHANGED)."""
    prefix = _prefix(info.package) + "."
    return full[len(prefix):] if full.startswith(prefix) else full.lstrip(".")
