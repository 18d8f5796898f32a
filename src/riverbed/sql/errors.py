"""Errors with ksqlDB's error codes and, where known, the statement's line and column."""

from __future__ import annotations

# ksqlDB's REST error codes (io.confluent.ksql.rest.Errors)
BAD_STATEMENT = 40001
QUERY_ENDPOINT = 40002
BAD_REQUEST = 40000
NOT_FOUND = 40400
SERVER_ERROR = 50000
COMMAND_TIMEOUT = 50301  # a previous command (commandSequenceNumber) was not executed in time


class SqlError(Exception):
    """A statement ksqlDB would refuse: ``code`` is the REST error code, ``line``/``column`` (1-based)
    say where in the statement, when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None,
                 code: int = BAD_STATEMENT) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.code = code

    def __str__(self) -> str:
        if self.line is not None:
            return f"line {self.line}:{self.column}: {self.message}"
        return self.message


class SqlSyntaxError(SqlError):
    pass
