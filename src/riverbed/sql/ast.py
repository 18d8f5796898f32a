"""The syntax tree of statements and expressions; every node knows its line and column."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .types import SqlType

Pos = tuple[int, int]  # (line, column), 1-based


@dataclass
class Expr:
    pos: Pos = field(default=(0, 0), kw_only=True, compare=False)


@dataclass
class Literal(Expr):
    value: Any
    kind: str  # INTEGER, BIGINT, DECIMAL, DOUBLE, STRING, BOOLEAN, NULL, INTERVAL


@dataclass
class Column(Expr):
    name: str
    source: str | None = None


@dataclass
class Call(Expr):
    name: str
    args: list[Expr]
    star: bool = False
    distinct: bool = False


@dataclass
class Binary(Expr):
    op: str  # + - * / % || = != < <= > >= AND OR
    left: Expr
    right: Expr


@dataclass
class Unary(Expr):
    op: str  # NOT, -
    operand: Expr


@dataclass
class IsNull(Expr):
    operand: Expr
    negate: bool


@dataclass
class Between(Expr):
    operand: Expr
    low: Expr
    high: Expr
    negate: bool


@dataclass
class Like(Expr):
    operand: Expr
    pattern: Expr
    negate: bool
    escape: str | None = None


@dataclass
class InList(Expr):
    operand: Expr
    items: list[Expr]
    negate: bool


@dataclass
class Case(Expr):
    operand: Expr | None
    whens: list[tuple[Expr, Expr]]
    default: Expr | None


@dataclass
class Cast(Expr):
    operand: Expr
    to: SqlType


@dataclass
class Subscript(Expr):
    operand: Expr
    index: Expr


@dataclass
class Deref(Expr):
    operand: Expr
    field: str


@dataclass
class ArrayCtor(Expr):
    items: list[Expr]


@dataclass
class MapCtor(Expr):
    entries: list[tuple[Expr, Expr]]


@dataclass
class StructCtor(Expr):
    fields: list[tuple[str, Expr]]


@dataclass
class Lambda(Expr):
    params: list[str]
    body: Expr


# -- queries -----------------------------------------------------------------------------------------
@dataclass
class SelectItem:
    expr: Expr | None  # None: * (all columns) or source.*
    alias: str | None = None
    star_source: str | None = None
    pos: Pos = (0, 0)


@dataclass
class Source:
    name: str
    alias: str | None
    pos: Pos = (0, 0)

    @property
    def ref(self) -> str:
        return self.alias or self.name


@dataclass
class Join:
    how: str  # INNER, LEFT, RIGHT, FULL
    right: Source
    on: Expr
    within_ms: tuple[int, int] | None = None  # (before, after)
    grace_ms: int | None = None
    pos: Pos = (0, 0)


@dataclass
class WindowSpec:
    kind: str  # TUMBLING, HOPPING, SESSION
    size_ms: int
    advance_ms: int | None = None
    grace_ms: int | None = None
    retention_ms: int | None = None


@dataclass
class Query:
    items: list[SelectItem]
    source: Source
    joins: list[Join]
    window: WindowSpec | None = None
    where: Expr | None = None
    group_by: list[Expr] = field(default_factory=list)
    partition_by: list[Expr] = field(default_factory=list)
    having: Expr | None = None
    emit: str | None = None  # CHANGES, FINAL, or None (a pull query)
    limit: int | None = None
    pos: Pos = (0, 0)


# -- statements ------------------------------------------------------------------------------------
@dataclass
class Statement:
    text: str = field(default="", kw_only=True, compare=False)
    pos: Pos = field(default=(1, 1), kw_only=True, compare=False)


@dataclass
class ColumnDef:
    name: str
    type: SqlType
    constraint: str | None = None  # KEY, PRIMARY KEY, HEADERS, HEADER
    pos: Pos = (0, 0)
    header: str | None = None  # HEADER('k'): the header's key


@dataclass
class CreateSource(Statement):
    kind: str  # STREAM, TABLE
    name: str
    columns: list[ColumnDef]
    props: dict[str, Any]
    or_replace: bool = False
    if_not_exists: bool = False
    source: bool = False


@dataclass
class CreateAs(Statement):
    kind: str
    name: str
    props: dict[str, Any]
    query: Query
    or_replace: bool = False
    if_not_exists: bool = False


@dataclass
class InsertSelect(Statement):
    target: str
    props: dict[str, Any]
    query: Query


@dataclass
class InsertValues(Statement):
    target: str
    columns: list[str] | None
    values: list[Expr]


@dataclass
class SelectStatement(Statement):
    query: Query


@dataclass
class Show(Statement):
    what: str  # STREAMS, TABLES, QUERIES, TOPICS, PROPERTIES, FUNCTIONS, ...
    extended: bool = False


@dataclass
class Describe(Statement):
    name: str
    extended: bool = False


@dataclass
class DescribeList(Statement):
    what: str
    extended: bool = False


@dataclass
class DescribeFunction(Statement):
    name: str


@dataclass
class Explain(Statement):
    query_id: str | None
    query: Query | None


@dataclass
class Terminate(Statement):
    query_id: str | None  # None: ALL


@dataclass
class Drop(Statement):
    kind: str
    name: str
    if_exists: bool = False
    delete_topic: bool = False


@dataclass
class SetProperty(Statement):
    name: str
    value: str


@dataclass
class UnsetProperty(Statement):
    name: str


@dataclass
class Print(Statement):
    topic: str
    from_beginning: bool = False
    limit: int | None = None
