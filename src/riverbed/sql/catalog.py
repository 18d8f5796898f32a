"""The metastore: streams and tables (their columns, topic and formats) and the queries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import ast as A
from . import types as T
from .formats import Columns, KeySerde, value_serde

PSEUDO = [("ROWTIME", T.BIGINT), ("ROWPARTITION", T.INTEGER), ("ROWOFFSET", T.BIGINT)]
WINDOW_COLUMNS = [("WINDOWSTART", T.BIGINT), ("WINDOWEND", T.BIGINT)]


@dataclass
class Materialization:
    """Where a table's rows can be read for pull queries: a store of a persistent query, and how
    a stored entry becomes the table's row (``row(key, stored) -> dict | None``)."""

    query_id: str
    store: str
    row: Callable[[Any, Any], dict[str, Any] | None]


@dataclass
class SourceInfo:
    name: str
    kind: str  # STREAM, TABLE
    topic: str
    key_format: str
    value_format: str
    key_columns: Columns
    value_columns: Columns
    partitions: int | None = None
    timestamp: str | None = None
    timestamp_format: str | None = None
    window: A.WindowSpec | None = None
    source: bool = False
    statement: str = ""
    wrap_single: bool = True
    materialized: Materialization | None = None
    registry: Any = None  # a schemas.RegistryClient for the schema formats (AVRO, JSON_SR, PROTOBUF)
    key_schema_name: str | None = None  # KEY_SCHEMA_FULL_NAME
    value_schema_name: str | None = None  # VALUE_SCHEMA_FULL_NAME
    key_schema_id: int | None = None  # KEY_SCHEMA_ID, or the id of the schema the key columns were inferred from
    value_schema_id: int | None = None  # the same for values: writers use that schema
    key_proto_nullable: str | None = None  # KEY_PROTOBUF_NULLABLE_REPRESENTATION
    value_proto_nullable: str | None = None  # VALUE_PROTOBUF_NULLABLE_REPRESENTATION
    key_delimiter: str = ","  # KEY_DELIMITER (DELIMITED)
    value_delimiter: str = ","  # VALUE_DELIMITER (DELIMITED)
    header_columns: list[tuple[str, T.SqlType, str | None]] = field(default_factory=list)  # HEADERS (None) / HEADER('k')
    readers: set[str] = field(default_factory=set)  # query ids reading this source
    writers: set[str] = field(default_factory=set)  # query ids writing to it

    @property
    def columns(self) -> Columns:
        return [*self.key_columns, *self.value_columns, *((n, t) for n, t, _ in self.header_columns)]

    def scope_columns(self) -> Columns:
        """What a query over this source can name: key, value and pseudo columns."""
        cols = [*self.columns, *PSEUDO]
        if self.window is not None:
            cols += WINDOW_COLUMNS
        return cols

    def key_serde(self) -> KeySerde:
        return KeySerde(self.key_format, self.key_columns, self.registry, self.topic, self.key_schema_name, self.key_schema_id,
                        self.key_proto_nullable, self.key_delimiter)

    def value_serde(self) -> Any:
        return value_serde(self.value_format, self.value_columns, self.wrap_single, self.registry, self.topic,
                           self.value_schema_name, self.value_schema_id, self.value_proto_nullable, self.value_delimiter)

    def column_type(self, name: str) -> T.SqlType | None:
        return next((t for n, t in self.columns if n == name), None)


HEADERS_TYPE = T.array(T.struct([("KEY", T.STRING), ("VALUE", T.BYTES)]))


def header_values(headers: Any, wanted: list[tuple[str, T.SqlType, str | None]]) -> dict[str, Any]:
    """A record's headers as its source's header columns: ``HEADERS`` every header as
    ``{KEY, VALUE}`` in order; ``HEADER('k')`` the last value of header ``k`` (NULL if none)."""
    out: dict[str, Any] = {}
    for name, _t, key in wanted:
        if key is None:
            out[name] = [{"KEY": k, "VALUE": None if v is None else bytes(v)} for k, v in headers or []]
        else:
            found = None
            for k, v in headers or []:
                if k == key:
                    found = None if v is None else bytes(v)
            out[name] = found
    return out
