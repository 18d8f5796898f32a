"""The planner: a checked SELECT becomes a riverbed.streams topology.

Rows inside a topology are dicts of column name -> value. A source's rows get its key columns
and the pseudo columns ROWTIME, ROWPARTITION, ROWOFFSET added (in the timestamp extractor, which
sees the whole record; riverbed.streams runs it on its fused, batch-wise path); a join's rows are ``{alias: row}``. An aggregation keeps one state per
aggregate function in the store (JSON-like), and the SELECT list is evaluated over the group
key, the aggregate results and, for windowed aggregations, WINDOWSTART / WINDOWEND.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from riverbed.streams import (
    JoinWindows,
    KStream,
    KTable,
    Processor,
    ProcessorContext,
    Record,
    SessionWindows,
    StreamsApp,
    TimeWindows,
    WindowedSerde,
)

from . import ast as A
from . import functions as F
from . import types as T
from .catalog import PSEUDO, WINDOW_COLUMNS, SourceInfo, header_values
from .compiler import Compiled, Compiler, Scope, columns_in, err, find_aggregates, show
from .errors import SqlError
from .formats import INTERNAL, INTERNAL_VALUES, Columns, KeySerde, SessionKeySerde, value_serde

log = logging.getLogger("riverbed.sql")

DEFAULT_GRACE_MS = 24 * 3_600_000  # ksqlDB's default grace period when a window names none

Row = dict[str, Any]
Emit = Callable[[Any, Row | None, int], None]


@dataclass
class OutputColumn:
    name: str
    type: T.SqlType
    key: bool = False


@dataclass
class Plan:
    """What the planner made: the app, the result's columns, and (tables) how to read it."""

    app: StreamsApp
    columns: list[OutputColumn]
    kind: str  # STREAM or TABLE
    window: A.WindowSpec | None = None
    store: str | None = None
    stored_row: Callable[[Any, Any], Row | None] | None = None
    sources: list[str] = field(default_factory=list)
    description: list[str] = field(default_factory=list)

    @property
    def key_columns(self) -> Columns:
        return [(c.name, c.type) for c in self.columns if c.key]

    @property
    def value_columns(self) -> Columns:
        return [(c.name, c.type) for c in self.columns if not c.key]


def _enricher(src: SourceInfo) -> Callable[[Any, int], int]:
    """The timestamp extractor of a source: adds key and pseudo columns to the row (it sees the
    whole record) and takes the event time from the TIMESTAMP column if there is one. Its
    ``fields`` attribute is the same without a Record (riverbed.streams' fused path calls that)."""
    key_names = [n for n, _ in src.key_columns]
    one_key = key_names[0] if len(key_names) == 1 else None
    ts_col = src.timestamp
    ts_fmt = src.timestamp_format
    header_cols = src.header_columns

    def fields(key: Any, v: Any, ts: int, headers: Any, partition: int, offset: int, _partition_time: int) -> int:
        if v is None:
            return ts
        if one_key is not None:
            v[one_key] = key
        elif key_names:
            for n, x in zip(key_names, key if key is not None else [None] * len(key_names), strict=True):
                v[n] = x
        if ts_col is not None:
            raw = v.get(ts_col)
            if raw is not None:
                ts = F._parse_ts(raw, ts_fmt) if ts_fmt and isinstance(raw, str) else int(raw)
        v["ROWTIME"] = ts
        v["ROWPARTITION"] = partition
        v["ROWOFFSET"] = offset
        if header_cols:
            v.update(header_values(headers, header_cols))
        return ts

    def extract(rec: Any, partition_time: int) -> int:
        return fields(rec.key, rec.value, int(rec.timestamp), rec.headers, rec.partition, rec.offset, partition_time)

    extract.fields = fields  # type: ignore[attr-defined]
    return extract


_JOIN_WORDS = {"INNER": "[INNER] JOIN", "LEFT": "LEFT [OUTER] JOIN", "RIGHT": "RIGHT [OUTER] JOIN",
               "FULL": "[FULL] OUTER JOIN"}  # as ksqlDB prints join types in its messages


_TABLE_WITHIN = ("A window definition was provided for a Table-Table join. These joins are not windowed. Please drop "
                 "the window definition (ie. the WITHIN clause) and try to execute your join again.")


def _join_windows(j: A.Join, on: A.Expr) -> tuple[JoinWindows, JoinWindows]:
    """A stream-stream join's windows from its WITHIN clause, as ksqlDB builds them: with
    ``WITHIN (before, after)`` a left record at ``t`` joins right records in ``[t - before,
    t + after]``. The second windows are the same seen from the right side (for RIGHT joins,
    planned as the right stream's LEFT join)."""
    if j.within_ms is None:
        raise err(on, "Stream-Stream joins must have a WITHIN clause specified. None was provided.")
    before, after = j.within_ms
    grace = j.grace_ms if j.grace_ms is not None else DEFAULT_GRACE_MS
    return JoinWindows.of(before, grace=grace).after(after), JoinWindows.of(after, grace=grace).after(before)


def _qualified(e: A.Expr, alias: str) -> A.Expr:
    """A join expression as ksqlDB prints it in messages: a bare column gets its source's alias."""
    if isinstance(e, A.Column) and e.source is None:
        return A.Column(e.name, alias, pos=e.pos)
    return e


def column_name(item: A.SelectItem, index: int, taken: set[str]) -> str:
    if item.alias:
        name = item.alias
    elif isinstance(item.expr, A.Column):
        name = item.expr.name
    elif isinstance(item.expr, A.Deref):
        name = item.expr.field
    else:
        name = f"KSQL_COL_{index}"
    base, n = name, 1
    while name in taken:
        name = f"{base}_{n}"
        n += 1
    taken.add(name)
    return name


class Planner:
    def __init__(self, catalog: dict[str, SourceInfo], app_id: str, bootstrap: str,
                 app_config: dict[str, Any] | None = None) -> None:
        self.catalog = catalog
        # a row whose processing raises is logged, counted and skipped (ksqlDB's processing log),
        # not a poison pill that stops the query; so is a row that does not serialize for its sink
        self.app = StreamsApp(app_id, bootstrap, on_processing_error="skip", production_error="skip",
                              **(app_config or {}))
        self.description: list[str] = []
        self._synth_key = False

    def source(self, s: A.Source) -> SourceInfo:
        info = self.catalog.get(s.name)
        if info is None:
            line, col = s.pos
            raise SqlError(f"{s.name} does not exist.", line or None, col or None)
        return info

    # -- sources ----------------------------------------------------------------------------------
    def _stream(self, info: SourceInfo) -> KStream[Any, Any]:
        if info.window is not None:
            raise SqlError(f"Reading the windowed {info.kind.lower()} {info.name} in a query is not supported yet")
        self.description.append(f"source {info.kind} {info.name} <- topic {info.topic}")
        s = self.app.stream(info.topic, info.key_serde(), info.value_serde(), timestamp_extractor=_enricher(info),
                            on_error="skip")
        s.value_serde = INTERNAL_VALUES  # rows carry key and pseudo columns through repartition topics
        return s

    def _table(self, info: SourceInfo, alias: str) -> KTable[Any, Any]:
        if info.window is not None:
            raise SqlError(f"Reading the windowed table {info.name} in a query is not supported yet")
        self.description.append(f"source TABLE {info.name} <- topic {info.topic} (materialized in store {alias}-source)")
        return self.app.table(info.topic, info.key_serde(), info.value_serde(), name=f"{alias.lower()}-source",
                              timestamp_extractor=_enricher(info), store_value_serde=INTERNAL_VALUES, on_error="skip")

    # -- the query --------------------------------------------------------------------------------
    def plan(self, q: A.Query, emit: Emit | None = None, sink: SinkSpec | None = None) -> Plan:
        left = self.source(q.source)
        infos = {q.source.ref: left}
        stream: KStream[Any, Any] | None = None
        table: KTable[Any, Any] | None = None
        key_name: str | None = None  # the key column's name when the key is one of the row's columns
        key_type: T.SqlType = T.STRING
        if q.joins:
            j = q.joins[0]
            right = self.source(j.right)
            if j.right.ref in infos:
                raise err(j.on, f"Can not join '{j.right.ref}' to '{q.source.ref}': the same source name or alias twice")
            infos[j.right.ref] = right
            stream, table, key_name, key_type = self._join(q, j, left, right, more_joins=len(q.joins) > 1)
            for i, more in enumerate(q.joins[1:], start=2):  # N-way: each further source joins the rows so far
                nxt = self.source(more.right)
                if more.right.ref in infos:
                    raise err(more.on, f"Can not join '{more.right.ref}': the same source name or alias twice")
                if stream is None:
                    assert table is not None
                    table = self._join_more_table(table, infos, more, nxt, materialize=i < len(q.joins))
                else:
                    stream, key_name, key_type = self._join_more(stream, infos, more, nxt)
                infos[more.right.ref] = nxt
            scope = Scope({a: i.scope_columns() for a, i in infos.items()}, flat=False)
            kind = "TABLE" if table is not None else "STREAM"
        else:
            scope = Scope({q.source.ref: left.scope_columns()}, flat=True)
            kind = left.kind
            if len(left.key_columns) == 1:
                key_name, key_type = left.key_columns[0]
        compiler = Compiler(scope, clause="WHERE")
        aggs = [a for it in q.items if it.expr is not None for a in find_aggregates(it.expr)] + find_aggregates(q.having)
        grouped = bool(q.group_by) or bool(aggs)
        table_changes = False
        if not q.joins:
            if left.kind == "STREAM":
                stream = self._stream(left)
            elif grouped:  # an aggregation over a table: its changes, each row's old and new value
                where = compiler.predicate(q.where) if q.where is not None else None
                stream = self._table_changes(left, q.source.ref, where)
                table_changes = True
            else:
                table = self._table(left, q.source.ref)

        if q.joins and table is not None and grouped:
            # an aggregation over a table-table join's result: its changes, each row's old and new value
            if q.where is not None and find_aggregates(q.where):
                raise err(q.where, "WHERE clause can not contain aggregate functions; use HAVING")
            where = compiler.predicate(q.where) if q.where is not None else None
            stream = self._changes(table.to_stream(), table.key_serde, "join", where)
            table = None
            table_changes = True
        if q.where is not None and not table_changes:
            if find_aggregates(q.where):
                raise err(q.where, "WHERE clause can not contain aggregate functions; use HAVING")
            pred = compiler.predicate(q.where)
            self.description.append(f"filter WHERE {show(q.where)}")
            if stream is not None:
                stream = stream.filter(lambda _k, v: pred(v))
            else:
                assert table is not None
                table = table.filter(lambda _k, v: pred(v))
        if q.window is not None and not grouped:
            raise err(q.items[0], "WINDOW clause requires a GROUP BY clause.")
        if q.having is not None and not grouped:
            raise err(q.having, "HAVING clause requires a GROUP BY clause.")

        if q.partition_by:
            if grouped:
                raise err(q.partition_by[0], "PARTITION BY and GROUP BY in the same query are not supported")
            if stream is None:
                raise err(q.partition_by[0], "Cannot repartition a TABLE source; PARTITION BY is for streams")
            if len(q.partition_by) > 1:
                raise err(q.partition_by[1], "PARTITION BY more than one expression is not supported yet")
            pe = q.partition_by[0]
            pc = Compiler(scope, clause="PARTITION BY").compile(pe)
            pfn = pc.fn
            stream = stream.select_key(lambda _k, v: pfn(v))
            key_name = pe.name if isinstance(pe, A.Column) else (pe.field if isinstance(pe, A.Deref) else "KSQL_COL_0")
            key_type = pc.type
            self.description.append(f"repartition PARTITION BY {show(pe)}")
            partition_expr: A.Expr | None = pe
        else:
            partition_expr = None

        if grouped:
            assert stream is not None
            return self._aggregate(q, stream, scope, aggs, kind_in=kind, emit=emit, sink=sink, infos=infos,
                                   table_changes=table_changes)

        # projection
        out_cols, project = self._projection(q, scope, infos, key_name, key_type, partition_expr)
        self.description.append("project " + ", ".join(c.name for c in out_cols))
        plan = Plan(self.app, out_cols, kind, sources=[i.name for i in infos.values()])
        if stream is not None:
            key_col = plan.key_columns[0][0] if plan.key_columns else None
            if self._synth_key and key_col is not None:
                def project_keyed(k: Any, v: Any) -> tuple[Any, Any]:
                    row = project(v)
                    if row is not None:
                        row.pop("\x00key", None)
                        row[key_col] = k
                    return k, row
                out = stream.map(project_keyed)
            else:
                out = stream.map_values(project)
            self._synth_key = False  # done here; nothing left for _sink_stream to fill
            self._sink_stream(out, plan, emit, sink, q.limit)
        else:
            assert table is not None
            if sink is not None:  # materialized: pull queries read the store
                store = f"{sink.name.lower()}-rows"
                out_t = table.map_values(project, INTERNAL_VALUES, name=store)
                plan.store = store
                key_col = plan.key_columns[0][0] if plan.key_columns else None

                def stored_row(k: Any, v: Any) -> Row | None:
                    if v is None or "\x00key" not in v:
                        return v
                    r = {n: x for n, x in v.items() if n != "\x00key"}
                    if key_col is not None and r.get(key_col) is None:
                        r[key_col] = k
                    return r
                plan.stored_row = stored_row
            else:
                out_t = table.map_values(project, INTERNAL_VALUES)
            self._sink_stream(out_t.to_stream(), plan, emit, sink, q.limit)
        plan.description = self.description
        return plan

    def _projection(self, q: A.Query, scope: Scope, infos: dict[str, SourceInfo], key_name: str | None,
                    key_type: T.SqlType, partition_expr: A.Expr | None) -> tuple[list[OutputColumn], Callable[[Any], Any]]:
        compiler = Compiler(scope, clause="SELECT")
        taken: set[str] = set()
        cols: list[OutputColumn] = []
        getters: list[tuple[str, Callable[[Any], Any]]] = []
        key_found = False
        for i, it in enumerate(q.items):
            if it.expr is None:
                refs = [it.star_source] if it.star_source else list(infos)
                for ref in refs:
                    if ref not in infos:
                        raise err(it, f"'{ref}' is not a valid stream/table name or alias.")
                    info = infos[ref]
                    for n, t in info.columns:
                        out = f"{ref}_{n}" if len(infos) > 1 else n
                        if out in taken:
                            continue
                        taken.add(out)
                        c = scope.resolve(A.Column(n, ref if len(infos) > 1 else None))
                        is_key = (not key_found and n == key_name and partition_expr is None
                                  and (len(infos) == 1 or self._join_key_exprs_has(A.Column(n, ref))))
                        key_found = key_found or is_key
                        cols.append(OutputColumn(out, t, is_key))
                        getters.append((out, c.fn))
                continue
            c = compiler.compile(it.expr)
            name = column_name(it, i, taken)
            is_key = False
            if not key_found:
                if partition_expr is not None:
                    is_key = it.expr == partition_expr
                elif len(infos) == 1:
                    is_key = isinstance(it.expr, A.Column) and it.expr.name == key_name
                else:
                    is_key = isinstance(it.expr, A.Column) and it.expr.name == key_name and self._join_key_exprs_has(it.expr)
            key_found = key_found or is_key
            cols.append(OutputColumn(name, c.type, is_key))
            getters.append((name, c.fn))
        if not key_found and key_name is not None:
            # the key is kept on the record; name it after its source column
            kname = key_name if key_name not in taken else f"{key_name}_KEY"
            cols.insert(0, OutputColumn(kname, key_type, True))
            getters.insert(0, ("\x00key", lambda _v: None))
        self._synth_key = not key_found and key_name is not None

        def project(v: Any) -> Any:
            if v is None:
                return None
            return {n: g(v) for n, g in getters}
        return cols, project

    _join_keys: list[A.Expr]

    def _join_key_exprs_has(self, e: A.Expr) -> bool:
        return any(e == k or (isinstance(k, A.Column) and isinstance(e, A.Column) and k.name == e.name
                              and (e.source is None or k.source == e.source)) for k in getattr(self, "_join_keys", []))

    def _sink_stream(self, out: KStream[Any, Any], plan: Plan, emit: Emit | None, sink: SinkSpec | None,
                     limit: int | None) -> None:
        key_cols = plan.key_columns
        key_col = key_cols[0][0] if key_cols else None

        def fill_key(k: Any, v: Any) -> tuple[Any, Any]:
            if v is not None and key_col is not None and v.get(key_col) is None and "\x00key" in v:
                v[key_col] = k
            if v is not None:
                v.pop("\x00key", None)
            return k, v
        if self._synth_key:  # the key column is not projected: fill it from the record's key
            out = out.map(fill_key)
        if sink is not None:
            ks: Any = KeySerde(sink.key_format, key_cols, sink.registry, sink.topic, sink.key_schema_name, sink.key_schema_id,
                               sink.key_proto_nullable, sink.key_delimiter)
            if plan.window is not None:
                ks = SessionKeySerde(ks) if plan.window.kind == "SESSION" else WindowedSerde(ks, plan.window.size_ms)
            out.to(sink.topic, ks, value_serde(sink.value_format, plan.value_columns, sink.wrap_single, sink.registry, sink.topic,
                                               sink.value_schema_name, sink.value_schema_id, sink.value_proto_nullable,
                                               sink.value_delimiter))
            self.description.append(f"sink -> topic {sink.topic} ({sink.key_format} keys, {sink.value_format} values)")
        if emit is not None:
            out.peek(lambda k, v: emit(k, v, 0))

    # -- joins -------------------------------------------------------------------------------------------
    def _join(self, q: A.Query, j: A.Join, left: SourceInfo, right: SourceInfo, more_joins: bool = False) -> tuple[
            KStream[Any, Any] | None, KTable[Any, Any] | None, str | None, T.SqlType]:
        la, ra = q.source.ref, j.right.ref
        on = j.on
        if not (isinstance(on, A.Binary) and on.op == "="):
            raise err(on, "Unsupported join expression: only equality (ON a.x = b.y) joins are supported")
        lscope = Scope({la: left.scope_columns()})
        rscope = Scope({ra: right.scope_columns()})
        sides = []
        for e in (on.left, on.right):
            refs = {c.source for c in columns_in(e)}
            names = {c.name for c in columns_in(e)}
            if refs == {la} or (refs == {None} and all(left.column_type(n) or n in dict(PSEUDO) for n in names)
                                and not any(right.column_type(n) for n in names)):
                sides.append("L")
            elif refs == {ra} or (refs == {None} and all(right.column_type(n) for n in names)):
                sides.append("R")
            else:
                raise err(e, f"Invalid comparison expression '{show(e)}' in join '{show(on)}'. Each side of the "
                          "join comparison must contain references from exactly one source.")
        if sides[0] == sides[1]:
            raise err(on, f"Each side of the join comparison must reference a different source: '{show(on)}'")
        lexpr, rexpr = (on.left, on.right) if sides[0] == "L" else (on.right, on.left)
        lc, rc = Compiler(lscope, clause="JOIN").compile(lexpr), Compiler(rscope, clause="JOIN").compile(rexpr)
        if not T.compatible(lc.type, rc.type):
            raise err(on, f"Invalid join condition: types don't match. Got {show(lexpr)}{{{lc.type}}} = {show(rexpr)}{{{rc.type}}}.")
        self._join_keys = [_qualified(lexpr, la), _qualified(rexpr, ra)]
        key_name = lexpr.name if isinstance(lexpr, A.Column) else None

        def is_key(info: SourceInfo, e: A.Expr) -> bool:
            return isinstance(e, A.Column) and len(info.key_columns) == 1 and e.name == info.key_columns[0][0]

        def joiner(lv: Any, rv: Any) -> Any:
            return {la: lv, ra: rv}

        how = j.how
        name = f"join-{la.lower()}-{ra.lower()}"
        self.description.append(f"{how} JOIN {left.kind} {left.name} with {right.kind} {right.name} ON {show(on)}")
        if left.kind == "STREAM" and right.kind == "STREAM":
            windows, swapped = _join_windows(j, on)
            ls, rs = self._stream(left), self._stream(right)
            lf, rf = lc.fn, rc.fn
            # a re-keyed side is written with the other side's key format (co-partitioned bytes)
            lkey, rkey = is_key(left, lexpr), is_key(right, rexpr)
            common: Any = left.key_serde() if lkey else right.key_serde() if rkey else INTERNAL
            if not lkey:
                ls = ls.select_key(lambda _k, v: lf(v), key_serde=common)
            if not rkey:
                rs = rs.select_key(lambda _k, v: rf(v), key_serde=common)
            if how == "INNER":
                out = ls.join(rs, joiner, name=name, value_serde=INTERNAL_VALUES, windows=windows)
            elif how == "LEFT":
                out = ls.left_join(rs, joiner, name=name, value_serde=INTERNAL_VALUES, windows=windows)
            elif how == "RIGHT":
                out = rs.left_join(ls, lambda rv, lv: joiner(lv, rv), name=name, value_serde=INTERNAL_VALUES, windows=swapped)
            else:
                out = ls.outer_join(rs, joiner, windows, name=name, value_serde=INTERNAL_VALUES)
            return out, None, key_name, lc.type
        if left.kind == "STREAM" and right.kind == "TABLE":
            if j.within_ms is not None:
                raise err(on, "Stream-Table joins do not take a WITHIN clause")
            if not is_key(right, rexpr):
                raise err(rexpr, f"Invalid join condition: stream-table joins require to join on the table's primary key. "
                          f"Got {show(lexpr)} = {show(rexpr)}.")
            if how not in ("INNER", "LEFT"):
                raise err(on, f"{how} OUTER JOIN is not supported for stream-table joins; use INNER or LEFT")
            ls = self._stream(left)
            rt = self._table(right, ra)
            lf = lc.fn
            if not is_key(left, lexpr):
                ls = ls.select_key(lambda _k, v: lf(v), key_serde=right.key_serde())
            if how == "INNER":
                out = ls.join(rt, joiner, name=name, value_serde=INTERNAL_VALUES)
            else:
                out = ls.left_join(rt, joiner, name=name, value_serde=INTERNAL_VALUES)
            return out, None, key_name, lc.type
        if left.kind == "TABLE" and right.kind == "TABLE":
            if j.within_ms is not None:
                raise err(on, _TABLE_WITHIN)
            got = f"Got {show(_qualified(on.left, la if sides[0] == 'L' else ra))} = " \
                  f"{show(_qualified(on.right, la if sides[1] == 'L' else ra))}."
            if not is_key(right, rexpr):
                raise err(rexpr, "Invalid join condition: table-table joins require to join on the primary key of the "
                          f"right input table. {got}")
            materialize = f"{name}-result" if more_joins else None
            lt, rt = self._table(left, la), self._table(right, ra)
            if not is_key(left, lexpr):  # a foreign-key join: the left row's column against the right's key
                if how in ("FULL", "RIGHT"):
                    kind = "full-outer" if how == "FULL" else "right-outer"
                    raise err(on, f"Invalid join type: {kind} join not supported for foreign-key table-table join. "
                              f"Got {left.name} {_JOIN_WORDS[how]} {right.name}.")
                if len(left.key_columns) != 1:
                    raise err(on, "Foreign-key joins of a table with a multi-column key are not supported yet")
                lkey_name, lkey_type = left.key_columns[0]
                self._join_keys = [A.Column(lkey_name, la)]
                self.description[-1] += " (foreign-key join: each left row joins the right row its key names)"
                fk = lc.fn
                fk_join = lt.join if how == "INNER" else lt.left_join
                out_t = fk_join(rt, lambda v: fk(v), joiner, name=f"fk-{la.lower()}-{ra.lower()}",
                                value_serde=INTERNAL_VALUES, materialized=materialize)
                return None, out_t, lkey_name, lkey_type
            if how == "RIGHT":
                out_t = rt.join(lt, lambda rv, lv: joiner(lv, rv), how="left", value_serde=INTERNAL_VALUES,
                                materialized=materialize)
            else:
                out_t = lt.join(rt, joiner, how={"INNER": "inner", "LEFT": "left", "FULL": "outer"}[how],
                                value_serde=INTERNAL_VALUES, materialized=materialize)
            return None, out_t, key_name, lc.type
        raise err(on, f"Invalid join order: table-stream joins are not supported; only stream-table joins. Got "
                  f"{left.name} [{left.kind}] {how} JOIN {right.name} [{right.kind}].")

    def _join_more(self, stream: KStream[Any, Any], infos: dict[str, SourceInfo], j: A.Join,
                   right: SourceInfo) -> tuple[KStream[Any, Any], str | None, T.SqlType]:
        """A further join of an N-way join: the joined rows so far (``{alias: row}``) with one
        more stream (WITHIN) or table (on its primary key)."""
        ra = j.right.ref
        on = j.on
        if not (isinstance(on, A.Binary) and on.op == "="):
            raise err(on, "Unsupported join expression: only equality (ON a.x = b.y) joins are supported")
        prior = Scope({a: i.scope_columns() for a, i in infos.items()}, flat=False)
        mine = Scope({ra: right.scope_columns()})

        def side(e: A.Expr) -> str:
            refs = {c.source for c in columns_in(e)}
            if refs == {ra} or (refs == {None} and all(right.column_type(c.name) for c in columns_in(e))
                                and not any(i.column_type(c.name) for i in infos.values() for c in columns_in(e))):
                return "R"
            if refs and ra not in refs:
                return "L"
            raise err(e, f"Invalid comparison expression '{show(e)}' in join '{show(on)}'. Each side of the "
                      "join comparison must contain references from exactly one side.")
        sides = [side(on.left), side(on.right)]
        if sides[0] == sides[1]:
            raise err(on, f"Each side of the join comparison must reference a different source: '{show(on)}'")
        lexpr, rexpr = (on.left, on.right) if sides[0] == "L" else (on.right, on.left)
        lc, rc = Compiler(prior, clause="JOIN").compile(lexpr), Compiler(mine, clause="JOIN").compile(rexpr)
        if not T.compatible(lc.type, rc.type):
            raise err(on, f"Invalid join condition: types don't match. Got {show(lexpr)}{{{lc.type}}} = {show(rexpr)}{{{rc.type}}}.")
        self._join_keys = [*getattr(self, "_join_keys", []), lexpr, rexpr]
        lf, how = lc.fn, j.how
        name = f"join-{'-'.join(a.lower() for a in infos)}-{ra.lower()}"
        self.description.append(f"{how} JOIN {right.kind} {right.name} ON {show(on)}")

        def joiner(lv: Any, rv: Any) -> Any:
            return {**(lv or {}), ra: rv}
        r_is_key = isinstance(rexpr, A.Column) and len(right.key_columns) == 1 and rexpr.name == right.key_columns[0][0]
        key_name = lexpr.name if isinstance(lexpr, A.Column) else None
        if right.kind == "TABLE":
            if not r_is_key:
                raise err(rexpr, f"Invalid join condition: stream-table joins require to join on the table's primary key. "
                          f"Got {show(lexpr)} = {show(rexpr)}.")
            if how not in ("INNER", "LEFT"):
                raise err(on, f"{how} OUTER JOIN is not supported for stream-table joins; use INNER or LEFT")
            rekeyed = stream.select_key(lambda _k, v: lf(v), key_serde=right.key_serde())
            rt = self._table(right, ra)
            out = (rekeyed.join if how == "INNER" else rekeyed.left_join)(rt, joiner, name=name, value_serde=INTERNAL_VALUES)
            return out, key_name, lc.type
        windows, swapped = _join_windows(j, on)
        rs = self._stream(right)
        rf = rc.fn
        common: Any = right.key_serde() if r_is_key else INTERNAL
        ls = stream.select_key(lambda _k, v: lf(v), key_serde=common)
        if not r_is_key:
            rs = rs.select_key(lambda _k, v: rf(v), key_serde=common)
        if how == "INNER":
            out = ls.join(rs, joiner, name=name, value_serde=INTERNAL_VALUES, windows=windows)
        elif how == "LEFT":
            out = ls.left_join(rs, joiner, name=name, value_serde=INTERNAL_VALUES, windows=windows)
        elif how == "RIGHT":
            out = rs.left_join(ls, lambda rv, lv: joiner(lv, rv), name=name, value_serde=INTERNAL_VALUES, windows=swapped)
        else:
            out = ls.outer_join(rs, joiner, windows, name=name, value_serde=INTERNAL_VALUES)
        return out, key_name, lc.type

    def _join_more_table(self, table: KTable[Any, Any], infos: dict[str, SourceInfo], j: A.Join, right: SourceInfo,
                         materialize: bool) -> KTable[Any, Any]:
        """A further join of an N-way table join: the (materialized) result so far, keyed by its
        first join's key, with one more table on that key (a primary-key join). As in ksqlDB a
        foreign-key join may only be the first step of an N-way join."""
        ra = j.right.ref
        on = j.on
        if not (isinstance(on, A.Binary) and on.op == "="):
            raise err(on, "Unsupported join expression: only equality (ON a.x = b.y) joins are supported")
        first = next(iter(infos.values()))
        if right.kind == "STREAM":
            raise err(on, f"Invalid join order: table-stream joins are not supported; only stream-table joins. Got "
                      f"{first.name} {_JOIN_WORDS[j.how]} {right.name}.")
        if j.within_ms is not None:
            raise err(on, _TABLE_WITHIN)
        prior = Scope({a: i.scope_columns() for a, i in infos.items()}, flat=False)
        mine = Scope({ra: right.scope_columns()})

        def side(e: A.Expr) -> str:
            refs = {c.source for c in columns_in(e)}
            if refs == {ra} or (refs == {None} and all(right.column_type(c.name) for c in columns_in(e))
                                and not any(i.column_type(c.name) for i in infos.values() for c in columns_in(e))):
                return "R"
            if refs and ra not in refs:
                return "L"
            raise err(e, f"Invalid comparison expression '{show(e)}' in join '{show(on)}'. Each side of the "
                      "join comparison must contain references from exactly one side.")
        sides = [side(on.left), side(on.right)]
        if sides[0] == sides[1]:
            raise err(on, f"Each side of the join comparison must reference a different source: '{show(on)}'")
        lexpr, rexpr = (on.left, on.right) if sides[0] == "L" else (on.right, on.left)
        lc, rc = Compiler(prior, clause="JOIN").compile(lexpr), Compiler(mine, clause="JOIN").compile(rexpr)

        def owner(e: A.Expr) -> str:
            if isinstance(e, A.Column) and e.source is None:
                hits = [a for a, i in infos.items() if i.column_type(e.name)]
                return hits[0] if len(hits) == 1 else ra
            return e.source if isinstance(e, A.Column) and e.source else ra
        got = (f"Got {show(_qualified(on.left, owner(on.left) if sides[0] == 'L' else ra))} = "
               f"{show(_qualified(on.right, owner(on.right) if sides[1] == 'L' else ra))}.")
        r_is_key = isinstance(rexpr, A.Column) and len(right.key_columns) == 1 and rexpr.name == right.key_columns[0][0]
        if not r_is_key:
            raise err(rexpr, "Invalid join condition: table-table joins require to join on the primary key of the "
                      f"right input table. {got}")
        if not (isinstance(lexpr, A.Column) and self._join_key_exprs_has(lexpr)):
            raise err(on, f"Invalid join condition: foreign-key table-table joins are not supported as part of n-way "
                      f"joins. {got}")
        if not T.compatible(lc.type, rc.type):
            raise err(on, f"Invalid join condition: types don't match. Got {show(lexpr)}{{{lc.type}}} = {show(rexpr)}{{{rc.type}}}.")
        self._join_keys = [*getattr(self, "_join_keys", []), _qualified(rexpr, ra)]
        how = j.how
        name = f"join-{'-'.join(a.lower() for a in infos)}-{ra.lower()}"
        self.description.append(f"{how} JOIN {right.kind} {right.name} ON {show(on)} (the join result so far, on its key)")

        def joiner(lv: Any, rv: Any) -> Any:
            return {**(lv or {}), ra: rv}
        rt = self._table(right, ra)
        mat = f"{name}-result" if materialize else None
        if how == "RIGHT":
            return rt.join(table, lambda rv, lv: joiner(lv, rv), how="left", value_serde=INTERNAL_VALUES, materialized=mat)
        return table.join(rt, joiner, how={"INNER": "inner", "LEFT": "left", "FULL": "outer"}[how],
                          value_serde=INTERNAL_VALUES, materialized=mat)

    # -- aggregation --------------------------------------------------------------------------------------
    def _table_changes(self, info: SourceInfo, alias: str, where: Callable[[Any], bool] | None) -> KStream[Any, Any]:
        """A table's updates as ``{"old": row | None, "new": row | None}`` per key (the row it
        replaces is kept in a store), for aggregations over tables; a row failing WHERE counts as
        absent."""
        if info.window is not None:
            raise SqlError(f"Reading the windowed table {info.name} in a query is not supported yet")
        self.description.append(f"source TABLE {info.name} <- topic {info.topic} (its changes, for aggregation)")
        s = self.app.stream(info.topic, info.key_serde(), info.value_serde(), timestamp_extractor=_enricher(info),
                            on_error="skip")
        return self._changes(s, info.key_serde(), alias, where)

    def _changes(self, s: KStream[Any, Any], key_serde: Any, alias: str,
                 where: Callable[[Any], bool] | None) -> KStream[Any, Any]:
        """A table's update stream as ``{"old": row | None, "new": row | None}`` per key (the row
        each update replaces is kept in a store); a row failing ``where`` counts as absent."""
        prev_store = f"{alias.lower()}-previous"
        self.app.add_state_store(prev_store, key_serde, INTERNAL_VALUES)

        class Changes(Processor):
            def init(self, ctx: ProcessorContext) -> None:
                self.ctx = ctx
                self.prev = ctx.get_store(prev_store)

            def process(self, record: Record) -> None:
                new = record.value
                if new is not None and where is not None and not where(new):
                    new = None
                old = self.prev.get(record.key)
                if old is None and new is None:
                    return
                if new is None:
                    self.prev.delete(record.key)
                else:
                    self.prev.put(record.key, new)
                self.ctx.forward(record.key, {"old": old, "new": new}, record.timestamp)

        return s.process(Changes, stores=[prev_store], key_serde=key_serde, value_serde=INTERNAL_VALUES)

    def _aggregate(self, q: A.Query, stream: KStream[Any, Any], scope: Scope, aggs: list[A.Call], kind_in: str,
                   emit: Emit | None, sink: SinkSpec | None, infos: dict[str, SourceInfo],
                   table_changes: bool = False) -> Plan:
        if not q.group_by:
            raise err(q.items[0], "Aggregate functions without GROUP BY are not supported yet (ksqlDB needs one too)")
        if table_changes and q.window is not None:
            raise err(q.items[0], "Windowed aggregations over a TABLE are not supported (ksqlDB does not either)")
        comp = Compiler(scope, clause="GROUP BY")
        keys = [comp.compile(e) for e in q.group_by]
        for e in q.group_by:
            if find_aggregates(e):
                raise err(e, "GROUP BY expressions can not contain aggregate functions")
        key_fns = [k.fn for k in keys]
        single = len(keys) == 1

        # aggregate functions and their argument closures
        specs: list[tuple[F.AggregateFunction, Callable[[Any], Any]]] = []
        agg_types: list[T.SqlType] = []
        arg_comp = Compiler(scope, clause="an aggregate's argument")
        for call in aggs:
            f = F.lookup_aggregate(call.name)
            assert f is not None
            if call.star:
                if call.name != "COUNT":
                    raise err(call, f"Function '{call.name}' does not take *")
                specs.append((f, lambda _v: 1))
                agg_types.append(T.BIGINT)
                continue
            if call.distinct:
                if call.name != "COUNT":
                    raise err(call, f"DISTINCT is only supported with COUNT, not {call.name}")
                f = F.lookup_aggregate("COUNT_DISTINCT")
                assert f is not None
            want = max(f.args, 1)
            if len(call.args) != want:
                raise err(call, f"Function '{call.name}' does not accept {len(call.args)} argument(s); it takes {want}")
            for a in call.args:
                if find_aggregates(a):
                    raise err(a, "Aggregate functions can not be nested")
            compiled = [arg_comp.compile(a) for a in call.args]
            if call.name in ("SUM", "AVG") and not (compiled[0].type.numeric or compiled[0].type.name in ("NULL", "ANY")):
                raise err(call, f"Function '{call.name}' does not accept parameters ({compiled[0].type}).")
            if len(compiled) == 1:
                g = compiled[0].fn
                specs.append((f, g))
            else:
                fns = [c.fn for c in compiled]
                specs.append((f, lambda v, fns=fns: tuple(h(v) for h in fns)))  # type: ignore[misc]
            agg_types.append(f.returns([c.type for c in compiled]))
        fs = [s[0] for s in specs]
        argfs = [s[1] for s in specs]

        def init() -> Any:
            return [f.init() for f in fs]

        def add(_k: Any, v: Any, state: Any) -> Any:
            return [f.add(state[i], argfs[i](v)) for i, f in enumerate(fs)]

        # the common shapes without the per-aggregate loop (the state stays a list: stores and
        # changelogs written before read the same)
        if len(fs) == 1:
            f0, arg0 = fs[0], argfs[0]
            if aggs[0].star:  # COUNT(*): as cheap as riverbed.streams' count()
                def init() -> Any:
                    return [0]

                def add(_k: Any, v: Any, state: Any) -> Any:  # (v unused: every row counts)
                    return [state[0] + 1]
            else:
                init0, add0 = f0.init, f0.add

                def init() -> Any:
                    return [init0()]

                def add(_k: Any, v: Any, state: Any) -> Any:
                    return [add0(state[0], arg0(v))]

        if table_changes:
            for call, f in zip(aggs, fs, strict=True):
                if f.undo is None:
                    raise err(call, f"{call.name} is not supported in an aggregation over a TABLE: a row that leaves "
                              "its group cannot be taken out of it (COUNT, SUM, AVG, COLLECT_LIST can)")
            undos = [f.undo for f in fs]

            def add(_k: Any, v: Any, state: Any) -> Any:  # tables: ("+" | "-", row)
                op, row = v
                if op == "-":
                    return [undos[i](state[i], argfs[i](row)) for i in range(len(fs))]  # type: ignore[misc]
                return [f.add(state[i], argfs[i](row)) for i, f in enumerate(fs)]

        def merge(_k: Any, a: Any, b: Any) -> Any:
            return [f.merge(a[i], b[i]) for i, f in enumerate(fs)]

        # the SELECT list after aggregation: keys, aggregate results, window bounds
        windowed = q.window is not None

        def special(e: A.Expr) -> Compiled | None:
            for i, ge in enumerate(q.group_by):
                if e == ge:
                    if single:
                        return Compiled(lambda r: r["\x00k"], keys[i].type)
                    return Compiled(lambda r, i=i: r["\x00k"][i], keys[i].type)  # type: ignore[misc]
            if isinstance(e, A.Call) and F.lookup_aggregate(e.name) is not None:
                idx = next(i for i, a in enumerate(aggs) if a is e or a == e)
                fin = fs[idx].result
                return Compiled(lambda r: fin(r["\x00a"][idx]), agg_types[idx])
            if isinstance(e, A.Column) and e.name in ("WINDOWSTART", "WINDOWEND") and e.source is None:
                if not windowed:
                    raise err(e, f"{e.name} can only be used in a windowed aggregation")
                n = e.name
                return Compiled(lambda r: r[n], T.BIGINT)
            if isinstance(e, A.Column):
                raise err(e, f"Non-aggregate SELECT expression(s) not part of GROUP BY: {show(e)}")
            return None

        post = Compiler(scope, special, clause="SELECT")
        taken: set[str] = set()
        cols: list[OutputColumn] = []
        getters: list[tuple[str, Callable[[Any], Any]]] = []
        key_positions: dict[int, str] = {}
        for i, it in enumerate(q.items):
            if it.expr is None:
                raise err(it, "SELECT * is not supported in an aggregation; name the GROUP BY columns and aggregates")
            c = post.compile(it.expr)
            name = column_name(it, i, taken)
            is_key = False
            for gi, ge in enumerate(q.group_by):
                if it.expr == ge and gi not in key_positions:
                    key_positions[gi] = name
                    is_key = True
                    break
            cols.append(OutputColumn(name, c.type, is_key))
            getters.append((name, c.fn))
        for gi, ge in enumerate(q.group_by):  # GROUP BY columns not in the SELECT list stay in the key
            if gi not in key_positions:
                name = ge.name if isinstance(ge, A.Column) else f"KSQL_COL_{len(q.items) + gi}"
                name = column_name(A.SelectItem(None, name), 0, taken)
                key_positions[gi] = name
                cols.insert(gi, OutputColumn(name, keys[gi].type, True))
                getters.insert(gi, (name, (lambda r: r["\x00k"]) if single else (lambda r, gi=gi: r["\x00k"][gi])))  # type: ignore[misc]
        if windowed:
            for n, _t in WINDOW_COLUMNS:
                if n not in taken:
                    taken.add(n)
        having = post.predicate(q.having) if q.having is not None else None

        def row_of(k: Any, state: Any, window: Any = None) -> Row | None:
            if state is None:
                return None
            r: dict[str, Any] = {"\x00k": k, "\x00a": state}
            if window is not None:
                r["WINDOWSTART"], r["WINDOWEND"] = window.start, window.end
            if having is not None and not having(r):
                return None
            return {n: g(r) for n, g in getters}

        # group
        group_expr_is_key = (single and isinstance(q.group_by[0], A.Column) and len(infos) == 1
                             and self._is_source_key(next(iter(infos.values())), q.group_by[0]))
        if table_changes:  # each change: out of the old row's group, into the new row's
            def regroup(_k: Any, v: Any) -> list[tuple[Any, Any]]:
                out = []
                for op, row in (("-", v["old"]), ("+", v["new"])):
                    if row is not None:
                        gk = key_fns[0](row) if single else tuple(f(row) for f in key_fns)
                        out.append((gk, [op, row]))
                return out
            grouped = stream.flat_map(regroup, key_serde=INTERNAL, value_serde=INTERNAL_VALUES)\
                .group_by_key(key_serde=INTERNAL, value_serde=INTERNAL_VALUES)
        elif group_expr_is_key:
            info = next(iter(infos.values()))
            grouped = stream.group_by_key(key_serde=info.key_serde(), value_serde=INTERNAL_VALUES)
        else:
            if single:
                kf = key_fns[0]
                grouped = stream.group_by(lambda _k, v: kf(v), key_serde=INTERNAL, value_serde=INTERNAL_VALUES)
            else:
                grouped = stream.group_by(lambda _k, v: tuple(f(v) for f in key_fns), key_serde=INTERNAL,
                                          value_serde=INTERNAL_VALUES)
        self.description.append("aggregate GROUP BY " + ", ".join(show(e) for e in q.group_by) + ": "
                                + ", ".join(show(a) for a in aggs))
        store = f"{(sink.name if sink else 'agg').lower()}-aggregate"
        w = q.window
        mode = "on_window_close" if q.emit == "FINAL" else "on_update"
        if q.emit == "FINAL" and w is None:
            raise err(q.items[0], "EMIT FINAL is only supported for windowed aggregations.")
        plan = Plan(self.app, cols, "TABLE", w, store, sources=[i.name for i in infos.values()])
        if w is None:
            tbl = grouped.aggregate(init, add, INTERNAL_VALUES, name=store)
            plan.stored_row = lambda k, s: row_of(k, s)
            out = tbl.to_stream().map(lambda k, s: (k, row_of(k, s)))
        else:
            grace = w.grace_ms if w.grace_ms is not None else DEFAULT_GRACE_MS
            retention = w.retention_ms
            if w.kind == "SESSION":
                sw = grouped.windowed_by(SessionWindows.with_inactivity_gap(w.size_ms, grace=grace), emit=mode,
                                         retention=retention)
                tbl = sw.aggregate(init, add, merge, INTERNAL_VALUES, name=store)
            else:
                tw = TimeWindows.of(w.size_ms, grace=grace)
                if w.kind == "HOPPING":
                    assert w.advance_ms is not None
                    if w.advance_ms > w.size_ms or w.advance_ms <= 0:
                        raise err(q.items[0], "ADVANCE BY must be positive and at most the window SIZE")
                    tw = tw.advance_by(w.advance_ms)
                tbl = grouped.windowed_by(tw, emit=mode, retention=retention).aggregate(init, add, INTERNAL_VALUES, name=store)
            plan.stored_row = lambda wk, s: row_of(wk.key, s, wk.window)
            self.description.append(f"window {w.kind} size {w.size_ms} ms"
                                    + (f" advance {w.advance_ms} ms" if w.advance_ms else "") + f" grace {grace} ms, emit {mode}")
            out = tbl.to_stream().map(lambda wk, s: (wk, row_of(wk.key, s, wk.window)))
        self._sink_stream(out, plan, emit, sink, q.limit)
        plan.description = self.description
        return plan

    @staticmethod
    def _is_source_key(info: SourceInfo, e: A.Column) -> bool:
        return len(info.key_columns) == 1 and info.key_columns[0][0] == e.name


@dataclass
class SinkSpec:
    name: str
    topic: str
    key_format: str
    value_format: str
    wrap_single: bool = True
    registry: Any = None
    key_schema_name: str | None = None
    value_schema_name: str | None = None
    key_schema_id: int | None = None
    value_schema_id: int | None = None
    key_proto_nullable: str | None = None
    value_proto_nullable: str | None = None
    key_delimiter: str = ","
    value_delimiter: str = ","
