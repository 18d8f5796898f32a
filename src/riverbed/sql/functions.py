"""Scalar and aggregate functions, and the decorators that register Python UDFs and UDAFs.

```python
from riverbed.sql import udf, udaf, types

@udf("MASK_EMAIL", returns=types.STRING)
def mask_email(s: str | None) -> str | None:
    return None if s is None else s[0] + "***" + s[s.index("@"):]

@udaf("GEOMEAN", returns=types.DOUBLE)
class GeoMean:
    def init(self): return [0.0, 0]
    def add(self, acc, x): return acc if x is None else [acc[0] + math.log(x), acc[1] + 1]
    def merge(self, a, b): return [a[0] + b[0], a[1] + b[1]]
    def result(self, acc): return math.exp(acc[0] / acc[1]) if acc[1] else None
```

Scalar functions return NULL for NULL arguments unless they are about NULLs (COALESCE, IFNULL,
NULLIF). Aggregate states must be JSON-like (numbers, strings, lists, dicts): they are kept in
state stores and their changelogs.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from . import types as T
from .errors import SqlError

TypeRule = Callable[[list[T.SqlType]], T.SqlType]


@dataclass
class ScalarFunction:
    name: str
    fn: Callable[..., Any]
    returns: TypeRule
    min_args: int
    max_args: int | None
    null_safe: bool = False  # called with NULL arguments (else NULL in, NULL out)
    description: str = ""
    user: bool = False


@dataclass
class AggregateFunction:
    name: str
    init: Callable[[], Any]
    add: Callable[[Any, Any], Any]  # (state, value) -> state; value is a tuple for several args
    merge: Callable[[Any, Any], Any]
    result: Callable[[Any], Any]
    returns: TypeRule
    args: int = 1  # 0: COUNT(*)
    description: str = ""
    user: bool = False
    undo: Callable[[Any, Any], Any] | None = None  # (state, value) -> state: aggregations over tables


SCALARS: dict[str, ScalarFunction] = {}
AGGREGATES: dict[str, AggregateFunction] = {}


def _fixed(t: T.SqlType) -> TypeRule:
    return lambda _args: t


def _first(args: list[T.SqlType]) -> T.SqlType:
    return args[0] if args else T.ANY


def _scalar(name: str, returns: T.SqlType | TypeRule, min_args: int, max_args: int | None = -1,
            null_safe: bool = False, description: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        rule = _fixed(returns) if isinstance(returns, T.SqlType) else returns
        SCALARS[name] = ScalarFunction(name, fn, rule, min_args, min_args if max_args == -1 else max_args, null_safe,
                                       description or (fn.__doc__ or "").strip())
        return fn
    return deco


def udf(name: str, returns: T.SqlType, null_safe: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a Python function as a scalar SQL function (any number of arguments)."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        import inspect

        params = inspect.signature(fn).parameters.values()
        required = sum(1 for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
        varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
        total = None if varargs else sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
        SCALARS[name.upper()] = ScalarFunction(name.upper(), fn, _fixed(returns), required, total, null_safe,
                                               (fn.__doc__ or "").strip(), user=True)
        return fn
    return deco


def udaf(name: str, returns: T.SqlType, args: int = 1) -> Callable[[type], type]:
    """Register a class with ``init() -> state``, ``add(state, value) -> state``,
    ``merge(a, b) -> state`` (session windows), ``result(state) -> value`` and, to aggregate
    tables, ``undo(state, value) -> state`` (a row leaving the group)."""
    def deco(cls: type) -> type:
        inst = cls()
        merge = getattr(inst, "merge", None) or (lambda a, _b: a)
        AGGREGATES[name.upper()] = AggregateFunction(name.upper(), inst.init, inst.add, merge, inst.result,
                                                     _fixed(returns), args, (cls.__doc__ or "").strip(), user=True,
                                                     undo=getattr(inst, "undo", None))
        return cls
    return deco


# -- aggregates ---------------------------------------------------------------------------------
def _agg(name: str, init: Callable[[], Any], add: Callable[[Any, Any], Any], merge: Callable[[Any, Any], Any],
         result: Callable[[Any], Any], returns: TypeRule, args: int = 1, description: str = "") -> None:
    AGGREGATES[name] = AggregateFunction(name, init, add, merge, result, returns, args, description)


def _nn(f: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Ignore NULL inputs (as ksqlDB's aggregates do)."""
    return lambda s, v: s if v is None else f(s, v)


def _opt(f: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda a, b: b if a is None else a if b is None else f(a, b)


def _sum_type(args: list[T.SqlType]) -> T.SqlType:
    t = _first(args)
    return T.BIGINT if t.name == "INTEGER" else t


_agg("COUNT", lambda: 0, lambda s, v: s + (0 if v is None else 1), lambda a, b: a + b, lambda s: s, _fixed(T.BIGINT),
     description="COUNT(*): rows; COUNT(col): rows where col is not NULL")
_agg("SUM", lambda: None, _nn(lambda s, v: v if s is None else s + v), _opt(lambda a, b: a + b),
     lambda s: s if s is not None else None, _sum_type, description="sum of the non-NULL values")
_agg("AVG", lambda: [0, 0], _nn(lambda s, v: [s[0] + v, s[1] + 1]), lambda a, b: [a[0] + b[0], a[1] + b[1]],
     lambda s: s[0] / s[1] if s[1] else None, _fixed(T.DOUBLE), description="average of the non-NULL values")
AGGREGATES["COUNT"].undo = lambda s, v: s - (0 if v is None else 1)
AGGREGATES["SUM"].undo = lambda s, v: s if v is None or s is None else s - v
AGGREGATES["AVG"].undo = lambda s, v: s if v is None else [s[0] - v, s[1] - 1]
_agg("MIN", lambda: None, _nn(lambda s, v: v if s is None or v < s else s), _opt(min), lambda s: s, _first)
_agg("MAX", lambda: None, _nn(lambda s, v: v if s is None or v > s else s), _opt(max), lambda s: s, _first)
_agg("LATEST_BY_OFFSET", lambda: None, _nn(lambda _s, v: v), _opt(lambda _a, b: b), lambda s: s, _first,
     description="the value of the latest record (NULLs ignored)")
_agg("EARLIEST_BY_OFFSET", lambda: None, _nn(lambda s, v: v if s is None else s), _opt(lambda a, _b: a), lambda s: s,
     _first, description="the value of the earliest record (NULLs ignored)")
_agg("COLLECT_LIST", lambda: [], lambda s, v: [*s, v], lambda a, b: a + b, lambda s: s, lambda a: T.array(_first(a)))
AGGREGATES["COLLECT_LIST"].undo = lambda s, v: (s[:s.index(v)] + s[s.index(v) + 1:]) if v in s else s
_agg("COLLECT_SET", lambda: [], lambda s, v: s if v in s else [*s, v], lambda a, b: a + [x for x in b if x not in a],
     lambda s: s, lambda a: T.array(_first(a)))
_agg("COUNT_DISTINCT", lambda: [], _nn(lambda s, v: s if v in s else [*s, v]), lambda a, b: a + [x for x in b if x not in a],
     len, _fixed(T.BIGINT), description="number of distinct non-NULL values")


def _topk_add(s: Any, v: Any) -> Any:
    val, k = v
    if val is None:
        return s
    out = sorted([*s, val], reverse=True)
    return out[: int(k)]


_agg("TOPK", lambda: [], _topk_add, lambda a, b: sorted(a + b, reverse=True)[: max(len(a), len(b))], lambda s: s,
     lambda a: T.array(_first(a)), args=2, description="TOPK(col, k): the k largest values, largest first")


# -- scalar functions ------------------------------------------------------------------------------
def _num_first(args: list[T.SqlType]) -> T.SqlType:
    return _first(args)


_scalar("ABS", _num_first, 1)(abs)
_scalar("CEIL", _num_first, 1)(lambda x: type(x)(math.ceil(x)) if not isinstance(x, int) else x)
_scalar("FLOOR", _num_first, 1)(lambda x: type(x)(math.floor(x)) if not isinstance(x, int) else x)
_scalar("SIGN", T.INTEGER, 1)(lambda x: (x > 0) - (x < 0))
_scalar("SQRT", T.DOUBLE, 1)(lambda x: math.sqrt(x))
_scalar("EXP", T.DOUBLE, 1)(lambda x: math.exp(x))
_scalar("LN", T.DOUBLE, 1)(lambda x: math.log(x))
_scalar("LOG", T.DOUBLE, 1, 2)(lambda a, b=None: math.log10(a) if b is None else math.log(b, a))
_scalar("POWER", T.DOUBLE, 2)(lambda a, b: float(a) ** float(b))
_scalar("RANDOM", T.DOUBLE, 0)(lambda: __import__("random").random())
_scalar("GREATEST", _first, 1, None)(lambda *xs: max(x for x in xs if x is not None))
_scalar("LEAST", _first, 1, None)(lambda *xs: min(x for x in xs if x is not None))


def _round(x: Any, d: int = 0) -> Any:
    if isinstance(x, Decimal):
        return x.quantize(Decimal(1).scaleb(-d)) if d else x.to_integral_value()
    if isinstance(x, int) and d >= 0:
        return x
    q = Decimal(str(x)).quantize(Decimal(1).scaleb(-d), rounding="ROUND_HALF_UP")
    return float(q) if d > 0 else int(q)


_scalar("ROUND", lambda a: T.BIGINT if a[0].name in ("DOUBLE", "INTEGER", "BIGINT") and len(a) == 1 else a[0], 1, 2)(_round)
_scalar("TRUNC", _num_first, 1, 1)(lambda x: math.trunc(x) if not isinstance(x, Decimal) else x.to_integral_value("ROUND_DOWN"))

# strings
_scalar("LCASE", T.STRING, 1)(str.lower)
_scalar("UCASE", T.STRING, 1)(str.upper)
_scalar("LOWER", T.STRING, 1)(str.lower)
_scalar("UPPER", T.STRING, 1)(str.upper)
_scalar("TRIM", T.STRING, 1)(str.strip)
_scalar("LTRIM", T.STRING, 1)(str.lstrip)
_scalar("RTRIM", T.STRING, 1)(str.rstrip)
_scalar("LEN", T.INTEGER, 1)(len)
_scalar("LENGTH", T.INTEGER, 1)(len)
_scalar("CONCAT", T.STRING, 1, None, null_safe=True)(lambda *xs: "".join("" if x is None else str(x) for x in xs))
_scalar("CONCAT_WS", T.STRING, 2, None, null_safe=True)(
    lambda sep, *xs: None if sep is None else sep.join(str(x) for x in xs if x is not None))
_scalar("REPLACE", T.STRING, 3)(lambda s, a, b: s.replace(a, b))
_scalar("REVERSE", T.STRING, 1)(lambda s: s[::-1])
_scalar("INITCAP", T.STRING, 1)(lambda s: " ".join(w[:1].upper() + w[1:].lower() for w in s.split(" ")))
_scalar("LPAD", T.STRING, 3)(lambda s, n, p: (p * n + s)[-n:] if len(s) < n and p else s[:n])
_scalar("RPAD", T.STRING, 3)(lambda s, n, p: (s + p * n)[:n] if len(s) < n and p else s[:n])
_scalar("INSTR", T.INTEGER, 2)(lambda s, sub: s.find(sub) + 1)
_scalar("SPLIT", T.array(T.STRING), 2)(lambda s, d: list(s) if d == "" else s.split(d))
_scalar("REGEXP_REPLACE", T.STRING, 3)(lambda s, p, r: re.sub(p, r, s))
_scalar("REGEXP_EXTRACT", T.STRING, 2, 3)(lambda p, s, g=0: (m.group(g) if (m := re.search(p, s)) else None))
_scalar("REGEXP_SPLIT_TO_ARRAY", T.array(T.STRING), 2)(lambda s, p: re.split(p, s))
_scalar("ENCODE", T.STRING, 3)(lambda s, f, t: _encode(s, f, t))
_scalar("UUID", T.STRING, 0)(lambda: str(uuid.uuid4()))
_scalar("CHR", T.STRING, 1)(chr)
_scalar("MASK", T.STRING, 1)(lambda s: "".join("X" if c.isupper() else "x" if c.islower() else "n" if c.isdigit() else "-" for c in s))


def _substring(s: str, pos: int, length: int | None = None) -> str:
    start = pos - 1 if pos > 0 else len(s) + pos
    start = max(start, 0)
    return s[start:] if length is None else s[start:start + length]


_scalar("SUBSTRING", T.STRING, 2, 3)(_substring)


def _encode(s: str, frm: str, to: str) -> str:
    frm, to = frm.lower(), to.lower()
    decoders: dict[str, Callable[[str], bytes]] = {"hex": bytes.fromhex, "utf8": str.encode, "ascii": str.encode,
                                                    "base64": base64.b64decode}
    encoders: dict[str, Callable[[bytes], str]] = {"hex": bytes.hex, "utf8": bytes.decode,
                                                    "ascii": lambda b: b.decode("ascii"),
                                                    "base64": lambda b: base64.b64encode(b).decode()}
    return encoders[to](decoders[frm](s))


_BYTES_TO: dict[str, Callable[[bytes], str]] = {"hex": bytes.hex, "utf8": bytes.decode, "ascii": lambda b: b.decode("ascii"),
                                                "base64": lambda b: base64.b64encode(b).decode()}
_TO_BYTES: dict[str, Callable[[str], bytes]] = {"hex": bytes.fromhex, "utf8": str.encode,
                                                "ascii": lambda s: s.encode("ascii"), "base64": base64.b64decode}
_scalar("FROM_BYTES", T.STRING, 2)(lambda b, enc: _BYTES_TO[enc.lower()](bytes(b)))  # e.g. a HEADER('k') column
_scalar("TO_BYTES", T.BYTES, 2)(lambda s, enc: _TO_BYTES[enc.lower()](s))


# null handling
_scalar("COALESCE", _first, 1, None, null_safe=True)(lambda *xs: next((x for x in xs if x is not None), None))
_scalar("IFNULL", _first, 2, null_safe=True)(lambda a, b: b if a is None else a)
_scalar("NULLIF", _first, 2, null_safe=True)(lambda a, b: None if a == b else a)
_scalar("IS_DISTINCT_FROM", T.BOOLEAN, 2, null_safe=True)(lambda a, b: a != b)
_scalar("IS_NOT_DISTINCT_FROM", T.BOOLEAN, 2, null_safe=True)(lambda a, b: a == b)

# collections
_scalar("ARRAY_LENGTH", T.INTEGER, 1)(len)
_scalar("ARRAY_CONTAINS", T.BOOLEAN, 2)(lambda a, v: v in a)
_scalar("ARRAY_DISTINCT", _first, 1)(lambda a: list(dict.fromkeys(json.dumps(x, sort_keys=True, default=str) for x in a)) and [x for i, x in enumerate(a) if x not in a[:i]])
_scalar("ARRAY_JOIN", T.STRING, 1, 2)(lambda a, d=",": d.join("null" if x is None else str(x) for x in a))
_scalar("ARRAY_MAX", lambda a: a[0].element or T.ANY, 1)(lambda a: max((x for x in a if x is not None), default=None))
_scalar("ARRAY_MIN", lambda a: a[0].element or T.ANY, 1)(lambda a: min((x for x in a if x is not None), default=None))
_scalar("ARRAY_SORT", _first, 1, 2)(lambda a, d="ASC": sorted((x for x in a if x is not None), reverse=d.upper() == "DESC"))
_scalar("MAP_KEYS", lambda a: T.array(a[0].key or T.ANY), 1)(lambda m: list(m))
_scalar("MAP_VALUES", lambda a: T.array(a[0].element or T.ANY), 1)(lambda m: list(m.values()))
_scalar("SLICE", _first, 3)(lambda a, i, j: a[i - 1:j])
_scalar("TRANSFORM", lambda a: T.array(T.ANY), 2)(lambda arr, f: [f(x) for x in arr])
_scalar("FILTER", _first, 2)(lambda arr, f: [x for x in arr if f(x)])
_scalar("REDUCE", lambda a: a[1], 3)(lambda arr, s, f: __import__("functools").reduce(f, arr, s))

# JSON
_scalar("JSON_ARRAY_LENGTH", T.INTEGER, 1)(lambda s: len(json.loads(s)) if isinstance(json.loads(s), list) else None)
_scalar("JSON_KEYS", T.array(T.STRING), 1)(lambda s: list(json.loads(s)) if isinstance(json.loads(s), dict) else None)
_scalar("IS_JSON_STRING", T.BOOLEAN, 1, null_safe=True)(lambda s: _is_json(s))
_scalar("TO_JSON_STRING", T.STRING, 1, null_safe=True)(lambda v: json.dumps(v, separators=(",", ":"), default=str))


def _is_json(s: Any) -> bool:
    if not isinstance(s, str):
        return False
    try:
        json.loads(s)
        return True
    except ValueError:
        return False


def _extract_json_field(s: str, path: str) -> str | None:
    cur: Any = json.loads(s)
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path.removeprefix("$")):
        name, idx = part
        if name:
            cur = cur.get(name) if isinstance(cur, dict) else None
        else:
            cur = cur[int(idx)] if isinstance(cur, list) and int(idx) < len(cur) else None
        if cur is None:
            return None
    return cur if isinstance(cur, str) else json.dumps(cur, separators=(",", ":"))


_scalar("EXTRACTJSONFIELD", T.STRING, 2)(_extract_json_field)


# date and time: TIMESTAMP values are epoch milliseconds (UTC), DATE days, TIME milliseconds of the day
def _java_to_strftime(fmt: str) -> str:
    out, i = [], 0
    table = [("yyyy", "%Y"), ("yy", "%y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"),
             ("SSS", "%f"), ("EEE", "%a"), ("MMM", "%b"), ("'T'", "T"), ("XXX", "%z"), ("Z", "%z")]
    while i < len(fmt):
        for j, s in table:
            if fmt.startswith(j, i):
                out.append(s)
                i += len(j)
                break
        else:
            out.append(fmt[i])
            i += 1
    return "".join(out)


def _format_ts(ms: int, fmt: str, tz: str = "UTC") -> str:
    from zoneinfo import ZoneInfo

    d = dt.datetime.fromtimestamp(ms / 1000, ZoneInfo(tz))
    s = d.strftime(_java_to_strftime(fmt))
    return s.replace(f"{d.microsecond:06d}", f"{d.microsecond // 1000:03d}") if "SSS" in fmt else s


def _parse_ts(s: str, fmt: str, tz: str = "UTC") -> int:
    from zoneinfo import ZoneInfo

    f = _java_to_strftime(fmt)
    d = dt.datetime.strptime(s, f)
    if d.tzinfo is None:
        d = d.replace(tzinfo=ZoneInfo(tz))
    return int(d.timestamp() * 1000)


_scalar("TIMESTAMPTOSTRING", T.STRING, 2, 3)(_format_ts)
_scalar("FORMAT_TIMESTAMP", T.STRING, 2, 3)(_format_ts)
_scalar("STRINGTOTIMESTAMP", T.BIGINT, 2, 3)(_parse_ts)
_scalar("PARSE_TIMESTAMP", T.TIMESTAMP, 2, 3)(_parse_ts)
_scalar("UNIX_TIMESTAMP", T.BIGINT, 0, 1)(lambda ts=None: int(dt.datetime.now().timestamp() * 1000) if ts is None else ts)
_scalar("UNIX_DATE", T.INTEGER, 0, 1)(lambda d=None: (dt.date.today() - dt.date(1970, 1, 1)).days if d is None else d)
_scalar("FROM_UNIXTIME", T.TIMESTAMP, 1)(lambda ms: ms)
_scalar("DATETOSTRING", T.STRING, 2)(lambda days, fmt: (dt.date(1970, 1, 1) + dt.timedelta(days=days)).strftime(_java_to_strftime(fmt)))
_scalar("STRINGTODATE", T.INTEGER, 2)(lambda s, fmt: (dt.datetime.strptime(s, _java_to_strftime(fmt)).date() - dt.date(1970, 1, 1)).days)
_scalar("FORMAT_DATE", T.STRING, 2)(lambda days, fmt: (dt.date(1970, 1, 1) + dt.timedelta(days=days)).strftime(_java_to_strftime(fmt)))
_scalar("PARSE_DATE", T.DATE, 2)(lambda s, fmt: (dt.datetime.strptime(s, _java_to_strftime(fmt)).date() - dt.date(1970, 1, 1)).days)
_scalar("TIMESTAMPADD", T.TIMESTAMP, 3)(lambda unit_ms, n, ts: ts + n * unit_ms)
_scalar("TIMESTAMPSUB", T.TIMESTAMP, 3)(lambda unit_ms, n, ts: ts - n * unit_ms)


def lookup_scalar(name: str) -> ScalarFunction | None:
    return SCALARS.get(name.upper())


def lookup_aggregate(name: str) -> AggregateFunction | None:
    return AGGREGATES.get(name.upper())


def check_arity(f: ScalarFunction, n: int) -> None:
    if n < f.min_args or (f.max_args is not None and n > f.max_args):
        want = f"{f.min_args}" if f.max_args == f.min_args else f"{f.min_args} to {f.max_args if f.max_args is not None else 'any'}"
        raise SqlError(f"Function '{f.name}' does not accept {n} argument(s); it takes {want}")
