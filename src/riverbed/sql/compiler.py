"""Semantic analysis of expressions: names resolved against a scope, types checked (errors with
line and column), and each expression compiled to a Python closure ``fn(row) -> value``.

NULL semantics as in ksqlDB (and SQL): arithmetic and functions of NULL are NULL; comparisons
with NULL are NULL (a WHERE treats NULL as false); AND / OR are three-valued.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from . import ast as A
from . import functions as F
from . import types as T
from .errors import SqlError

Fn = Callable[[Any], Any]
LAMBDA_KEY = "\x00lambda"


@dataclass
class Compiled:
    fn: Fn
    type: T.SqlType
    # what the hot paths specialize on: a flat row's column (``fn`` is ``row.get(column)``), a
    # literal (``fn`` returns ``value``), a boolean's WHERE test (``fn(row) is True``, cheaper)
    column: str | None = None
    literal: bool = False
    value: Any = None
    test: Fn | None = None


def err(node: A.Expr | A.SelectItem, message: str) -> SqlError:
    line, col = node.pos
    return SqlError(message, line or None, col or None)


def show(e: A.Expr) -> str:
    """An expression as ksqlDB prints it in messages and generated column names."""
    if isinstance(e, A.Column):
        return f"{e.source}.{e.name}" if e.source else e.name
    if isinstance(e, A.Literal):
        return "NULL" if e.value is None else f"'{e.value}'" if e.kind == "STRING" else str(e.value)
    if isinstance(e, A.Call):
        return f"{e.name}({'*' if e.star else ', '.join(show(a) for a in e.args)})"
    if isinstance(e, A.Binary):
        return f"({show(e.left)} {e.op} {show(e.right)})"
    if isinstance(e, A.Deref):
        return f"{show(e.operand)}->{e.field}"
    if isinstance(e, A.Subscript):
        return f"{show(e.operand)}[{show(e.index)}]"
    if isinstance(e, A.Unary):
        return f"({e.op} {show(e.operand)})"
    if isinstance(e, A.Cast):
        return f"CAST({show(e.operand)} AS {e.to})"
    return type(e).__name__.upper()


class Scope:
    """Columns visible to an expression: ``sources`` maps a source's name (or alias) to its
    columns; with one source rows are flat dicts, with several ``{alias: row}``."""

    def __init__(self, sources: dict[str, list[tuple[str, T.SqlType]]], flat: bool = True,
                 lambdas: dict[str, T.SqlType] | None = None) -> None:
        self.sources = sources
        self.flat = flat
        self.lambdas = lambdas or {}

    def resolve(self, col: A.Column) -> Compiled:
        name = col.name
        if col.source is None and name in self.lambdas:
            return Compiled(lambda r: r[LAMBDA_KEY][name], self.lambdas[name])
        hits: list[tuple[str, str, T.SqlType]] = []
        for src, cols in self.sources.items():
            if col.source is not None and col.source != src:
                continue
            for n, t in cols:
                if n == name:
                    hits.append((src, n, t))
        if col.source is not None and col.source not in self.sources:
            raise err(col, f"'{col.source}' is not a valid stream/table name or alias.")
        if not hits:
            raise err(col, f"Column '{show(col)}' cannot be resolved.")
        if len(hits) > 1:
            raise err(col, f"Column '{name}' is ambiguous. Could be any of: "
                      + ", ".join(f"{s}.{n}" for s, n, _ in hits))
        src, n, t = hits[0]
        if self.flat:
            return Compiled(lambda r: r.get(n), t, column=n)

        def get(r: Any) -> Any:
            sub = r.get(src)
            return None if sub is None else sub.get(n)
        return Compiled(get, t)


_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_CMP_NAMES = {"=": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS_THAN", "<=": "LESS_THAN_OR_EQUAL", ">": "GREATER_THAN",
              ">=": "GREATER_THAN_OR_EQUAL"}


def _like_regex(pattern: str, escape: str | None) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if escape and c == escape and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def cast_value(v: Any, to: T.SqlType) -> Any:
    if v is None:
        return None
    n = to.name
    try:
        if n == "STRING":
            if isinstance(v, bool):
                return "true" if v else "false"
            return v if isinstance(v, str) else str(v)
        if n in ("INTEGER", "BIGINT"):
            return int(Decimal(v.strip()) if isinstance(v, str) else v)
        if n == "DOUBLE":
            return float(v)
        if n == "DECIMAL":
            return Decimal(str(v)).quantize(Decimal(1).scaleb(-to.scale))
        if n == "BOOLEAN":
            if isinstance(v, str):
                return v.strip().lower() in ("true", "yes", "1", "t", "y")
            return bool(v)
    except (ValueError, ArithmeticError):
        return None  # ksqlDB: a failed cast is NULL (and a processing log entry)
    return v


def _column_test(lc: Compiled, rc: Compiled, op: Callable[[Any, Any], Any]) -> Fn | None:
    """``column <op> literal`` (either way round) as a WHERE test: what ``cmp(row) is True``
    gives, in one call (the row's value is NULL: false)."""
    if lc.column is not None and rc.literal and rc.value is not None:
        n, v = lc.column, rc.value

        def col_lit(r: Any) -> bool:
            a = r.get(n)
            return a is not None and op(a, v) is True
        return col_lit
    if rc.column is not None and lc.literal and lc.value is not None:
        n, v = rc.column, lc.value

        def lit_col(r: Any) -> bool:
            b = r.get(n)
            return b is not None and op(v, b) is True
        return lit_col
    return None


class Compiler:
    """Compiles expressions in a scope. ``special(expr)`` may claim a sub-expression first (the
    planner uses it for GROUP BY keys and aggregate results after an aggregation)."""

    def __init__(self, scope: Scope, special: Callable[[A.Expr], Compiled | None] | None = None,
                 clause: str = "") -> None:
        self.scope = scope
        self.special = special
        self.clause = clause

    def compile(self, e: A.Expr) -> Compiled:
        if self.special is not None:
            got = self.special(e)
            if got is not None:
                return got
        m = getattr(self, "_" + type(e).__name__.lower())
        out: Compiled = m(e)
        return out

    def predicate(self, e: A.Expr) -> Fn:
        c = self.compile(e)
        if c.type.name not in ("BOOLEAN", "NULL", "ANY"):
            raise err(e, f"Type error in {self.clause or 'expression'}: {show(e)} is {c.type}, not BOOLEAN")
        if c.test is not None:
            return c.test
        f = c.fn
        return lambda r: f(r) is True

    # -- leaves ---------------------------------------------------------------------------------
    def _literal(self, e: A.Literal) -> Compiled:
        v = e.value
        t = {"INTEGER": T.INTEGER, "BIGINT": T.BIGINT, "DECIMAL": T.SqlType("DECIMAL", precision=38, scale=10),
             "DOUBLE": T.DOUBLE, "STRING": T.STRING, "BOOLEAN": T.BOOLEAN, "NULL": T.NULL, "INTERVAL": T.BIGINT}[e.kind]
        if e.kind == "DECIMAL":  # ksqlDB reads 1.5 as DECIMAL; DOUBLE arithmetic is the common case in Python
            v = float(v)
            t = T.DOUBLE
        return Compiled(lambda _r: v, t, literal=True, value=v)

    def _column(self, e: A.Column) -> Compiled:
        return self.scope.resolve(e)

    # -- operators --------------------------------------------------------------------------------
    def _binary(self, e: A.Binary) -> Compiled:
        if e.op in ("AND", "OR"):
            left, right = self.predicate_raw(e.left), self.predicate_raw(e.right)
            if e.op == "AND":
                def and_(r: Any) -> Any:
                    a = left(r)
                    if a is False:
                        return False
                    b = right(r)
                    if b is False:
                        return False
                    return None if a is None or b is None else True
                return Compiled(and_, T.BOOLEAN)

            def or_(r: Any) -> Any:
                a = left(r)
                if a is True:
                    return True
                b = right(r)
                if b is True:
                    return True
                return None if a is None or b is None else False
            return Compiled(or_, T.BOOLEAN)
        lc, rc = self.compile(e.left), self.compile(e.right)
        lf, rf = lc.fn, rc.fn
        if e.op in _CMP:
            if not T.compatible(lc.type, rc.type):
                raise err(e, f"Cannot compare {show(e.left)} ({lc.type}) to {show(e.right)} ({rc.type}) with {_CMP_NAMES[e.op]}.")
            op = _CMP[e.op]

            def cmp(r: Any) -> Any:
                a, b = lf(r), rf(r)
                return None if a is None or b is None else op(a, b)
            return Compiled(cmp, T.BOOLEAN, test=_column_test(lc, rc, op))
        if e.op == "||":
            def cat(r: Any) -> Any:
                a, b = lf(r), rf(r)
                return None if a is None or b is None else str(a) + str(b)
            return Compiled(cat, T.STRING)
        if e.op == "+" and lc.type.name == "STRING" and rc.type.name in ("STRING", "NULL"):
            def scat(r: Any) -> Any:
                a, b = lf(r), rf(r)
                return None if a is None or b is None else a + b
            return Compiled(scat, T.STRING)
        for side, c in ((e.left, lc), (e.right, rc)):
            if not (c.type.numeric or c.type.name in ("NULL", "ANY", "TIMESTAMP")):
                raise err(side, f"Error processing expression: {show(e)}. Unsupported arithmetic types. {lc.type} {rc.type}")
        t = T.widest(lc.type, rc.type)
        integral = t.name in ("INTEGER", "BIGINT")
        if e.op == "/":
            def div(r: Any) -> Any:
                a, b = lf(r), rf(r)
                if a is None or b is None or b == 0:
                    return None  # ksqlDB: division by zero is NULL for integers (and logged)
                return int(a / b) if integral else a / b
            return Compiled(div, t)
        if e.op == "%":
            def mod(r: Any) -> Any:
                a, b = lf(r), rf(r)
                if a is None or b is None or b == 0:
                    return None
                return int(__import__("math").fmod(a, b)) if integral else __import__("math").fmod(a, b)
            return Compiled(mod, t)
        arith = {"+": operator.add, "-": operator.sub, "*": operator.mul}[e.op]

        def ar(r: Any) -> Any:
            a, b = lf(r), rf(r)
            return None if a is None or b is None else arith(a, b)
        return Compiled(ar, t)

    def predicate_raw(self, e: A.Expr) -> Fn:
        c = self.compile(e)
        if c.type.name not in ("BOOLEAN", "NULL", "ANY"):
            raise err(e, f"Type error in {self.clause or 'expression'}: {show(e)} is {c.type}, not BOOLEAN")
        return c.fn

    def _unary(self, e: A.Unary) -> Compiled:
        if e.op == "NOT":
            f = self.predicate_raw(e.operand)
            return Compiled(lambda r: None if (v := f(r)) is None else not v, T.BOOLEAN)
        c = self.compile(e.operand)
        if not (c.type.numeric or c.type.name in ("NULL", "ANY")):
            raise err(e, f"Cannot negate {show(e.operand)} ({c.type})")
        g = c.fn
        return Compiled(lambda r: None if (v := g(r)) is None else -v, c.type)

    def _isnull(self, e: A.IsNull) -> Compiled:
        f, neg = self.compile(e.operand).fn, e.negate
        return Compiled(lambda r: (f(r) is None) != neg, T.BOOLEAN)

    def _between(self, e: A.Between) -> Compiled:
        x, lo, hi = self.compile(e.operand), self.compile(e.low), self.compile(e.high)
        for b in (lo, hi):
            if not T.compatible(x.type, b.type):
                raise err(e, f"Cannot compare {show(e.operand)} ({x.type}) to {b.type} with BETWEEN.")
        neg = e.negate

        def between(r: Any) -> Any:
            v, a, b = x.fn(r), lo.fn(r), hi.fn(r)
            if v is None or a is None or b is None:
                return None
            return (a <= v <= b) != neg
        return Compiled(between, T.BOOLEAN)

    def _like(self, e: A.Like) -> Compiled:
        x, p = self.compile(e.operand), self.compile(e.pattern)
        if x.type.name not in ("STRING", "NULL", "ANY"):
            raise err(e, f"LIKE needs a STRING, got {show(e.operand)} ({x.type})")
        cache: dict[str, re.Pattern[str]] = {}
        neg, esc = e.negate, e.escape

        def like(r: Any) -> Any:
            v, pat = x.fn(r), p.fn(r)
            if v is None or pat is None:
                return None
            rx = cache.get(pat)
            if rx is None:
                rx = cache[pat] = _like_regex(pat, esc)
            return (rx.fullmatch(v) is not None) != neg
        return Compiled(like, T.BOOLEAN)

    def _inlist(self, e: A.InList) -> Compiled:
        x = self.compile(e.operand)
        items = [self.compile(i) for i in e.items]
        for node, i in zip(e.items, items, strict=True):
            if not T.compatible(x.type, i.type):
                raise err(node, f"Cannot compare {show(e.operand)} ({x.type}) to {show(node)} ({i.type}) with IN.")
        neg = e.negate

        def inl(r: Any) -> Any:
            v = x.fn(r)
            if v is None:
                return None
            vals = [i.fn(r) for i in items]
            if v in vals:
                return not neg
            return None if None in vals else neg
        return Compiled(inl, T.BOOLEAN)

    def _case(self, e: A.Case) -> Compiled:
        operand = self.compile(e.operand) if e.operand is not None else None
        whens = []
        for cond, res in e.whens:
            if operand is not None:
                c = self.compile(cond)
                if not T.compatible(operand.type, c.type):
                    raise err(cond, f"Cannot compare {operand.type} to {c.type} in CASE.")
                whens.append((c.fn, self.compile(res)))
            else:
                whens.append((self.predicate_raw(cond), self.compile(res)))
        default = self.compile(e.default) if e.default is not None else None
        types = [w[1].type for w in whens] + ([default.type] if default else [])
        out_t = next((t for t in types if t.name != "NULL"), T.NULL)
        for (_cond, res_node), t in zip(e.whens, types, strict=False):
            if not T.compatible(out_t, t):
                raise err(res_node, f"Invalid Case expression. Type for all 'THEN' clauses should be the same. "
                          f"THEN expression '{show(res_node)}' has type: {t}. Previous THEN expression(s) type: {out_t}.")
        op_fn = operand.fn if operand is not None else None

        def case(r: Any) -> Any:
            if op_fn is not None:
                v = op_fn(r)
                for c, res in whens:
                    if v is not None and v == c(r):
                        return res.fn(r)
            else:
                for c, res in whens:
                    if c(r) is True:
                        return res.fn(r)
            return default.fn(r) if default is not None else None
        return Compiled(case, out_t)

    def _cast(self, e: A.Cast) -> Compiled:
        c = self.compile(e.operand)
        f, to = c.fn, e.to
        return Compiled(lambda r: cast_value(f(r), to), to)

    def _subscript(self, e: A.Subscript) -> Compiled:
        c, i = self.compile(e.operand), self.compile(e.index)
        if c.type.name == "ARRAY":
            f, g = c.fn, i.fn

            def idx(r: Any) -> Any:
                a, k = f(r), g(r)
                if a is None or k is None:
                    return None
                k = k - 1 if k > 0 else len(a) + k  # ksqlDB arrays are 1-based; negative counts from the end
                return a[k] if 0 <= k < len(a) else None
            return Compiled(idx, c.type.element or T.ANY)
        if c.type.name in ("MAP", "ANY"):
            f, g = c.fn, i.fn
            return Compiled(lambda r: None if (m := f(r)) is None else m.get(g(r)), c.type.element or T.ANY)
        raise err(e, f"Subscript needs an ARRAY or a MAP, got {show(e.operand)} ({c.type})")

    def _deref(self, e: A.Deref) -> Compiled:
        c = self.compile(e.operand)
        if c.type.name == "STRUCT":
            ft = c.type.field_type(e.field)
            if ft is None:
                raise err(e, f"Could not find field '{e.field}' in '{show(e.operand)}'.")
            name = next(n for n, _ in c.type.fields if n.upper() == e.field.upper())
        elif c.type.name == "ANY":
            ft, name = T.ANY, e.field
        else:
            raise err(e, f"Expected STRUCT type for '->', got {show(e.operand)} ({c.type})")
        f = c.fn
        return Compiled(lambda r: None if (s := f(r)) is None else s.get(name), ft)

    def _arrayctor(self, e: A.ArrayCtor) -> Compiled:
        items = [self.compile(i) for i in e.items]
        t = next((i.type for i in items if i.type.name != "NULL"), T.ANY)
        return Compiled(lambda r: [i.fn(r) for i in items], T.array(t))

    def _mapctor(self, e: A.MapCtor) -> Compiled:
        entries = [(self.compile(k), self.compile(v)) for k, v in e.entries]
        kt = entries[0][0].type if entries else T.STRING
        vt = next((v.type for _, v in entries if v.type.name != "NULL"), T.ANY)
        return Compiled(lambda r: {k.fn(r): v.fn(r) for k, v in entries}, T.map_of(kt, vt))

    def _structctor(self, e: A.StructCtor) -> Compiled:
        fields = [(n, self.compile(v)) for n, v in e.fields]
        return Compiled(lambda r: {n: c.fn(r) for n, c in fields}, T.struct([(n, c.type) for n, c in fields]))

    def _lambda(self, e: A.Lambda) -> Compiled:
        inner_scope = Scope(self.scope.sources, self.scope.flat, {**self.scope.lambdas, **{p: T.ANY for p in e.params}})
        body = Compiler(inner_scope, self.special, self.clause).compile(e.body).fn
        params = e.params

        def make(r: Any) -> Any:
            def call(*args: Any) -> Any:
                env = dict(r.get(LAMBDA_KEY, {})) if isinstance(r, dict) else {}
                env.update(zip(params, args, strict=False))
                return body({**r, LAMBDA_KEY: env})
            return call
        return Compiled(make, T.ANY)

    def _call(self, e: A.Call) -> Compiled:
        if F.lookup_aggregate(e.name) is not None:
            raise err(e, f"Aggregate function {e.name} is not allowed here ({self.clause or 'a non-aggregate query'}); "
                      "aggregate functions need a GROUP BY")
        f = F.lookup_scalar(e.name)
        if f is None:
            raise err(e, f"Can't find any functions with the name '{e.name}'")
        if e.star:
            raise err(e, f"Function '{e.name}' does not take *")
        try:
            F.check_arity(f, len(e.args))
        except SqlError as x:
            raise err(e, x.message) from None
        args = [self.compile(a) for a in e.args]
        fns = [a.fn for a in args]
        t = f.returns([a.type for a in args])
        fn, null_safe = f.fn, f.null_safe

        def call(r: Any) -> Any:
            vals = [g(r) for g in fns]
            if not null_safe and any(v is None for v in vals):
                return None
            try:
                return fn(*vals)
            except Exception:  # ksqlDB: a function error gives NULL (and a processing log entry)
                return None
        return Compiled(call, t)


def find_aggregates(e: A.Expr | None) -> list[A.Call]:
    """Aggregate calls in an expression (outermost only)."""
    out: list[A.Call] = []

    def walk(x: Any) -> None:
        if isinstance(x, A.Call) and F.lookup_aggregate(x.name) is not None:
            out.append(x)
            return
        if isinstance(x, A.Expr):
            for v in vars(x).values():
                walk(v)
        elif isinstance(x, list | tuple):
            for v in x:
                walk(v)
    walk(e)
    return out


def columns_in(e: A.Expr | None) -> list[A.Column]:
    out: list[A.Column] = []

    def walk(x: Any) -> None:
        if isinstance(x, A.Column):
            out.append(x)
        elif isinstance(x, A.Expr):
            for v in vars(x).values():
                walk(v)
        elif isinstance(x, list | tuple):
            for v in x:
                walk(v)
    walk(e)
    return out
