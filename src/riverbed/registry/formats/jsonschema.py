"""JSON Schema: parsing (checked against its draft's meta-schema by the `jsonschema` library)
and compatibility in the terms Confluent documents for JSON Schema.

Compatibility compares an *original* schema with an *update* and lists the differences, each
named as Confluent names them (TYPE_EXTENDED, PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL, ...). A
difference is compatible when every document valid under the original stays valid under the
update (the update is at least as permissive there). BACKWARD checks (original=old,
update=new); FORWARD the reverse. Content models: an object schema is *open* when
`additionalProperties` is absent or true, *closed* when false, *partially open* when it is a
schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema

from .base import Incompatibility, InvalidSchema

COMPATIBLE = {
    "TYPE_EXTENDED", "MAX_LENGTH_INCREASED", "MAX_LENGTH_REMOVED", "MIN_LENGTH_DECREASED", "MIN_LENGTH_REMOVED",
    "PATTERN_REMOVED", "MAXIMUM_INCREASED", "MAXIMUM_REMOVED", "MINIMUM_DECREASED", "MINIMUM_REMOVED",
    "EXCLUSIVE_MAXIMUM_INCREASED", "EXCLUSIVE_MAXIMUM_REMOVED", "EXCLUSIVE_MINIMUM_DECREASED", "EXCLUSIVE_MINIMUM_REMOVED",
    "MULTIPLE_OF_REDUCED", "MULTIPLE_OF_REMOVED", "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED", "REQUIRED_ATTRIBUTE_REMOVED",
    "MAX_PROPERTIES_INCREASED", "MAX_PROPERTIES_REMOVED", "MIN_PROPERTIES_DECREASED", "MIN_PROPERTIES_REMOVED",
    "ADDITIONAL_PROPERTIES_ADDED", "ADDITIONAL_PROPERTIES_EXTENDED", "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL",
    "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL", "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
    "PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL", "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", "MAX_ITEMS_INCREASED", "MAX_ITEMS_REMOVED",
    "MIN_ITEMS_DECREASED", "MIN_ITEMS_REMOVED", "UNIQUE_ITEMS_REMOVED", "ENUM_ARRAY_EXTENDED", "ENUM_ARRAY_REMOVED",
    "SUM_TYPE_EXTENDED", "PRODUCT_TYPE_NARROWED", "CONST_REMOVED",
}  # fmt: skip

NUMERIC_TYPES = {"integer", "number"}
ALL_TYPES = {"null", "boolean", "object", "array", "number", "integer", "string"}


@dataclass
class JsonSchema:
    raw: Any
    definitions: dict[str, Any]  # "$ref" target -> schema, for references to other subjects

    def canonical(self) -> str:
        return json.dumps(self.raw, separators=(",", ":"), ensure_ascii=False)

    def normalized(self) -> str:
        return json.dumps(self.raw, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def parse(text: str, references: dict[str, JsonSchema] | None = None) -> JsonSchema:
    """Parse and check against the meta-schema of its `$schema` (draft 2020-12 when absent);
    `references` maps the names a `$ref` may use to referenced schemas."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InvalidSchema(f"Invalid schema: not valid JSON: {exc}") from None
    if not isinstance(raw, (dict, bool)):
        raise InvalidSchema("Invalid schema: a JSON Schema is an object or a boolean")
    try:
        cls = jsonschema.validators.validator_for(raw, default=jsonschema.Draft202012Validator)
        cls.check_schema(raw)
    except jsonschema.exceptions.SchemaError as exc:
        raise InvalidSchema(f"Invalid schema: {exc.message}") from None
    defs = {name: ref.raw for name, ref in (references or {}).items()}
    for name, ref in (references or {}).items():
        defs.update({k: v for k, v in ref.definitions.items() if k not in defs})
        del name
    return JsonSchema(raw, defs)


def incompatibilities(original: JsonSchema, update: JsonSchema) -> list[Incompatibility]:
    """The incompatible differences from `original` to `update` (empty: compatible)."""
    diffs: list[tuple[str, str]] = []
    _Diff(original, update, diffs).compare(original.raw, update.raw, "#/", set())
    return [Incompatibility(kind, path, f"{kind} at path '{path}'", path) for kind, path in diffs if kind not in COMPATIBLE]


class _Diff:
    def __init__(self, original: JsonSchema, update: JsonSchema, out: list[tuple[str, str]]) -> None:
        self.original, self.update, self.out = original, update, out

    def add(self, kind: str, path: str) -> None:
        self.out.append((kind, path))

    def _deref(self, schema: Any, root: JsonSchema) -> Any:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 32:
            ref = schema["$ref"]
            target = _local(root.raw, ref) if ref.startswith("#") else root.definitions.get(ref.split("#")[0])
            if target is None:
                return schema
            if "#" in ref and not ref.startswith("#"):
                target = _local(target, "#" + ref.split("#", 1)[1]) or target
            schema = target
            seen += 1
        return schema

    def compare(self, old: Any, new: Any, path: str, busy: set[tuple[int, int]]) -> None:
        old, new = self._deref(old, self.original), self._deref(new, self.update)
        key = (id(old), id(new))
        if key in busy:
            return
        busy = busy | {key}
        if old is True or old == {}:
            if not (new is True or new == {}):
                self.add("TYPE_NARROWED", path)
            return
        if new is True or new == {}:
            if old is not False:
                self.add("TYPE_EXTENDED", path)
            return
        if old is False:
            return
        if new is False:
            self.add("TYPE_NARROWED", path)
            return
        for combo in ("oneOf", "anyOf", "allOf"):
            if combo in old or combo in new:
                self._combined(combo, old.get(combo), new.get(combo), path + combo, busy)
        self._types(old, new, path)
        for kw, loosen, tighten in (("maxLength", "MAX_LENGTH_INCREASED", "MAX_LENGTH_DECREASED"), ("maximum", "MAXIMUM_INCREASED", "MAXIMUM_DECREASED"), ("exclusiveMaximum", "EXCLUSIVE_MAXIMUM_INCREASED", "EXCLUSIVE_MAXIMUM_DECREASED"), ("maxItems", "MAX_ITEMS_INCREASED", "MAX_ITEMS_DECREASED"), ("maxProperties", "MAX_PROPERTIES_INCREASED", "MAX_PROPERTIES_DECREASED")):
            self._bound(kw, old.get(kw), new.get(kw), path, upper=True, loosen=loosen, tighten=tighten)
        for kw, loosen, tighten in (("minLength", "MIN_LENGTH_DECREASED", "MIN_LENGTH_INCREASED"), ("minimum", "MINIMUM_DECREASED", "MINIMUM_INCREASED"), ("exclusiveMinimum", "EXCLUSIVE_MINIMUM_DECREASED", "EXCLUSIVE_MINIMUM_INCREASED"), ("minItems", "MIN_ITEMS_DECREASED", "MIN_ITEMS_INCREASED"), ("minProperties", "MIN_PROPERTIES_DECREASED", "MIN_PROPERTIES_INCREASED")):
            self._bound(kw, old.get(kw), new.get(kw), path, upper=False, loosen=loosen, tighten=tighten)
        self._changed("pattern", old, new, path, "PATTERN")
        self._multiple_of(old.get("multipleOf"), new.get("multipleOf"), path)
        self._enum(old.get("enum"), new.get("enum"), path)
        if "const" in old or "const" in new:
            if "const" not in new:
                self.add("CONST_REMOVED", path)
            elif old.get("const") != new.get("const"):
                self.add("CONST_ADDED" if "const" not in old else "CONST_CHANGED", path)
        if old.get("uniqueItems") and not new.get("uniqueItems"):
            self.add("UNIQUE_ITEMS_REMOVED", path)
        elif new.get("uniqueItems") and not old.get("uniqueItems"):
            self.add("UNIQUE_ITEMS_ADDED", path)
        if "items" in old or "items" in new:
            self.compare(old.get("items", True), new.get("items", True), path + "items/", busy)
        if any(k in old or k in new for k in ("properties", "required", "additionalProperties")):
            self._object(old, new, path, busy)

    def _types(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        def types(s: dict[str, Any]) -> set[str]:
            t = s.get("type")
            if t is None:
                return set(ALL_TYPES)
            return {t} if isinstance(t, str) else set(t)

        a, b = types(old), types(new)
        if "number" in b:
            b = b | {"integer"}
        if "number" in a:
            a = a | {"integer"}
        if a == b:
            return
        if b >= a:
            self.add("TYPE_EXTENDED", path)
        elif b <= a:
            self.add("TYPE_NARROWED", path)
        else:
            self.add("TYPE_CHANGED", path)

    def _bound(self, kw: str, old: Any, new: Any, path: str, upper: bool, loosen: str, tighten: str) -> None:
        name = _snake(kw)
        if old == new:
            return
        if new is None:
            self.add(f"{name}_REMOVED", path + kw)
        elif old is None:
            self.add(f"{name}_ADDED", path + kw)
        elif (new > old) == upper:
            self.add(loosen, path + kw)
        else:
            self.add(tighten, path + kw)

    def _changed(self, kw: str, old: dict[str, Any], new: dict[str, Any], path: str, name: str) -> None:
        a, b = old.get(kw), new.get(kw)
        if a == b:
            return
        self.add(f"{name}_REMOVED" if b is None else f"{name}_ADDED" if a is None else f"{name}_CHANGED", path + kw)

    def _multiple_of(self, old: Any, new: Any, path: str) -> None:
        if old == new:
            return
        if new is None:
            self.add("MULTIPLE_OF_REMOVED", path + "multipleOf")
        elif old is None:
            self.add("MULTIPLE_OF_ADDED", path + "multipleOf")
        elif (old / new) == int(old / new):
            self.add("MULTIPLE_OF_REDUCED", path + "multipleOf")
        else:
            self.add("MULTIPLE_OF_EXPANDED" if new > old else "MULTIPLE_OF_CHANGED", path + "multipleOf")

    def _enum(self, old: Any, new: Any, path: str) -> None:
        if old == new:
            return
        if new is None:
            self.add("ENUM_ARRAY_REMOVED", path + "enum")
        elif old is None:
            self.add("ENUM_ARRAY_NARROWED", path + "enum")
        elif all(v in new for v in old):
            self.add("ENUM_ARRAY_EXTENDED", path + "enum")
        elif all(v in old for v in new):
            self.add("ENUM_ARRAY_NARROWED", path + "enum")
        else:
            self.add("ENUM_ARRAY_CHANGED", path + "enum")

    def _combined(self, combo: str, old: list[Any] | None, new: list[Any] | None, path: str, busy: set[tuple[int, int]]) -> None:
        if old is None or new is None:
            self.add("COMBINED_TYPE_CHANGED", path)
            return
        if combo == "allOf":  # a product: fewer parts is looser
            for i, branch in enumerate(new):
                if not any(self._quiet(o, branch, busy) for o in old):
                    self.add("PRODUCT_TYPE_EXTENDED", f"{path}/{i}")
            if len(new) < len(old):
                self.add("PRODUCT_TYPE_NARROWED", path)
            return
        for i, branch in enumerate(old):  # a sum: every old branch must be covered by a new one
            if not any(self._quiet(branch, n, busy) for n in new):
                self.add("SUM_TYPE_NARROWED", f"{path}/{i}")
        if len(new) > len(old):
            self.add("SUM_TYPE_EXTENDED", path)

    def _quiet(self, old: Any, new: Any, busy: set[tuple[int, int]]) -> bool:
        diffs: list[tuple[str, str]] = []
        _Diff(self.original, self.update, diffs).compare(old, new, "", busy)
        return all(kind in COMPATIBLE for kind, _ in diffs)

    def _object(self, old: dict[str, Any], new: dict[str, Any], path: str, busy: set[tuple[int, int]]) -> None:
        old_props: dict[str, Any] = old.get("properties", {})
        new_props: dict[str, Any] = new.get("properties", {})
        old_req, new_req = set(old.get("required", [])), set(new.get("required", []))
        old_add, new_add = old.get("additionalProperties", True), new.get("additionalProperties", True)
        for name, schema in new_props.items():
            p = f"{path}properties/{name}"
            if name in old_props:
                self.compare(old_props[name], schema, p + "/", busy)
                continue
            has_default = isinstance(schema, dict) and "default" in schema
            if old_add is True or old_add == {}:
                empty = schema is True or schema == {}
                self.add("PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL" if empty else "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", p)
            elif old_add is False:
                if name in new_req:
                    self.add("REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL" if has_default else "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", p)
                else:
                    self.add("OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", p)
            else:
                covered = self._quiet(old_add, schema, busy)
                self.add("PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL" if covered else "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", p)
        for name, schema in old_props.items():
            if name in new_props:
                continue
            p = f"{path}properties/{name}"
            if new_add is True or new_add == {}:
                self.add("PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL", p)
            elif new_add is False:
                self.add("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", p)
            else:
                covered = self._quiet(schema, new_add, busy)
                self.add("PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL" if covered else "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", p)
        for name in new_req - old_req:
            schema = new_props.get(name)
            has_default = isinstance(schema, dict) and "default" in schema
            self.add("REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED" if has_default else "REQUIRED_ATTRIBUTE_ADDED", f"{path}required/{name}")
        for name in old_req - new_req:
            self.add("REQUIRED_ATTRIBUTE_REMOVED", f"{path}required/{name}")
        if old_add != new_add:
            p = path + "additionalProperties"
            if old_add is False:
                self.add("ADDITIONAL_PROPERTIES_ADDED", p)
            elif new_add is False:
                self.add("ADDITIONAL_PROPERTIES_REMOVED", p)
            else:
                self.add("ADDITIONAL_PROPERTIES_EXTENDED" if self._quiet(old_add, new_add, busy) else "ADDITIONAL_PROPERTIES_NARROWED", p)


def _local(root: Any, ref: str) -> Any:
    node = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _snake(kw: str) -> str:
    out = "".join("_" + c if c.isupper() else c.upper() for c in kw)
    return out
