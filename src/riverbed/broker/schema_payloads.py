"""Payload checks for ``riverbed.<key|value>.schema.validation=full``, and the Protobuf parts
that the id check needs (message indexes, message names).

- Avro: the schema (with its references) is parsed once by fastavro and compiled into a reader
  (a closure per schema node); the payload is then read in Avro's binary encoding (every
  int/long a valid varint, lengths within the payload, strings UTF-8, union and enum indexes in
  range, nothing left over). The reader is ours rather than fastavro's so that a hostile payload
  cannot make the broker loop: array and map items are budgeted in proportion to the payload's
  size, and recursive types have a depth limit.
- JSON Schema: the payload must be JSON and valid against the schema (jsonschema, the
  schema's ``$schema`` draft, Draft 7 when absent as in Confluent; references resolved by
  their names).
- Protobuf: there is no .proto parser among the broker's dependencies, so the payload is
  checked against the Protobuf wire format only (well-formed tags, wire types and lengths),
  not against the message's fields.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .schema_ids import SchemaEntry, SchemaIndex

_MAX_DEPTH = 200
_MAX_REFERENCES = 100


class PayloadError(ValueError):
    """The payload (or the schema needed to read it) is not acceptable; the message says why."""


# --------------------------------------------------------------------------- varints


def _uvarint(data: Any, pos: int, max_bytes: int) -> tuple[int, int]:
    result = shift = 0
    for i in range(max_bytes):
        if pos + i >= len(data):
            raise PayloadError("truncated varint")
        b = data[pos + i]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos + i + 1
        shift += 7
    raise PayloadError("varint too long")


def _zigzag(data: Any, pos: int, max_bytes: int = 10) -> tuple[int, int]:
    raw, pos = _uvarint(data, pos, max_bytes)
    return (raw >> 1) ^ -(raw & 1), pos


def read_message_indexes(payload: memoryview) -> tuple[list[int], int]:
    """Confluent's Protobuf message indexes after the schema id: a zigzag varint count, then
    that many zigzag varints; a count of 0 stands for [0] (the first message). Returns the
    indexes and the number of bytes they took."""
    count, pos = _zigzag(payload, 0, 5)
    if count == 0:
        return [0], pos
    if count < 0 or count > 100:
        raise PayloadError(f"message index count {count}")
    out = []
    for _ in range(count):
        i, pos = _zigzag(payload, pos, 5)
        if i < 0:
            raise PayloadError(f"negative message index {i}")
        out.append(i)
    return out, pos


log = logging.getLogger("riverbed.broker.schema_payloads")

# --------------------------------------------------------------------------- Protobuf names

_PROTO_TOKEN = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|[A-Za-z_][\w.]*|[{};=]|\S', re.S)


def _proto_messages(text: str) -> tuple[str, list[Any]]:
    """(package, tree) of a .proto file: tree = [(name, nested tree), ...] in declaration
    order, messages only (what Confluent's message indexes count)."""
    tokens = [t for t in _PROTO_TOKEN.findall(text) if not t.startswith(("//", "/*"))]
    package = ""
    root: list[Any] = []
    stack: list[list[Any] | None] = [root]  # None: a scope that is not a message (enum, service...)
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t == "package" and len(stack) == 1 and i + 1 < len(tokens):
            package = tokens[i + 1]
        elif t == "message" and i + 2 < len(tokens) and tokens[i + 2] == "{" and stack[-1] is not None:
            nested: list[Any] = []
            stack[-1].append((tokens[i + 1], nested))
            stack.append(nested)
            i += 3
            continue
        elif t == "{":
            stack.append(None)
        elif t == "}" and len(stack) > 1:
            stack.pop()
        i += 1
    return package, root


def proto_message_name(entry: SchemaEntry, indexes: list[int]) -> str | None:
    """package.Outer.Inner named by ``indexes`` in the schema's .proto text, or None."""
    if "proto" not in entry.cache:
        entry.cache["proto"] = _proto_messages(entry.schema)
    package, tree = entry.cache["proto"]
    names = []
    for i in indexes:
        if i >= len(tree):
            return None
        name, tree = tree[i]
        names.append(name)
    return ".".join([package, *names] if package else names) if names else None


def _check_protobuf_wire(data: memoryview) -> None:
    pos = 0
    groups: list[int] = []
    while pos < len(data):
        key, pos = _uvarint(data, pos, 10)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise PayloadError("field number 0")
        if wire == 0:
            _, pos = _uvarint(data, pos, 10)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            size, pos = _uvarint(data, pos, 10)
            pos += size
        elif wire == 5:
            pos += 4
        elif wire == 3:
            groups.append(field)
        elif wire == 4:
            if not groups or groups.pop() != field:
                raise PayloadError("unmatched end group")
        else:
            raise PayloadError(f"wire type {wire}")
        if pos > len(data):
            raise PayloadError("truncated field")
    if groups:
        raise PayloadError("unterminated group")


def _proto_schema(index: SchemaIndex, entry: SchemaEntry, depth: int = 0) -> Any:
    """The registry's parsed form of a Protobuf schema, its imports resolved through the index."""
    from riverbed.registry.formats import protobuf

    if "proto_schema" not in entry.cache:
        if depth > 32:
            raise PayloadError("cannot validate: references nested too deep")
        imports = {}
        for name, subject, version in entry.references:
            ref = index.reference(subject, version)
            if ref is None:
                raise PayloadError(f"cannot validate: reference {name} ({subject} version {version}) is not in _schemas")
            imports[name] = _proto_schema(index, ref, depth + 1)
        try:
            entry.cache["proto_schema"] = protobuf.parse(entry.schema, imports)
        except Exception as exc:  # any failure to build it is the same verdict
            raise PayloadError(f"cannot validate: {exc}") from None
    return entry.cache["proto_schema"]


def _proto_class(index: SchemaIndex, entry: SchemaEntry, name: str) -> Any:
    """A message class for `name` (package.Outer.Inner), built once per schema id."""
    classes = entry.cache.setdefault("proto_classes", {})
    if name not in classes:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        schema = _proto_schema(index, entry)
        pool = descriptor_pool.DescriptorPool()
        pending = []
        for path, built in schema.deps.items():
            f = descriptor_pb2.FileDescriptorProto()
            f.CopyFrom(built)
            f.name = path
            pending.append(f)
        own = descriptor_pb2.FileDescriptorProto()
        own.CopyFrom(schema.file)
        pending.append(own)
        while pending:  # dependencies first, in whatever order they came
            added = [f for f in pending if all(_in_pool(pool, dep) for dep in f.dependency)]
            if not added:
                raise PayloadError("cannot validate: the schema's imports do not resolve")
            for f in added:
                pool.Add(f)
                pending.remove(f)
        try:
            classes[name] = message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
        except KeyError:
            raise PayloadError(f"cannot validate: no message {name}") from None
    return classes[name]


def _in_pool(pool: Any, path: str) -> bool:
    try:
        pool.FindFileByName(path)
        return True
    except KeyError:
        return False


def _check_protobuf(index: SchemaIndex, entry: SchemaEntry, name: str, payload: memoryview) -> None:
    """``full`` for Protobuf: the payload parses as message `name` (wire types, lengths, nested
    messages, UTF-8 of proto3 strings), and carries no field the schema does not declare (nor a
    declared field with another wire type, which a parser keeps as unknown)."""
    from google.protobuf.message import DecodeError
    from google.protobuf.unknown_fields import UnknownFieldSet

    cls = _proto_class(index, entry, name)
    msg = cls()
    try:
        msg.ParseFromString(bytes(payload))
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise PayloadError(f"does not parse as {name}: {exc}") from None

    def no_unknown(m: Any, depth: int) -> None:
        if len(UnknownFieldSet(m)):
            raise PayloadError(f"has fields that {name} does not declare")
        if depth > 64:
            return
        for fd, value in m.ListFields():
            if fd.message_type is None or fd.message_type.GetOptions().map_entry:
                continue
            repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED  # protobuf 7 / 5
            for sub in (value if repeated else [value]):
                no_unknown(sub, depth + 1)

    no_unknown(msg, 0)


# --------------------------------------------------------------------------- Avro


def _avro_schema(index: SchemaIndex, entry: SchemaEntry) -> tuple[Any, dict[str, Any]]:
    cached = entry.cache.get("avro")
    if cached is None:
        import fastavro

        named: dict[str, Any] = {}
        try:
            for ref in _references(index, entry):
                fastavro.parse_schema(json.loads(ref.schema), named_schemas=named)
            parsed = fastavro.parse_schema(json.loads(entry.schema), named_schemas=named)
        except PayloadError:
            raise
        except Exception as exc:  # fastavro raises a variety (SchemaParseException, ValueError, ...)
            raise PayloadError(f"the schema does not parse: {exc}") from None
        cached = entry.cache["avro"] = (parsed, named)
    return cached


def _references(index: SchemaIndex, entry: SchemaEntry) -> list[SchemaEntry]:
    """The schemas ``entry`` references, transitively, dependencies first."""
    out: list[SchemaEntry] = []
    seen: set[int] = {entry.schema_id}

    def visit(e: SchemaEntry, depth: int) -> None:
        if depth > _MAX_DEPTH or len(out) > _MAX_REFERENCES:
            raise PayloadError("references nest too deep")
        for name, subject, version in e.references:
            ref = index.reference(subject, version)
            if ref is None:
                raise PayloadError(f"reference {name} ({subject} version {version}) is not registered")
            if ref.schema_id in seen:
                continue
            seen.add(ref.schema_id)
            visit(ref, depth + 1)
            out.append(ref)

    visit(entry, 0)
    return out


class _State:
    """What a hostile payload could otherwise run up: items visited (bounds arrays and maps
    of zero-width items, which cost no bytes) and the nesting of recursive types."""

    __slots__ = ("budget", "depth")

    def __init__(self, size: int) -> None:
        self.budget = 16 * size + 1024
        self.depth = 0


Reader = Callable[[Any, int, _State], int]


def _take(data: Any, pos: int, n: int) -> int:
    if n < 0 or pos + n > len(data):
        raise PayloadError("truncated")
    return pos + n


def _read_null(data: Any, pos: int, st: _State) -> int:
    return pos


def _read_boolean(data: Any, pos: int, st: _State) -> int:
    if pos >= len(data) or data[pos] > 1:
        raise PayloadError("bad boolean")
    return pos + 1


def _read_int(data: Any, pos: int, st: _State) -> int:
    value, pos = _zigzag(data, pos, 5)
    if not -(2**31) <= value < 2**31:
        raise PayloadError("int out of range")
    return pos


def _read_long(data: Any, pos: int, st: _State) -> int:
    return _zigzag(data, pos, 10)[1]


def _read_float(data: Any, pos: int, st: _State) -> int:
    return _take(data, pos, 4)


def _read_double(data: Any, pos: int, st: _State) -> int:
    return _take(data, pos, 8)


def _read_bytes(data: Any, pos: int, st: _State) -> int:
    size, pos = _zigzag(data, pos)
    return _take(data, pos, size)


def _read_string(data: Any, pos: int, st: _State) -> int:
    size, pos = _zigzag(data, pos)
    end = _take(data, pos, size)
    try:
        str(data[pos:end], "utf-8")
    except UnicodeDecodeError:
        raise PayloadError("string is not UTF-8") from None
    return end


_PRIMITIVES: dict[str, Reader] = {
    "null": _read_null,
    "boolean": _read_boolean,
    "int": _read_int,
    "long": _read_long,
    "float": _read_float,
    "double": _read_double,
    "bytes": _read_bytes,
    "string": _read_string,
}


def _compile(schema: Any, named: dict[str, Any], done: dict[str, Reader]) -> Reader:
    """A reader for a fastavro-parsed schema: reader(data, pos, state) -> the position after
    one datum, or PayloadError."""
    if isinstance(schema, str):
        primitive = _PRIMITIVES.get(schema)
        if primitive is not None:
            return primitive
        if schema not in done:  # a named type: through a cell, so recursive types terminate
            target = named.get(schema)
            if target is None:
                raise PayloadError(f"unknown type {schema}")
            cell: list[Reader] = []

            def named_ref(data: Any, pos: int, st: _State) -> int:
                st.depth += 1
                if st.depth > _MAX_DEPTH:
                    raise PayloadError("nested too deep")
                pos = cell[0](data, pos, st)
                st.depth -= 1
                return pos

            done[schema] = named_ref
            cell.append(_compile(target, named, done))
        return done[schema]
    if isinstance(schema, list):
        branches = [_compile(b, named, done) for b in schema]
        n = len(branches)

        def union(data: Any, pos: int, st: _State) -> int:
            branch, pos = _zigzag(data, pos)
            if not 0 <= branch < n:
                raise PayloadError(f"union branch {branch} out of range")
            return branches[branch](data, pos, st)

        return union
    t = schema["type"]
    if t in ("record", "error"):
        fields = [_compile(f["type"], named, done) for f in schema["fields"]]

        def record(data: Any, pos: int, st: _State) -> int:
            for f in fields:
                pos = f(data, pos, st)
            return pos

        return record
    if t == "enum":
        symbols = len(schema["symbols"])

        def enum(data: Any, pos: int, st: _State) -> int:
            symbol, pos = _zigzag(data, pos)
            if not 0 <= symbol < symbols:
                raise PayloadError(f"enum index {symbol} out of range")
            return pos

        return enum
    if t == "fixed":
        size = int(schema["size"])
        return lambda data, pos, st: _take(data, pos, size)
    if t in ("array", "map"):
        item = _compile(schema["values"] if t == "map" else schema["items"], named, done)
        is_map = t == "map"

        def blocks(data: Any, pos: int, st: _State) -> int:
            while True:
                count, pos = _zigzag(data, pos)
                if count == 0:
                    return pos
                if count < 0:
                    count = -count
                    _, pos = _zigzag(data, pos)  # the block's size in bytes
                st.budget -= count
                if st.budget < 0:
                    raise PayloadError("too many items for the payload's size")
                for _ in range(count):
                    if is_map:
                        pos = _read_string(data, pos, st)
                    pos = item(data, pos, st)

        return blocks
    return _compile(t, named, done)  # a primitive with a logicalType


def _check_avro(index: SchemaIndex, entry: SchemaEntry, payload: memoryview) -> None:
    reader = entry.cache.get("avro_reader")
    if reader is None:
        parsed, named = _avro_schema(index, entry)
        reader = entry.cache["avro_reader"] = _compile(parsed, named, {})
    end = reader(payload, 0, _State(len(payload)))
    if end != len(payload):
        raise PayloadError(f"{len(payload) - end} bytes left over after the Avro datum")



# --------------------------------------------------------------------------- JSON Schema


def _json_validator(index: SchemaIndex, entry: SchemaEntry) -> Any:
    validator = entry.cache.get("json")
    if validator is None:
        from jsonschema import Draft7Validator
        from jsonschema.exceptions import SchemaError
        from jsonschema.validators import validator_for
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT7

        try:
            doc = json.loads(entry.schema)
            resources = [(name, Resource.from_contents(json.loads(ref.schema), default_specification=DRAFT7)) for ref, name in _json_references(index, entry)]
            cls = validator_for(doc, default=Draft7Validator)
            validator = cls(doc, registry=Registry().with_resources(resources))
        except (ValueError, SchemaError) as exc:
            raise PayloadError(f"the schema does not parse: {exc}") from None
        entry.cache["json"] = validator
    return validator


def _json_references(index: SchemaIndex, entry: SchemaEntry) -> list[tuple[SchemaEntry, str]]:
    by_id = {e.schema_id: e for e in _references(index, entry)}
    out = []
    for e in [entry, *by_id.values()]:
        for name, subject, version in e.references:
            ref = index.reference(subject, version)
            if ref is not None:
                out.append((ref, name))
    return out


def _check_json(index: SchemaIndex, entry: SchemaEntry, payload: memoryview) -> None:
    validator = _json_validator(index, entry)
    try:
        instance = json.loads(bytes(payload))
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    try:
        error = next(iter(validator.iter_errors(instance)), None)
    except Exception as exc:  # an unresolvable $ref and the like
        raise PayloadError(f"cannot validate: {exc}") from None
    if error is not None:
        raise PayloadError(error.message[:200])


def check_payload(index: SchemaIndex, entry: SchemaEntry, indexes: list[int], payload: memoryview) -> None:
    """Raise PayloadError when ``payload`` (after the id and any message indexes) does not
    decode with ``entry``'s schema. A failure of the check itself (a bug, a schema the checker
    cannot build) refuses the record too, with an ERROR line, rather than fail the request."""
    try:
        _check_payload_of(index, entry, indexes, payload)
    except PayloadError:
        raise
    except Exception as exc:  # never let a checker bug take the connection down
        log.exception("checking a payload against schema id %d failed", entry.schema_id)
        raise PayloadError(f"cannot validate: {type(exc).__name__}") from None


def _check_payload_of(index: SchemaIndex, entry: SchemaEntry, indexes: list[int], payload: memoryview) -> None:
    if entry.schema_type == "AVRO":
        _check_avro(index, entry, payload)
    elif entry.schema_type == "JSON":
        _check_json(index, entry, payload)
    elif entry.schema_type == "PROTOBUF":
        name = proto_message_name(entry, indexes)
        if name is None:
            raise PayloadError(f"message indexes {indexes} name no message of the schema")
        _check_protobuf_wire(payload)
        _check_protobuf(index, entry, name, payload)
    else:
        raise PayloadError(f"unknown schema type {entry.schema_type}")
