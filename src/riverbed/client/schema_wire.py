"""Confluent's schema-registry wire format, shared by the toolkit's readers and writers.

A record written with a registered schema is the magic byte 0, the schema id (4 bytes, big
endian) and the payload. For Protobuf the payload starts with the *message indexes*: the path
of the record's message in its ``.proto`` file (top-level message, then nested ones), written as
zig-zag varints, a count first; the common ``[0]`` (the file's first message) is the single byte
0. This is what confluent-kafka's serializers write and what the SQL engine, the gateway and the
console read.

Pure functions on bytes and protobuf descriptors: no client, no network.
"""

from __future__ import annotations

import struct
from typing import Any

MAGIC = 0
HEADER = struct.Struct(">bI")  # the magic byte and the schema id
MAX_INDEXES = 100  # a deeper path than this is a corrupt record, not a real schema


def frame(schema_id: int) -> bytes:
    """The 5-byte head of a record written with schema ``schema_id``."""
    return HEADER.pack(MAGIC, schema_id)


def schema_id(data: bytes) -> int | None:
    """The schema id of ``data`` if it starts with the wire format's head, else None."""
    if len(data) < HEADER.size or data[0] != MAGIC:
        return None
    return int.from_bytes(data[1:5], "big")


def _zigzag(data: bytes, pos: int) -> tuple[int, int]:
    shift = raw = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated Protobuf message indexes")
        b = data[pos]
        pos += 1
        raw |= (b & 0x7F) << shift
        if not b & 0x80:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("bad varint in Protobuf message indexes")


def _zigzag_bytes(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if not z:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def read_indexes(data: bytes, pos: int = 0) -> tuple[list[int], int]:
    """The message indexes at ``data[pos:]`` and the position where the message starts.

    ValueError for a truncated list, a count out of range or a negative index."""
    count, pos = _zigzag(data, pos)
    if count == 0:
        return [0], pos
    if not 0 < count <= MAX_INDEXES:
        raise ValueError(f"bad Protobuf message index count {count}")
    out = []
    for _ in range(count):
        i, pos = _zigzag(data, pos)
        if i < 0:
            raise ValueError(f"negative Protobuf message index {i}")
        out.append(i)
    return out, pos


def write_indexes(indexes: list[int]) -> bytes:
    """Message indexes as confluent-kafka writes them: ``[0]`` as the single byte 0."""
    if indexes == [0]:
        return b"\x00"
    return b"".join(_zigzag_bytes(i) for i in [len(indexes), *indexes])


def message_at(file: Any, indexes: list[int]) -> Any:
    """The message ``Descriptor`` at ``indexes`` in ``file`` (a protobuf ``FileDescriptor``).

    ValueError when the file has no message there."""
    top = list(file.message_types_by_name.values())
    if not indexes or not top:
        raise ValueError("the schema has no message")
    try:
        desc = top[indexes[0]]
        for i in indexes[1:]:
            desc = desc.nested_types[i]
    except IndexError:
        raise ValueError(f"no message at indexes {indexes} in the schema") from None
    return desc


def indexes_of(desc: Any) -> list[int]:
    """The message indexes of ``desc`` (a message ``Descriptor``) in its file."""
    path: list[int] = []
    d = desc
    while d.containing_type is not None:
        parent = d.containing_type
        path.append(list(parent.nested_types).index(d))
        d = parent
    path.append(list(d.file.message_types_by_name.values()).index(d))
    return path[::-1]
