"""The two sparse indexes of a segment, kept in memory as arrays and written whole to disk.

``OffsetIndex`` maps a batch's base offset (relative to the segment's base offset) to the
batch's byte position in the ``.log`` file. ``TimeIndex`` maps a running maximum timestamp
to the relative base offset of the batch where that maximum was first reached. Both get one
entry per ``index.interval.bytes`` of log (and the offset index always indexes the first
batch of a segment). See ``docs/storage-format.md`` for the file layouts.

Neither file is on the append path: entries accumulate in memory and the whole file is
written when the segment is sealed (rolled) or the log is closed cleanly. An index is always
rebuildable from its ``.log`` file, which is what recovery does when one looks wrong.

Not thread-safe on its own; the owning segment's log lock protects it.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left, bisect_right
from typing import Final

OFFSET_ENTRY_SIZE: Final = 8  # int32 relative offset, int32 position
TIME_ENTRY_SIZE: Final = 12  # int64 timestamp, int32 relative offset

_BIG_ENDIAN_HOST: Final = sys.byteorder == "big"
assert array("i").itemsize == 4 and array("q").itemsize == 8


class IndexCorrupt(ValueError):
    """An index file that cannot be trusted (wrong size, entries out of order)."""


def _pack(columns: tuple[array[int], ...]) -> bytes:
    """Interleave equal-length arrays into big-endian fixed-size records (all in C)."""
    n = len(columns[0])
    stride = sum(c.itemsize for c in columns)
    out = bytearray(n * stride)
    at = 0
    for col in columns:
        width = col.itemsize
        copy = array(col.typecode, col)
        if not _BIG_ENDIAN_HOST:
            copy.byteswap()
        raw = copy.tobytes()
        for k in range(width):
            out[at + k :: stride] = raw[k::width]
        at += width
    return bytes(out)


def _unpack(data: bytes, typecodes: str) -> tuple[array[int], ...]:
    """Inverse of :func:`_pack`."""
    widths = [array(t).itemsize for t in typecodes]
    stride = sum(widths)
    if len(data) % stride:
        raise IndexCorrupt(f"index size {len(data)} is not a multiple of {stride}")
    n = len(data) // stride
    result: list[array[int]] = []
    at = 0
    for t, width in zip(typecodes, widths, strict=True):
        raw = bytearray(n * width)
        for k in range(width):
            raw[k::width] = data[at + k :: stride]
        col = array(t)
        col.frombytes(bytes(raw))
        if not _BIG_ENDIAN_HOST:
            col.byteswap()
        result.append(col)
        at += width
    return tuple(result)


class OffsetIndex:
    __slots__ = ("offsets", "positions")

    def __init__(self) -> None:
        self.offsets: array[int] = array("i")  # relative base offsets, strictly increasing
        self.positions: array[int] = array("i")  # byte positions, strictly increasing

    def __len__(self) -> int:
        return len(self.offsets)

    def append(self, relative_offset: int, position: int) -> None:
        self.offsets.append(relative_offset)
        self.positions.append(position)

    def lookup(self, relative_offset: int) -> int:
        """Position of the last indexed batch whose base offset is <= ``relative_offset``
        (0 when there is none): a batch boundary at or before the target."""
        i = bisect_right(self.offsets, relative_offset) - 1
        return self.positions[i] if i >= 0 else 0

    def last_position(self) -> int:
        return self.positions[-1] if self.positions else 0

    def truncate_to_position(self, position: int) -> None:
        """Drop every entry pointing at or after ``position``."""
        n = bisect_left(self.positions, position)
        del self.offsets[n:]
        del self.positions[n:]

    def clear(self) -> None:
        del self.offsets[:]
        del self.positions[:]

    def to_bytes(self) -> bytes:
        return _pack((self.offsets, self.positions))

    @classmethod
    def from_bytes(cls, data: bytes) -> OffsetIndex:
        index = cls()
        index.offsets, index.positions = _unpack(data, "ii")
        return index


class TimeIndex:
    __slots__ = ("offsets", "timestamps")

    def __init__(self) -> None:
        self.timestamps: array[int] = array("q")  # strictly increasing running maxima
        self.offsets: array[int] = array("i")  # relative base offsets, non-decreasing

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def last_timestamp(self) -> int:
        return self.timestamps[-1] if self.timestamps else -1

    @property
    def last_offset(self) -> int:
        return self.offsets[-1] if self.offsets else 0

    def maybe_append(self, timestamp: int, relative_offset: int) -> None:
        """Record a new running maximum; ignored unless it is larger than the last one."""
        if timestamp > self.last_timestamp:
            self.timestamps.append(timestamp)
            self.offsets.append(relative_offset)

    def lookup(self, timestamp: int) -> int:
        """A relative offset such that every batch before it has a max timestamp below
        ``timestamp`` (0 when the index cannot tell)."""
        i = bisect_left(self.timestamps, timestamp) - 1
        return self.offsets[i] if i >= 0 else 0

    def truncate_to_offset(self, relative_offset: int) -> None:
        """Drop every entry at or after ``relative_offset``."""
        n = bisect_left(self.offsets, relative_offset)
        del self.timestamps[n:]
        del self.offsets[n:]

    def clear(self) -> None:
        del self.timestamps[:]
        del self.offsets[:]

    def to_bytes(self) -> bytes:
        return _pack((self.timestamps, self.offsets))

    @classmethod
    def from_bytes(cls, data: bytes) -> TimeIndex:
        index = cls()
        index.timestamps, index.offsets = _unpack(data, "qi")
        return index
