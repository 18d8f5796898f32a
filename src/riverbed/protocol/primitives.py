"""Primitive wire types of the Kafka protocol: a bounds-checked Reader and a chunked Writer.

The generated message classes (``riverbed.protocol.messages``) call these. ``flex`` selects
the compact encodings of flexible versions (unsigned-varint length + 1, 0 = null).

The Reader never allocates more than the bytes it was given: every length prefix is checked
against what remains before anything is sliced or a list is sized, so a hostile length can
only produce a :class:`DecodeError`.

The Writer collects small fields into a bytearray and keeps large byte strings (records) as
separate chunks, so a Fetch response can hand file slices to the transport without a copy.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Sequence
from typing import ClassVar

from .errors import DecodeError

Buffer = bytes | bytearray | memoryview
# Reader/Writer have methods named bool and bytes (after the wire types), which shadow the
# builtins inside the class bodies; annotations there use these aliases.
_bool = bool
_bytes = bytes

_i8 = struct.Struct(">b")
_i16 = struct.Struct(">h")
_i32 = struct.Struct(">i")
_i64 = struct.Struct(">q")
_u16 = struct.Struct(">H")
_u32 = struct.Struct(">I")
_f64 = struct.Struct(">d")

ZERO_UUID = uuid.UUID(int=0)

# A records value to encode: one bytes-like object, or several (e.g. slices of segment files).
RecordsValue = Buffer | Sequence[Buffer]

_CHUNK_THRESHOLD = 8192


class Reader:
    """Reads primitives from ``buf`` starting at ``pos``; raises DecodeError past ``end``."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: Buffer, pos: int = 0, end: int | None = None) -> None:
        self.buf = memoryview(buf).cast("B") if not isinstance(buf, bytes) else memoryview(buf)
        self.pos = pos
        self.end = len(self.buf) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def _take(self, n: int) -> int:
        pos = self.pos
        if n < 0 or pos + n > self.end:
            raise DecodeError(f"need {n} bytes at {pos}, have {self.end - pos}")
        self.pos = pos + n
        return pos

    def int8(self) -> int:
        return int(_i8.unpack_from(self.buf, self._take(1))[0])

    def bool(self) -> _bool:
        return self.buf[self._take(1)] != 0

    def int16(self) -> int:
        return int(_i16.unpack_from(self.buf, self._take(2))[0])

    def uint16(self) -> int:
        return int(_u16.unpack_from(self.buf, self._take(2))[0])

    def int32(self) -> int:
        return int(_i32.unpack_from(self.buf, self._take(4))[0])

    def uint32(self) -> int:
        return int(_u32.unpack_from(self.buf, self._take(4))[0])

    def int64(self) -> int:
        return int(_i64.unpack_from(self.buf, self._take(8))[0])

    def float64(self) -> float:
        return float(_f64.unpack_from(self.buf, self._take(8))[0])

    def uuid(self) -> uuid.UUID:
        start = self._take(16)
        return uuid.UUID(bytes=bytes(self.buf[start : start + 16]))

    def uvarint(self) -> int:
        buf = self.buf
        pos = self.pos
        end = self.end
        result = 0
        shift = 0
        while True:
            if pos >= end:
                raise DecodeError("truncated varint")
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                self.pos = pos
                return result
            shift += 7
            if shift > 63:
                raise DecodeError("varint too long")

    def _length(self, flex: _bool, wide: _bool = False) -> int:
        """Length prefix of a string/bytes/array: -1 means null."""
        if flex:
            n = self.uvarint() - 1
        elif wide:
            n = self.int32()
        else:
            n = self.int16()
        if n < -1:
            raise DecodeError(f"negative length {n}")
        return n

    def _slice(self, n: int) -> memoryview:
        start = self._take(n)
        return self.buf[start : start + n]

    def _decode_str(self, n: int) -> str:
        try:
            return str(self._slice(n), "utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("string is not valid UTF-8") from exc

    def string(self, flex: _bool) -> str:
        n = self._length(flex)
        if n < 0:
            raise DecodeError("null string where a string is required")
        return self._decode_str(n)

    def nullable_string(self, flex: _bool) -> str | None:
        n = self._length(flex)
        return None if n < 0 else self._decode_str(n)

    def bytes(self, flex: _bool) -> _bytes:
        n = self._length(flex, wide=True)
        if n < 0:
            raise DecodeError("null bytes where bytes are required")
        return bytes(self._slice(n))

    def nullable_bytes(self, flex: _bool) -> _bytes | None:
        n = self._length(flex, wide=True)
        return None if n < 0 else bytes(self._slice(n))

    def records(self, flex: _bool) -> memoryview | None:
        """A records field, returned as a zero-copy view of the request buffer."""
        n = self._length(flex, wide=True)
        return None if n < 0 else self._slice(n)

    def array_length(self, flex: _bool) -> int:
        """Element count of an array (-1 = null). Each element takes at least one byte, so a
        count above the remaining bytes is refused before any list is sized."""
        n = self._length(flex, wide=True)
        if n > self.end - self.pos:
            raise DecodeError(f"array of {n} elements cannot fit in {self.end - self.pos} bytes")
        return n

    def skip(self, n: int) -> None:
        self._take(n)

    def skip_tags(self) -> None:
        """Skip a tagged-field section whose tags this version does not know."""
        for _ in range(self.uvarint()):
            self.uvarint()
            self._take(self.uvarint())


class Writer:
    """Accumulates an encoded message as a list of chunks."""

    __slots__ = ("_buf", "_chunks", "_size_before")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._chunks: list[Buffer] = []
        self._size_before = 0

    def __len__(self) -> int:
        return self._size_before + len(self._buf)

    def chunks(self) -> list[Buffer]:
        """The encoded bytes as a list of chunks (the last small-field buffer included)."""
        if self._buf:
            return [*self._chunks, self._buf]
        return list(self._chunks)

    def getvalue(self) -> _bytes:
        return b"".join(self.chunks())

    def raw(self, data: Buffer) -> None:
        if len(data) >= _CHUNK_THRESHOLD:
            if self._buf:
                self._chunks.append(self._buf)
                self._size_before += len(self._buf)
                self._buf = bytearray()
            self._chunks.append(data)
            self._size_before += len(data)
        else:
            self._buf += data

    def int8(self, value: int) -> None:
        self._buf += _i8.pack(value)

    def bool(self, value: _bool) -> None:
        self._buf.append(1 if value else 0)

    def int16(self, value: int) -> None:
        self._buf += _i16.pack(value)

    def uint16(self, value: int) -> None:
        self._buf += _u16.pack(value)

    def int32(self, value: int) -> None:
        self._buf += _i32.pack(value)

    def uint32(self, value: int) -> None:
        self._buf += _u32.pack(value)

    def int64(self, value: int) -> None:
        self._buf += _i64.pack(value)

    def float64(self, value: float) -> None:
        self._buf += _f64.pack(value)

    def uuid(self, value: uuid.UUID) -> None:
        self._buf += value.bytes

    def uvarint(self, value: int) -> None:
        buf = self._buf
        while value >= 0x80:
            buf.append((value & 0x7F) | 0x80)
            value >>= 7
        buf.append(value)

    def _length(self, n: int, flex: _bool, wide: _bool = False) -> None:
        if flex:
            self.uvarint(n + 1)
        elif wide:
            self.int32(n)
        else:
            self.int16(n)

    def string(self, value: str, flex: _bool) -> None:
        data = value.encode("utf-8")
        self._length(len(data), flex)
        self._buf += data

    def nullable_string(self, value: str | None, flex: _bool) -> None:
        if value is None:
            self._length(-1, flex)
        else:
            self.string(value, flex)

    def bytes(self, value: Buffer, flex: _bool) -> None:
        self._length(len(value), flex, wide=True)
        self.raw(value)

    def nullable_bytes(self, value: Buffer | None, flex: _bool) -> None:
        if value is None:
            self._length(-1, flex, wide=True)
        else:
            self.bytes(value, flex)

    def records(self, value: RecordsValue | None, flex: _bool) -> None:
        if value is None:
            self._length(-1, flex, wide=True)
        elif isinstance(value, bytes | bytearray | memoryview):
            self.bytes(value, flex)
        else:
            self._length(sum(len(part) for part in value), flex, wide=True)
            for part in value:
                self.raw(part)

    def array_length(self, value: Sequence[object] | None, flex: _bool) -> None:
        self._length(-1 if value is None else len(value), flex, wide=True)

    def tagged(self, fields: Iterable[tuple[int, Writer]]) -> None:
        """Write a tagged-field section from (tag, encoded field) pairs, sorted by tag."""
        items = list(fields)
        self.uvarint(len(items))
        for tag, sub in items:
            self.uvarint(tag)
            self.uvarint(len(sub))
            for part in sub.chunks():
                self.raw(part)


class Message:
    """Base of every generated message and struct: ``read``/``write`` per version."""

    __slots__ = ()
    API_KEY: ClassVar[int] = -1
    MIN_VERSION: ClassVar[int] = 0
    MAX_VERSION: ClassVar[int] = 0
    FLEXIBLE_VERSION: ClassVar[int] = 32767

    @classmethod
    def read(cls, r: Reader, version: int) -> Message:  # pragma: no cover - overridden
        raise NotImplementedError

    def write(self, w: Writer, version: int) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def decode(cls, data: Buffer, version: int) -> Message:
        """Decode a whole body; trailing bytes are an error."""
        r = Reader(data)
        msg = cls.read(r, version)
        if r.pos != r.end:
            raise DecodeError(f"{r.end - r.pos} trailing bytes after {cls.__name__}")
        return msg

    def encode(self, version: int) -> _bytes:
        w = Writer()
        self.write(w, version)
        return w.getvalue()
