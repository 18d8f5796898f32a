"""SQL types (ksqlDB's): primitives, DECIMAL(p, s), ARRAY<T>, MAP<K, V>, STRUCT<name T, ...>."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import SqlError

PRIMITIVES = ("BOOLEAN", "INTEGER", "BIGINT", "DOUBLE", "DECIMAL", "STRING", "BYTES", "TIMESTAMP", "DATE", "TIME")
ALIASES = {"INT": "INTEGER", "VARCHAR": "STRING", "BOOL": "BOOLEAN", "LONG": "BIGINT", "FLOAT": "DOUBLE"}
NUMERIC = ("INTEGER", "BIGINT", "DECIMAL", "DOUBLE")


@dataclass(frozen=True)
class SqlType:
    name: str
    element: SqlType | None = None  # ARRAY element, MAP value
    key: SqlType | None = None  # MAP key
    fields: tuple[tuple[str, SqlType], ...] = field(default_factory=tuple)  # STRUCT
    precision: int = 0
    scale: int = 0

    def __str__(self) -> str:
        if self.name == "ARRAY":
            return f"ARRAY<{self.element}>"
        if self.name == "MAP":
            return f"MAP<{self.key}, {self.element}>"
        if self.name == "STRUCT":
            return "STRUCT<" + ", ".join(f"`{n}` {t}" for n, t in self.fields) + ">"
        if self.name == "DECIMAL":
            return f"DECIMAL({self.precision}, {self.scale})"
        if self.name == "STRING":
            return "VARCHAR(STRING)"
        return self.name

    @property
    def numeric(self) -> bool:
        return self.name in NUMERIC

    def field_type(self, name: str) -> SqlType | None:
        for n, t in self.fields:
            if n.upper() == name.upper():
                return t
        return None


def make(name: str, params: tuple[int, ...] = ()) -> SqlType:
    up = ALIASES.get(name.upper(), name.upper())
    if up not in PRIMITIVES:
        raise SqlError(f"Unknown type: {name}")
    if up == "DECIMAL":
        if len(params) != 2:
            raise SqlError("DECIMAL needs a precision and a scale: DECIMAL(p, s)")
        return SqlType("DECIMAL", precision=params[0], scale=params[1])
    if params and up != "STRING":
        raise SqlError(f"{up} takes no parameters")
    return SqlType(up)


BOOLEAN = SqlType("BOOLEAN")
INTEGER = SqlType("INTEGER")
BIGINT = SqlType("BIGINT")
DOUBLE = SqlType("DOUBLE")
STRING = SqlType("STRING")
BYTES = SqlType("BYTES")
TIMESTAMP = SqlType("TIMESTAMP")
DATE = SqlType("DATE")
TIME = SqlType("TIME")
NULL = SqlType("NULL")  # the type of a NULL literal: assignable to anything
ANY = SqlType("ANY")  # unknown (e.g. an element of an empty array): checks are skipped


def array(t: SqlType) -> SqlType:
    return SqlType("ARRAY", element=t)


def map_of(k: SqlType, v: SqlType) -> SqlType:
    return SqlType("MAP", element=v, key=k)


def struct(fields: list[tuple[str, SqlType]]) -> SqlType:
    return SqlType("STRUCT", fields=tuple(fields))


def widest(a: SqlType, b: SqlType) -> SqlType:
    """The result type of arithmetic on two numeric types."""
    if a.name == "NULL":
        return b
    if b.name == "NULL":
        return a
    order = {"INTEGER": 0, "BIGINT": 1, "DECIMAL": 2, "DOUBLE": 3}
    return a if order.get(a.name, 9) >= order.get(b.name, 9) else b


def compatible(a: SqlType, b: SqlType) -> bool:
    """Can values of these types be compared (or b assigned to a column of a)?"""
    if "NULL" in (a.name, b.name) or "ANY" in (a.name, b.name):
        return True
    if a.numeric and b.numeric:
        return True
    if a.name != b.name:
        return False
    if a.name in ("ARRAY", "MAP"):
        return compatible(a.element or ANY, b.element or ANY) and compatible(a.key or ANY, b.key or ANY)
    return True
