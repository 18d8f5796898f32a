"""Decoding of PostgreSQL's ``pgoutput`` logical replication messages (protocol version 1) and
of the replication stream's framing (XLogData, primary keepalive, standby status update).

The formats are PostgreSQL's documented "Logical Replication Message Formats" and "Streaming
Replication Protocol". Decoding is pure: bytes in, dataclasses out; a malformed message raises
:class:`DecodeError` (never another exception type, never an unbounded allocation).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = [
    "Begin",
    "Column",
    "Commit",
    "DecodeError",
    "Delete",
    "Insert",
    "Keepalive",
    "LogicalMessage",
    "Origin",
    "Relation",
    "Truncate",
    "TypeMsg",
    "Update",
    "XLogData",
    "decode",
    "decode_stream",
    "format_lsn",
    "parse_lsn",
    "pg_time",
    "standby_status",
]

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
UNCHANGED_TOAST = object()  # a column value the server did not send (unchanged TOASTed value)


class DecodeError(ValueError):
    """A message that is not a well-formed pgoutput / replication message."""


def parse_lsn(text: str) -> int:
    """'16/B374D848' -> integer LSN."""
    hi, sep, lo = text.partition("/")
    if not sep:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(hi, 16) << 32) | int(lo, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def pg_time(micros: int) -> datetime:
    """A PostgreSQL timestamp (microseconds since 2000-01-01 UTC) as an aware datetime."""
    return PG_EPOCH + timedelta(microseconds=micros)


def unix_ms(pg_micros: int) -> int:
    """A PostgreSQL timestamp as milliseconds since the Unix epoch."""
    return (pg_micros + 946_684_800_000_000) // 1000


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    type_modifier: int
    key: bool


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    commit_ts: int  # µs since 2000-01-01
    xid: int


@dataclass(frozen=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts: int


@dataclass(frozen=True)
class Origin:
    lsn: int
    name: str


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    replica_identity: str  # 'd' default, 'n' nothing, 'f' full, 'i' index
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class TypeMsg:
    oid: int
    namespace: str
    name: str


# A tuple: one entry per column: None (NULL), UNCHANGED_TOAST, or the value's text bytes.
TupleData = tuple[object, ...]


@dataclass(frozen=True)
class Insert:
    relation_oid: int
    new: TupleData


@dataclass(frozen=True)
class Update:
    relation_oid: int
    new: TupleData
    old: TupleData | None = None  # present with REPLICA IDENTITY FULL ('O') or a key change ('K')
    old_kind: str | None = None  # 'K' (key columns only) or 'O' (whole old row)


@dataclass(frozen=True)
class Delete:
    relation_oid: int
    old: TupleData
    old_kind: str  # 'K' or 'O'


@dataclass(frozen=True)
class Truncate:
    options: int  # 1 CASCADE, 2 RESTART IDENTITY
    relation_oids: tuple[int, ...]


@dataclass(frozen=True)
class LogicalMessage:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message = Begin | Commit | Origin | Relation | TypeMsg | Insert | Update | Delete | Truncate | LogicalMessage


_H = struct.Struct(">h")
_I = struct.Struct(">i")


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.buf):
            raise DecodeError(f"message truncated: wanted {n} bytes at {self.pos} of {len(self.buf)}")
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def u8(self) -> int:
        return self._take(1)[0]

    def i16(self) -> int:
        return int(struct.unpack(">h", self._take(2))[0])

    def i32(self) -> int:
        return int(struct.unpack(">i", self._take(4))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self._take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self._take(8))[0])

    def i64(self) -> int:
        return int(struct.unpack(">q", self._take(8))[0])

    def string(self) -> str:
        end = self.buf.find(b"\0", self.pos)
        if end < 0:
            raise DecodeError("string without its terminating NUL")
        raw = self.buf[self.pos : end]
        self.pos = end + 1
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"string not UTF-8: {exc}") from None

    def tuple_data(self) -> TupleData:
        buf = self.buf
        if self.pos + 2 > len(buf):
            raise DecodeError("tuple truncated")
        (n,) = _H.unpack_from(buf, self.pos)
        pos = self.pos + 2
        if n < 0:
            raise DecodeError(f"negative column count {n}")
        values: list[object] = []
        end = len(buf)
        for _ in range(n):
            if pos >= end:
                raise DecodeError("tuple truncated")
            kind = buf[pos]
            pos += 1
            if kind == 0x74 or kind == 0x62:  # 't' text, 'b' binary
                if pos + 4 > end:
                    raise DecodeError("tuple truncated")
                (size,) = _I.unpack_from(buf, pos)
                pos += 4
                if size < 0 or pos + size > end:
                    raise DecodeError(f"column value of {size} bytes truncated")
                values.append(buf[pos : pos + size])
                pos += size
            elif kind == 0x6E:  # 'n'
                values.append(None)
            elif kind == 0x75:  # 'u'
                values.append(UNCHANGED_TOAST)
            else:
                raise DecodeError(f"unknown tuple column kind {kind!r}")
        self.pos = pos
        return tuple(values)

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise DecodeError(f"{len(self.buf) - self.pos} trailing bytes")


def decode(payload: bytes) -> Message:
    """One pgoutput message (the payload of an XLogData)."""
    if not payload:
        raise DecodeError("empty message")
    r = _Reader(bytes(payload))
    tag = chr(r.u8())
    msg: Message
    if tag == "B":
        msg = Begin(r.u64(), r.i64(), r.u32())
    elif tag == "C":
        msg = Commit(r.u8(), r.u64(), r.u64(), r.i64())
    elif tag == "O":
        msg = Origin(r.u64(), r.string())
    elif tag == "R":
        oid, ns, name, ident = r.u32(), r.string(), r.string(), chr(r.u8())
        n = r.i16()
        if n < 0:
            raise DecodeError(f"negative column count {n}")
        cols = []
        for _ in range(n):
            flags = r.u8()
            cname = r.string()
            cols.append(Column(cname, r.u32(), r.i32(), bool(flags & 1)))
        msg = Relation(oid, ns, name, ident, tuple(cols))
    elif tag == "Y":
        msg = TypeMsg(r.u32(), r.string(), r.string())
    elif tag == "I":
        oid = r.u32()
        if chr(r.u8()) != "N":
            raise DecodeError("insert without a new tuple")
        msg = Insert(oid, r.tuple_data())
    elif tag == "U":
        oid = r.u32()
        kind = chr(r.u8())
        old: TupleData | None = None
        old_kind: str | None = None
        if kind in ("K", "O"):
            old, old_kind = r.tuple_data(), kind
            kind = chr(r.u8())
        if kind != "N":
            raise DecodeError(f"update without a new tuple (got {kind!r})")
        msg = Update(oid, r.tuple_data(), old, old_kind)
    elif tag == "D":
        oid = r.u32()
        kind = chr(r.u8())
        if kind not in ("K", "O"):
            raise DecodeError(f"delete without an old tuple (got {kind!r})")
        msg = Delete(oid, r.tuple_data(), kind)
    elif tag == "T":
        n = r.i32()
        if n < 0:
            raise DecodeError(f"negative relation count {n}")
        opts = r.u8()
        msg = Truncate(opts, tuple(r.u32() for _ in range(n)))
    elif tag == "M":
        flags = r.u8()
        lsn, prefix = r.u64(), r.string()
        msg = LogicalMessage(bool(flags & 1), lsn, prefix, r._take(r.i32()))
    else:
        raise DecodeError(f"unknown pgoutput message type {tag!r}")
    r.done()
    return msg


@dataclass(frozen=True)
class XLogData:
    start_lsn: int
    end_lsn: int  # the server's current end of WAL
    send_time: int
    payload: bytes = field(repr=False)


@dataclass(frozen=True)
class Keepalive:
    end_lsn: int
    send_time: int
    reply_requested: bool


def decode_stream(data: bytes) -> XLogData | Keepalive:
    """One CopyData message of the replication stream: XLogData ('w') or keepalive ('k')."""
    if not data:
        raise DecodeError("empty CopyData")
    tag = data[0:1]
    if tag == b"w":
        if len(data) < 25:
            raise DecodeError("XLogData header truncated")
        start, end, ts = struct.unpack_from(">QQq", data, 1)
        return XLogData(start, end, ts, bytes(data[25:]))
    if tag == b"k":
        if len(data) != 18:
            raise DecodeError("keepalive of the wrong size")
        end, ts, reply = struct.unpack_from(">QqB", data, 1)
        return Keepalive(end, ts, bool(reply))
    raise DecodeError(f"unknown replication message {tag!r}")


def standby_status(written: int, flushed: int, applied: int, now_pg_micros: int, reply: bool = False) -> bytes:
    """A standby status update ('r'): the LSNs the client wrote, flushed and applied."""
    return b"r" + struct.pack(">QQQqB", written, flushed, applied, now_pg_micros, 1 if reply else 0)


def now_pg_micros() -> int:
    return int((datetime.now(UTC) - PG_EPOCH) / timedelta(microseconds=1))
