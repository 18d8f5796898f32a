"""Variable-length integers: unsigned (LEB128, used by compact types and tagged fields) and
zigzag-signed (used inside record batches)."""

from __future__ import annotations

from .errors import DecodeError

Buffer = bytes | bytearray | memoryview


def encode_uvarint(value: int) -> bytes:
    """Unsigned LEB128."""
    if value < 0:
        raise ValueError("unsigned varint cannot be negative")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(buf: Buffer, pos: int, max_bytes: int = 10) -> tuple[int, int]:
    """Decode an unsigned varint at ``pos``; return (value, new position)."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result = 0
    shift = 0
    start = pos
    end = len(buf)
    while True:
        if pos >= end:
            raise DecodeError("truncated varint")
        if pos - start >= max_bytes:
            raise DecodeError("varint too long")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def zigzag_encode(value: int) -> int:
    return (value << 1) ^ (value >> 63)


def zigzag_decode(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def encode_varint(value: int) -> bytes:
    """Signed zigzag varint/varlong (record fields)."""
    return encode_uvarint(zigzag_encode(value) & 0xFFFFFFFFFFFFFFFF)


def decode_varint(buf: Buffer, pos: int) -> tuple[int, int]:
    """Decode a zigzag varint/varlong at ``pos``; return (value, new position)."""
    raw, pos = decode_uvarint(buf, pos)
    return zigzag_decode(raw), pos
