"""JSON Schema compatibility, table-driven from the differences Confluent documents for JSON
Schema ("Schema Evolution and Compatibility" for JSON Schema: open, closed and partially open
content models; which differences each level accepts)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from riverbed.registry import errors
from riverbed.registry.formats import jsonschema as js
from riverbed.registry.state import State, Version

OPEN = {"type": "object", "properties": {"id": {"type": "string"}}}
CLOSED = {**OPEN, "additionalProperties": False}
PARTIAL = {**OPEN, "additionalProperties": {"type": "string"}}


def obj(base: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {**base, "properties": {**base["properties"], **props}}


def backward(old: Any, new: Any) -> bool:
    """Can the new schema read everything the old one accepted (Confluent's BACKWARD)."""
    return not js.incompatibilities(js.parse(json.dumps(old)), js.parse(json.dumps(new)))


# (old, new, BACKWARD compatible?)
CASES = [
    # types
    ({"type": "integer"}, {"type": "number"}, True),  # TYPE_EXTENDED
    ({"type": "number"}, {"type": "integer"}, False),  # TYPE_NARROWED
    ({"type": "string"}, {"type": ["string", "null"]}, True),
    ({"type": ["string", "null"]}, {"type": "string"}, False),
    ({"type": "string"}, {"type": "boolean"}, False),  # TYPE_CHANGED
    ({}, {"type": "string"}, False),
    ({"type": "string"}, {}, True),
    # open content model: a new property with a schema may refuse old data that had it
    (OPEN, obj(OPEN, name={"type": "string"}), False),  # PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL
    (OPEN, obj(OPEN, name={}), True),  # PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL
    (obj(OPEN, name={"type": "string"}), OPEN, True),  # PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL
    # closed content model
    (CLOSED, obj(CLOSED, name={"type": "string"}), True),  # OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL
    (CLOSED, {**obj(CLOSED, name={"type": "string"}), "required": ["name"]}, False),  # REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL
    (CLOSED, {**obj(CLOSED, name={"type": "string", "default": "x"}), "required": ["name"]}, True),  # ... WITH_DEFAULT
    (obj(CLOSED, name={"type": "string"}), CLOSED, False),  # PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL
    # partially open content model
    (PARTIAL, obj(PARTIAL, name={"type": "string"}), True),  # covered
    (PARTIAL, obj(PARTIAL, name={"type": "integer"}), False),  # not covered
    (obj(PARTIAL, name={"type": "string"}), PARTIAL, True),  # removed, covered
    (obj(PARTIAL, name={"type": "integer"}), PARTIAL, False),  # removed, not covered
    # additionalProperties itself
    (CLOSED, OPEN, True),  # ADDITIONAL_PROPERTIES_ADDED
    (OPEN, CLOSED, False),  # ADDITIONAL_PROPERTIES_REMOVED
    (PARTIAL, {**OPEN, "additionalProperties": {"type": ["string", "null"]}}, True),  # EXTENDED
    ({**OPEN, "additionalProperties": {"type": ["string", "null"]}}, PARTIAL, False),  # NARROWED
    # required
    ({**OPEN, "required": ["id"]}, OPEN, True),  # REQUIRED_ATTRIBUTE_REMOVED
    (OPEN, {**OPEN, "required": ["id"]}, False),  # REQUIRED_ATTRIBUTE_ADDED
    # bounds
    ({"type": "string", "maxLength": 5}, {"type": "string", "maxLength": 10}, True),
    ({"type": "string", "maxLength": 10}, {"type": "string", "maxLength": 5}, False),
    ({"type": "string"}, {"type": "string", "maxLength": 5}, False),
    ({"type": "string", "maxLength": 5}, {"type": "string"}, True),
    ({"type": "string", "minLength": 5}, {"type": "string", "minLength": 1}, True),
    ({"type": "string", "minLength": 1}, {"type": "string", "minLength": 5}, False),
    ({"type": "number", "maximum": 5}, {"type": "number", "maximum": 9}, True),
    ({"type": "number", "minimum": 5}, {"type": "number", "minimum": 9}, False),
    ({"type": "array", "maxItems": 3}, {"type": "array", "maxItems": 2}, False),
    ({"type": "string", "pattern": "^a"}, {"type": "string"}, True),
    ({"type": "string"}, {"type": "string", "pattern": "^a"}, False),
    ({"type": "number", "multipleOf": 4}, {"type": "number", "multipleOf": 2}, True),  # MULTIPLE_OF_REDUCED
    ({"type": "number", "multipleOf": 2}, {"type": "number", "multipleOf": 4}, False),
    # enums
    ({"enum": ["a", "b"]}, {"enum": ["a", "b", "c"]}, True),
    ({"enum": ["a", "b"]}, {"enum": ["a"]}, False),
    # arrays recurse into items
    ({"type": "array", "items": {"type": "integer"}}, {"type": "array", "items": {"type": "number"}}, True),
    ({"type": "array", "items": {"type": "number"}}, {"type": "array", "items": {"type": "integer"}}, False),
    # sums and products
    ({"oneOf": [{"type": "string"}]}, {"oneOf": [{"type": "string"}, {"type": "integer"}]}, True),  # SUM_TYPE_EXTENDED
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, {"oneOf": [{"type": "string"}]}, False),
    ({"allOf": [{"type": "string"}, {"maxLength": 3}]}, {"allOf": [{"type": "string"}]}, True),  # PRODUCT_TYPE_NARROWED
    # local $ref
    ({"$defs": {"n": {"type": "integer"}}, "$ref": "#/$defs/n"}, {"$defs": {"n": {"type": "number"}}, "$ref": "#/$defs/n"}, True),
    ({"$defs": {"n": {"type": "number"}}, "$ref": "#/$defs/n"}, {"$defs": {"n": {"type": "integer"}}, "$ref": "#/$defs/n"}, False),
]


@pytest.mark.parametrize(("old", "new", "ok"), CASES)
def test_backward(old: Any, new: Any, ok: bool) -> None:
    assert backward(old, new) is ok


@pytest.mark.parametrize(("old", "new", "ok"), CASES)
def test_forward_is_backward_reversed_and_full_needs_both(old: Any, new: Any, ok: bool) -> None:
    rows = [Version("s", 1, 1, json.dumps(old), "JSON")]
    new_parsed = js.parse(json.dumps(new))
    forward = not State().incompatibilities("s", new_parsed, "FORWARD", rows)
    assert forward is backward(new, old)
    full = not State().incompatibilities("s", new_parsed, "FULL", rows)
    assert full is (ok and forward)


def test_invalid_json_schemas_refused() -> None:
    for bad in ('{"type": 5}', '{"minLength": -1}', "[1]", "nope", '{"$schema": "http://json-schema.org/draft-07/schema#", "type": "strin"}'):
        with pytest.raises(js.InvalidSchema):
            js.parse(bad)


def test_state_registers_json_and_refuses_unknown_types() -> None:
    state = State()
    row, records = state.plan_register("j", "JSON", json.dumps(OPEN), (), False)
    assert row.schema_type == "JSON" and records[0][1] is not None and records[0][1]["schemaType"] == "JSON"
    with pytest.raises(errors.RegistryError) as e:
        state.plan_register("p", "XML", "<schema/>", (), False)
    assert e.value.code == 42201
