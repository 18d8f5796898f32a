"""The parser: ksqlDB statements -> :mod:`riverbed.sql.ast`, with a lark LALR(1) grammar of ours
(grammar.lark; ADR 0012). Syntax errors name the line, the column and what was expected."""

from __future__ import annotations

import dataclasses
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from lark import (
    Lark,
    Token,
    Transformer,
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    v_args,
)
from lark.tree import Meta

from . import ast as A
from . import types as T
from .errors import SqlError, SqlSyntaxError

UNITS_MS = {
    "MILLISECOND": 1, "MILLISECONDS": 1, "SECOND": 1000, "SECONDS": 1000, "MINUTE": 60_000, "MINUTES": 60_000,
    "HOUR": 3_600_000, "HOURS": 3_600_000, "DAY": 86_400_000, "DAYS": 86_400_000,
    "WEEK": 7 * 86_400_000, "WEEKS": 7 * 86_400_000,
}

STATEMENT_RULES = {
    "create_source", "create_as", "insert_select", "insert_values", "query", "show", "describe",
    "describe_list", "describe_function", "explain", "terminate", "drop", "set_prop", "unset_prop", "print_topic",
}


@lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return Lark(grammar, start="script", parser="lalr", propagate_positions=True, maybe_placeholders=False)


def _pos(meta: Meta) -> A.Pos:
    return (getattr(meta, "line", 0), getattr(meta, "column", 0))


def _kw(children: list[Any], name: str) -> bool:
    return any(isinstance(c, Token) and c.type == name for c in children)


def _plain(children: list[Any]) -> list[Any]:
    """Children without keyword tokens (names are str after transformation, not Token)."""
    return [c for c in children if not (isinstance(c, Token) and c.type.isupper() and c.type not in ("INT", "STRING"))]


def unquote_string(tok: str) -> str:
    return tok[1:-1].replace("''", "'")


class _Build(Transformer[Token, Any]):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def _stmt(self, meta: Meta, st: A.Statement) -> A.Statement:
        st.pos = _pos(meta)
        if not meta.empty:
            st.text = self.text[meta.start_pos:meta.end_pos].strip() + ";"
        return st

    # -- names and literals -------------------------------------------------------------------------
    @v_args(meta=True)
    def name(self, meta: Meta, c: list[Any]) -> str:
        tok = c[0]
        if isinstance(tok, Token) and tok.type == "QUOTED":
            return str(tok[1:-1].replace("``", "`"))
        return str(tok).upper()

    def soft_keyword(self, c: list[Any]) -> Token:
        return c[0]  # type: ignore[no-any-return]

    @v_args(meta=True)
    def int_lit(self, meta: Meta, c: list[Any]) -> A.Literal:
        v = int(c[0])
        return A.Literal(v, "INTEGER" if -(2**31) <= v < 2**31 else "BIGINT", pos=_pos(meta))

    @v_args(meta=True)
    def decimal_lit(self, meta: Meta, c: list[Any]) -> A.Literal:
        from decimal import Decimal

        return A.Literal(Decimal(str(c[0])), "DECIMAL", pos=_pos(meta))

    @v_args(meta=True)
    def float_lit(self, meta: Meta, c: list[Any]) -> A.Literal:
        return A.Literal(float(c[0]), "DOUBLE", pos=_pos(meta))

    @v_args(meta=True)
    def string_lit(self, meta: Meta, c: list[Any]) -> A.Literal:
        return A.Literal(unquote_string(c[0]), "STRING", pos=_pos(meta))

    @v_args(meta=True)
    def true_lit(self, meta: Meta, c: list[Any]) -> A.Literal:
        return A.Literal(True, "BOOLEAN", pos=_pos(meta))

    @v_args(meta=True)
    def false_lit(self, meta: Meta, c: list[Any]) -> A.Literal:
        return A.Literal(False, "BOOLEAN", pos=_pos(meta))

    @v_args(meta=True)
    def null_lit(self, meta: Meta, c: list[Any]) -> A.Literal:
        return A.Literal(None, "NULL", pos=_pos(meta))

    @v_args(meta=True)
    def interval_lit(self, meta: Meta, c: list[Any]) -> A.Literal:
        p = _plain(c)
        return A.Literal(int(p[0]) * p[1], "INTERVAL", pos=_pos(meta))

    @v_args(meta=True)
    def time_unit(self, meta: Meta, c: list[Any]) -> int:
        unit = str(c[0]).upper()
        if unit not in UNITS_MS:
            raise SqlError(f"Invalid time unit: {c[0]} (use MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS)", *_pos(meta))
        return UNITS_MS[unit]

    def duration(self, c: list[Any]) -> int:
        return int(c[0]) * int(c[1])

    # -- types ----------------------------------------------------------------------------------------
    @v_args(meta=True)
    def simple_type(self, meta: Meta, c: list[Any]) -> T.SqlType:
        try:
            return T.make(str(c[0]))
        except SqlError as e:
            raise SqlError(e.message, *_pos(meta)) from None

    @v_args(meta=True)
    def param_type(self, meta: Meta, c: list[Any]) -> T.SqlType:
        try:
            return T.make(str(c[0]), tuple(int(x) for x in c[1:]))
        except SqlError as e:
            raise SqlError(e.message, *_pos(meta)) from None

    def array_type(self, c: list[Any]) -> T.SqlType:
        return T.array(_plain(c)[0])

    def map_type(self, c: list[Any]) -> T.SqlType:
        k, v = _plain(c)
        return T.map_of(k, v)

    def struct_type(self, c: list[Any]) -> T.SqlType:
        return T.struct([tuple(f) for f in _plain(c)])

    def struct_type_field(self, c: list[Any]) -> tuple[str, T.SqlType]:
        return (c[0], c[1])

    # -- expressions ------------------------------------------------------------------------------
    @v_args(meta=True)
    def column(self, meta: Meta, c: list[Any]) -> A.Column:
        return A.Column(c[0], pos=_pos(meta))

    @v_args(meta=True)
    def qualified_column(self, meta: Meta, c: list[Any]) -> A.Column:
        return A.Column(c[1], c[0], pos=_pos(meta))

    @v_args(meta=True)
    def call(self, meta: Meta, c: list[Any]) -> A.Call:
        return A.Call(c[0], list(c[1:]), pos=_pos(meta))

    @v_args(meta=True)
    def call_star(self, meta: Meta, c: list[Any]) -> A.Call:
        return A.Call(c[0], [], star=True, pos=_pos(meta))

    @v_args(meta=True)
    def call_distinct(self, meta: Meta, c: list[Any]) -> A.Call:
        p = _plain(c)
        return A.Call(p[0], [p[1]], distinct=True, pos=_pos(meta))

    def _bin(self, op: str, meta: Meta, c: list[Any]) -> A.Binary:
        p = _plain(c)
        return A.Binary(op, p[0], p[-1], pos=_pos(meta))

    @v_args(meta=True)
    def or_(self, meta: Meta, c: list[Any]) -> A.Binary:
        return self._bin("OR", meta, c)

    @v_args(meta=True)
    def and_(self, meta: Meta, c: list[Any]) -> A.Binary:
        return self._bin("AND", meta, c)

    @v_args(meta=True)
    def not_(self, meta: Meta, c: list[Any]) -> A.Unary:
        return A.Unary("NOT", _plain(c)[0], pos=_pos(meta))

    @v_args(meta=True)
    def neg(self, meta: Meta, c: list[Any]) -> A.Expr:
        e = c[0]
        if isinstance(e, A.Literal) and e.kind in ("INTEGER", "BIGINT", "DECIMAL", "DOUBLE"):
            return A.Literal(-e.value, e.kind, pos=_pos(meta))
        return A.Unary("-", e, pos=_pos(meta))

    @v_args(meta=True)
    def compare(self, meta: Meta, c: list[Any]) -> A.Binary:
        op = str(c[1].children[0]) if hasattr(c[1], "children") else str(c[1])
        return A.Binary("!=" if op == "<>" else op, c[0], c[2], pos=_pos(meta))

    def comp_op(self, c: list[Any]) -> str:
        return str(c[0])

    @v_args(meta=True)
    def is_null(self, meta: Meta, c: list[Any]) -> A.IsNull:
        return A.IsNull(c[0], False, pos=_pos(meta))

    @v_args(meta=True)
    def is_not_null(self, meta: Meta, c: list[Any]) -> A.IsNull:
        return A.IsNull(c[0], True, pos=_pos(meta))

    @v_args(meta=True)
    def is_distinct(self, meta: Meta, c: list[Any]) -> A.Call:
        p = _plain(c)
        fn = "IS_NOT_DISTINCT_FROM" if _kw(c, "NOT") else "IS_DISTINCT_FROM"
        return A.Call(fn, [p[0], p[1]], pos=_pos(meta))

    @v_args(meta=True)
    def between(self, meta: Meta, c: list[Any]) -> A.Between:
        p = _plain(c)
        return A.Between(p[0], p[1], p[2], _kw(c, "NOT"), pos=_pos(meta))

    @v_args(meta=True)
    def like(self, meta: Meta, c: list[Any]) -> A.Like:
        p = _plain(c)
        esc = next((unquote_string(x) for x in c if isinstance(x, Token) and x.type == "STRING"), None)
        return A.Like(p[0], p[1], _kw(c, "NOT"), esc, pos=_pos(meta))

    @v_args(meta=True)
    def in_list(self, meta: Meta, c: list[Any]) -> A.InList:
        p = _plain(c)
        return A.InList(p[0], p[1:], _kw(c, "NOT"), pos=_pos(meta))

    @v_args(meta=True)
    def concat_op(self, meta: Meta, c: list[Any]) -> A.Binary:
        return self._bin("||", meta, c)

    @v_args(meta=True)
    def add(self, meta: Meta, c: list[Any]) -> A.Binary:
        return self._bin("+", meta, c)

    @v_args(meta=True)
    def sub(self, meta: Meta, c: list[Any]) -> A.Binary:
        return self._bin("-", meta, c)

    @v_args(meta=True)
    def mul(self, meta: Meta, c: list[Any]) -> A.Binary:
        return self._bin("*", meta, c)

    @v_args(meta=True)
    def div(self, meta: Meta, c: list[Any]) -> A.Binary:
        return self._bin("/", meta, c)

    @v_args(meta=True)
    def mod(self, meta: Meta, c: list[Any]) -> A.Binary:
        return self._bin("%", meta, c)

    @v_args(meta=True)
    def subscript(self, meta: Meta, c: list[Any]) -> A.Subscript:
        return A.Subscript(c[0], c[1], pos=_pos(meta))

    @v_args(meta=True)
    def deref(self, meta: Meta, c: list[Any]) -> A.Deref:
        return A.Deref(c[0], c[1], pos=_pos(meta))

    @v_args(meta=True)
    def array_ctor(self, meta: Meta, c: list[Any]) -> A.ArrayCtor:
        return A.ArrayCtor(_plain(c), pos=_pos(meta))

    @v_args(meta=True)
    def map_ctor(self, meta: Meta, c: list[Any]) -> A.MapCtor:
        return A.MapCtor(_plain(c), pos=_pos(meta))

    def map_entry(self, c: list[Any]) -> tuple[A.Expr, A.Expr]:
        return (c[0], c[1])

    @v_args(meta=True)
    def struct_ctor(self, meta: Meta, c: list[Any]) -> A.StructCtor:
        return A.StructCtor(_plain(c), pos=_pos(meta))

    def struct_field(self, c: list[Any]) -> tuple[str, A.Expr]:
        return (c[0], c[1])

    @v_args(meta=True)
    def lambda_expr(self, meta: Meta, c: list[Any]) -> A.Lambda:
        return A.Lambda([str(x) for x in c[:-1]], c[-1], pos=_pos(meta))

    def when_clause(self, c: list[Any]) -> tuple[A.Expr, A.Expr]:
        p = _plain(c)
        return (p[0], p[1])

    @v_args(meta=True)
    def searched_case(self, meta: Meta, c: list[Any]) -> A.Case:
        whens = [x for x in c if isinstance(x, tuple)]
        rest = [x for x in _plain(c) if not isinstance(x, tuple)]
        return A.Case(None, whens, rest[0] if rest else None, pos=_pos(meta))

    @v_args(meta=True)
    def simple_case(self, meta: Meta, c: list[Any]) -> A.Case:
        p = _plain(c)
        whens = [x for x in p if isinstance(x, tuple)]
        rest = [x for x in p[1:] if not isinstance(x, tuple)]
        return A.Case(p[0], whens, rest[0] if rest else None, pos=_pos(meta))

    @v_args(meta=True)
    def cast_expr(self, meta: Meta, c: list[Any]) -> A.Cast:
        p = _plain(c)
        return A.Cast(p[0], p[1], pos=_pos(meta))

    # -- queries ----------------------------------------------------------------------------------
    @v_args(meta=True)
    def select_all(self, meta: Meta, c: list[Any]) -> A.SelectItem:
        return A.SelectItem(None, pos=_pos(meta))

    @v_args(meta=True)
    def select_source_all(self, meta: Meta, c: list[Any]) -> A.SelectItem:
        return A.SelectItem(None, star_source=c[0], pos=_pos(meta))

    @v_args(meta=True)
    def select_expr(self, meta: Meta, c: list[Any]) -> A.SelectItem:
        p = _plain(c)
        return A.SelectItem(p[0], p[1] if len(p) > 1 else None, pos=_pos(meta))

    @v_args(meta=True)
    def aliased(self, meta: Meta, c: list[Any]) -> A.Source:
        p = _plain(c)
        return A.Source(p[0], p[1] if len(p) > 1 else None, pos=_pos(meta))

    def inner(self, c: list[Any]) -> str:
        return "INNER"

    def left(self, c: list[Any]) -> str:
        return "LEFT"

    def right(self, c: list[Any]) -> str:
        return "RIGHT"

    def full(self, c: list[Any]) -> str:
        return "FULL"

    def join_type(self, c: list[Any]) -> str:
        return str(c[0])

    def grace(self, c: list[Any]) -> tuple[str, int]:
        return ("grace", _plain(c)[0])

    def within(self, c: list[Any]) -> dict[str, Any]:
        p = _plain(c)
        return {"within": (p[0], p[0]), "grace": p[1][1] if len(p) > 1 else None}

    def within_asym(self, c: list[Any]) -> dict[str, Any]:
        p = _plain(c)
        return {"within": (p[0], p[1]), "grace": p[2][1] if len(p) > 2 else None}

    @v_args(meta=True)
    def join(self, meta: Meta, c: list[Any]) -> A.Join:
        p = _plain(c)
        how = p[0] if isinstance(p[0], str) else "INNER"
        src = next(x for x in p if isinstance(x, A.Source))
        within = next((x for x in p if isinstance(x, dict)), None)
        on = p[-1]
        return A.Join(how, src, on, within["within"] if within else None, within["grace"] if within else None,
                      pos=_pos(meta))

    def relation(self, c: list[Any]) -> tuple[A.Source, list[A.Join]]:
        return (c[0], list(c[1:]))

    def retention(self, c: list[Any]) -> tuple[str, int]:
        return ("retention", _plain(c)[0])

    def window_grace(self, c: list[Any]) -> tuple[str, int]:
        return ("grace", _plain(c)[0])

    def _window(self, kind: str, size: int, advance: int | None, opts: list[Any]) -> A.WindowSpec:
        o: dict[str, int] = dict(x for x in opts if isinstance(x, tuple))
        return A.WindowSpec(kind, size, advance, o.get("grace"), o.get("retention"))

    def tumbling(self, c: list[Any]) -> A.WindowSpec:
        p = _plain(c)
        return self._window("TUMBLING", p[0], None, p[1:])

    def hopping(self, c: list[Any]) -> A.WindowSpec:
        p = _plain(c)
        return self._window("HOPPING", p[0], p[1], p[2:])

    def session(self, c: list[Any]) -> A.WindowSpec:
        p = _plain(c)
        return self._window("SESSION", p[0], None, p[1:])

    def window_clause(self, c: list[Any]) -> tuple[str, Any]:
        return ("window", _plain(c)[0])

    def where_clause(self, c: list[Any]) -> tuple[str, Any]:
        return ("where", _plain(c)[0])

    def group_by(self, c: list[Any]) -> tuple[str, Any]:
        return ("group_by", _plain(c))

    def partition_by(self, c: list[Any]) -> tuple[str, Any]:
        return ("partition_by", _plain(c))

    def having(self, c: list[Any]) -> tuple[str, Any]:
        return ("having", _plain(c)[0])

    def emit_changes(self, c: list[Any]) -> tuple[str, Any]:
        return ("emit", "CHANGES")

    def emit_final(self, c: list[Any]) -> tuple[str, Any]:
        return ("emit", "FINAL")

    def limit(self, c: list[Any]) -> tuple[str, Any]:
        return ("limit", int(_plain(c)[0]))

    @v_args(meta=True)
    def query(self, meta: Meta, c: list[Any]) -> A.SelectStatement:
        p = _plain(c)
        items = [x for x in p if isinstance(x, A.SelectItem)]
        rel = next(x for x in p if isinstance(x, tuple) and isinstance(x[0], A.Source))
        clauses: dict[str, Any] = dict(x for x in p if isinstance(x, tuple) and isinstance(x[0], str))
        q = A.Query(items, rel[0], rel[1], clauses.get("window"), clauses.get("where"), clauses.get("group_by", []),
                    clauses.get("partition_by", []), clauses.get("having"), clauses.get("emit"), clauses.get("limit"),
                    pos=_pos(meta))
        return self._stmt(meta, A.SelectStatement(q))  # type: ignore[return-value]

    # -- statements -------------------------------------------------------------------------------
    def kind(self, c: list[Any]) -> str:
        return str(c[0]).upper()

    def property(self, c: list[Any]) -> tuple[str, Any]:
        lit = c[1]
        return (c[0], lit.value if isinstance(lit, A.Literal) else lit)

    def with_clause(self, c: list[Any]) -> dict[str, Any]:
        return dict(_plain(c))

    def key_col(self, c: list[Any]) -> str:
        return "KEY"

    def primary_key_col(self, c: list[Any]) -> str:
        return "PRIMARY KEY"

    def headers_col(self, c: list[Any]) -> str:
        return "HEADERS"

    def header_col(self, c: list[Any]) -> tuple[str, str]:
        return ("HEADER", next(unquote_string(x) for x in c if isinstance(x, Token) and x.type == "STRING"))

    @v_args(meta=True)
    def column_def(self, meta: Meta, c: list[Any]) -> A.ColumnDef:
        constraint = c[2] if len(c) > 2 else None
        if isinstance(constraint, tuple):
            return A.ColumnDef(c[0], c[1], constraint[0], pos=_pos(meta), header=constraint[1])
        return A.ColumnDef(c[0], c[1], constraint, pos=_pos(meta))

    def or_replace(self, c: list[Any]) -> str:
        return "or_replace"

    def source_kw(self, c: list[Any]) -> str:
        return "source"

    def if_not_exists(self, c: list[Any]) -> str:
        return "if_not_exists"

    def if_exists(self, c: list[Any]) -> str:
        return "if_exists"

    def delete_topic(self, c: list[Any]) -> str:
        return "delete_topic"

    @v_args(meta=True)
    def create_source(self, meta: Meta, c: list[Any]) -> A.Statement:
        p = _plain(c)
        flags = {x for x in p if x in ("or_replace", "source", "if_not_exists")}
        rest = [x for x in p if not (isinstance(x, str) and x in flags)]
        kind, name = rest[0], rest[1]
        cols = [x for x in rest if isinstance(x, A.ColumnDef)]
        props = next((x for x in rest if isinstance(x, dict)), {})
        return self._stmt(meta, A.CreateSource(kind, name, cols, _upper_keys(props), "or_replace" in flags,
                                               "if_not_exists" in flags, "source" in flags))

    @v_args(meta=True)
    def create_as(self, meta: Meta, c: list[Any]) -> A.Statement:
        p = _plain(c)
        flags = {x for x in p if x in ("or_replace", "if_not_exists")}
        rest = [x for x in p if not (isinstance(x, str) and x in flags)]
        props = next((x for x in rest if isinstance(x, dict)), {})
        q = next(x for x in rest if isinstance(x, A.SelectStatement)).query
        return self._stmt(meta, A.CreateAs(rest[0], rest[1], _upper_keys(props), q, "or_replace" in flags,
                                           "if_not_exists" in flags))

    @v_args(meta=True)
    def insert_select(self, meta: Meta, c: list[Any]) -> A.Statement:
        p = _plain(c)
        props = next((x for x in p if isinstance(x, dict)), {})
        return self._stmt(meta, A.InsertSelect(p[0], _upper_keys(props), p[-1].query))

    @v_args(meta=True)
    def insert_values(self, meta: Meta, c: list[Any]) -> A.Statement:
        p = _plain(c)
        names = [x for x in p[1:] if isinstance(x, str)]
        values = [x for x in p[1:] if isinstance(x, A.Expr)]
        return self._stmt(meta, A.InsertValues(p[0], names or None, values))

    @v_args(meta=True)
    def drop(self, meta: Meta, c: list[Any]) -> A.Statement:
        p = _plain(c)
        return self._stmt(meta, A.Drop(p[0], next(x for x in p[1:] if x not in ("if_exists", "delete_topic")),
                                       "if_exists" in p, "delete_topic" in p))

    @v_args(meta=True)
    def terminate(self, meta: Meta, c: list[Any]) -> A.Statement:
        p = _plain(c)
        return self._stmt(meta, A.Terminate(p[0] if p else None))

    def show_what(self, c: list[Any]) -> str:
        return str(c[0]).upper()

    @v_args(meta=True)
    def show(self, meta: Meta, c: list[Any]) -> A.Statement:
        what = next(x for x in c if isinstance(x, str) and not isinstance(x, Token))
        return self._stmt(meta, A.Show(what, _kw(c, "EXTENDED")))

    @v_args(meta=True)
    def describe(self, meta: Meta, c: list[Any]) -> A.Statement:
        return self._stmt(meta, A.Describe(_plain(c)[0], _kw(c, "EXTENDED")))

    @v_args(meta=True)
    def describe_list(self, meta: Meta, c: list[Any]) -> A.Statement:
        what = "STREAMS" if _kw(c, "STREAMS") else "TABLES"
        return self._stmt(meta, A.DescribeList(what, _kw(c, "EXTENDED")))

    @v_args(meta=True)
    def describe_function(self, meta: Meta, c: list[Any]) -> A.Statement:
        return self._stmt(meta, A.DescribeFunction(_plain(c)[0]))

    @v_args(meta=True)
    def explain(self, meta: Meta, c: list[Any]) -> A.Statement:
        p = _plain(c)
        if isinstance(p[0], A.SelectStatement):
            return self._stmt(meta, A.Explain(None, p[0].query))
        return self._stmt(meta, A.Explain(p[0], None))

    @v_args(meta=True)
    def set_prop(self, meta: Meta, c: list[Any]) -> A.Statement:
        s = [unquote_string(x) for x in c if isinstance(x, Token) and x.type == "STRING"]
        return self._stmt(meta, A.SetProperty(s[0], s[1]))

    @v_args(meta=True)
    def unset_prop(self, meta: Meta, c: list[Any]) -> A.Statement:
        s = [unquote_string(x) for x in c if isinstance(x, Token) and x.type == "STRING"]
        return self._stmt(meta, A.UnsetProperty(s[0]))

    @v_args(meta=True)
    def print_topic(self, meta: Meta, c: list[Any]) -> A.Statement:
        topic = c[1] if isinstance(c[1], str) and not isinstance(c[1], Token) else unquote_string(c[1])
        limit = next((int(x) for x in c if isinstance(x, Token) and x.type == "INT"), None)
        return self._stmt(meta, A.Print(topic, _kw(c, "FROM_BEGINNING"), limit))

    def script(self, c: list[Any]) -> list[A.Statement]:
        return [x for x in c if isinstance(x, A.Statement)]


def _upper_keys(props: dict[str, Any]) -> dict[str, Any]:
    return {k.upper(): v for k, v in props.items()}


def _describe(exc: UnexpectedInput, text: str) -> str:
    if isinstance(exc, UnexpectedEOF):
        return "Syntax error: the statement ended early (unexpected end of input)"
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        return f"Syntax error: unexpected character {text[pos:pos + 1]!r}"
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        got = "end of input" if tok.type == "$END" else f"'{tok}'"
        expected = sorted(_pretty_expected(e) for e in exc.expected if not e.startswith("_") and e != "$END")[:12]
        more = f"; expecting one of {', '.join(expected)}" if expected else ""
        return f"Syntax error at or near {got}{more}"
    return f"Syntax error: {exc}"


_PUNCT = {"SEMICOLON": "';'", "LPAR": "'('", "RPAR": "')'", "COMMA": "','", "EQUAL": "'='", "STAR": "'*'",
          "DOT": "'.'", "LSQB": "'['", "RSQB": "']'", "MORETHAN": "'>'", "LESSTHAN": "'<'", "NAME": "an identifier",
          "QUOTED": "an identifier", "STRING": "a string", "INT": "a number"}


def _pretty_expected(term: str) -> str:
    return _PUNCT.get(term, term if term.isalpha() else term.lower())


def parse(text: str) -> list[A.Statement]:
    """Parse a script of one or more statements separated by ';'."""
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as e:
        line, col = getattr(e, "line", None), getattr(e, "column", None)
        if isinstance(e, UnexpectedEOF) or line in (None, -1):
            lines = text.rstrip().splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1
        raise SqlSyntaxError(_describe(e, text), line, col) from None
    try:
        out: list[A.Statement] = _Build(text).transform(tree)
    except Exception as e:  # lark wraps errors raised in callbacks
        inner = getattr(e, "orig_exc", e)
        if isinstance(inner, SqlError):
            raise inner from None
        raise
    return out


def parse_one(text: str) -> A.Statement:
    stmts = parse(text)
    if len(stmts) != 1:
        raise SqlError(f"Expected exactly one statement, got {len(stmts)}")
    return stmts[0]


def split_statements(text: str) -> list[str]:
    """The statements' texts (each ending with ';'), for running a script one at a time."""
    return [s.text for s in parse(text)]


# -- queries that differ only in their string literals ---------------------------------------------
# A pull query is mostly the same text with another key (``... WHERE id = 'u17';``), and parsing
# is most of its cost. A SELECT whose string literals are replaced by fillers of the same length
# (so every position stays) is parsed once; the same template later gets a copy of that tree with
# the literals' values put back, found by their positions. Texts with comments or quoted
# identifiers (`...`: where a quote need not start a literal) are parsed as they are, and so is a tree
# whose string literals are not exactly the text's (a string that is no literal, e.g. ESCAPE).
_STRING = re.compile(r"'(?:[^']|'')*'")
_TEMPLATES: dict[str, A.SelectStatement] = {}
_TEMPLATES_MAX = 256
_templates_lock = threading.Lock()


def parse_select(text: str) -> list[A.Statement]:
    """:func:`parse`, with the template cache above for a lone SELECT."""
    if "'" not in text or '"' in text or "--" in text or "/*" in text or "`" in text:
        return parse(text)
    lits = list(_STRING.finditer(text))
    template = _STRING.sub(lambda m: "'" + "x" * (len(m.group()) - 2) + "'", text)
    with _templates_lock:
        cached = _TEMPLATES.get(template)
    if cached is None:
        try:
            sts = parse(template)
        except SqlError:
            return parse(text)  # (its own message)
        if len(sts) != 1 or not isinstance(sts[0], A.SelectStatement):
            return parse(text)
        cached = sts[0]
        with _templates_lock:
            if len(_TEMPLATES) >= _TEMPLATES_MAX:
                _TEMPLATES.clear()
            _TEMPLATES[template] = cached
    values: dict[A.Pos, tuple[str, str]] = {}
    for m in lits:
        line = text.count("\n", 0, m.start()) + 1
        col = m.start() - text.rfind("\n", 0, m.start())
        values[(line, col)] = ("x" * (len(m.group()) - 2), unquote_string(m.group()))
    used: list[A.Pos] = []
    st = _with_values(cached, values, used)
    if sorted(used) != sorted(values):
        return parse(text)
    start = template.find(cached.text[:-1])
    st.text = text[start:start + len(cached.text) - 1] + ";"
    return [st]


def _with_values(node: Any, values: dict[A.Pos, tuple[str, str]], used: list[A.Pos]) -> Any:
    """A copy of a tree (dataclasses, lists, tuples) with the STRING literals at ``values``'
    positions holding their values (``used`` gets the positions)."""
    if isinstance(node, A.Literal):
        got = values.get(node.pos) if node.kind == "STRING" else None
        if got is not None and node.value == got[0]:
            used.append(node.pos)
            return A.Literal(got[1], "STRING", pos=node.pos)
        return dataclasses.replace(node)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return dataclasses.replace(node, **{f.name: _with_values(getattr(node, f.name), values, used)
                                            for f in dataclasses.fields(node) if f.init})
    if isinstance(node, list):
        return [_with_values(x, values, used) for x in node]
    if isinstance(node, tuple):
        return tuple(_with_values(x, values, used) for x in node)
    return node
