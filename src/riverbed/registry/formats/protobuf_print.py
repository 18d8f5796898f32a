"""FileDescriptorProto -> `.proto` text: the form the registry stores and returns (as
Confluent does for a schema registered as a serialized descriptor), and with `normalize` the
form that identifies a schema under `normalize=true`."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2 as d

from .base import InvalidSchema
from .protobuf_text import ENUM_MAX, FIELD_MAX, SCALAR_NAMES, F, camel, quote


def _option_pairs(options: Any, sort: bool) -> list[str]:
    out = []
    for field, value in options.ListFields():
        if field.name == "uninterpreted_option":
            continue
        if field.enum_type is not None:
            text = field.enum_type.values_by_number[value].name
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = quote(value)
        else:
            text = str(value)
        out.append(f"{field.name} = {text}")
    for u in options.uninterpreted_option:
        name = ".".join(f"({p.name_part})" if p.is_extension else p.name_part for p in u.name)
        if u.HasField("identifier_value"):
            text = u.identifier_value
        elif u.HasField("positive_int_value"):
            text = str(u.positive_int_value)
        elif u.HasField("negative_int_value"):
            text = str(u.negative_int_value)
        elif u.HasField("double_value"):
            text = repr(u.double_value)
        elif u.HasField("string_value"):
            text = quote(u.string_value)
        else:
            text = "{ " + u.aggregate_value + " }"
        out.append(f"{name} = {text}")
    return sorted(out) if sort else out


class _Printer:
    def __init__(self, file: d.FileDescriptorProto, normalize: bool) -> None:
        self.file = file
        self.proto3 = file.syntax == "proto3"
        self.normalize = normalize
        self.lines: list[str] = []

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("  " * depth + text)

    def run(self) -> str:
        f = self.file
        self.emit(0, f'syntax = "{f.syntax or "proto2"}";')
        if f.HasField("package"):
            self.emit(0, f"package {f.package};")
        imports = []
        for i, dep in enumerate(f.dependency):
            kind = "public " if i in f.public_dependency else "weak " if i in f.weak_dependency else ""
            imports.append(f'import {kind}"{dep}";')
        if imports:
            self.lines.append("")
            self.lines += sorted(imports) if self.normalize else imports
        opts = _option_pairs(f.options, self.normalize)
        if opts:
            self.lines.append("")
            self.lines += [f"option {o};" for o in opts]
        for m in f.message_type:
            self.lines.append("")
            self.message(m, 0)
        for e in f.enum_type:
            self.lines.append("")
            self.enum(e, 0)
        if f.extension:
            self.lines.append("")
            self.extends(list(f.extension), 0)
        for s in f.service:
            self.lines.append("")
            self.service(s)
        return "\n".join(self.lines) + "\n"

    def message(self, m: d.DescriptorProto, depth: int) -> None:
        self.emit(depth, f"message {m.name} {{")
        inner = depth + 1
        for o in _option_pairs(m.options, self.normalize):
            self.emit(inner, f"option {o};")
        self.reserved(list(m.reserved_range), list(m.reserved_name), inner, FIELD_MAX, exclusive=True)
        entries = {n.name: n for n in m.nested_type if n.options.map_entry}
        plain = [f for f in m.field if not f.HasField("oneof_index") or f.proto3_optional]
        if self.normalize:
            plain.sort(key=lambda f: f.number)
        for f in plain:
            self.field(f, inner, entries, in_oneof=False)
        for i, oneof in enumerate(m.oneof_decl):
            members = [f for f in m.field if f.HasField("oneof_index") and f.oneof_index == i and not f.proto3_optional]
            if not members:
                continue  # a synthetic oneof of a proto3 `optional` field
            if self.normalize:
                members.sort(key=lambda f: f.number)
            self.emit(inner, f"oneof {oneof.name} {{")
            for o in _option_pairs(oneof.options, self.normalize):
                self.emit(inner + 1, f"option {o};")
            for f in members:
                self.field(f, inner + 1, entries, in_oneof=True)
            self.emit(inner, "}")
        for r in m.extension_range:
            end = "max" if r.end >= FIELD_MAX else str(r.end - 1)
            self.emit(inner, f"extensions {r.start};" if r.end == r.start + 1 else f"extensions {r.start} to {end};")
        for n in m.nested_type:
            if not n.options.map_entry:
                self.message(n, inner)
        for e in m.enum_type:
            self.enum(e, inner)
        if m.extension:
            self.extends(list(m.extension), inner)
        self.emit(depth, "}")

    def reserved(self, ranges: list[Any], names: list[str], depth: int, top: int, exclusive: bool) -> None:
        if ranges:
            parts = []
            for r in ranges:
                last = r.end - 1 if exclusive else r.end
                if r.end >= top:
                    parts.append(f"{r.start} to max")
                elif last == r.start:
                    parts.append(str(r.start))
                else:
                    parts.append(f"{r.start} to {last}")
            self.emit(depth, f"reserved {', '.join(parts)};")
        if names:
            self.emit(depth, "reserved " + ", ".join(quote(n) for n in names) + ";")

    def type_of(self, f: d.FieldDescriptorProto) -> str:
        if f.type == F.TYPE_GROUP:
            raise InvalidSchema("Invalid schema: groups are not supported")
        if f.type_name:
            return str(f.type_name)
        return SCALAR_NAMES[f.type]

    def field(self, f: d.FieldDescriptorProto, depth: int, entries: dict[str, d.DescriptorProto], in_oneof: bool) -> None:
        entry = entries.get(f.type_name.rsplit(".", 1)[-1]) if f.type_name and f.label == F.LABEL_REPEATED else None
        if entry is not None:
            key, value = entry.field[0], entry.field[1]
            head = f"map<{self.type_of(key)}, {self.type_of(value)}>"
        else:
            label = ""
            if f.label == F.LABEL_REPEATED:
                label = "repeated "
            elif f.label == F.LABEL_REQUIRED:
                label = "required "
            elif not in_oneof and (f.proto3_optional or not self.proto3):
                label = "optional "
            head = label + self.type_of(f)
        opts = []
        if f.HasField("default_value"):
            dv = f.default_value
            opts.append(f"default = {quote(dv) if f.type == F.TYPE_STRING else chr(34) + dv + chr(34) if f.type == F.TYPE_BYTES else dv}")
        if f.HasField("json_name") and f.json_name != camel(f.name, False):
            opts.append(f"json_name = {quote(f.json_name)}")
        opts += _option_pairs(f.options, self.normalize)
        if self.normalize:
            opts.sort()
        tail = f" [{', '.join(opts)}]" if opts else ""
        self.emit(depth, f"{head} {f.name} = {f.number}{tail};")

    def enum(self, e: d.EnumDescriptorProto, depth: int) -> None:
        self.emit(depth, f"enum {e.name} {{")
        for o in _option_pairs(e.options, self.normalize):
            self.emit(depth + 1, f"option {o};")
        self.reserved(list(e.reserved_range), list(e.reserved_name), depth + 1, ENUM_MAX, exclusive=False)
        values = sorted(e.value, key=lambda v: v.number) if self.normalize else list(e.value)
        for v in values:
            opts = _option_pairs(v.options, self.normalize)
            tail = f" [{', '.join(opts)}]" if opts else ""
            self.emit(depth + 1, f"{v.name} = {v.number}{tail};")
        self.emit(depth, "}")

    def extends(self, fields: list[d.FieldDescriptorProto], depth: int) -> None:
        groups: dict[str, list[d.FieldDescriptorProto]] = {}
        for f in fields:
            groups.setdefault(f.extendee, []).append(f)
        for extendee, members in groups.items():
            self.emit(depth, f"extend {extendee} {{")
            for f in members:
                self.field(f, depth + 1, {}, in_oneof=False)
            self.emit(depth, "}")

    def service(self, s: d.ServiceDescriptorProto) -> None:
        self.emit(0, f"service {s.name} {{")
        for o in _option_pairs(s.options, self.normalize):
            self.emit(1, f"option {o};")
        for m in s.method:
            head = f"rpc {m.name} ({'stream ' if m.client_streaming else ''}{m.input_type}) returns ({'stream ' if m.server_streaming else ''}{m.output_type})"
            opts = _option_pairs(m.options, self.normalize)
            if opts:
                self.emit(1, head + " {")
                for o in opts:
                    self.emit(2, f"option {o};")
                self.emit(1, "}")
            else:
                self.emit(1, head + ";")
        self.emit(0, "}")


def to_text(file: d.FileDescriptorProto, normalize: bool = False) -> str:
    """`.proto` text of a descriptor; with `normalize`, imports, options, fields and enum
    values in a fixed order (messages keep theirs: message indexes point into it)."""
    return _Printer(file, normalize).run()
