"""What the connector reads from PostgreSQL's catalog over an ordinary (psycopg 3) connection:
column nullability, primary keys and type details of captured tables, the publication and the
replication slot (position, lag, WAL status)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from .debezium import ColumnType, TableSchema
from .pgoutput import Relation, parse_lsn

log = logging.getLogger("riverbed.connect")

_COLUMNS = """
SELECT a.attname, a.atttypid, a.atttypmod, NOT a.attnotnull, t.typname, t.typtype, t.typelem,
       t.typbasetype, t.typcategory, array_position(i.indkey::int2[], a.attnum),
       array(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder),
       n.nspname, c.relname, c.relreplident
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum
"""


@dataclass(frozen=True)
class SlotState:
    exists: bool
    active: bool = False
    wal_status: str | None = None  # reserved, extended, unreserved, lost
    confirmed_flush_lsn: int | None = None
    restart_lsn: int | None = None
    lag_bytes: int | None = None  # pg_current_wal_insert_lsn() - confirmed_flush_lsn
    retained_bytes: int | None = None  # pg_current_wal_insert_lsn() - restart_lsn (WAL kept for the slot)
    current_lsn: int | None = None


class Catalog:
    def __init__(self, conn: psycopg.Connection[Any], decimal_mode: str = "precise") -> None:
        self.conn = conn
        self.decimal_mode = decimal_mode

    def table_schema(self, oid: int, relation: Relation | None = None) -> tuple[TableSchema, str] | None:
        """The table's envelope schema and replica identity ('d', 'f', 'i', 'n'); the columns are
        those of `relation` (the stream's view) when given, else the catalog's."""
        rows = self.conn.execute(_COLUMNS, (oid,)).fetchall()
        if not rows and relation is None:
            return None
        by_name = {r[0]: r for r in rows}
        ns, rel, ident = (rows[0][11], rows[0][12], rows[0][13]) if rows else (relation.namespace if relation else "", relation.name if relation else "", "d")
        if relation is not None:
            ns, rel, ident = relation.namespace or "pg_catalog", relation.name, relation.replica_identity
            names = [c.name for c in relation.columns]
            types = []
            optional = []
            for c in relation.columns:
                r = by_name.get(c.name)
                types.append(self._column_type(c.type_oid, c.type_modifier, r))
                optional.append(True if r is None else bool(r[3]))
        else:
            names = [r[0] for r in rows]
            types = [self._column_type(r[1], r[2], r) for r in rows]
            optional = [bool(r[3]) for r in rows]
        pk = sorted((r[9], r[0]) for r in rows if r[9] is not None)
        keys = [name for _, name in pk if name in names]
        return TableSchema(ns, rel, names, types, optional, keys, self.decimal_mode), str(ident)

    def _column_type(self, oid: int, typmod: int, row: Any) -> ColumnType:
        if row is None or row[1] != oid:
            return ColumnType(oid, typmod)
        typname, typtype, typelem, basetype, category, labels = row[4], row[5], row[6], row[7], row[8], row[10]
        if typtype == "d" and basetype:
            return ColumnType(int(basetype), typmod, typname, "b")
        if category == "A" and typelem:
            elem = self.conn.execute("SELECT typtype, array(SELECT enumlabel::text FROM pg_enum WHERE enumtypid = %s ORDER BY enumsortorder) FROM pg_type WHERE oid = %s", (typelem, typelem)).fetchone()
            etype = ColumnType(int(typelem), -1, "", elem[0] if elem else "b", tuple(elem[1]) if elem else ())
            return ColumnType(oid, typmod, typname, "b", (), etype)
        return ColumnType(oid, typmod, typname, typtype, tuple(labels or ()))

    def tables(self, publication: str) -> list[tuple[str, str, int]]:
        """(schema, table, oid) of the tables a publication publishes."""
        rows = self.conn.execute(
            "SELECT p.schemaname, p.tablename, c.oid FROM pg_publication_tables p JOIN pg_namespace n ON n.nspname = p.schemaname "
            "JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename WHERE p.pubname = %s ORDER BY 1, 2",
            (publication,),
        ).fetchall()
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    def user_tables(self) -> list[tuple[str, str, int, bool]]:
        """(schema, table, oid, has primary key) of every ordinary user table."""
        rows = self.conn.execute(
            "SELECT n.nspname, c.relname, c.oid, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%' ORDER BY 1, 2"
        ).fetchall()
        return [(str(r[0]), str(r[1]), int(r[2]), bool(r[3])) for r in rows]

    def publication_exists(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone() is not None

    def create_publication(self, name: str, tables: list[tuple[str, str]] | None) -> None:
        """FOR ALL TABLES when `tables` is None, else FOR TABLE (or ALTER ... SET TABLE)."""
        pub = sql.Identifier(name)
        if tables is None:
            if not self.publication_exists(name):
                self.conn.execute(sql.SQL("CREATE PUBLICATION {} FOR ALL TABLES").format(pub))
                log.info("created publication %s FOR ALL TABLES", name)
            return
        if not tables:
            raise ValueError("publication.autocreate.mode=filtered: table.include.list matches no table")
        names = sql.SQL(", ").join(sql.Identifier(s, t) for s, t in tables)
        if self.publication_exists(name):
            self.conn.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(pub, names))
        else:
            self.conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(pub, names))
            log.info("created publication %s for %d tables", name, len(tables))

    def set_replica_identity_full(self, schema: str, table: str) -> None:
        self.conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(sql.Identifier(schema, table)))

    def slot(self, name: str) -> SlotState:
        row = self.conn.execute(
            "SELECT active, wal_status, confirmed_flush_lsn::text, restart_lsn::text, "
            "(pg_current_wal_insert_lsn() - confirmed_flush_lsn)::bigint, (pg_current_wal_insert_lsn() - restart_lsn)::bigint, pg_current_wal_insert_lsn()::text "
            "FROM pg_replication_slots WHERE slot_name = %s",
            (name,),
        ).fetchone()
        if row is None:
            return SlotState(False)
        return SlotState(
            True,
            bool(row[0]),
            row[1],
            parse_lsn(row[2]) if row[2] else None,
            parse_lsn(row[3]) if row[3] else None,
            None if row[4] is None else int(row[4]),
            None if row[5] is None else int(row[5]),
            parse_lsn(row[6]) if row[6] else None,
        )

    def drop_slot(self, name: str) -> bool:
        """Drop the slot (terminating a walsender still holding it); False if it did not exist."""
        row = self.conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (name,)).fetchone()
        if row is None:
            return False
        if row[0] is not None:
            self.conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
        for _ in range(100):
            try:
                self.conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
                return True
            except psycopg.errors.ObjectInUse:
                import time

                time.sleep(0.05)
            except psycopg.errors.UndefinedObject:
                return False
        raise RuntimeError(f"slot {name} stays active")


def match_tables(tables: list[tuple[str, str, int, bool]], include: tuple[str, ...], exclude: tuple[str, ...]) -> list[tuple[str, str, int, bool]]:
    """Debezium's table.include.list / table.exclude.list: regular expressions matched against
    the whole 'schema.table'."""
    inc = [re.compile(p) for p in include]
    exc = [re.compile(p) for p in exclude]
    out = []
    for t in tables:
        full = f"{t[0]}.{t[1]}"
        if inc and not any(p.fullmatch(full) for p in inc):
            continue
        if any(p.fullmatch(full) for p in exc):
            continue
        out.append(t)
    return out
