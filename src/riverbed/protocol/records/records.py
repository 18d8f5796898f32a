"""Records inside a v2 batch: decoding, a fast shallow count, building batches, control records.

Record layout (varints are zigzag; ``length`` counts the bytes after itself)::

    length varint | attributes int8 | timestampDelta varlong | offsetDelta varint
    keyLength varint | key | valueLength varint | value
    headerCount varint | { headerKeyLength varint | headerKey | headerValueLength varint | value }*

A negative key/value length means null. Errors follow Kafka's ``DefaultRecord.readFrom``:
anything structurally wrong inside the records block (truncation, a record whose fields do not
add up to its length, a record count that does not match) is an ``InvalidRecordException`` in
Kafka, i.e. INVALID_RECORD, so it is raised here as ``InvalidBatch(corrupt=False)``. Failures to
decompress the block are ``corrupt=True`` (see ``compression.py``).
"""

from __future__ import annotations

import functools
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from crc32c import crc32c

from riverbed._native import load as load_native

from ..errors import DecodeError
from ..varint import decode_uvarint, encode_varint, zigzag_decode
from .batch import (
    CONTROL_MASK,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC_V2,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_MASK,
    BatchHeader,
    Buffer,
    InvalidBatch,
    validate_batch,
)
from .compression import Compression, compress, decompress

__all__ = [
    "CONTROL_ABORT",
    "CONTROL_COMMIT",
    "DEFAULT_MAX_UNCOMPRESSED",
    "Header",
    "Record",
    "RecordInput",
    "build_batch",
    "build_control_batch",
    "count_records",
    "decode_records",
    "decode_records_block",
    "parse_control_record",
    "records_block",
]

DEFAULT_MAX_UNCOMPRESSED: Final = 64 * 1024 * 1024
NO_TIMESTAMP: Final = -1

CONTROL_ABORT: Final = 0
CONTROL_COMMIT: Final = 1

Header: TypeAlias = tuple[str, bytes | None]


@dataclass(slots=True)
class Record:
    """One decoded record; ``offset`` and ``timestamp`` are absolute."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[Header] = field(default_factory=list)
    attributes: int = 0


HeadersIn: TypeAlias = Sequence[tuple[str | bytes, bytes | None]]
#: What :func:`build_batch` accepts per record: a :class:`Record` (its offset is ignored) or a
#: tuple ``(key, value)``, ``(key, value, headers)`` or ``(key, value, headers, timestamp)``.
RecordInput: TypeAlias = (
    Record
    | tuple[bytes | None, bytes | None]
    | tuple[bytes | None, bytes | None, HeadersIn]
    | tuple[bytes | None, bytes | None, HeadersIn, int | None]
)

_CONTROL_KEY = struct.Struct(">hh")
_CONTROL_VALUE = struct.Struct(">hi")
_HEADER = struct.Struct(">qiibIhiqqqhii")
_UINT32 = struct.Struct(">I")


def _invalid(message: str) -> InvalidBatch:
    return InvalidBatch(message, corrupt=False)


# --------------------------------------------------------------------------- shallow count

# the C walk (riverbed._native, ADR 0014) where it was built; None: the Python walk
_recscan: Any = load_native("recscan")


def count_records(block: Buffer) -> int:
    """Count the records of an *uncompressed* records block by hopping from length to length.

    Only each record's length varint is read. Raises ``InvalidBatch(corrupt=False)`` when the
    lengths do not tile the block exactly (negative length, truncated varint, overrun).
    """
    if _recscan is not None:
        n, status, detail = _recscan.count(block)
        n = int(n)
        if status == 0:
            return n
        if status == 1:
            raise _invalid(f"negative length for record {n}")
        if status == 2:
            raise _invalid(f"truncated length varint for record {n}")
        raise _invalid(f"record {n - 1} extends {detail} bytes past the end of the batch")
    return count_records_python(block)


def count_records_python(block: Buffer) -> int:
    """count_records in Python: the reference for the C walk, and its fallback."""
    data = block if type(block) is bytes else bytes(block)
    end = len(data)
    pos = 0
    n = 0
    try:
        while pos < end:
            b = data[pos]
            # zigzag: the sign is the low bit of the first byte, whatever the varint's width.
            if b & 1:
                raise _invalid(f"negative length for record {n}")
            if b < 0x80:
                pos += (b >> 1) + 1
            else:
                b2 = data[pos + 1]
                if b2 < 0x80:
                    pos += (((b & 0x7F) | (b2 << 7)) >> 1) + 2
                else:
                    raw, pos = decode_uvarint(data, pos, 5)
                    pos += raw >> 1
            n += 1
    except (IndexError, DecodeError):
        raise _invalid(f"truncated length varint for record {n}") from None
    if pos != end:
        raise _invalid(f"record {n - 1} extends {pos - end} bytes past the end of the batch")
    return n


# --------------------------------------------------------------------------- decoding


def records_block(
    buf: Buffer,
    header: BatchHeader,
    *,
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
) -> bytes:
    """The (decompressed) records block of the batch described by ``header``."""
    start = header.position + HEADER_SIZE
    view = memoryview(buf)[start : header.position + header.size]
    codec = header.compression
    if codec == 0:
        return bytes(view)
    return decompress(codec, view, max_uncompressed)


def decode_records(
    buf: Buffer,
    position: int = 0,
    *,
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
    check_crc: bool = True,
) -> list[Record]:
    """Decode every record of the batch at ``position`` (decompressing it if needed).

    Raises :class:`InvalidBatch` for anything malformed, never another exception type.
    """
    header = validate_batch(buf, position, check_crc=check_crc)
    if header.compression > Compression.ZSTD:
        raise InvalidBatch(f"unknown compression codec {header.compression}")
    data = records_block(buf, header, max_uncompressed=max_uncompressed)
    return decode_records_block(data, header)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    raw, pos = decode_uvarint(data, pos)
    return zigzag_decode(raw), pos


def decode_records_block(data: bytes, header: BatchHeader) -> list[Record]:
    """Decode the already decompressed records block ``data`` of the batch ``header``."""
    count = int(header.records_count)
    if count < 0:
        raise _invalid(f"negative record count {count}")
    base_offset = int(header.base_offset)
    base_ts = int(header.base_timestamp)
    append_time = int(header.max_timestamp) if header.is_log_append_time else None
    varint = _varint
    end = len(data)
    pos = 0
    out: list[Record] = []
    append = out.append
    i = 0
    try:
        while i < count:
            if pos >= end:
                raise _invalid(f"batch declares {count} records but holds {i}")
            length, pos = varint(data, pos)
            start = pos
            rec_end = pos + length
            if length < 0 or rec_end > end:
                raise _invalid(f"record {i} has invalid length {length}")
            attributes = data[pos]
            ts_delta, pos = varint(data, pos + 1)
            offset_delta, pos = varint(data, pos)
            n, pos = varint(data, pos)
            if n >= 0:
                if pos + n > rec_end:
                    raise _invalid(f"record {i} key overruns the record")
                key: bytes | None = data[pos : pos + n]
                pos += n
            else:
                key = None
            n, pos = varint(data, pos)
            if n >= 0:
                if pos + n > rec_end:
                    raise _invalid(f"record {i} value overruns the record")
                value: bytes | None = data[pos : pos + n]
                pos += n
            else:
                value = None
            n_headers, pos = varint(data, pos)
            if n_headers < 0 or 2 * n_headers > rec_end - pos:
                raise _invalid(f"record {i} has an invalid header count {n_headers}")
            headers: list[Header] = []
            for _ in range(n_headers):
                n, pos = varint(data, pos)
                if n < 0 or pos + n > rec_end:
                    raise _invalid(f"record {i} has an invalid header key length")
                hkey = data[pos : pos + n].decode("utf-8", "surrogateescape")
                pos += n
                n, pos = varint(data, pos)
                if n >= 0:
                    if pos + n > rec_end:
                        raise _invalid(f"record {i} header value overruns the record")
                    hvalue: bytes | None = data[pos : pos + n]
                    pos += n
                else:
                    hvalue = None
                headers.append((hkey, hvalue))
            if pos != rec_end:
                raise _invalid(
                    f"record {i}: expected {length} bytes in the record, read {pos - start}"
                )
            append(
                Record(
                    base_offset + offset_delta,
                    base_ts + ts_delta if append_time is None else append_time,
                    key,
                    value,
                    headers,
                    attributes,
                )
            )
            i += 1
    except (IndexError, DecodeError):
        raise _invalid(f"record {i} is truncated") from None
    if pos != end:
        raise _invalid(f"{end - pos} bytes left after the {count} declared records")
    return out


# --------------------------------------------------------------------------- building


def _encode_bytes(out: bytearray, value: bytes | None) -> None:
    if value is None:
        out += b"\x01"  # zigzag(-1)
    else:
        out += encode_varint(len(value))
        out += value


def _encode_record(
    out: bytearray,
    offset_delta: int,
    timestamp_delta: int,
    key: bytes | None,
    value: bytes | None,
    headers: HeadersIn,
) -> None:
    body = bytearray(b"\x00")  # attributes (unused in v2)
    body += encode_varint(timestamp_delta)
    body += encode_varint(offset_delta)
    _encode_bytes(body, key)
    _encode_bytes(body, value)
    body += encode_varint(len(headers))
    for hkey, hvalue in headers:
        kb = hkey.encode("utf-8", "surrogateescape") if isinstance(hkey, str) else hkey
        body += encode_varint(len(kb))
        body += kb
        _encode_bytes(body, hvalue)
    out += encode_varint(len(body))
    out += body


def _unpack_input(
    r: RecordInput,
) -> tuple[bytes | None, bytes | None, HeadersIn, int | None]:
    if isinstance(r, Record):
        return r.key, r.value, r.headers, r.timestamp
    if len(r) == 4:
        return r
    if len(r) == 3:
        return r[0], r[1], r[2], None
    return r[0], r[1], (), None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def build_batch(
    records: Sequence[RecordInput],
    *,
    compression: int = Compression.NONE,
    base_offset: int = 0,
    base_timestamp: int | None = None,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = -1,
    base_sequence: int = NO_SEQUENCE,
    transactional: bool = False,
    control: bool = False,
    partition_leader_epoch: int = -1,
    log_append_time: bool = False,
) -> bytearray:
    """Build one v2 batch holding ``records`` with offset deltas 0..n-1 and a valid CRC.

    A record without a timestamp gets ``base_timestamp`` (or the current time).
    ``baseTimestamp`` is ``base_timestamp`` if given, else the first record's timestamp;
    ``maxTimestamp`` is the largest record timestamp, or the append time (``base_timestamp``)
    when ``log_append_time`` is set. An empty list builds an empty batch (count 0,
    lastOffsetDelta -1), which clients never send but which tests need.
    """
    default_ts = base_timestamp if base_timestamp is not None else _now_ms()
    unpacked = [_unpack_input(r) for r in records]
    timestamps = [default_ts if ts is None else ts for (_, _, _, ts) in unpacked]
    if base_timestamp is not None:
        base_ts = base_timestamp
    elif timestamps:
        base_ts = timestamps[0]
    else:
        base_ts = NO_TIMESTAMP
    if log_append_time:
        max_ts = base_ts
    else:
        max_ts = max(timestamps) if timestamps else base_ts

    block = bytearray()
    for i, ((key, value, headers, _), ts) in enumerate(zip(unpacked, timestamps, strict=True)):
        _encode_record(block, i, ts - base_ts, key, value, headers)

    codec = Compression(compression)
    payload: Buffer = block if codec is Compression.NONE else compress(codec, block)

    attributes = int(codec)
    if log_append_time:
        attributes |= TIMESTAMP_TYPE_MASK
    if transactional:
        attributes |= TRANSACTIONAL_MASK
    if control:
        attributes |= CONTROL_MASK

    count = len(unpacked)
    size = HEADER_SIZE + len(payload)
    out = bytearray(size)
    _HEADER.pack_into(
        out,
        0,
        base_offset,
        size - LOG_OVERHEAD,
        partition_leader_epoch,
        MAGIC_V2,
        0,  # crc, filled in below
        attributes,
        count - 1,
        base_ts,
        max_ts,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    )
    out[HEADER_SIZE:] = payload
    _UINT32.pack_into(out, 17, crc32c(memoryview(out)[21:]))
    return out


def build_single_record_batch(key: bytes | None, value: bytes | None, timestamp: int) -> bytearray:
    """``build_batch([(key, value, (), timestamp)])`` without its generality (no producer,
    no compression, no headers): what the coordinators write for every state change."""
    block = bytearray()
    _encode_record(block, 0, 0, key, value, ())
    size = HEADER_SIZE + len(block)
    out = bytearray(size)
    _HEADER.pack_into(
        out, 0, 0, size - LOG_OVERHEAD, -1, MAGIC_V2, 0, 0, 0, timestamp, timestamp,
        NO_PRODUCER_ID, -1, NO_SEQUENCE, 1,
    )  # fmt: skip
    out[HEADER_SIZE:] = block
    _UINT32.pack_into(out, 17, crc32c(memoryview(out)[21:]))
    return out


# --------------------------------------------------------------------------- control records


def build_control_batch(
    producer_id: int,
    producer_epoch: int,
    commit: bool,
    coordinator_epoch: int,
    base_offset: int,
    timestamp: int,
    *,
    partition_leader_epoch: int = -1,
) -> bytearray:
    """A transaction marker: a control + transactional batch holding one control record
    (what ``build_batch`` builds for it, without its generality: one per partition of every
    transaction)."""
    payload = _control_record(commit, coordinator_epoch)
    size = HEADER_SIZE + len(payload)
    out = bytearray(size)
    _HEADER.pack_into(
        out,
        0,
        base_offset,
        size - LOG_OVERHEAD,
        partition_leader_epoch,
        MAGIC_V2,
        0,  # crc, filled in below
        TRANSACTIONAL_MASK | CONTROL_MASK,
        0,  # last offset delta
        timestamp,
        timestamp,
        producer_id,
        producer_epoch,
        NO_SEQUENCE,
        1,
    )
    out[HEADER_SIZE:] = payload
    _UINT32.pack_into(out, 17, crc32c(memoryview(out)[21:]))
    return out


@functools.lru_cache(maxsize=64)
def _control_record(commit: bool, coordinator_epoch: int) -> bytes:
    """The one record of a marker (offset and timestamp deltas 0)."""
    key = _CONTROL_KEY.pack(0, CONTROL_COMMIT if commit else CONTROL_ABORT)
    value = _CONTROL_VALUE.pack(0, coordinator_epoch)
    block = bytearray()
    _encode_record(block, 0, 0, key, value, ())
    return bytes(block)


def parse_control_record(record: Record) -> tuple[bool, int]:
    """(commit, coordinator_epoch) of a transaction marker record.

    Raises ``InvalidBatch(corrupt=False)`` if the record is not an ABORT/COMMIT marker.
    """
    key, value = record.key, record.value
    if key is None or len(key) < _CONTROL_KEY.size:
        raise _invalid("control record key too short")
    version, kind = _CONTROL_KEY.unpack_from(key)
    if version < 0:
        raise _invalid(f"control record key version {version}")
    if kind not in (CONTROL_ABORT, CONTROL_COMMIT):
        raise _invalid(f"control record type {kind} is not a transaction marker")
    if value is None or len(value) < _CONTROL_VALUE.size:
        raise _invalid("transaction marker value too short")
    value_version, coordinator_epoch = _CONTROL_VALUE.unpack_from(value)
    if value_version < 0:
        raise _invalid(f"transaction marker value version {value_version}")
    return kind == CONTROL_COMMIT, int(coordinator_epoch)
