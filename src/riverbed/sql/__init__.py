"""riverbed.sql: ksqlDB's language and REST API over riverbed.streams.

Every persistent or push query is a ``riverbed.streams`` topology reaching the cluster through
confluent-kafka only, so it runs on any Kafka-compatible cluster. See docs/sql.md.
"""

from . import types
from .errors import SqlError, SqlSyntaxError
from .functions import udaf, udf
from .parser import parse, parse_one

__all__ = ["SqlError", "SqlSyntaxError", "parse", "parse_one", "types", "udaf", "udf"]
