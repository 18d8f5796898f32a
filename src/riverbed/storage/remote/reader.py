"""Reading remote segments: Fetch and ListOffsets below the local log start.

A read finds the COPY_FINISHED segment holding the offset, looks the offset up in that
segment's offset index (fetched whole once and cached), reads the ``.log`` object from the
indexed position in aligned blocks (range GETs, cached in a bounded LRU), walks batch
headers to the batch holding the offset, and returns whole batches: as many as fit in
``max_bytes``, at least the first (KIP-74), never one holding ``upper`` or beyond, never
past the segment's end (the consumer fetches again) -- the same bytes a local read of that
segment would return.

Calls block on the object store; the broker must run them off the event loop (a small
thread pool, like Kafka's remote fetch pool). Thread-safe.
"""

from __future__ import annotations

import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Final

from riverbed.protocol.records.batch import HEADER_SIZE, LOG_OVERHEAD, MAGIC_V2, BatchHeader

from ..index import IndexCorrupt, OffsetIndex, TimeIndex
from ..segment import whole_batches_length
from ..timestamps import first_record_at_or_after, offset_of_timestamp
from ..txn_index import AbortedTxn, collect_aborted, decode_entries
from .metadata import RemoteLogMetadata, RemoteSegment
from .store import ObjectStore, ObjectStoreError

__all__ = ["RangeCache", "RemoteLogReader", "RemoteSegmentCorrupt"]

_BATCH_LENGTH: Final = struct.Struct(">i")
DEFAULT_BLOCK_SIZE: Final = 1 << 20


class RemoteSegmentCorrupt(ObjectStoreError):
    """A remote object whose bytes do not frame as its metadata says (not retriable)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


class RangeCache:
    """A thread-safe LRU of byte strings bounded by their total size."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def size(self) -> int:
        return self._size

    def get(self, key: tuple[str, int]) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: tuple[str, int], value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._entries[key] = value
            self._size += len(value)
            while self._size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._size -= len(evicted)

    def forget(self, object_key: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == object_key]:
                self._size -= len(self._entries.pop(key))


class RemoteLogReader:
    """Reads the remote segments described by a :class:`RemoteLogMetadata`."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        cache_bytes: int = 64 << 20,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        if block_size < HEADER_SIZE:
            raise ValueError(f"block_size must be at least {HEADER_SIZE}")
        self.store = store
        self.block_size = block_size
        self.cache = RangeCache(cache_bytes)

    # -- cached object access ----------------------------------------------------------------

    def _whole(self, key: str) -> bytes:
        """A small object (an index), cached under block number -1."""
        cached = self.cache.get((key, -1))
        if cached is None:
            cached = self.store.get(key)
            self.cache.put((key, -1), cached)
        return cached

    def _block(self, key: str, number: int) -> bytes:
        cached = self.cache.get((key, number))
        if cached is None:
            cached = self.store.get_range(key, number * self.block_size, self.block_size)
            self.cache.put((key, number), cached)
        return cached

    def read_bytes(self, key: str, start: int, length: int, object_size: int) -> bytes:
        """``length`` bytes from ``start`` (clipped to ``object_size``), through the cache."""
        end = min(start + length, object_size)
        if end <= start:
            return b""
        size = self.block_size
        parts = []
        for number in range(start // size, (end - 1) // size + 1):
            block = self._block(key, number)
            lo = max(start - number * size, 0)
            hi = min(end - number * size, size)
            if len(block) < hi:
                raise RemoteSegmentCorrupt(f"{key}: object shorter than {object_size} bytes")
            parts.append(block[lo:hi])
        return b"".join(parts)

    def _offset_index(self, segment: RemoteSegment, prefix: str) -> OffsetIndex:
        try:
            return OffsetIndex.from_bytes(self._whole(segment.key(prefix, ".index")))
        except IndexCorrupt as exc:
            raise RemoteSegmentCorrupt(f"segment {segment.segment_id}: {exc}") from exc

    def _time_index(self, segment: RemoteSegment, prefix: str) -> TimeIndex:
        try:
            return TimeIndex.from_bytes(self._whole(segment.key(prefix, ".timeindex")))
        except IndexCorrupt as exc:
            raise RemoteSegmentCorrupt(f"segment {segment.segment_id}: {exc}") from exc

    # -- walking a segment -------------------------------------------------------------------

    def _headers(
        self, segment: RemoteSegment, prefix: str, start: int
    ) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of every batch from position ``start`` (a batch boundary)."""
        key = segment.key(prefix, ".log")
        pos = start
        while pos < segment.size:
            head = self.read_bytes(key, pos, HEADER_SIZE, segment.size)
            if len(head) < HEADER_SIZE:
                raise RemoteSegmentCorrupt(f"{key}: short batch at {pos}")
            header = BatchHeader(head)
            size = header.size
            if size < HEADER_SIZE or pos + size > segment.size or header.magic != MAGIC_V2:
                raise RemoteSegmentCorrupt(f"{key}: bad batch framing at {pos}")
            yield pos, header
            pos += size

    def _find_position(self, segment: RemoteSegment, prefix: str, offset: int) -> int:
        """Position of the first batch whose last offset is >= ``offset`` (``size`` if none)."""
        if offset > segment.last_offset:
            return segment.size
        start = self._offset_index(segment, prefix).lookup(offset - segment.base_offset)
        for position, header in self._headers(segment, prefix, start):
            if header.last_offset >= offset:
                return position
        return segment.size

    def read_segment(
        self,
        segment: RemoteSegment,
        prefix: str,
        offset: int,
        max_bytes: int,
        *,
        upper: int | None = None,
        min_one_batch: bool = True,
    ) -> bytes | None:
        """What :meth:`riverbed.storage.segment.Segment.read` returns for this segment:
        None when no batch reaches ``offset``."""
        start = self._find_position(segment, prefix, offset)
        if start >= segment.size:
            return None
        if upper is None or upper > segment.last_offset:
            end = segment.size
        else:
            end = self._find_position(segment, prefix, upper)
        span = end - start
        if span <= 0:
            return b""
        key = segment.key(prefix, ".log")
        want = min(max(max_bytes, 0), span)
        data = self.read_bytes(key, start, want, segment.size) if want else b""
        if len(data) == span:
            return data
        cut = whole_batches_length(data)
        if cut:
            return data[:cut]
        if not min_one_batch:
            return b""
        head = self.read_bytes(key, start, LOG_OVERHEAD, segment.size)
        first = _BATCH_LENGTH.unpack_from(head, 8)[0] + LOG_OVERHEAD
        return self.read_bytes(key, start, first, segment.size)

    # -- the partition view ------------------------------------------------------------------

    @staticmethod
    def segments_from(metadata: RemoteLogMetadata, offset: int) -> list[RemoteSegment]:
        """The finished segments that may hold ``offset`` or later ones, in offset order;
        where copies overlap (a cleaner merge), the later-starting one is used once the
        offset reaches it."""
        found: list[RemoteSegment] = []
        for segment in metadata.finished():
            if segment.last_offset < offset:
                continue
            if found and segment.base_offset <= offset:
                found[-1] = segment  # prefer the copy starting closest to the offset
                continue
            found.append(segment)
        return found

    def read(
        self,
        metadata: RemoteLogMetadata,
        offset: int,
        max_bytes: int,
        *,
        upper: int | None = None,
        min_one_batch: bool = True,
    ) -> bytes | None:
        """Whole batches from the remote segment holding ``offset`` (or the next one after
        a gap); None when the remote tier holds nothing at or after ``offset`` (read the
        local log then)."""
        prefix = metadata.prefix
        for segment in self.segments_from(metadata, offset):
            if upper is not None and segment.base_offset >= upper:
                return b""
            data = self.read_segment(
                segment, prefix, offset, max_bytes, upper=upper, min_one_batch=min_one_batch
            )
            if data is not None:
                return data
        return None

    def offset_for_timestamp(
        self, metadata: RemoteLogMetadata, ts: int, min_offset: int
    ) -> tuple[int, int] | None:
        """(offset, timestamp) of the first remote record at or after ``min_offset`` whose
        timestamp is >= ``ts``; None when no remote record has one (look in the local log
        then)."""
        prefix = metadata.prefix
        for segment in self.segments_from(metadata, min_offset):
            if segment.max_timestamp < ts:
                continue
            relative = self._time_index(segment, prefix).lookup(ts)
            start_offset = max(segment.base_offset + relative, min_offset)
            start = self._find_position(segment, prefix, start_offset)
            key = segment.key(prefix, ".log")
            for position, header in self._headers(segment, prefix, start):
                if header.max_timestamp >= ts and header.last_offset >= min_offset:
                    batch = self.read_bytes(key, position, header.size, segment.size)
                    found = first_record_at_or_after(batch, ts, min_offset)
                    if found is not None:
                        return found
        return None

    def offset_of_timestamp(
        self,
        metadata: RemoteLogMetadata,
        segment: RemoteSegment,
        batch_base: int,
        ts: int,
        min_offset: int,
    ) -> int:
        """Offset of the first record at or after ``min_offset`` holding ``ts`` in the batch
        of ``segment`` that starts at ``batch_base`` (the segment's max-timestamp batch)."""
        prefix = metadata.prefix
        position = self._find_position(segment, prefix, batch_base)
        if position >= segment.size:
            return max(batch_base, min_offset)
        key = segment.key(prefix, ".log")
        head = self.read_bytes(key, position, HEADER_SIZE, segment.size)
        size = BatchHeader(head).size
        batch = self.read_bytes(key, position, size, segment.size)
        return offset_of_timestamp(batch, batch_base, ts, min_offset)

    def aborted_transactions(
        self, metadata: RemoteLogMetadata, start_offset: int, upper_offset: int
    ) -> tuple[list[AbortedTxn], bool]:
        """The aborted transactions of the remote ``.txnindex`` objects from the segment
        holding ``start_offset`` on (Kafka's ``collectAbortedTxns``), and whether the walk
        is complete (False: continue with the local segments)."""
        found: list[AbortedTxn] = []
        prefix = metadata.prefix
        for segment in self.segments_from(metadata, start_offset):
            if ".txnindex" not in segment.files:
                continue
            entries = decode_entries(self._whole(segment.key(prefix, ".txnindex")))
            if collect_aborted(entries, start_offset, upper_offset, found):
                return found, True
        return found, False

    def forget(self, segment: RemoteSegment, prefix: str) -> None:
        """Drop a deleted segment's bytes from the cache."""
        for suffix in segment.files:
            self.cache.forget(segment.key(prefix, suffix))
