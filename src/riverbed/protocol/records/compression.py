"""Compression codecs of RecordBatch v2 (attributes bits 0-2).

Every decompressor here is *bounded*: it never produces (and never allocates room for) more
than ``max_size`` bytes of output, so a small batch cannot expand into gigabytes of memory.
Anything that goes wrong (garbage input, truncation, trailing junk, output over the limit)
raises :class:`CompressionError`, a subclass of :class:`InvalidBatch` with ``corrupt=True``;
no other exception type escapes :func:`decompress`.
"""

from __future__ import annotations

import struct
import threading
import zlib
from enum import IntEnum
from typing import Final

import cramjam
import lz4.frame
import zstandard

from ..varint import decode_uvarint
from .batch import Buffer, InvalidBatch

__all__ = [
    "XERIAL_MAGIC",
    "Compression",
    "CompressionError",
    "DecompressionLimitExceeded",
    "compress",
    "decompress",
]


class Compression(IntEnum):
    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class CompressionError(InvalidBatch):
    """The compressed records block cannot be decompressed (or expands past the limit)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, corrupt=True)


class DecompressionLimitExceeded(CompressionError):
    """The block would decompress to more than the allowed ``max_size`` bytes."""


#: Header of the snappy-java ("xerial") stream format used by the Java client.
XERIAL_MAGIC: Final = b"\x82SNAPPY\x00"
_XERIAL_HEADER_SIZE: Final = 16  # magic, int32 version, int32 compatible version
_INT32 = struct.Struct(">i")

# zlib window bits: 32 + 15 = detect a gzip or zlib header automatically.
_ZLIB_AUTO_WBITS: Final = 47
_GZIP_WBITS: Final = 31

# Output chunk sizes for the streaming decoders: start small (most batches are small), grow
# geometrically so large batches do not pay for thousands of calls.
_FIRST_CHUNK: Final = 64 * 1024
_MAX_CHUNK: Final = 8 * 1024 * 1024

# zstd frame format constants (RFC 8878).
_ZSTD_MAGIC: Final = 0xFD2FB528
_ZSTD_SKIPPABLE_MASK: Final = 0xFFFFFFF0
_ZSTD_SKIPPABLE_MAGIC: Final = 0x184D2A50
_UINT32_LE = struct.Struct("<I")


class _ZstdContexts(threading.local):
    """zstd contexts are not thread-safe but are costly to create (~10 us): one per thread."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=3)
        self.decompressor = zstandard.ZstdDecompressor()


_zstd = _ZstdContexts()


def _codec(codec: int) -> Compression:
    try:
        return Compression(codec)
    except ValueError:
        raise CompressionError(f"unknown compression codec {codec}") from None


# --------------------------------------------------------------------------- compress


def compress(codec: int, data: Buffer) -> bytes:
    """Compress ``data`` with ``codec`` the way Kafka clients do (gzip stream, raw snappy as
    librdkafka writes it, LZ4 frame, one zstd frame)."""
    c = _codec(codec)
    if c is Compression.NONE:
        return bytes(data)
    if c is Compression.GZIP:
        co = zlib.compressobj(6, zlib.DEFLATED, _GZIP_WBITS)
        return co.compress(data) + co.flush()
    if c is Compression.SNAPPY:
        return bytes(cramjam.snappy.compress_raw(bytes(data)))
    if c is Compression.LZ4:
        return bytes(lz4.frame.compress(bytes(data)))
    return _zstd.compressor.compress(data)


# --------------------------------------------------------------------------- decompress


def decompress(codec: int, data: Buffer, max_size: int) -> bytes:
    """Decompress a records block, refusing to produce more than ``max_size`` bytes.

    Raises :class:`CompressionError` (an :class:`InvalidBatch`) on any failure.
    """
    c = _codec(codec)
    if max_size < 0:
        raise ValueError("max_size must be >= 0")
    if c is Compression.NONE:
        if len(data) > max_size:
            raise DecompressionLimitExceeded(f"records block larger than {max_size} bytes")
        return bytes(data)
    try:
        if c is Compression.GZIP:
            return _gunzip(data, max_size)
        if c is Compression.SNAPPY:
            return _unsnappy(data, max_size)
        if c is Compression.LZ4:
            return _unlz4(data, max_size)
        return _unzstd(data, max_size)
    except CompressionError:
        raise
    except Exception as exc:
        # zlib.error, cramjam.DecompressionError, zstandard.ZstdError, RuntimeError (lz4),
        # DecodeError/IndexError (length varint), MemoryError...: all mean "bad input".
        raise CompressionError(f"{c.name.lower()} decompression failed: {exc}") from exc


def _too_big(name: str, max_size: int) -> CompressionError:
    return DecompressionLimitExceeded(f"{name} data decompresses to more than {max_size} bytes")


def _gunzip(data: Buffer, max_size: int) -> bytes:
    """gzip (or zlib) stream, possibly several concatenated members."""
    out = bytearray()
    rest: Buffer = data
    while True:
        d = zlib.decompressobj(_ZLIB_AUTO_WBITS)
        # max_length caps this call's output; when it is hit we are over budget anyway, so a
        # single call per member suffices.
        out += d.decompress(rest, max_size + 1 - len(out))
        if len(out) > max_size:
            raise _too_big("gzip", max_size)
        if not d.eof:
            raise CompressionError("gzip data is truncated")
        rest = d.unused_data
        if not rest:
            return bytes(out)
        if len(rest) < 2 or rest[0] != 0x1F or rest[1] != 0x8B:
            raise CompressionError("trailing bytes after gzip stream")


def _snappy_block(block: Buffer, budget: int) -> bytes:
    """One raw snappy block; checks the declared length before allocating anything."""
    if not block:
        raise CompressionError("empty snappy block")
    declared, _ = decode_uvarint(block, 0, max_bytes=5)
    if declared > 0xFFFFFFFF:
        raise CompressionError("snappy length header out of range")
    if declared > budget:
        raise DecompressionLimitExceeded(f"snappy block declares {declared} bytes, over the limit")
    out = bytearray(declared)
    written = cramjam.snappy.decompress_raw_into(block, out)
    if written != declared:
        raise CompressionError("snappy block shorter than its declared length")
    return bytes(out)


def _unsnappy(data: Buffer, max_size: int) -> bytes:
    if len(data) >= _XERIAL_HEADER_SIZE and bytes(data[:8]) == XERIAL_MAGIC:
        return _unxerial(data, max_size)
    return _snappy_block(data, max_size)


def _unxerial(data: Buffer, max_size: int) -> bytes:
    """snappy-java stream: 16-byte header, then {int32 length, raw snappy block}*."""
    view = memoryview(data)
    pos = _XERIAL_HEADER_SIZE
    end = len(view)
    chunks: list[bytes] = []
    total = 0
    while pos < end:
        if end - pos < 4:
            raise CompressionError("truncated xerial snappy block length")
        (length,) = _INT32.unpack_from(view, pos)
        pos += 4
        if length < 0 or length > end - pos:
            raise CompressionError("xerial snappy block length out of range")
        chunk = _snappy_block(view[pos : pos + length], max_size - total)
        total += len(chunk)
        chunks.append(chunk)
        pos += length
    return b"".join(chunks)


def _unlz4(data: Buffer, max_size: int) -> bytes:
    """LZ4 frame format; concatenated frames are accepted."""
    out = bytearray()
    rest: Buffer = data
    chunk = max(_FIRST_CHUNK, 4 * len(data))
    while True:
        d = lz4.frame.LZ4FrameDecompressor()
        piece = d.decompress(rest, max_length=min(chunk, max_size + 1 - len(out)))
        while True:
            out += piece
            if len(out) > max_size:
                raise _too_big("lz4", max_size)
            if d.eof or d.needs_input:
                break
            chunk = min(chunk * 2, _MAX_CHUNK)
            piece = d.decompress(b"", max_length=min(chunk, max_size + 1 - len(out)))
        if not d.eof:
            raise CompressionError("lz4 frame is truncated")
        unused = d.unused_data
        if not unused:
            return bytes(out)
        rest = unused


def _check_zstd_frames(data: Buffer) -> None:
    """Walk the zstd frame and block headers to make sure every frame is complete and nothing
    but frames follows: the streaming reader silently stops at truncated input.

    Cost is one step per block (a block holds up to 128 KiB), so it is negligible next to the
    decompression itself.
    """
    view = memoryview(data)
    end = len(view)
    pos = 0
    if end == 0:
        raise CompressionError("empty zstd data")
    while pos < end:
        if end - pos < 4:
            raise CompressionError("truncated zstd frame magic")
        (magic,) = _UINT32_LE.unpack_from(view, pos)
        pos += 4
        if magic & _ZSTD_SKIPPABLE_MASK == _ZSTD_SKIPPABLE_MAGIC:
            if end - pos < 4:
                raise CompressionError("truncated zstd skippable frame")
            (size,) = _UINT32_LE.unpack_from(view, pos)
            pos += 4 + size
            if pos > end:
                raise CompressionError("truncated zstd skippable frame")
            continue
        if magic != _ZSTD_MAGIC:
            raise CompressionError("bad zstd frame magic")
        if pos >= end:
            raise CompressionError("truncated zstd frame header")
        descriptor = view[pos]
        pos += 1
        fcs_flag = descriptor >> 6
        single_segment = (descriptor >> 5) & 1
        if descriptor & 0x08:
            raise CompressionError("zstd frame header reserved bit set")
        checksum = (descriptor >> 2) & 1
        dict_id_size = (0, 1, 2, 4)[descriptor & 3]
        fcs_size = (single_segment, 2, 4, 8)[fcs_flag]
        pos += (0 if single_segment else 1) + dict_id_size + fcs_size
        while True:
            if end - pos < 3:
                raise CompressionError("truncated zstd block header")
            header = view[pos] | (view[pos + 1] << 8) | (view[pos + 2] << 16)
            pos += 3
            last = header & 1
            block_type = (header >> 1) & 3
            block_size = header >> 3
            if block_type == 3:
                raise CompressionError("reserved zstd block type")
            pos += 1 if block_type == 1 else block_size
            if pos > end:
                raise CompressionError("truncated zstd block")
            if last:
                break
        if checksum:
            pos += 4
            if pos > end:
                raise CompressionError("truncated zstd checksum")


def _unzstd(data: Buffer, max_size: int) -> bytes:
    """zstd; concatenated frames are accepted (zstd-jni and libzstd both read them)."""
    _check_zstd_frames(data)
    reader = _zstd.decompressor.stream_reader(data, read_across_frames=True)
    out = bytearray()
    chunk = max(_FIRST_CHUNK, 4 * len(data))
    with reader:
        while True:
            piece = reader.read(min(chunk, max_size + 1 - len(out)))
            if not piece:
                return bytes(out)
            out += piece
            if len(out) > max_size:
                raise _too_big("zstd", max_size)
            chunk = min(chunk * 2, _MAX_CHUNK)
