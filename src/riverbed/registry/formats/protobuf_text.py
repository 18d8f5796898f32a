"""`.proto` text -> FileDescriptorProto, for the Protobuf schema format.

`to_descriptor(text)` parses proto2/proto3 text with `proto_schema_parser` (a pure-Python
ANTLR grammar of the Protobuf language) and builds the FileDescriptorProto protoc would build,
with type names left as written; the descriptor pool then resolves and validates them.
`protobuf_print.to_text` prints a descriptor back as text.

Custom options (`(ext.name).field = value`) are kept as uninterpreted options: stored and
printed back, not resolved against their extension. Groups and editions are refused.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from google.protobuf import descriptor_pb2 as d
from proto_schema_parser import ast
from proto_schema_parser.parser import Parser

from .base import InvalidSchema

F = d.FieldDescriptorProto
SCALARS: dict[str, int] = {
    "double": F.TYPE_DOUBLE, "float": F.TYPE_FLOAT, "int64": F.TYPE_INT64, "uint64": F.TYPE_UINT64,
    "int32": F.TYPE_INT32, "fixed64": F.TYPE_FIXED64, "fixed32": F.TYPE_FIXED32, "bool": F.TYPE_BOOL,
    "string": F.TYPE_STRING, "bytes": F.TYPE_BYTES, "uint32": F.TYPE_UINT32, "sfixed32": F.TYPE_SFIXED32,
    "sfixed64": F.TYPE_SFIXED64, "sint32": F.TYPE_SINT32, "sint64": F.TYPE_SINT64,
}
SCALAR_NAMES = {v: k for k, v in SCALARS.items()}
LABELS = {ast.FieldCardinality.OPTIONAL: F.LABEL_OPTIONAL, ast.FieldCardinality.REQUIRED: F.LABEL_REQUIRED, ast.FieldCardinality.REPEATED: F.LABEL_REPEATED}
FIELD_MAX = 536870912  # field numbers are below 2^29; `max` in a message range (end exclusive)
ENUM_MAX = 2147483647  # `max` in an enum reserved range (end inclusive)


class _Raise:
    """An ANTLR error listener that turns the first syntax error into InvalidSchema."""

    def syntaxError(self, recognizer: Any, offendingSymbol: Any, line: int, column: int, msg: str, e: Any) -> None:
        raise InvalidSchema(f"Invalid schema: line {line}:{column}: {msg}")

    def reportAmbiguity(self, *args: Any) -> None:
        pass

    def reportAttemptingFullContext(self, *args: Any) -> None:
        pass

    def reportContextSensitivity(self, *args: Any) -> None:
        pass


def _quiet(recognizer: Any) -> None:
    recognizer.removeErrorListeners()
    recognizer.addErrorListener(_Raise())


CACHE_TEXT_LIMIT = 64 * 1024  # texts up to this size are cached parsed (512 of them at most)


@functools.lru_cache(maxsize=512)
def _parse_cached(text: str) -> bytes:
    return _parse(text)


def _parse(text: str) -> bytes:
    try:
        tree = Parser(setup_lexer=_quiet, setup_parser=_quiet).parse(text)
    except InvalidSchema:
        raise
    except Exception as exc:  # the grammar's visitor on odd input
        raise InvalidSchema(f"Invalid schema: {exc}") from None
    out: bytes = _Builder().file(tree).SerializeToString()
    return out


def to_descriptor(text: str) -> d.FileDescriptorProto:
    """The FileDescriptorProto of `.proto` text (type names unresolved, as written)."""
    out = d.FileDescriptorProto()
    out.ParseFromString(_parse_cached(text) if len(text) <= CACHE_TEXT_LIMIT else _parse(text))
    return out


def camel(name: str, upper_first: bool) -> str:
    """protoc's camel-casing of a field name (json_name; map entry names with upper_first)."""
    out: list[str] = []
    up = upper_first
    for ch in name:
        if ch == "_":
            up = True
        elif up:
            out.append(ch.upper())
            up = False
        else:
            out.append(ch)
    return "".join(out)


def _ranges(specs: list[str], top: int, inclusive: bool) -> list[tuple[int, int]]:
    out = []
    for spec in specs:
        parts = [p.strip() for p in re.split(r"\s+to\s+", spec.strip())]
        try:
            start = int(parts[0], 0)
            end = start if len(parts) == 1 else (top if parts[1] == "max" else int(parts[1], 0))
        except ValueError:
            raise InvalidSchema(f"Invalid schema: bad range {spec!r}") from None
        if end < start:
            raise InvalidSchema(f"Invalid schema: range {spec!r} ends before it starts")
        out.append((start, end if inclusive or end == top else end + 1))
    return out


class _Builder:
    def __init__(self) -> None:
        self.proto3 = False

    def file(self, tree: ast.File) -> d.FileDescriptorProto:
        if tree.edition is not None:
            raise InvalidSchema("Invalid schema: Protobuf editions are not supported (proto2 and proto3 are)")
        syntax = tree.syntax or "proto2"
        if syntax not in ("proto2", "proto3"):
            raise InvalidSchema(f"Invalid schema: unknown syntax {syntax!r}")
        self.proto3 = syntax == "proto3"
        out = d.FileDescriptorProto(syntax=syntax)
        for el in tree.file_elements:
            if isinstance(el, ast.Package):
                if out.HasField("package"):
                    raise InvalidSchema("Invalid schema: more than one package statement")
                out.package = el.name
            elif isinstance(el, ast.Import):
                if el.public:
                    out.public_dependency.append(len(out.dependency))
                if el.weak:
                    out.weak_dependency.append(len(out.dependency))
                out.dependency.append(el.name)
            elif isinstance(el, ast.Option):
                _set_option(out.options, el)
            elif isinstance(el, ast.Message):
                self.message(out.message_type.add(), el)
            elif isinstance(el, ast.Enum):
                self.enum(out.enum_type.add(), el)
            elif isinstance(el, ast.Extension):
                self.extend(out.extension, el)
            elif isinstance(el, ast.Service):
                self.service(out.service.add(), el)
        return out

    def message(self, out: d.DescriptorProto, msg: ast.Message) -> None:
        out.name = msg.name
        synthetic: list[d.FieldDescriptorProto] = []
        for el in msg.elements:
            if isinstance(el, ast.Field):
                f = self.field(out.field.add(), el, in_oneof=False)
                if f.proto3_optional:
                    synthetic.append(f)
            elif isinstance(el, ast.MapField):
                self.map_field(out, el)
            elif isinstance(el, ast.OneOf):
                index = len(out.oneof_decl)
                decl = out.oneof_decl.add(name=el.name)
                for member in el.elements:
                    if isinstance(member, ast.Field):
                        self.field(out.field.add(), member, in_oneof=True).oneof_index = index
                    elif isinstance(member, ast.Option):
                        _set_option(decl.options, member)
                    elif isinstance(member, ast.Group):
                        raise InvalidSchema("Invalid schema: groups are not supported")
            elif isinstance(el, ast.Option):
                _set_option(out.options, el)
            elif isinstance(el, ast.Reserved):
                for start, end in _ranges(el.ranges, FIELD_MAX, inclusive=False):
                    out.reserved_range.add(start=start, end=end)
                out.reserved_name.extend(el.names)
            elif isinstance(el, ast.ExtensionRange):
                for start, end in _ranges(el.ranges, FIELD_MAX, inclusive=False):
                    out.extension_range.add(start=start, end=end)
            elif isinstance(el, ast.Message):
                self.message(out.nested_type.add(), el)
            elif isinstance(el, ast.Enum):
                self.enum(out.enum_type.add(), el)
            elif isinstance(el, ast.Extension):
                self.extend(out.extension, el)
            elif isinstance(el, ast.Group):
                raise InvalidSchema("Invalid schema: groups are not supported")
        taken = {o.name for o in out.oneof_decl}
        for f in synthetic:  # proto3 `optional`: a synthetic oneof each, after the real ones
            name = "_" + f.name
            while name in taken:
                name = "X" + name
            taken.add(name)
            f.oneof_index = len(out.oneof_decl)
            out.oneof_decl.add(name=name)

    def field(self, out: d.FieldDescriptorProto, el: ast.Field, in_oneof: bool) -> d.FieldDescriptorProto:
        out.name = el.name
        out.number = el.number
        if el.cardinality is None:
            out.label = F.LABEL_OPTIONAL
        else:
            if in_oneof:
                raise InvalidSchema(f"Invalid schema: field {el.name} in a oneof cannot have a label")
            out.label = LABELS[el.cardinality]
            if self.proto3 and el.cardinality == ast.FieldCardinality.REQUIRED:
                raise InvalidSchema(f"Invalid schema: required field {el.name} in a proto3 file")
            if self.proto3 and el.cardinality == ast.FieldCardinality.OPTIONAL:
                out.proto3_optional = True
        _set_type(out, el.type)
        for opt in el.options:
            if opt.name == "default":
                out.default_value = _default_text(opt.value, out.type)
            elif opt.name == "json_name":
                out.json_name = unescape(str(opt.value)).decode("utf-8", "replace")
            else:
                _set_option(out.options, opt)
        return out

    def map_field(self, out: d.DescriptorProto, el: ast.MapField) -> None:
        entry = out.nested_type.add(name=camel(el.name, True) + "Entry")
        entry.options.map_entry = True
        _set_type(entry.field.add(name="key", number=1, label=F.LABEL_OPTIONAL), el.key_type)
        _set_type(entry.field.add(name="value", number=2, label=F.LABEL_OPTIONAL), el.value_type)
        f = out.field.add(name=el.name, number=el.number, label=F.LABEL_REPEATED, type_name=entry.name)
        for opt in el.options:
            if opt.name == "json_name":
                f.json_name = str(opt.value)
            else:
                _set_option(f.options, opt)

    def enum(self, out: d.EnumDescriptorProto, el: ast.Enum) -> None:
        out.name = el.name
        for v in el.elements:
            if isinstance(v, ast.EnumValue):
                value = out.value.add(name=v.name, number=v.number)
                for opt in v.options:
                    _set_option(value.options, opt)
            elif isinstance(v, ast.Option):
                _set_option(out.options, v)
            elif isinstance(v, ast.EnumReserved):
                for start, end in _ranges(v.ranges, ENUM_MAX, inclusive=True):
                    out.reserved_range.add(start=start, end=end)
                out.reserved_name.extend(v.names)

    def extend(self, out: Any, el: ast.Extension) -> None:
        for member in el.elements:
            if isinstance(member, ast.Field):
                self.field(out.add(), member, in_oneof=False).extendee = el.typeName
            elif isinstance(member, ast.Group):
                raise InvalidSchema("Invalid schema: groups are not supported")

    def service(self, out: d.ServiceDescriptorProto, el: ast.Service) -> None:
        out.name = el.name
        for m in el.elements:
            if isinstance(m, ast.Method):
                method = out.method.add(name=m.name, input_type=m.input_type.type, output_type=m.output_type.type)
                if m.input_type.stream:
                    method.client_streaming = True
                if m.output_type.stream:
                    method.server_streaming = True
                for opt in m.elements:
                    if isinstance(opt, ast.Option):
                        _set_option(method.options, opt)
            elif isinstance(m, ast.Option):
                _set_option(out.options, m)


def _set_type(out: d.FieldDescriptorProto, name: str) -> None:
    if name in SCALARS:
        out.type = SCALARS[name]
    else:
        out.type_name = name  # message or enum: the pool decides which


def _scalar(value: Any) -> Any:
    return value.name if isinstance(value, ast.Identifier) else value


def _default_text(value: Any, kind: int) -> str:
    """A default as FieldDescriptorProto keeps it: strings unescaped, bytes C-escaped."""
    v = _scalar(value)
    if isinstance(v, bool):
        return "true" if v else "false"
    if kind == F.TYPE_STRING:
        return unescape(str(v)).decode("utf-8", "replace")
    if kind == F.TYPE_BYTES:
        return quote(unescape(str(v)))[1:-1]
    return str(v)


_ESCAPES = {"n": 10, "t": 9, "r": 13, "a": 7, "b": 8, "f": 12, "v": 11, "\\": 92, "'": 39, '"': 34, "?": 63}


def unescape(s: str) -> bytes:
    """The bytes of a string literal's body as the grammar hands it over (escapes unprocessed)."""
    out = bytearray()
    i = 0
    while i < len(s):
        ch = s[i]
        if ch != "\\" or i + 1 == len(s):
            out += ch.encode()
            i += 1
            continue
        nxt = s[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in "xX":
            m = re.match(r"[0-9A-Fa-f]{1,2}", s[i + 2 :])
            if not m:
                raise InvalidSchema(f"Invalid schema: bad escape in string {s!r}")
            out.append(int(m.group(0), 16))
            i += 2 + len(m.group(0))
        elif nxt in "01234567":
            m = re.match(r"[0-7]{1,3}", s[i + 1 :])
            assert m is not None
            out.append(int(m.group(0), 8) & 0xFF)
            i += 1 + len(m.group(0))
        elif nxt in "uU":
            width = 4 if nxt == "u" else 8
            digits = s[i + 2 : i + 2 + width]
            try:
                out += chr(int(digits, 16)).encode()
            except ValueError:
                raise InvalidSchema(f"Invalid schema: bad escape in string {s!r}") from None
            i += 2 + width
        else:
            raise InvalidSchema(f"Invalid schema: bad escape in string {s!r}")
    return bytes(out)


def _set_option(options: Any, opt: ast.Option) -> None:
    """A standard option sets its field; a custom one (`(ext).x`) is kept uninterpreted."""
    name = opt.name
    value = opt.value
    field = options.DESCRIPTOR.fields_by_name.get(name)
    if field is not None and field.name != "uninterpreted_option" and not isinstance(value, ast.MessageLiteral):
        v = _scalar(value)
        try:
            if field.enum_type is not None:
                ev = field.enum_type.values_by_name.get(str(v))
                if ev is None:
                    raise InvalidSchema(f"Invalid schema: option {name} has no value {v!r}")
                setattr(options, name, ev.number)
            elif isinstance(v, str):
                setattr(options, name, unescape(v).decode("utf-8", "replace"))
            else:
                setattr(options, name, v)
        except (TypeError, ValueError, AttributeError):
            raise InvalidSchema(f"Invalid schema: bad value {v!r} for option {name}") from None
        return
    if not name.startswith("("):
        raise InvalidSchema(f"Invalid schema: unknown option {name!r}")
    u = options.uninterpreted_option.add()
    for part, is_ext in _option_name_parts(name):
        u.name.add(name_part=part, is_extension=is_ext)
    if isinstance(value, ast.MessageLiteral):
        u.aggregate_value = _literal(value)
    elif isinstance(value, ast.Identifier):
        u.identifier_value = value.name
    elif isinstance(value, bool):
        u.identifier_value = "true" if value else "false"
    elif isinstance(value, int):
        if value >= 0:
            u.positive_int_value = value
        else:
            u.negative_int_value = value
    elif isinstance(value, float):
        u.double_value = value
    else:
        u.string_value = unescape(str(value))


def _option_name_parts(name: str) -> list[tuple[str, bool]]:
    parts = []
    for m in re.finditer(r"\(([^)]*)\)|([^.()]+)", name):
        if m.group(1) is not None:
            parts.append((m.group(1).lstrip("."), True))
        else:
            parts.append((m.group(2), False))
    return parts


def _literal_value(v: Any) -> str:
    if isinstance(v, ast.MessageLiteral):
        return "{ " + _literal(v) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_literal_value(x) for x in v) + "]"
    if isinstance(v, ast.Identifier):
        return v.name
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return quote(unescape(v))
    return str(v)


def _literal(lit: ast.MessageLiteral) -> str:
    out = []
    for el in lit.elements:
        if isinstance(el, ast.MessageLiteralField):
            sep = " " if isinstance(el.value, ast.MessageLiteral) else ": "
            out.append(f"{el.name}{sep}{_literal_value(el.value)}")
    return " ".join(out)


def quote(s: str | bytes) -> str:
    raw = s.encode() if isinstance(s, str) else s
    out = []
    for b in raw:
        ch = chr(b)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif 32 <= b < 127:
            out.append(ch)
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'
