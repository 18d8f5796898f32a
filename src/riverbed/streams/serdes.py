"""Serdes: how keys and values turn into bytes and back.

A serde is any object with ``serialize(value) -> bytes | None`` and
``deserialize(data) -> value``. ``None`` stays ``None`` both ways (a record without a key, or a
tombstone), as in Kafka's serdes.

A value serde that needs the record's headers (CloudEvents binary mode, claim check) also has
``serialize_with_headers(value, headers) -> bytes | None``, which may edit the ``headers``
list it is given (a copy of the record's), and ``deserialize_with_headers(data, headers)``:
sources, sinks and the test driver call those when they are there (Kafka's
``Serializer.serialize(topic, headers, data)``).
"""

from __future__ import annotations

import json
import struct
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Serde(Protocol[T]):
    def serialize(self, value: T | None) -> bytes | None: ...

    def deserialize(self, data: bytes | None) -> T | None: ...


class BytesSerde:
    """Bytes unchanged."""

    def serialize(self, value: bytes | None) -> bytes | None:
        return None if value is None else bytes(value)

    def deserialize(self, data: bytes | None) -> bytes | None:
        return data


class StringSerde:
    """UTF-8 text (Kafka's StringSerde)."""

    def serialize(self, value: str | None) -> bytes | None:
        return None if value is None else value.encode("utf-8")

    def deserialize(self, data: bytes | None) -> str | None:
        return None if data is None else bytes(data).decode("utf-8")


# one encoder for every JsonSerde: json.dumps with any argument builds a new encoder per call
_JSON_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
# the decoder's scanner, without json.loads' per-call encoding detection and whitespace skipping
_JSON_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _json_loads(data: bytes) -> Any:
    """``json.loads(data)``, quicker for the usual input: UTF-8 JSON text with nothing around the
    value. Anything else (a byte order mark, UTF-16/32, whitespace around, invalid JSON) goes
    through ``json.loads``, which gives the same value or the same error as always."""
    try:
        s = data.decode("utf-8")
        value, end = _JSON_SCAN(s, 0)
    except (AttributeError, UnicodeDecodeError, StopIteration, ValueError):  # (str, bytearray: json.loads too)
        return json.loads(data)
    if end != len(s):
        return json.loads(data)
    return value


class JsonSerde:
    """JSON text in UTF-8, compact separators, keys in insertion order."""

    def serialize(self, value: Any) -> bytes | None:
        if value is None:
            return None
        return _JSON_ENCODE(value).encode("utf-8")

    def deserialize(self, data: bytes | None) -> Any:
        return None if data is None else _json_loads(data)


class LongSerde:
    """A signed 64-bit big-endian integer (Kafka's LongSerde; counts use it)."""

    _s = struct.Struct(">q")

    def serialize(self, value: int | None) -> bytes | None:
        return None if value is None else self._s.pack(value)

    def deserialize(self, data: bytes | None) -> int | None:
        if data is None:
            return None
        if len(data) != 8:
            raise ValueError(f"LongSerde needs 8 bytes, got {len(data)}")
        return int(self._s.unpack(data)[0])


class FloatSerde:
    """An IEEE-754 double, big-endian (Kafka's DoubleSerde)."""

    _s = struct.Struct(">d")

    def serialize(self, value: float | None) -> bytes | None:
        return None if value is None else self._s.pack(value)

    def deserialize(self, data: bytes | None) -> float | None:
        if data is None:
            return None
        if len(data) != 8:
            raise ValueError(f"FloatSerde needs 8 bytes, got {len(data)}")
        return float(self._s.unpack(data)[0])


class WindowedSerde(Generic[T]):
    """A windowed key: the inner key's bytes then the window start as 8 bytes big-endian.

    The layout of Kafka's ``TimeWindowedSerializer``; the window size is not in the bytes, so
    the deserializer takes it (``size_ms``) to rebuild the window's end.
    """

    def __init__(self, inner: Serde[T], size_ms: int) -> None:
        self.inner = inner
        self.size_ms = size_ms

    def serialize(self, value: Any) -> bytes | None:
        if value is None:
            return None
        raw = self.inner.serialize(value.key) or b""
        return raw + struct.pack(">q", value.window.start)

    def deserialize(self, data: bytes | None) -> Any:
        from .windows import Window, Windowed

        if data is None:
            return None
        if len(data) < 8:
            raise ValueError("windowed key shorter than its 8-byte window start")
        start = struct.unpack(">q", data[-8:])[0]
        return Windowed(self.inner.deserialize(bytes(data[:-8])), Window(start, start + self.size_ms))


BYTES = BytesSerde()
STRING = StringSerde()
JSON = JsonSerde()
LONG = LongSerde()
FLOAT = FloatSerde()
