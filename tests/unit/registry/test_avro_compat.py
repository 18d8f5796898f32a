"""Avro compatibility, table-driven from the evolutions Confluent documents per level
(docs.confluent.io, "Schema Evolution and Compatibility": what each level allows, in what
order clients upgrade) and Avro's schema-resolution rules (promotions, enums, unions)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from riverbed.registry.formats import avro
from riverbed.registry.state import State, Version


def rec(*fields: dict[str, Any], name: str = "OrderEvent") -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "shop", "fields": list(fields)})


A = {"name": "orderId", "type": "string"}
B_OPT = {"name": "amount", "type": "double", "default": 0.0}
B_REQ = {"name": "amount", "type": "double"}
C_OPT = {"name": "note", "type": ["null", "string"], "default": None}


def compatible(level: str, history: list[str], new: str) -> bool:
    state = State()
    rows = [Version("s", i + 1, i + 1, text) for i, text in enumerate(history)]
    return not state.incompatibilities("s", avro.parse(new), level, rows)


# (level, old schema, new schema, compatible?) for one step of evolution
STEPS = [
    # BACKWARD: consumers upgrade first; the new schema reads old data
    ("BACKWARD", rec(A, B_REQ), rec(A), True),  # delete a field
    ("BACKWARD", rec(A), rec(A, B_OPT), True),  # add an optional field
    ("BACKWARD", rec(A), rec(A, B_REQ), False),  # add a field with no default
    # FORWARD: producers upgrade first; the old schema reads new data
    ("FORWARD", rec(A), rec(A, B_REQ), True),  # add a field
    ("FORWARD", rec(A, B_OPT), rec(A), True),  # delete an optional field
    ("FORWARD", rec(A, B_REQ), rec(A), False),  # delete a field with no default
    # FULL: both directions
    ("FULL", rec(A), rec(A, B_OPT), True),
    ("FULL", rec(A, B_OPT), rec(A), True),
    ("FULL", rec(A), rec(A, B_REQ), False),
    ("FULL", rec(A, B_REQ), rec(A), False),
    # NONE: anything that parses
    ("NONE", rec(A), rec({"name": "orderId", "type": "int"}), True),
    # promotions: int -> long reads old ints (BACKWARD); long -> int cannot
    ("BACKWARD", rec({"name": "n", "type": "int"}), rec({"name": "n", "type": "long"}), True),
    ("BACKWARD", rec({"name": "n", "type": "long"}), rec({"name": "n", "type": "int"}), False),
    ("BACKWARD", rec({"name": "n", "type": "float"}), rec({"name": "n", "type": "double"}), True),
    ("BACKWARD", rec({"name": "n", "type": "string"}), rec({"name": "n", "type": "bytes"}), True),
    ("BACKWARD", rec({"name": "n", "type": "string"}), rec({"name": "n", "type": "int"}), False),
    # enums: a new symbol is readable by the new schema, not by the old one (unless it has a default)
    ("BACKWARD", rec({"name": "e", "type": {"type": "enum", "name": "S", "symbols": ["A"]}}), rec({"name": "e", "type": {"type": "enum", "name": "S", "symbols": ["A", "B"]}}), True),
    ("FORWARD", rec({"name": "e", "type": {"type": "enum", "name": "S", "symbols": ["A"]}}), rec({"name": "e", "type": {"type": "enum", "name": "S", "symbols": ["A", "B"]}}), False),
    ("FORWARD", rec({"name": "e", "type": {"type": "enum", "name": "S", "symbols": ["A", "X"], "default": "X"}}), rec({"name": "e", "type": {"type": "enum", "name": "S", "symbols": ["A", "B", "X"], "default": "X"}}), True),
    # unions: adding a branch is backward compatible, removing one is not
    ("BACKWARD", rec({"name": "u", "type": ["null", "string"]}), rec({"name": "u", "type": ["null", "string", "int"]}), True),
    ("BACKWARD", rec({"name": "u", "type": ["null", "string", "int"]}), rec({"name": "u", "type": ["null", "string"]}), False),
    # a type widened into a union reads the old values
    ("BACKWARD", rec({"name": "u", "type": "string"}), rec({"name": "u", "type": ["null", "string"]}), True),
    ("FORWARD", rec({"name": "u", "type": "string"}), rec({"name": "u", "type": ["null", "string"]}), False),
    # records are matched by full name, or by an alias of the reader
    ("BACKWARD", rec(A), rec(A, name="Renamed"), False),
    ("BACKWARD", rec(A), json.dumps({"type": "record", "name": "Renamed", "namespace": "shop", "aliases": ["OrderEvent"], "fields": [A]}), True),
    # field renamed with an alias on the reader
    ("BACKWARD", rec(A), rec({"name": "id", "aliases": ["orderId"], "type": "string"}), True),
    # fixed sizes must match
    ("BACKWARD", rec({"name": "f", "type": {"type": "fixed", "name": "F", "size": 4}}), rec({"name": "f", "type": {"type": "fixed", "name": "F", "size": 8}}), False),
    # nested: arrays and maps compare their items and values
    ("BACKWARD", rec({"name": "xs", "type": {"type": "array", "items": "int"}}), rec({"name": "xs", "type": {"type": "array", "items": "long"}}), True),
    ("BACKWARD", rec({"name": "xs", "type": {"type": "map", "values": "long"}}), rec({"name": "xs", "type": {"type": "map", "values": "int"}}), False),
]


@pytest.mark.parametrize(("level", "old", "new", "ok"), STEPS)
def test_one_step(level: str, old: str, new: str, ok: bool) -> None:
    assert compatible(level, [old], new) is ok


def test_transitive_levels_check_every_earlier_version() -> None:
    v1 = rec(A)
    v2 = rec(A, B_OPT)
    v3 = rec(A, B_REQ)  # reads v2 (amount present) but not v1
    assert compatible("BACKWARD", [v1, v2], v3)
    assert not compatible("BACKWARD_TRANSITIVE", [v1, v2], v3)
    # FORWARD_TRANSITIVE: v1 must read v3's data too
    w1 = rec(A, B_REQ)
    w2 = rec(A, B_REQ, C_OPT)
    w3 = rec(A, C_OPT)  # w2 reads it (amount missing? no: w2 needs amount) -> not even FORWARD
    assert not compatible("FORWARD", [w1, w2], w3)
    x1 = rec(A, B_OPT)
    x2 = rec(A, B_OPT, C_OPT)
    x3 = rec(A, C_OPT)  # x2 reads it (amount has a default); so does x1
    assert compatible("FORWARD_TRANSITIVE", [x1, x2], x3)
    assert not compatible("FULL_TRANSITIVE", [rec(A), rec(A, B_OPT)], rec(B_REQ, A))


def test_recursive_types_terminate() -> None:
    node = {"type": "record", "name": "Node", "fields": [{"name": "v", "type": "int"}, {"name": "next", "type": ["null", "Node"], "default": None}]}
    node2 = {**node, "fields": [*node["fields"], {"name": "w", "type": "int", "default": 0}]}
    assert compatible("FULL", [json.dumps(node)], json.dumps(node2))


def test_messages_name_the_field_and_path() -> None:
    found = State().incompatibilities("s", avro.parse(rec(A, B_REQ)), "BACKWARD", [Version("s", 1, 1, rec(A))])
    assert any("READER_FIELD_MISSING_DEFAULT_VALUE" in m and "'amount'" in m and "/fields/1" in m for m in found)
    assert "{oldSchemaVersion: 1}" in found
    assert "{compatibility: 'BACKWARD'}" in found


def test_invalid_schemas_refused() -> None:
    for bad in ('{"type": "record", "name": "X"}', '{"type": "nope"}', "not json", '{"type":"record","name":"X","fields":[{"name":"a","type":"Missing"}]}'):
        with pytest.raises(avro.InvalidSchema):
            avro.parse(bad)


def test_canonical_ignores_whitespace_normalized_ignores_doc_and_order() -> None:
    a = avro.parse('{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}')
    b = avro.parse('{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}')
    c = avro.parse('{"fields":[{"type":{"type":"int"},"name":"a","doc":"x"}],"name":"R","type":"record","doc":"y"}')
    assert a.canonical() == b.canonical() != c.canonical()
    assert a.normalized() == c.normalized()
    # the normalized form keeps what changes reading: a default
    d = avro.parse('{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":1}]}')
    assert d.normalized() != a.normalized()
