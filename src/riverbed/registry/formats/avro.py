"""Avro schemas: parsing (validated with fastavro), the forms used for identity, and
compatibility by Avro's schema-resolution rules.

A schema is parsed into a small tree of plain dicts in which every named type carries its
full name and every reference to a named type is resolved, so the compatibility check can
walk writer and reader side by side (recursive types included).

Compatibility is checked the way Avro resolves data: `reader_incompatibilities(reader,
writer)` lists why data written with `writer` cannot be read with `reader` (empty: it can).
BACKWARD means the new schema reads data of the old one; FORWARD, the old reads the new.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import fastavro

from .base import Incompatibility, InvalidSchema

PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
NAMED = ("record", "error", "enum", "fixed")
# writer type -> reader types that can read it (Avro's promotions)
PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}
# Parsing Canonical Form keeps these attributes, in this order
PCF_ORDER = ("name", "type", "fields", "symbols", "items", "values", "size")


@dataclass
class AvroSchema:
    raw: Any  # the JSON as given
    tree: Any  # resolved tree: primitives as str, complex types as dicts, named types shared
    named: dict[str, Any] = field(default_factory=dict)  # fullname -> node (own and referenced)

    def canonical(self) -> str:
        """The compact JSON of the schema as written (key order kept): the identity of a
        schema when `normalize` is off."""
        return json.dumps(self.raw, separators=(",", ":"), ensure_ascii=False)

    def normalized(self) -> str:
        """Avro's Parsing Canonical Form plus the attributes that change how data is read or
        shown (defaults, aliases, logical types, doc and order kept out): the identity of a
        schema when `normalize=true`."""
        return json.dumps(_pcf(self.raw, None, set(), keep_defaults=True), separators=(",", ":"), ensure_ascii=False)

    def names(self) -> list[str]:
        return list(self.named)


def parse(text: str, references: list[AvroSchema] | None = None) -> AvroSchema:
    """Parse and validate `text`; named types of `references` may be used by name."""
    try:
        raw = json.loads(text)
    except ValueError:
        # a bare primitive name without quotes is not JSON; Avro accepts "string" only quoted
        raise InvalidSchema(f"Invalid schema {text!r}: not valid JSON") from None
    named: dict[str, Any] = {}
    fastavro_named: dict[str, Any] = {}
    for ref in references or []:
        named.update(ref.named)
        try:
            fastavro.parse_schema(ref.raw, named_schemas=fastavro_named)
        except Exception as exc:  # pragma: no cover - references were validated when registered
            raise InvalidSchema(f"Invalid reference: {exc}") from None
    try:
        fastavro.parse_schema(raw, named_schemas=dict(fastavro_named))
    except Exception as exc:
        raise InvalidSchema(f"Invalid schema: {exc}") from None
    own: dict[str, Any] = {}
    tree = _resolve(raw, None, {**named}, own)
    return AvroSchema(raw=raw, tree=tree, named=own)


def _fullname(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def _resolve(node: Any, ns: str | None, names: dict[str, Any], own: dict[str, Any]) -> Any:
    if isinstance(node, str):
        if node in PRIMITIVES:
            return node
        full = _fullname(node, ns)
        if full in names:
            return names[full]
        if node in names:
            return names[node]
        raise InvalidSchema(f"Invalid schema: unknown type {node!r}")
    if isinstance(node, list):
        return {"type": "union", "branches": [_resolve(b, ns, names, own) for b in node]}
    if not isinstance(node, dict):
        raise InvalidSchema(f"Invalid schema: unexpected {node!r}")
    t = node.get("type")
    logical = node.get("logicalType")
    if t in PRIMITIVES:
        return t if logical is None else {"type": t, "logical": logical}
    if t in NAMED:
        name = node.get("name", "")
        space = node.get("namespace", ns) if "." not in name else name.rsplit(".", 1)[0]
        full = _fullname(name, space)
        aliases = {_fullname(a, space) for a in node.get("aliases", [])}
        out: dict[str, Any] = {"type": "record" if t == "error" else t, "name": full, "aliases": aliases}
        names[full] = out
        own[full] = out
        if t in ("record", "error"):
            if not isinstance(node.get("fields"), list):
                raise InvalidSchema(f"Invalid schema: record {full} has no 'fields' list")
            out["fields"] = [
                {
                    "name": f["name"],
                    "aliases": set(f.get("aliases", [])),
                    "has_default": "default" in f,
                    "type": None,
                }
                for f in node.get("fields", [])
            ]
            for spec, f in zip(node.get("fields", []), out["fields"], strict=True):
                f["type"] = _resolve(spec["type"], space, names, own)
        elif t == "enum":
            out["symbols"] = list(node.get("symbols", []))
            out["default"] = node.get("default")
        else:
            out["size"] = node.get("size")
            out["logical"] = logical
        return out
    if t == "array":
        return {"type": "array", "items": _resolve(node.get("items"), ns, names, own)}
    if t == "map":
        return {"type": "map", "values": _resolve(node.get("values"), ns, names, own)}
    if isinstance(t, (dict, list)) or (isinstance(t, str) and t not in PRIMITIVES):
        return _resolve(t, ns, names, own)  # {"type": {...}} or {"type": "SomeRecord"}
    raise InvalidSchema(f"Invalid schema: unknown type {t!r}")


def _pcf(node: Any, ns: str | None, seen: set[str], keep_defaults: bool) -> Any:
    if isinstance(node, str):
        return node if node in PRIMITIVES else _fullname(node, ns)
    if isinstance(node, list):
        return [_pcf(b, ns, seen, keep_defaults) for b in node]
    t = node.get("type")
    if t in PRIMITIVES:
        if keep_defaults and "logicalType" in node:
            return {k: node[k] for k in sorted(node) if k not in ("doc",)}
        return t
    if isinstance(t, (dict, list)):
        return _pcf(t, ns, seen, keep_defaults)
    out: dict[str, Any] = {}
    if t in NAMED:
        name = node["name"]
        space = node.get("namespace", ns) if "." not in name else name.rsplit(".", 1)[0]
        full = _fullname(name, space)
        if full in seen:
            return full
        seen.add(full)
        out["name"] = full
        out["type"] = "record" if t == "error" else t
        if "fields" in node:
            fields = []
            for f in node["fields"]:
                g: dict[str, Any] = {"name": f["name"], "type": _pcf(f["type"], space, seen, keep_defaults)}
                if keep_defaults and "default" in f:
                    g["default"] = f["default"]
                if keep_defaults and f.get("aliases"):
                    g["aliases"] = sorted(f["aliases"])
                fields.append(g)
            out["fields"] = fields
        for key in ("symbols", "size"):
            if key in node:
                out[key] = node[key]
        if keep_defaults:
            if t == "enum" and "default" in node:
                out["default"] = node["default"]
            if node.get("aliases"):
                out["aliases"] = sorted(_fullname(a, space) for a in node["aliases"])
            if "logicalType" in node:
                out["logicalType"] = node["logicalType"]
        return out
    out["type"] = t
    if t == "array":
        out["items"] = _pcf(node["items"], ns, seen, keep_defaults)
    elif t == "map":
        out["values"] = _pcf(node["values"], ns, seen, keep_defaults)
    return out


# -- compatibility ------------------------------------------------------------------------------


def _kind(node: Any) -> str:
    if isinstance(node, str):
        return node
    t: str = node["type"]
    return t


def _describe(node: Any) -> str:
    k = _kind(node)
    if isinstance(node, dict) and "name" in node:
        return f"{k} {node['name']}"
    return k


def reader_incompatibilities(reader: AvroSchema, writer: AvroSchema) -> list[Incompatibility]:
    """Why data written with `writer` cannot be read with `reader` (empty list: it can)."""
    out: list[Incompatibility] = []
    _check(reader.tree, writer.tree, "", out, set())
    return out


def _check(r: Any, w: Any, path: str, out: list[Incompatibility], busy: set[tuple[int, int]]) -> None:
    rk, wk = _kind(r), _kind(w)
    if wk == "union":
        for i, branch in enumerate(w["branches"]):
            if rk == "union":
                if not any(_can_read(b, branch, busy) for b in r["branches"]):
                    out.append(Incompatibility("MISSING_UNION_BRANCH", f"{path}/{i}", f"The new schema is missing a type inside a union field at path '{path}/{i}' in the old schema", _describe(branch)))
            else:
                _check(r, branch, f"{path}/{i}", out, busy)
        return
    if rk == "union":
        if not any(_can_read(b, w, busy) for b in r["branches"]):
            out.append(Incompatibility("MISSING_UNION_BRANCH", path or "/", f"The new schema union at path '{path or '/'}' has no branch that reads the old schema's {_describe(w)}", _describe(w)))
        return
    if rk != wk and rk not in PROMOTIONS.get(wk, ()):
        out.append(Incompatibility("TYPE_MISMATCH", path or "/", f"The type (path '{path or '/'}') of a field in the new schema does not match with the old schema", f"reader type: {rk} not compatible with writer type: {wk}"))
        return
    if rk in ("record", "enum", "fixed"):
        key = (id(r), id(w))
        if key in busy:
            return  # a recursive type already being compared
        busy.add(key)
        if r["name"] != w["name"] and w["name"] not in r["aliases"]:
            out.append(Incompatibility("NAME_MISMATCH", f"{path}/name", f"The type (path '{path}/name') of a field in the new schema does not match with the old schema", f"expected: {w['name']}"))
            return
        if rk == "fixed":
            if r["size"] != w["size"]:
                out.append(Incompatibility("FIXED_SIZE_MISMATCH", f"{path}/size", f"The size of FIXED type field at path '{path}/size' in the new schema does not match with the old schema", f"expected: {w['size']}, found: {r['size']}"))
        elif rk == "enum":
            missing = [s for s in w["symbols"] if s not in r["symbols"]]
            if missing and r.get("default") is None:
                out.append(Incompatibility("MISSING_ENUM_SYMBOLS", f"{path}/symbols", f"The new schema is missing enum symbols '{missing}' at path '{path}/symbols' in the old schema", str(missing)))
        else:
            wfields = {f["name"]: f for f in w["fields"]}
            for i, rf in enumerate(r["fields"]):
                wf = wfields.get(rf["name"]) or next((wfields[a] for a in rf["aliases"] if a in wfields), None)
                fpath = f"{path}/fields/{i}"
                if wf is None:
                    if not rf["has_default"]:
                        out.append(Incompatibility("READER_FIELD_MISSING_DEFAULT_VALUE", fpath, f"The field '{rf['name']}' at path '{fpath}' in the new schema has no default value and is missing in the old schema", rf["name"]))
                else:
                    _check(rf["type"], wf["type"], f"{fpath}/type", out, busy)
        return
    if rk == "array":
        _check(r["items"], w["items"], f"{path}/items", out, busy)
    elif rk == "map":
        _check(r["values"], w["values"], f"{path}/values", out, busy)


def _can_read(r: Any, w: Any, busy: set[tuple[int, int]]) -> bool:
    out: list[Incompatibility] = []
    _check(r, w, "", out, set(busy))
    return not out
