"""Protobuf compatibility, table-driven from the differences Confluent documents for Protobuf
schemas (its compatible set: messages/enums/fields/oneofs added or removed, field renamed,
message moved, enum constants changed; incompatible: package changed, message removed, field
kind / scalar group / named type changed, required fields added or removed, oneof field
removed, several fields moved into one oneof, a field moved into an existing oneof) and the
wire-compatible scalar groups of the Protobuf language guide ("Updating a message type")."""

from __future__ import annotations

import pytest

from riverbed.registry.formats import protobuf, protobuf_compat
from riverbed.registry.state import State, Version


def p3(body: str, package: str = "shop") -> str:
    return f'syntax = "proto3";\npackage {package};\n{body}\n'


def p2(body: str) -> str:
    return f'syntax = "proto2";\npackage shop;\n{body}\n'


def compatible(level: str, history: list[str], new: str) -> bool:
    state = State()
    rows = [Version("s", i + 1, i + 1, text, "PROTOBUF") for i, text in enumerate(history)]
    return not state.incompatibilities("s", protobuf.parse(new), level, rows)


def kinds(old: str, new: str) -> set[str]:
    return {k for k, _ in protobuf_compat.differences(protobuf.parse(old), protobuf.parse(new))}


BASE = p3("message Order { string id = 1; int32 qty = 2; }")

# (level, old, new, compatible?)
STEPS = [
    # fields are matched by number: adding and removing are compatible both ways (proto3 has no required)
    ("BACKWARD", BASE, p3("message Order { string id = 1; int32 qty = 2; string note = 3; }"), True),
    ("FORWARD", BASE, p3("message Order { string id = 1; int32 qty = 2; string note = 3; }"), True),
    ("FULL", BASE, p3("message Order { string id = 1; }"), True),
    # renaming a field keeps its number: compatible
    ("FULL", BASE, p3("message Order { string order_id = 1; int32 qty = 2; }"), True),
    # wire-compatible scalar groups
    ("FULL", BASE, p3("message Order { string id = 1; int64 qty = 2; }"), True),
    ("FULL", BASE, p3("message Order { string id = 1; uint64 qty = 2; }"), True),
    ("FULL", BASE, p3("message Order { string id = 1; bool qty = 2; }"), True),
    ("FULL", BASE, p3("message Order { bytes id = 1; int32 qty = 2; }"), True),
    ("FULL", p3("message M { sint32 a = 1; fixed32 b = 2; fixed64 c = 3; }"), p3("message M { sint64 a = 1; sfixed32 b = 2; sfixed64 c = 3; }"), True),
    ("FULL", BASE, p3("enum Q { ZERO = 0; } message Order { string id = 1; Q qty = 2; }"), True),  # enum is a varint
    # not wire-compatible
    ("BACKWARD", BASE, p3("message Order { string id = 1; sint32 qty = 2; }"), False),
    ("BACKWARD", BASE, p3("message Order { string id = 1; string qty = 2; }"), False),
    ("BACKWARD", BASE, p3("message Order { string id = 1; fixed32 qty = 2; }"), False),
    ("BACKWARD", p3("message M { float a = 1; }"), p3("message M { double a = 1; }"), False),
    ("FORWARD", BASE, p3("message Order { string id = 1; double qty = 2; }"), False),
    # kind: scalar <-> message <-> map
    ("BACKWARD", BASE, p3("message Q { int32 n = 1; } message Order { string id = 1; Q qty = 2; }"), False),
    ("BACKWARD", BASE, p3("message Order { string id = 1; map<string, int32> qty = 2; }"), False),
    ("BACKWARD", p3("message Order { map<string, int32> m = 1; }"), p3("message Order { map<string, int64> m = 1; }"), True),
    ("BACKWARD", p3("message Order { map<string, int32> m = 1; }"), p3("message Order { map<string, string> m = 1; }"), False),
    # message types: by name within the package, then compared field by field
    ("BACKWARD", p3("message A { int32 n = 1; } message Order { A a = 1; }"), p3("message A { int32 n = 1; } message B { int32 n = 1; } message Order { B a = 1; }"), False),
    ("BACKWARD", p3("message A { int32 n = 1; } message Order { A a = 1; }"), p3("message A { int32 n = 1; string s = 2; } message Order { A a = 1; }"), True),
    ("BACKWARD", p3("message A { int32 n = 1; } message Order { A a = 1; }"), p3("message A { string n = 1; } message Order { A a = 1; }"), False),
    # messages: removing one is incompatible, adding or reordering is not
    ("BACKWARD", p3("message A { int32 n = 1; } message B { int32 n = 1; }"), p3("message A { int32 n = 1; }"), False),
    ("FORWARD", p3("message A { int32 n = 1; }"), p3("message A { int32 n = 1; } message B { int32 n = 1; }"), False),  # the old lacks B
    ("BACKWARD", p3("message A { int32 n = 1; }"), p3("message A { int32 n = 1; } message B { int32 n = 1; }"), True),
    ("FULL", p3("message A { int32 n = 1; } message B { int32 n = 1; }"), p3("message B { int32 n = 1; } message A { int32 n = 1; }"), True),
    # nested messages are compared too
    ("BACKWARD", p3("message A { message In { int32 n = 1; } In i = 1; }"), p3("message A { message In { string n = 1; } In i = 1; }"), False),
    # package
    ("BACKWARD", BASE, p3("message Order { string id = 1; int32 qty = 2; }", package="store"), False),
    # enums: constants added, removed, renamed, and whole enums added or removed are compatible
    ("FULL", p3("enum S { A = 0; B = 1; } message M { S s = 1; }"), p3("enum S { A = 0; C = 1; D = 2; } message M { S s = 1; }"), True),
    ("FULL", p3("enum S { A = 0; } message M { int32 n = 1; }"), p3("message M { int32 n = 1; }"), True),
    # proto2 required fields
    ("BACKWARD", p2("message M { optional int32 a = 1; }"), p2("message M { optional int32 a = 1; required int32 b = 2; }"), False),
    ("BACKWARD", p2("message M { optional int32 a = 1; required int32 b = 2; }"), p2("message M { optional int32 a = 1; }"), False),
    ("BACKWARD", p2("message M { optional int32 a = 1; }"), p2("message M { optional int32 a = 1; optional int32 b = 2; }"), True),
    # oneofs
    ("BACKWARD", p3("message M { oneof o { int32 a = 1; string b = 2; } }"), p3("message M { oneof o { int32 a = 1; } }"), False),
    ("BACKWARD", p3("message M { oneof o { int32 a = 1; } }"), p3("message M { oneof o { int32 a = 1; string b = 2; } }"), True),
    ("FORWARD", p3("message M { oneof o { int32 a = 1; } }"), p3("message M { oneof o { int32 a = 1; string b = 2; } }"), False),
    ("BACKWARD", p3("message M { int32 a = 1; }"), p3("message M { oneof o { int32 a = 1; } }"), True),  # one field into a new oneof
    ("BACKWARD", p3("message M { int32 a = 1; string b = 2; }"), p3("message M { oneof o { int32 a = 1; string b = 2; } }"), False),
    ("BACKWARD", p3("message M { int32 a = 1; oneof o { string b = 2; } }"), p3("message M { oneof o { int32 a = 1; string b = 2; } }"), False),
    ("BACKWARD", p3("message M { oneof o { int32 a = 1; string b = 2; } }"), p3("message M { int32 a = 1; oneof o { string b = 2; } }"), True),  # moved out
    ("BACKWARD", p3("message M { oneof o { int32 a = 1; } }"), p3("message M { oneof o { string a = 1; } }"), False),
    # proto3 `optional` is a plain field to these rules
    ("FULL", p3("message M { int32 a = 1; }"), p3("message M { optional int32 a = 1; }"), True),
    # NONE: anything that parses
    ("NONE", BASE, p3("message Other { bytes x = 1; }", package="elsewhere"), True),
]


@pytest.mark.parametrize(("level", "old", "new", "ok"), STEPS)
def test_one_step(level: str, old: str, new: str, ok: bool) -> None:
    assert compatible(level, [old], new) is ok


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        (BASE, p3("message Order { string id = 1; }"), "FIELD_REMOVED"),
        (BASE, p3("message Order { string id = 1; int32 qty = 2; int32 x = 3; }"), "FIELD_ADDED"),
        (BASE, p3("message Order { string ident = 1; int32 qty = 2; }"), "FIELD_NAME_CHANGED"),
        (BASE, p3("message Order { string id = 1; string qty = 2; }"), "FIELD_SCALAR_KIND_CHANGED"),
        (BASE, p3("message X { int32 n = 1; } message Order { string id = 1; X qty = 2; }"), "FIELD_KIND_CHANGED"),
        (BASE, p3("message Order { string id = 1; int32 qty = 2; }", package="x"), "PACKAGE_CHANGED"),
        (p3("message A { int32 n = 1; } message B { int32 n = 1; }"), p3("message A { int32 n = 1; }"), "MESSAGE_REMOVED"),
        (p3("message A { int32 n = 1; } message B { int32 n = 1; }"), p3("message B { int32 n = 1; } message A { int32 n = 1; }"), "MESSAGE_MOVED"),
        (p3("message A { int32 n = 1; } message O { A a = 1; }"), p3("message A { int32 n = 1; } message B { int32 n = 1; } message O { B a = 1; }"), "FIELD_NAMED_TYPE_CHANGED"),
        (p3("enum S { A = 0; }"), p3("enum S { A = 0; B = 1; }"), "ENUM_CONST_ADDED"),
        (p3("enum S { A = 0; B = 1; }"), p3("enum S { A = 0; }"), "ENUM_CONST_REMOVED"),
        (p3("enum S { A = 0; }"), p3("enum S { Z = 0; }"), "ENUM_CONST_CHANGED"),
        (p3("message M { int32 a = 1; }"), p3("message M { oneof o { int32 a = 1; } }"), "ONEOF_ADDED"),
        (p3("message M { oneof o { int32 a = 1; } }"), p3("message M { int32 a = 1; }"), "ONEOF_REMOVED"),
        (p3("message M { oneof o { int32 a = 1; string b = 2; } }"), p3("message M { oneof o { int32 a = 1; } }"), "ONEOF_FIELD_REMOVED"),
        (p3("message M { int32 a = 1; string b = 2; }"), p3("message M { oneof o { int32 a = 1; string b = 2; } }"), "MULTIPLE_FIELDS_MOVED_TO_ONEOF"),
        (p3("message M { int32 a = 1; oneof o { string b = 2; } }"), p3("message M { oneof o { int32 a = 1; string b = 2; } }"), "FIELD_MOVED_TO_EXISTING_ONEOF"),
        (p2("message M { optional int32 a = 1; }"), p2("message M { optional int32 a = 1; required int32 b = 2; }"), "REQUIRED_FIELD_ADDED"),
        (p2("message M { required int32 a = 1; }"), p2("message M { }"), "REQUIRED_FIELD_REMOVED"),
    ],
)
def test_differences_are_named_as_confluent_names_them(old: str, new: str, kind: str) -> None:
    assert kind in kinds(old, new)


def test_recursive_message_types_terminate() -> None:
    old = p3("message Node { string v = 1; repeated Node kids = 2; }")
    new = p3("message Node { string v = 1; repeated Node kids = 2; int32 depth = 3; }")
    assert compatible("FULL", [old], new)
    assert not compatible("BACKWARD", [old], p3("message Node { int32 v = 1; repeated Node kids = 2; }"))


def test_transitive_checks_every_version() -> None:
    v1 = p3("message M { int32 a = 1; }")
    v2 = p3("message M { }")
    v3 = p3("message M { string a = 1; }")  # number 1 comes back with another wire type
    assert compatible("BACKWARD", [v1, v2], v3)
    assert not compatible("BACKWARD_TRANSITIVE", [v1, v2], v3)


def test_verbose_reasons_name_the_difference() -> None:
    state = State()
    rows = [Version("s", 1, 1, BASE, "PROTOBUF")]
    problems = state.incompatibilities("s", protobuf.parse(p3("message Order { string id = 1; string qty = 2; }")), "BACKWARD", rows)
    assert any("FIELD_SCALAR_KIND_CHANGED" in p and "#/Order/2" in p for p in problems)
