"""The cleaner's two walks over a (decompressed) records block, without decoding records into
:class:`~riverbed.protocol.records.records.Record` objects: :func:`map_keys` fills the key ->
latest offset map, :func:`filter_records` says which records of a batch stay and returns
their bytes as they were. ``riverbed._native.cleanscan`` does the same in C (ADR 0014); these
are the reference implementations, used when it is not built or ``RIVERBED_NO_NATIVE=1``.
Both raise ValueError for a malformed block."""

from __future__ import annotations

from typing import Final

from riverbed._native import load

_native = load("cleanscan")

SHORT_KEY: Final = 16
"""Keys up to this many bytes cost one map entry; longer keys also cost their extra bytes."""


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    raw = 0
    shift = 0
    while True:
        if pos >= end:
            raise ValueError("truncated record")
        b = data[pos]
        pos += 1
        raw |= (b & 0x7F) << shift
        if not b & 0x80:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("truncated record")


def _records(block: bytes, count: int) -> list[tuple[int, int, int, int, int, int, bool]]:
    """(start, end, ts delta, offset delta, key start, key length or -1, value is null) per
    record; the whole block must be consumed."""
    out = []
    pos = 0
    n = len(block)
    for _ in range(count):
        start = pos
        length, pos = _varint(block, pos, n)
        if length < 1 or length > n - pos:
            raise ValueError("truncated record")
        end = pos + length
        ts_delta, pos = _varint(block, pos + 1, end)
        offset_delta, pos = _varint(block, pos, end)
        klen, pos = _varint(block, pos, end)
        if klen < -1 or klen > end - pos:
            raise ValueError("a record's key overruns it")
        kpos = pos
        if klen > 0:
            pos += klen
        vlen, pos = _varint(block, pos, end)
        if vlen < -1 or vlen > end - pos:
            raise ValueError("a record's value overruns it")
        out.append((start, end, ts_delta, offset_delta, kpos, klen, vlen < 0))
        pos = end
    if pos != n:
        raise ValueError("bytes left after the declared records")
    return out


def map_keys_python(
    block: bytes, count: int, base_offset: int, first_dirty: int, offset_map: dict[bytes, int], budget: int, entry_bytes: int
) -> tuple[int, int, int]:
    used = 0
    latest = -1
    pos = 0
    n = len(block)
    for _ in range(count):
        length, pos = _varint(block, pos, n)
        if length < 1 or length > n - pos:
            raise ValueError("truncated record")
        end = pos + length
        _, pos = _varint(block, pos + 1, end)
        offset_delta, pos = _varint(block, pos, end)
        klen, pos = _varint(block, pos, end)
        if klen < -1 or klen > end - pos:
            raise ValueError("a record's key overruns it")
        key = block[pos : pos + klen] if klen >= 0 else None
        if klen > 0:
            pos += klen
        vlen, pos = _varint(block, pos, end)
        if vlen < -1 or vlen > end - pos:
            raise ValueError("a record's value overruns it")
        pos = end
        offset = base_offset + offset_delta
        if offset < first_dirty or key is None:
            continue
        if key not in offset_map:
            cost = entry_bytes + max(0, klen - SHORT_KEY)
            if used + cost > budget:
                return offset, used, latest
            used += cost
        offset_map[key] = offset
        latest = max(latest, offset)
    if pos != n:
        raise ValueError("bytes left after the declared records")
    return -1, used, latest


def filter_records_python(
    block: bytes, count: int, base_offset: int, end_offset: int, offset_map: dict[bytes, int], drop_tombstones: bool
) -> tuple[bytes | None, int, int, int, bool, int]:
    out = bytearray()
    kept = invalid = tomb_removed = 0
    tomb_kept = False
    max_ts_delta = -(1 << 63)
    for start, end, ts_delta, offset_delta, kpos, klen, null_value in _records(block, count):
        offset = base_offset + offset_delta
        keep = True
        if offset >= end_offset:
            pass
        elif klen < 0:
            keep = False
            invalid += 1
        elif offset < offset_map.get(block[kpos : kpos + klen], -1):
            keep = False
        elif null_value and drop_tombstones:
            keep = False
            tomb_removed += 1
        if keep:
            out += block[start:end]
            kept += 1
            tomb_kept = tomb_kept or null_value
            max_ts_delta = max(max_ts_delta, ts_delta)
    return (None if kept == count else bytes(out)), kept, invalid, tomb_removed, tomb_kept, max_ts_delta


if _native is not None:
    map_keys = _native.map_keys
    filter_records = _native.filter_records
else:
    map_keys = map_keys_python
    filter_records = filter_records_python
