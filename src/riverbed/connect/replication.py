"""A logical replication connection over psycopg 3's libpq binding (``psycopg.pq``): replication
commands (IDENTIFY_SYSTEM, CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT, DROP_REPLICATION_SLOT)
and the START_REPLICATION CopyBoth stream. psycopg 3 has no replication helper; libpq does
all the protocol work and we only frame the CopyData messages (see docs/adr/0008-cdc-connector.md).
"""

from __future__ import annotations

import re
import select
import time
from dataclasses import dataclass

import psycopg
from psycopg import pq

from .pgoutput import format_lsn

__all__ = ["ReplicationConnection", "ReplicationError", "SlotInfo", "session_options"]

# What every connection of the connector sets, so that the text form of values is the one the
# type mapping parses: ISO dates, UTC, hex bytea, round-trip floats.
SESSION_OPTIONS = {"DateStyle": "ISO, YMD", "TimeZone": "UTC", "bytea_output": "hex", "extra_float_digits": "3", "IntervalStyle": "postgres"}
_NAME = re.compile(r"^[a-z0-9_]{1,63}$")


def session_options() -> str:
    return " ".join(f"-c {k}={v.replace(' ', '')}" for k, v in SESSION_OPTIONS.items())


class ReplicationError(Exception):
    """The server refused a replication command or ended the stream; `sqlstate` says why."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass(frozen=True)
class SlotInfo:
    name: str
    consistent_point: int
    snapshot_name: str | None


def check_name(name: str, what: str = "slot") -> str:
    if not _NAME.match(name):
        raise ValueError(f"invalid {what} name {name!r}: lower-case letters, digits and _ (at most 63)")
    return name


class ReplicationConnection:
    """One ``replication=database`` connection. Not thread-safe; one per connector."""

    def __init__(self, conninfo: str, connect_timeout: float = 10.0) -> None:
        info = psycopg.conninfo.make_conninfo(conninfo, replication="database", options=session_options(), connect_timeout=str(max(1, int(connect_timeout))), application_name="riverbed-connect")
        self.pg = pq.PGconn.connect(info.encode())
        if self.pg.status != pq.ConnStatus.OK:
            msg = self.pg.get_error_message()
            self.pg.finish()
            raise ReplicationError(f"replication connection failed: {msg}")
        self.streaming = False

    def close(self) -> None:
        if self.pg.status != pq.ConnStatus.BAD:
            self.pg.finish()

    def _error(self, res: pq.abc.PGresult | None, what: str) -> ReplicationError:
        if res is None:
            return ReplicationError(f"{what}: {self.pg.get_error_message()}")
        state = res.error_field(pq.DiagnosticField.SQLSTATE)
        msg = (res.error_message or b"").decode(errors="replace").strip()
        return ReplicationError(f"{what}: {msg}", state.decode() if state else None)

    def command(self, sql: str) -> list[tuple[str | None, ...]]:
        """Run a replication (or simple SQL) command; the rows, as text."""
        res = self.pg.exec_(sql.encode())
        if res.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            raise self._error(res, sql.split(" ", 1)[0])
        rows = []
        for r in range(res.ntuples):
            row = []
            for c in range(res.nfields):
                v = res.get_value(r, c)
                row.append(None if v is None else bytes(v).decode())
            rows.append(tuple(row))
        return rows

    def identify_system(self) -> tuple[str, int, str]:
        """(system id, timeline, current WAL flush LSN as text)."""
        row = self.command("IDENTIFY_SYSTEM")[0]
        return str(row[0]), int(row[1] or 0), str(row[2])

    def create_slot(self, name: str, export_snapshot: bool) -> SlotInfo:
        """CREATE_REPLICATION_SLOT name LOGICAL pgoutput; with `export_snapshot` the snapshot
        stays valid until the next command on this connection."""
        from .pgoutput import parse_lsn

        mode = "EXPORT_SNAPSHOT" if export_snapshot else "NOEXPORT_SNAPSHOT"
        row = self.command(f"CREATE_REPLICATION_SLOT {check_name(name)} LOGICAL pgoutput {mode}")[0]
        return SlotInfo(str(row[0]), parse_lsn(str(row[1])), row[2])

    def drop_slot(self, name: str) -> None:
        self.command(f"DROP_REPLICATION_SLOT {check_name(name)}")

    def start(self, slot: str, lsn: int, publications: list[str], messages: bool = False) -> None:
        pubs = ",".join(check_name(p, "publication") for p in publications)
        opts = f"proto_version '1', publication_names '{pubs}'" + (", messages 'true'" if messages else "")
        try:
            self.pg.send_query(f"START_REPLICATION SLOT {check_name(slot)} LOGICAL {format_lsn(lsn)} ({opts})".encode())
        except psycopg.OperationalError as exc:
            raise ReplicationError(f"START_REPLICATION: {exc}") from None
        res = self.pg.get_result()
        if res is None or res.status != pq.ExecStatus.COPY_BOTH:
            raise self._error(res, "START_REPLICATION")
        self.pg.nonblocking = 1
        self.streaming = True

    def read(self, timeout: float) -> bytes | None:
        """The next CopyData message of the stream, or None after `timeout` seconds without one."""
        deadline = time.monotonic() + timeout
        while True:
            n, data = self.pg.get_copy_data(1)
            if n > 0:
                return bytes(data)
            if n == 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                select.select([self.pg.socket], [], [], remaining)
                try:
                    self.pg.consume_input()
                except psycopg.OperationalError as exc:
                    self.streaming = False
                    raise ReplicationError(f"replication stream: {exc}") from None
                continue
            # -1: the stream ended (server error or the server's end of copy); -2: failure
            self.streaming = False
            res = self.pg.get_result()
            while res is not None and res.status == pq.ExecStatus.COPY_BOTH:
                res = self.pg.get_result()
            raise self._error(res, "replication stream ended")

    def send(self, message: bytes) -> None:
        try:
            self.pg.put_copy_data(message)
            self.pg.flush()
        except psycopg.OperationalError as exc:
            raise ReplicationError(f"send: {exc}") from None
