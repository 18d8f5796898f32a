"""RecordBatch v2 (magic 2) header view over bytes.

Layout (big-endian), 61-byte header followed by the records block::

    0   int64  baseOffset
    8   int32  batchLength        (bytes after this field: total size - 12)
    12  int32  partitionLeaderEpoch
    16  int8   magic              (= 2)
    17  uint32 crc                (CRC-32C of bytes [21, end))
    21  int16  attributes
    23  int32  lastOffsetDelta
    27  int64  baseTimestamp
    35  int64  maxTimestamp
    43  int64  producerId
    51  int16  producerEpoch
    53  int32  baseSequence
    57  int32  recordsCount
    61  ...    records (compressed as a whole when attributes & 0x7 != 0)

The first four fields lie outside the CRC, so the broker patches baseOffset and
partitionLeaderEpoch in place without recomputing it. Nothing here decodes the
records themselves; see ``records.py`` for that (only done when semantics need it).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

from crc32c import crc32c

HEADER_SIZE: Final = 61
LOG_OVERHEAD: Final = 12  # baseOffset + batchLength
MAGIC_V2: Final = 2

COMPRESSION_MASK: Final = 0x07
TIMESTAMP_TYPE_MASK: Final = 0x08  # 1 = LogAppendTime
TRANSACTIONAL_MASK: Final = 0x10
CONTROL_MASK: Final = 0x20
DELETE_HORIZON_MASK: Final = 0x40

NO_PRODUCER_ID: Final = -1
NO_SEQUENCE: Final = -1

_HEADER = struct.Struct(">qiibIhiqqqhii")
_BASE_OFFSET = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT64 = struct.Struct(">q")
_INT16 = struct.Struct(">h")

Buffer = bytes | bytearray | memoryview


class InvalidBatch(ValueError):
    """The bytes are not a valid v2 batch. ``corrupt`` means a CRC or framing problem
    (CORRUPT_MESSAGE), otherwise the batch is well formed but breaks a rule (INVALID_RECORD)."""

    def __init__(self, message: str, *, corrupt: bool = True) -> None:
        super().__init__(message)
        self.corrupt = corrupt


class BatchHeader:
    """A decoded batch header plus the position of the batch in the buffer it came from."""

    __slots__ = (
        "attributes",
        "base_offset",
        "base_sequence",
        "base_timestamp",
        "batch_length",
        "crc",
        "last_offset_delta",
        "magic",
        "max_timestamp",
        "partition_leader_epoch",
        "position",
        "producer_epoch",
        "producer_id",
        "records_count",
    )

    def __init__(self, buf: Buffer, position: int = 0) -> None:
        if len(buf) - position < HEADER_SIZE:
            raise InvalidBatch("batch shorter than its 61-byte header")
        (
            self.base_offset,
            self.batch_length,
            self.partition_leader_epoch,
            self.magic,
            self.crc,
            self.attributes,
            self.last_offset_delta,
            self.base_timestamp,
            self.max_timestamp,
            self.producer_id,
            self.producer_epoch,
            self.base_sequence,
            self.records_count,
        ) = _HEADER.unpack_from(buf, position)
        self.position = position

    @property
    def size(self) -> int:
        """Total size of the batch in bytes, header included."""
        return int(self.batch_length) + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return int(self.base_offset) + int(self.last_offset_delta)

    @property
    def next_offset(self) -> int:
        return int(self.base_offset) + int(self.last_offset_delta) + 1

    @property
    def compression(self) -> int:
        return int(self.attributes) & COMPRESSION_MASK

    @property
    def is_log_append_time(self) -> bool:
        return bool(self.attributes & TIMESTAMP_TYPE_MASK)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_MASK)

    @property
    def last_sequence(self) -> int:
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        return (int(self.base_sequence) + int(self.last_offset_delta)) % (1 << 31)

    def __repr__(self) -> str:
        return (
            f"BatchHeader(base_offset={self.base_offset}, size={self.size}, "
            f"count={self.records_count}, attributes={self.attributes:#x})"
        )


def compute_crc(buf: Buffer, position: int = 0, size: int | None = None) -> int:
    """CRC-32C over the CRC-covered part of the batch at ``position``."""
    if size is None:
        size = _INT32.unpack_from(buf, position + 8)[0] + LOG_OVERHEAD
    view = memoryview(buf)[position + 21 : position + size]
    return int(crc32c(view))


def validate_batch(buf: Buffer, position: int = 0, *, check_crc: bool = True) -> BatchHeader:
    """Parse and sanity-check the batch at ``position``: framing, magic and (optionally) CRC.

    Raises :class:`InvalidBatch`. Does not look inside the records block.
    """
    header = BatchHeader(buf, position)
    size = header.size
    if header.batch_length < HEADER_SIZE - LOG_OVERHEAD:
        raise InvalidBatch(f"batchLength {header.batch_length} smaller than the header")
    if position + size > len(buf):
        raise InvalidBatch("batch extends past the end of the buffer")
    if header.magic != MAGIC_V2:
        raise InvalidBatch(f"unsupported magic {header.magic}")
    if check_crc and compute_crc(buf, position, size) != header.crc:
        raise InvalidBatch("CRC-32C mismatch")
    return header


def iter_batches(buf: Buffer, *, check_crc: bool = False) -> Iterator[BatchHeader]:
    """Yield the header of every complete batch in ``buf``; a partial tail is skipped silently
    (as clients do with a truncated last batch in a fetch response)."""
    pos = 0
    end = len(buf)
    while end - pos >= HEADER_SIZE:
        size = _INT32.unpack_from(buf, pos + 8)[0] + LOG_OVERHEAD
        if size < HEADER_SIZE or pos + size > end:
            return
        yield validate_batch(buf, pos, check_crc=check_crc)
        pos += size


def set_base_offset(buf: bytearray | memoryview, base_offset: int, position: int = 0) -> None:
    """Patch baseOffset in place (outside the CRC)."""
    _BASE_OFFSET.pack_into(buf, position, base_offset)


def set_partition_leader_epoch(buf: bytearray | memoryview, epoch: int, position: int = 0) -> None:
    """Patch partitionLeaderEpoch in place (outside the CRC)."""
    _INT32.pack_into(buf, position + 12, epoch)


def set_log_append_time(buf: bytearray | memoryview, timestamp: int, position: int = 0) -> None:
    """Mark the batch LogAppendTime with ``timestamp`` as maxTimestamp and recompute the CRC."""
    attributes = _INT16.unpack_from(buf, position + 21)[0]
    _INT16.pack_into(buf, position + 21, attributes | TIMESTAMP_TYPE_MASK)
    _INT64.pack_into(buf, position + 35, timestamp)
    _UINT32.pack_into(buf, position + 17, compute_crc(buf, position))
