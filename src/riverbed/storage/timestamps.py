"""Timestamp lookups inside one record batch (ListOffsets by timestamp and MAX_TIMESTAMP).

The indexes and the batch headers locate the *batch* (its max timestamp); Kafka answers
with a *record*: the first record of that batch whose timestamp is >= the target, or, for
the largest timestamp, the first record that holds it. These helpers decode the one batch
(decompressing it if needed) to find that record. Every engine (segments, memory, the
remote tier) calls them, so all answer alike.

A batch whose header does not match its records (a client may send a max timestamp that no
record holds; Kafka rewrites it, riverbed stores the bytes as sent) or that cannot be
decoded is answered at batch level: no record there for a target, the batch's base offset
for the largest timestamp.
"""

from __future__ import annotations

from riverbed.protocol.records.batch import Buffer, InvalidBatch
from riverbed.protocol.records.records import Record, decode_records


def _records(batch: Buffer) -> list[Record] | None:
    try:
        return decode_records(batch, 0, check_crc=False)
    except InvalidBatch:
        return None


def first_record_at_or_after(batch: Buffer, timestamp: int, min_offset: int) -> tuple[int, int] | None:
    """(offset, timestamp) of the first record at or after ``min_offset`` whose timestamp is
    >= ``timestamp``; None when the batch has none."""
    for record in _records(batch) or ():
        if record.offset >= min_offset and record.timestamp >= timestamp:
            return record.offset, record.timestamp
    return None


def offset_of_timestamp(batch: Buffer, base_offset: int, timestamp: int, min_offset: int) -> int:
    """Offset of the first record at or after ``min_offset`` holding exactly ``timestamp``
    (the batch's max timestamp); ``max(base_offset, min_offset)`` when no record does."""
    for record in _records(batch) or ():
        if record.offset >= min_offset and record.timestamp == timestamp:
            return record.offset
    return max(base_offset, min_offset)
