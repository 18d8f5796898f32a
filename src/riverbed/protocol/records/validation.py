"""Validation of the ``records`` of one partition in a Produce request (v3+), as Kafka does it.

Kafka splits the work between ``ProduceRequest.validateRecords`` (framing, magic, one batch,
zstd vs. request version), ``UnifiedLog.analyzeAndValidateRecords`` (baseOffset 0, size, CRC,
codec) and ``LogValidator`` (offsets/count, control, sequence, records, keys, timestamps).
Exceptions map to codes via ``Errors.forException``: ``InvalidRecordException`` ->
INVALID_RECORD (87), ``CorruptRecordException`` -> CORRUPT_MESSAGE (2),
``RecordTooLargeException`` -> MESSAGE_TOO_LARGE (10), ``UnsupportedCompressionTypeException``
-> UNSUPPORTED_COMPRESSION_TYPE (76), ``InvalidTimestampException`` -> INVALID_TIMESTAMP (32)
and anything else (e.g. ``IllegalArgumentException``) -> UNKNOWN_SERVER_ERROR (-1). The checks
below run in Kafka's order, so a batch with several problems gets the code Kafka would return.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from ..errors import ErrorCode, KafkaError
from .batch import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC_V2,
    BatchHeader,
    Buffer,
    InvalidBatch,
    compute_crc,
)
from .compression import Compression, DecompressionLimitExceeded, decompress
from .records import (
    DEFAULT_MAX_UNCOMPRESSED,
    NO_TIMESTAMP,
    Record,
    count_records,
    decode_records_block,
)

__all__ = ["RecordValidationError", "validate_produce_records"]

# Smallest legal value of the size field in any message format (Kafka's
# LegacyRecord.RECORD_OVERHEAD_V0): below it the framing itself is corrupt.
_MIN_BATCH_LENGTH: Final = 14
_MAGIC_OFFSET: Final = 16
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")


class RecordValidationError(KafkaError):
    """The partition's records are rejected with ``code``.

    ``record_errors`` lists ``(batch_index, message)`` for per-record failures (missing key on
    a compacted topic, bad timestamp): Produce v8+ returns them as ``record_errors``.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        record_errors: Sequence[tuple[int, str]] = (),
    ) -> None:
        super().__init__(code, message)
        self.record_errors = list(record_errors)


def _fail(code: ErrorCode, message: str) -> RecordValidationError:
    return RecordValidationError(code, message)


def validate_produce_records(
    buf: Buffer,
    *,
    max_message_bytes: int,
    zstd_allowed: bool,
    require_keys: bool = False,
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
    deep: bool = False,
    now_ms: int | None = None,
    timestamp_before_max_ms: int | None = None,
    timestamp_after_max_ms: int | None = None,
) -> BatchHeader:
    """Check the ``records`` field of one partition of a Produce v3+ request.

    ``zstd_allowed`` is ``request version >= 7``; ``require_keys`` is set for compacted topics.
    By default the records are only walked shallowly (each record's length, to check the
    declared count); they are fully decoded when ``require_keys`` or ``deep`` is set or a
    timestamp bound is given (``now_ms`` with ``timestamp_before_max_ms`` and/or
    ``timestamp_after_max_ms``: Kafka's ``message.timestamp.{before,after}.max.ms``, to be
    passed for CreateTime topics only).

    Returns the batch header; raises :class:`RecordValidationError`.
    """
    size_total = len(buf)

    # --- ProduceRequest.validateRecords / ByteBufferLogInputStream: framing -----------------
    if size_total < LOG_OVERHEAD:
        # No batch at all: "Produce requests with version N must have at least one record
        # batch per partition" (InvalidRecordException).
        raise _fail(ErrorCode.INVALID_RECORD, "no record batch in the partition data")
    (batch_length,) = _INT32.unpack_from(buf, 8)
    if batch_length < _MIN_BATCH_LENGTH:
        # CorruptRecordException("Record size is less than the minimum record overhead").
        raise _fail(ErrorCode.CORRUPT_MESSAGE, f"batch length {batch_length} is too small")
    size = batch_length + LOG_OVERHEAD
    if size > size_total:
        # Kafka's batch iterator stops at an incomplete batch, so it sees no batch at all.
        raise _fail(ErrorCode.INVALID_RECORD, "record batch is truncated")
    magic = buf[_MAGIC_OFFSET]
    if magic > 127:
        magic -= 256
    if magic < 0 or magic > MAGIC_V2:
        # CorruptRecordException("Invalid magic found in record").
        raise _fail(ErrorCode.CORRUPT_MESSAGE, f"invalid magic {magic}")
    if magic != MAGIC_V2:
        raise _fail(
            ErrorCode.INVALID_RECORD, "Produce v3+ only accepts record batches with magic 2"
        )
    if size < HEADER_SIZE:
        # DefaultRecordBatch.isValid() is false for a batch shorter than its header.
        raise _fail(ErrorCode.CORRUPT_MESSAGE, f"batch of {size} bytes is shorter than its header")
    header = BatchHeader(buf, 0)
    codec = header.compression
    if codec == Compression.ZSTD and not zstd_allowed:
        raise _fail(
            ErrorCode.UNSUPPORTED_COMPRESSION_TYPE,
            "zstd compression needs Produce v7 or later",
        )
    if size != size_total:
        # A second batch: "Produce requests with version N are only allowed to contain exactly
        # one record batch" (InvalidRecordException). For a *partial* trailing batch Kafka
        # would instead silently trim the extra bytes; we refuse them the same way so that
        # nothing unvalidated can reach the log.
        raise _fail(
            ErrorCode.INVALID_RECORD,
            "Produce v3+ partition data must contain exactly one record batch "
            f"({size_total - size} extra bytes)",
        )

    # --- UnifiedLog.analyzeAndValidateRecords ------------------------------------------------
    if header.base_offset != 0:
        raise _fail(
            ErrorCode.INVALID_RECORD,
            f"the baseOffset of the record batch should be 0, but it is {header.base_offset}",
        )
    if size > max_message_bytes:
        raise _fail(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"the record batch is {size} bytes, over max.message.bytes {max_message_bytes}",
        )
    if compute_crc(buf, 0, size) != header.crc:
        raise _fail(ErrorCode.CORRUPT_MESSAGE, f"record is corrupt (stored crc = {header.crc})")
    if codec > Compression.ZSTD:
        # CompressionType.forId throws IllegalArgumentException("Unknown compression type id"),
        # which is not an ApiException: Kafka answers UNKNOWN_SERVER_ERROR.
        raise _fail(ErrorCode.UNKNOWN_SERVER_ERROR, f"unknown compression type id {codec}")

    # --- LogValidator.validateBatch (origin CLIENT): all InvalidRecordException -------------
    count = int(header.records_count)
    count_from_offsets = int(header.last_offset_delta) + 1
    if count_from_offsets <= 0:
        raise _fail(
            ErrorCode.INVALID_RECORD,
            f"batch has an invalid offset range (lastOffsetDelta {header.last_offset_delta})",
        )
    if count <= 0:
        raise _fail(ErrorCode.INVALID_RECORD, f"invalid reported count for record batch: {count}")
    if count != count_from_offsets:
        raise _fail(
            ErrorCode.INVALID_RECORD,
            f"inconsistent batch offset range (lastOffsetDelta {header.last_offset_delta}) "
            f"and count of records {count}",
        )
    if header.is_control:
        raise _fail(ErrorCode.INVALID_RECORD, "clients are not allowed to write control records")
    if header.producer_id >= 0 and header.base_sequence < 0:
        raise _fail(
            ErrorCode.INVALID_RECORD,
            f"invalid sequence number {header.base_sequence} in a record batch with "
            f"producerId {header.producer_id}",
        )

    # --- the records themselves --------------------------------------------------------------
    block_view = memoryview(buf)[HEADER_SIZE:size]
    if codec == Compression.NONE:
        block: Buffer = block_view
    else:
        try:
            block = decompress(codec, block_view, max_uncompressed)
        except DecompressionLimitExceeded as exc:
            # Kafka has no such limit; refusing a decompression bomb as "too large" is ours.
            raise _fail(ErrorCode.MESSAGE_TOO_LARGE, str(exc)) from None
        except InvalidBatch as exc:
            # Kafka: IOException from the codec stream -> KafkaException -> UNKNOWN_SERVER_ERROR.
            # We report the data as corrupt, which is what it is.
            raise _fail(ErrorCode.CORRUPT_MESSAGE, str(exc)) from None

    check_timestamps = now_ms is not None and (
        timestamp_before_max_ms is not None or timestamp_after_max_ms is not None
    )
    try:
        if require_keys or deep or check_timestamps:
            records = decode_records_block(bytes(block), header)
        else:
            # Kafka reads every record (DefaultRecord.readFrom); on the hot path we only walk
            # the lengths, which catches a wrong count and records that do not tile the block.
            found = count_records(block)
            if found != count:
                raise _fail(
                    ErrorCode.INVALID_RECORD,
                    f"batch declares {count} records but contains {found}",
                )
            records = []
    except InvalidBatch as exc:
        # Structural problems inside the records are InvalidRecordException in Kafka
        # ("Found invalid record structure", "Incorrect declared batch size", ...).
        raise _fail(ErrorCode.INVALID_RECORD, str(exc)) from None

    _validate_records(
        header,
        records,
        require_keys=require_keys,
        now_ms=now_ms if check_timestamps else None,
        before_max_ms=timestamp_before_max_ms,
        after_max_ms=timestamp_after_max_ms,
    )
    return header


def _validate_records(
    header: BatchHeader,
    records: list[Record],
    *,
    require_keys: bool,
    now_ms: int | None,
    before_max_ms: int | None,
    after_max_ms: int | None,
) -> None:
    """LogValidator.validateRecord: per-record key and timestamp checks. Kafka collects the
    errors of all records; the batch fails with INVALID_TIMESTAMP if any record has a timestamp
    error, else INVALID_RECORD."""
    count = int(header.records_count)
    log_append_time = header.is_log_append_time
    if not records and not log_append_time:
        return
    errors: list[tuple[int, str]] = []
    any_timestamp_error = False
    low = None if now_ms is None or before_max_ms is None else now_ms - before_max_ms
    high = None if now_ms is None or after_max_ms is None else now_ms + after_max_ms
    for index in range(count):
        record = records[index] if records else None
        if require_keys and record is not None and record.key is None:
            errors.append((index, "Compacted topic cannot accept message without key"))
            continue
        if (
            record is not None
            and record.timestamp != NO_TIMESTAMP
            and (
                (low is not None and record.timestamp < low)
                or (high is not None and record.timestamp > high)
            )
        ):
            errors.append(
                (
                    index,
                    f"Timestamp {record.timestamp} of message with offset {index} is out of range",
                )
            )
            any_timestamp_error = True
        elif log_append_time:
            errors.append((index, "Producer should not set timestamp type to LogAppendTime"))
            any_timestamp_error = True
    if not errors:
        return
    if any_timestamp_error:
        raise RecordValidationError(
            ErrorCode.INVALID_TIMESTAMP,
            "One or more records have been rejected due to invalid timestamp",
            errors,
        )
    raise RecordValidationError(
        ErrorCode.INVALID_RECORD,
        f"One or more records have been rejected due to {len(errors)} record errors in "
        f"total, the first ones: {'; '.join(f'record {i}: {m}' for i, m in errors[:3])}",
        errors,
    )
