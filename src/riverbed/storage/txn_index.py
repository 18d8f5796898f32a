"""The transaction index of a segment: one entry per aborted transaction whose ABORT marker
lies in that segment, in Kafka's ``.txnindex`` layout (see ``docs/storage-format.md``).

Each entry is 34 bytes, big-endian::

    0   int16  version            0
    2   int64  producerId
    10  int64  firstOffset        offset of the transaction's first batch in the partition
    18  int64  lastOffset         offset of the ABORT marker
    26  int64  lastStableOffset   the partition's LSO right after the marker was applied

A read-committed consumer fetching from ``o`` asks for the aborted transactions that may
overlap the data it receives, and drops their records itself.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

TXN_ENTRY_SIZE: Final = 34
TXN_INDEX_VERSION: Final = 0
_ENTRY = struct.Struct(">hqqqq")


class AbortedTxn(NamedTuple):
    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


def encode_entries(entries: list[AbortedTxn]) -> bytes:
    out = bytearray(TXN_ENTRY_SIZE * len(entries))
    for i, e in enumerate(entries):
        _ENTRY.pack_into(
            out,
            i * TXN_ENTRY_SIZE,
            TXN_INDEX_VERSION,
            e.producer_id,
            e.first_offset,
            e.last_offset,
            e.last_stable_offset,
        )
    return bytes(out)


def decode_entries(data: bytes) -> list[AbortedTxn]:
    """The whole entries of a ``.txnindex`` file. A partial last entry (a torn write) is
    ignored, and so is everything from the first entry that is not plausible (unknown
    version, negative producer id, first offset after last offset)."""
    entries: list[AbortedTxn] = []
    for pos in range(0, len(data) - TXN_ENTRY_SIZE + 1, TXN_ENTRY_SIZE):
        version, pid, first, last, lso = _ENTRY.unpack_from(data, pos)
        if version != TXN_INDEX_VERSION or pid < 0 or first < 0 or first > last:
            break
        entries.append(AbortedTxn(pid, first, last, lso))
    return entries


def collect_aborted(
    entries: list[AbortedTxn], start_offset: int, upper_offset: int, out: list[AbortedTxn]
) -> bool:
    """Kafka's ``TransactionIndex.collectAbortedTxns``: add to ``out`` the entries (in
    marker order) with ``last_offset >= start_offset`` and ``first_offset <
    upper_offset``. Returns True once an entry's last stable offset reaches
    ``upper_offset``: no later aborted transaction can then start below it."""
    for entry in entries:
        if entry.last_offset >= start_offset and entry.first_offset < upper_offset:
            out.append(entry)
        if entry.last_stable_offset >= upper_offset:
            return True
    return False
