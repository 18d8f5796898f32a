"""One segment of a partition log: a ``.log`` file of v2 batches plus its two sparse indexes
and its transaction index (the aborted transactions whose ABORT marker it holds).

A segment covers the offsets ``[base_offset, next_offset)``. Its ``.log`` file is the exact
concatenation of the batches as they are served to consumers; nothing is re-encoded. Only the
last segment of a log (the *active* one) is appended to; the others are *sealed*.

Positions are int32 (a segment never exceeds 2 GiB) and offsets in the indexes are int32
relative to ``base_offset`` (the log rolls before a batch would overflow either).

Thread-safety: none here. :class:`riverbed.storage.log.SegmentLog` holds its lock around
every call, except that its flusher may fsync ``fd`` and write the index files of a sealed
segment outside that lock (sealed indexes no longer change, and the log's flush lock keeps
the segment from being closed or truncated meanwhile).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.records.batch import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC_V2,
    BatchHeader,
    InvalidBatch,
    validate_batch,
)

from .files import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    TXN_INDEX_SUFFIX,
    Fsync,
    remove_quietly,
    segment_name,
    write_file,
    write_fully,
)
from .index import OFFSET_ENTRY_SIZE, TIME_ENTRY_SIZE, IndexCorrupt, OffsetIndex, TimeIndex
from .timestamps import first_record_at_or_after, offset_of_timestamp
from .txn_index import TXN_ENTRY_SIZE, AbortedTxn, decode_entries, encode_entries

MAX_RELATIVE_OFFSET: Final = (1 << 31) - 1
MAX_SEGMENT_SIZE: Final = (1 << 31) - 1
_SCAN_CHUNK: Final = 64 * 1024
_RECOVERY_CHUNK: Final = 8 * 1024 * 1024
_PREFIX_CHUNK: Final = 16 * 1024  # a header walk over large batches reads little else
_BATCH_LENGTH = struct.Struct(">i")  # batchLength, at byte 8 of a batch
_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")
_OPEN_FLAGS: Final = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)

logger = logging.getLogger(__name__)


class SegmentCorrupt(KafkaError):
    """The bytes of a segment do not frame as batches where the indexes said they would."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.KAFKA_STORAGE_ERROR, message)


def whole_batches_length(data: bytes | memoryview) -> int:
    """Length of the longest prefix of ``data`` made of complete batches."""
    pos = 0
    end = len(data)
    while end - pos >= LOG_OVERHEAD:
        size: int = _BATCH_LENGTH.unpack_from(data, pos + 8)[0] + LOG_OVERHEAD
        if size < HEADER_SIZE or pos + size > end:
            break
        pos += size
    return pos


class OpenSegmentFiles:
    """The ``.log`` files kept open, least recently used first, and their bound.

    Every segment opens its ``.log`` file lazily (its :attr:`Segment.fd`). With a limit
    (``limit > 0``, set by the :class:`~riverbed.storage.manager.LogManager` from
    ``max_open_segment_files``), opening one more file closes the least recently used ones
    beyond the limit. A segment is closed here only when it belongs to a log
    (:attr:`Segment.locks` set) and both of that log's locks could be taken without
    waiting: nothing else uses a segment's descriptor without holding one of them (reads
    and appends hold the state lock, fsyncs the flush lock), so it is never closed under
    a reader or an fsync. A segment is reopened at its next use. Closing and reopening a
    ``.log`` file loses nothing: fsync through the new descriptor covers the pages written
    through the old one, and a writeback error nobody has seen yet is reported to a newly
    opened descriptor too (Linux ``errseq``)."""

    def __init__(self) -> None:
        self.limit = 0
        self._lock = threading.Lock()
        self._lru: OrderedDict[Segment, None] = OrderedDict()
        self.evictions = 0
        self.warned = False

    def __len__(self) -> int:
        return len(self._lru)

    def touch(self, segment: Segment) -> None:
        with self._lock:
            if segment in self._lru:
                self._lru.move_to_end(segment)

    def opened(self, segment: Segment) -> None:
        with self._lock:
            self._lru[segment] = None
            if self.limit > 0 and len(self._lru) > self.limit:
                self._evict_locked(segment)

    def reopen(self, segment: Segment) -> int:
        with self._lock:
            fd = segment._fd
            if fd >= 0:
                return fd
            if segment.closed:
                raise OSError(errno.EBADF, f"{segment.path(LOG_SUFFIX)} is closed")
            fd = os.open(segment.path(LOG_SUFFIX), _OPEN_FLAGS)
            segment._fd = fd
            self._lru[segment] = None
            if self.limit > 0 and len(self._lru) > self.limit:
                self._evict_locked(segment)
            return fd

    def trim(self) -> None:
        """Close idle files beyond the limit (the flusher calls this after each cycle: files
        that were busy when the last one was opened are idle again), and say so once when
        the limit cannot be kept."""
        if self.limit > 0 and len(self._lru) > self.limit:
            with self._lock:
                self._evict_locked(None, warn=True)

    def forget(self, segment: Segment) -> None:
        with self._lock:
            self._lru.pop(segment, None)
            fd, segment._fd = segment._fd, -1
        if fd >= 0:
            os.close(fd)

    def _evict_locked(self, keep: Segment | None, *, warn: bool = False) -> None:
        excess = len(self._lru) - self.limit
        for victim in list(self._lru):
            if excess <= 0:
                return
            locks = victim.locks
            if victim is keep or locks is None:
                continue
            if not locks[0].acquire(blocking=False):
                continue
            try:
                if not locks[1].acquire(blocking=False):
                    continue
                try:
                    fd, victim._fd = victim._fd, -1
                    del self._lru[victim]
                    if fd >= 0:
                        os.close(fd)
                    self.evictions += 1
                    excess -= 1
                finally:
                    locks[1].release()
            finally:
                locks[0].release()
        if warn and excess > 0 and not self.warned:
            self.warned = True
            logger.warning(
                "%d segment files open, above max.open.segment.files (%d): every other one is in use",
                len(self._lru),
                self.limit,
            )


OPEN_SEGMENT_FILES = OpenSegmentFiles()
"""The process's open ``.log`` files (shared by every log of every manager)."""


class Segment:
    __slots__ = (
        "_fd",
        "aborted",
        "base_offset",
        "bytes_since_index",
        "closed",
        "directory",
        "first_append_ms",
        "index",
        "index_interval",
        "indexes_loaded",
        "last_modified_ms",
        "locks",
        "max_timestamp",
        "next_offset",
        "offset_of_max_timestamp",
        "size",
        "synced_size",
        "time_index",
        "txn_dirty",
        "txn_loaded",
    )

    def __init__(self, directory: Path, base_offset: int, fd: int, index_interval: int) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self._fd = fd
        self.locks: tuple[threading.Lock, threading.Lock] | None = None
        """The owning log's (flush lock, state lock); set once the segment belongs to a log,
        which lets :data:`OPEN_SEGMENT_FILES` close its file when it is idle."""
        self.index_interval = index_interval
        self.size = 0
        """Bytes of whole batches in the file (the append position)."""
        self.synced_size = 0
        """Bytes known to be fsynced."""
        self.next_offset = base_offset
        self.index = OffsetIndex()
        self.time_index = TimeIndex()
        self.indexes_loaded = True
        self.bytes_since_index = 0
        self.max_timestamp = -1
        self.offset_of_max_timestamp = -1
        self.first_append_ms = -1
        """Wall-clock time of the first append (drives segment.ms); -1 while empty."""
        self.last_modified_ms = 0
        self.closed = False
        self.aborted: list[AbortedTxn] = []
        """Aborted transactions whose marker is in this segment, in marker order."""
        self.txn_loaded = True
        """False until :meth:`load_txn_index` read the ``.txnindex`` file of an existing segment."""
        self.txn_dirty = False
        """``aborted`` differs from the ``.txnindex`` file."""
        if fd >= 0:
            OPEN_SEGMENT_FILES.opened(self)

    @property
    def fd(self) -> int:
        """The ``.log`` file's descriptor, opened again if it was closed while idle."""
        fd = self._fd
        if fd < 0:
            return OPEN_SEGMENT_FILES.reopen(self)
        if OPEN_SEGMENT_FILES.limit:
            OPEN_SEGMENT_FILES.touch(self)
        return fd

    # -- files ---------------------------------------------------------------------------

    def path(self, suffix: str) -> Path:
        return self.directory / segment_name(self.base_offset, suffix)

    @classmethod
    def create(
        cls,
        directory: Path,
        base_offset: int,
        index_interval: int,
        now_ms: int,
        *,
        fresh: bool = False,
    ) -> Segment:
        """A new, empty segment (``fresh``: in a directory just created, so with no index
        files of an older segment of that name to remove)."""
        if not fresh:
            remove_quietly(directory / segment_name(base_offset, INDEX_SUFFIX))
            remove_quietly(directory / segment_name(base_offset, TIME_INDEX_SUFFIX))
            remove_quietly(directory / segment_name(base_offset, TXN_INDEX_SUFFIX))
        path = directory / segment_name(base_offset, LOG_SUFFIX)
        fd = os.open(path, _OPEN_FLAGS | os.O_CREAT | os.O_TRUNC, 0o644)
        segment = cls(directory, base_offset, fd, index_interval)
        segment.last_modified_ms = now_ms
        return segment

    @classmethod
    def open_existing(cls, directory: Path, base_offset: int, index_interval: int) -> Segment:
        fd = os.open(directory / segment_name(base_offset, LOG_SUFFIX), _OPEN_FLAGS)
        segment = cls(directory, base_offset, fd, index_interval)
        st = os.fstat(fd)
        segment.size = segment.synced_size = st.st_size
        segment.last_modified_ms = st.st_mtime_ns // 1_000_000
        segment.indexes_loaded = False
        segment.txn_loaded = False
        return segment

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            OPEN_SEGMENT_FILES.forget(self)

    def delete(self) -> None:
        self.close()
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX):
            remove_quietly(self.path(suffix))

    def write_indexes(self, fsync: Fsync | None) -> None:
        """Write the index files whole (a sealed or closing segment); the transaction index
        only when it changed."""
        self.write_txn_index(fsync)
        if not self.indexes_loaded:
            return  # never loaded, so the files on disk are still the truth
        write_file(self.path(INDEX_SUFFIX), self.index.to_bytes(), fsync)
        write_file(self.path(TIME_INDEX_SUFFIX), self.time_index.to_bytes(), fsync)

    # -- the transaction index -------------------------------------------------------------

    def write_txn_index(self, fsync: Fsync | None) -> None:
        """Write ``.txnindex`` whole if it changed; without entries the file is removed
        (like Kafka, a segment has one only once it holds an aborted transaction)."""
        if not self.txn_loaded or not self.txn_dirty:
            return
        if self.aborted:
            write_file(self.path(TXN_INDEX_SUFFIX), encode_entries(self.aborted), fsync)
        else:
            remove_quietly(self.path(TXN_INDEX_SUFFIX))
        self.txn_dirty = False

    def load_txn_index(self) -> None:
        """Read ``.txnindex`` (missing = no entries), keeping the whole, plausible entries
        whose marker lies in this segment's recovered offsets; marks the index dirty when
        the file held anything else (a torn tail, entries beyond the log end)."""
        try:
            data = self.path(TXN_INDEX_SUFFIX).read_bytes()
        except FileNotFoundError:
            data = b""
        kept = [
            e for e in decode_entries(data) if self.base_offset <= e.last_offset < self.next_offset
        ]
        kept.sort(key=lambda e: e.last_offset)
        self.aborted = kept
        self.txn_loaded = True
        self.txn_dirty = len(data) != TXN_ENTRY_SIZE * len(kept)

    def no_txn_index(self) -> None:
        """The segment has no ``.txnindex`` file: as :meth:`load_txn_index` would find."""
        self.aborted = []
        self.txn_loaded = True
        self.txn_dirty = False

    def add_aborted(self, entry: AbortedTxn) -> None:
        """Record an aborted transaction whose marker is in this segment; an entry for the
        same marker (producer id and marker offset) is replaced, never duplicated."""
        aborted = self.aborted
        if not aborted or aborted[-1].last_offset < entry.last_offset:
            aborted.append(entry)
            self.txn_dirty = True
            return
        for i, e in enumerate(aborted):
            if e.last_offset == entry.last_offset and e.producer_id == entry.producer_id:
                if e != entry:
                    aborted[i] = entry
                    self.txn_dirty = True
                return
            if e.last_offset > entry.last_offset:
                aborted.insert(i, entry)
                self.txn_dirty = True
                return
        aborted.append(entry)
        self.txn_dirty = True

    def truncate_txn_index(self, offset: int) -> None:
        """Forget the entries whose marker is at or after ``offset``."""
        self.keep_aborted(lambda e: e.last_offset < offset)

    def keep_aborted(self, keep: Callable[[AbortedTxn], bool]) -> None:
        kept = [e for e in self.aborted if keep(e)]
        if len(kept) != len(self.aborted):
            self.aborted = kept
            self.txn_dirty = True

    # -- appending -----------------------------------------------------------------------

    def can_hold(self, nbytes: int, last_offset: int, segment_bytes: int) -> bool:
        """False when the log must roll before appending this batch (size or int32 limits).
        An empty segment takes any batch."""
        if self.size == 0:
            return True
        return (
            self.size + nbytes <= min(segment_bytes, MAX_SEGMENT_SIZE)
            and last_offset - self.base_offset <= MAX_RELATIVE_OFFSET
        )

    def append(
        self,
        batch: bytes | bytearray | memoryview,
        base_offset: int,
        last_offset: int,
        max_timestamp: int,
        now_ms: int,
    ) -> None:
        position = self.size
        try:
            write_fully(self.fd, batch, position)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, position)  # drop a partial write
            raise KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, f"append failed: {exc}") from exc
        if position == 0:
            self.first_append_ms = now_ms
        self.last_modified_ms = now_ms
        self._note_batch(position, base_offset, last_offset, max_timestamp, len(batch))

    def _note_batch(
        self, position: int, base_offset: int, last_offset: int, max_timestamp: int, nbytes: int
    ) -> None:
        """Account for a batch now stored at ``position``: sparse index entries, max timestamp."""
        if not self.indexes_loaded:  # an active segment opened lazily: its first append
            self.ensure_indexes()
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
            self.offset_of_max_timestamp = base_offset
        if position == 0 or self.bytes_since_index >= self.index_interval:
            self.index.append(base_offset - self.base_offset, position)
            if self.max_timestamp >= 0:
                self.time_index.maybe_append(
                    self.max_timestamp, self.offset_of_max_timestamp - self.base_offset
                )
            self.bytes_since_index = 0
        self.bytes_since_index += nbytes
        self.size = position + nbytes
        self.next_offset = last_offset + 1

    def seal(self) -> None:
        """Called when the segment stops being the active one (roll, clean close): make the
        last time-index entry hold the segment's largest timestamp."""
        if self.indexes_loaded and self.max_timestamp >= 0:
            self.time_index.maybe_append(
                self.max_timestamp, self.offset_of_max_timestamp - self.base_offset
            )

    # -- lookups -------------------------------------------------------------------------

    def iter_headers(
        self, start: int, end: int, chunk: int = _SCAN_CHUNK
    ) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of each batch in ``[start, end)``; ``start`` must be a batch
        boundary. Reads ``chunk`` bytes at a time, so a walk over many small batches costs
        few syscalls."""
        buf = b""
        buf_pos = start
        pos = start
        while pos < end:
            off = pos - buf_pos
            if off + HEADER_SIZE > len(buf):
                buf = os.pread(self.fd, min(chunk, end - pos), pos)
                buf_pos = pos
                off = 0
                if len(buf) < HEADER_SIZE:
                    raise SegmentCorrupt(f"{self.path(LOG_SUFFIX)}: short batch at {pos}")
            header = BatchHeader(buf, off)
            size = header.size
            if size < HEADER_SIZE or pos + size > end or header.magic != MAGIC_V2:
                raise SegmentCorrupt(f"{self.path(LOG_SUFFIX)}: bad batch framing at {pos}")
            yield pos, header
            pos += size

    def find_position(self, offset: int) -> int:
        """Position of the first batch whose last offset is >= ``offset`` (the batch that
        contains it, or the next one after a gap); ``size`` when there is none."""
        if offset >= self.next_offset:
            return self.size
        self.ensure_indexes()
        start = self.index.lookup(offset - self.base_offset)
        # The walk from an index entry spans about index.interval.bytes: read no more.
        chunk = min(_SCAN_CHUNK, max(4 * HEADER_SIZE, self.index_interval + HEADER_SIZE))
        for position, header in self.iter_headers(start, self.size, chunk):
            if header.last_offset >= offset:
                return position
        return self.size

    def read(
        self, offset: int, max_bytes: int, upper: int, min_one_batch: bool
    ) -> bytes | memoryview | None:
        """Whole batches from the one containing ``offset``, stopping before the batch that
        contains ``upper``. None when no batch here reaches ``offset`` (try the next segment)."""
        start = self.find_position(offset)
        if start >= self.size:
            return None
        end = self.size if upper >= self.next_offset else self.find_position(upper)
        span = end - start
        if span <= 0:
            return b""
        want = min(max(max_bytes, 0), span)
        data = os.pread(self.fd, want, start) if want else b""
        if len(data) == span:
            return data  # both ends are batch boundaries
        cut = whole_batches_length(data)
        if cut:
            return memoryview(data)[:cut]
        if not min_one_batch:
            return b""
        head = data if len(data) >= LOG_OVERHEAD else os.pread(self.fd, LOG_OVERHEAD, start)
        first: int = _BATCH_LENGTH.unpack_from(head, 8)[0] + LOG_OVERHEAD
        return os.pread(self.fd, first, start)

    def find_timestamp(self, timestamp: int, min_offset: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at or after ``min_offset`` whose
        timestamp is >= ``timestamp`` (Kafka's LogSegment.findOffsetByTimestamp: the time
        index and the batch headers find the batch, the batch's records the record)."""
        self.ensure_indexes()
        start_offset = max(self.base_offset + self.time_index.lookup(timestamp), min_offset)
        start = self.find_position(start_offset)
        for position, header in self.iter_headers(start, self.size):
            if header.max_timestamp >= timestamp and header.last_offset >= min_offset:
                found = first_record_at_or_after(
                    os.pread(self.fd, header.size, position), timestamp, min_offset
                )
                if found is not None:
                    return found
        return None

    def offset_of_timestamp(self, batch_base: int, timestamp: int, min_offset: int) -> int:
        """Offset of the first record at or after ``min_offset`` holding ``timestamp`` in the
        batch that starts at ``batch_base`` (what :meth:`max_timestamp_from` returns)."""
        position = self.find_position(batch_base)
        if position >= self.size:
            return max(batch_base, min_offset)
        head = os.pread(self.fd, LOG_OVERHEAD, position)
        size: int = _BATCH_LENGTH.unpack_from(head, 8)[0] + LOG_OVERHEAD
        return offset_of_timestamp(
            os.pread(self.fd, size, position), batch_base, timestamp, min_offset
        )

    def max_timestamp_from(self, offset: int) -> tuple[int, int]:
        """(max timestamp, base offset of the first batch holding it) over the batches that
        end at or after ``offset``; (-1, -1) if none has a timestamp."""
        if self.offset_of_max_timestamp >= offset:
            return self.max_timestamp, self.offset_of_max_timestamp
        best = (-1, -1)
        for _, header in self.iter_headers(self.find_position(offset), self.size):
            if header.max_timestamp > best[0]:
                best = (int(header.max_timestamp), int(header.base_offset))
        return best

    @property
    def largest_timestamp(self) -> int:
        """What retention.ms compares: the max batch timestamp, else the last-modified time."""
        return self.max_timestamp if self.max_timestamp >= 0 else self.last_modified_ms

    # -- truncation ----------------------------------------------------------------------

    def truncate_to(self, offset: int) -> int:
        """Drop every batch whose last offset is >= ``offset``; returns the bytes removed."""
        position = self.find_position(offset)
        if position >= self.size:
            return 0
        removed = self.size - position
        head = os.pread(self.fd, LOG_OVERHEAD, position)
        first_removed = int.from_bytes(head[:8], "big", signed=True)
        os.ftruncate(self.fd, position)
        self.size = position
        self.synced_size = min(self.synced_size, position)
        self.index.truncate_to_position(position)
        self.time_index.truncate_to_offset(first_removed - self.base_offset)
        self._recompute_tail_state()
        self.truncate_txn_index(self.next_offset)
        if position == 0:
            self.first_append_ms = -1
        return removed

    def _recompute_tail_state(self) -> None:
        """Max timestamp and index spacing from the indexes plus a walk of the tail after
        the last offset-index entry (every earlier batch is summarised by the time index)."""
        ts = self.time_index.last_timestamp
        at = self.base_offset + self.time_index.last_offset if ts >= 0 else -1
        start = self.index.last_position()
        next_offset = self.base_offset if self.size == 0 else self.next_offset
        for _, header in self.iter_headers(start, self.size):
            if header.max_timestamp > ts:
                ts, at = int(header.max_timestamp), int(header.base_offset)
            next_offset = header.next_offset
        self.max_timestamp = ts
        self.offset_of_max_timestamp = at
        self.next_offset = next_offset
        self.bytes_since_index = self.size - start

    # -- loading and recovery ------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """Load index files deferred by :meth:`load_trusted` (first lookup in the segment)."""
        if self.indexes_loaded:
            return
        try:
            index = OffsetIndex.from_bytes(self.path(INDEX_SUFFIX).read_bytes())
            time_index = TimeIndex.from_bytes(self.path(TIME_INDEX_SUFFIX).read_bytes())
        except (OSError, IndexCorrupt):
            self._rebuild_indexes()
            return
        self.index = index
        self.time_index = time_index
        self.indexes_loaded = True

    def _rebuild_indexes(self) -> None:
        """Index a sealed segment again from batch headers (no CRC; a lazy-load fallback)."""
        self.index = OffsetIndex()
        self.time_index = TimeIndex()
        self.indexes_loaded = True
        self.max_timestamp = self.offset_of_max_timestamp = -1
        self.bytes_since_index = 0
        size = self.size
        try:
            for position, h in self.iter_headers(0, size):
                self._note_batch(position, h.base_offset, h.last_offset, h.max_timestamp, h.size)
        except SegmentCorrupt:
            pass
        self.size = size  # the log file is not touched here

    def load_trusted(self) -> bool:
        """Adopt the index files of a segment that a clean shutdown or the recovery point
        vouches for, after cheap sanity checks: both files have whole entries; the first,
        a few middle and the last offset-index entries point at batch boundaries holding
        the right base offsets; the batches after the last entry frame exactly up to the
        end of the file. Loads the arrays lazily. False when anything looks wrong."""
        try:
            index_size = os.stat(self.path(INDEX_SUFFIX)).st_size
            time_size = os.stat(self.path(TIME_INDEX_SUFFIX)).st_size
        except OSError:
            return False
        if index_size % OFFSET_ENTRY_SIZE or time_size % TIME_ENTRY_SIZE:
            return False
        if self.size == 0:
            return index_size == 0
        entries = index_size // OFFSET_ENTRY_SIZE
        if entries == 0:
            return False
        try:
            with open(self.path(INDEX_SUFFIX), "rb") as f:
                samples = sorted({0, entries // 3, (2 * entries) // 3, entries - 1})
                previous = (-1, -1)
                last_position = 0
                for i in samples:
                    f.seek(i * OFFSET_ENTRY_SIZE)
                    relative, position = _OFFSET_ENTRY.unpack(f.read(OFFSET_ENTRY_SIZE))
                    if i == 0 and position != 0:
                        return False
                    if relative <= previous[0] or position <= previous[1]:
                        return False
                    if position >= self.size or not self._batch_at(position, relative):
                        return False
                    previous = (relative, position)
                    last_position = position
            time_last = (-1, 0)
            if time_size:
                with open(self.path(TIME_INDEX_SUFFIX), "rb") as f:
                    first_ts = _TIME_ENTRY.unpack(f.read(TIME_ENTRY_SIZE))[0]
                    f.seek(time_size - TIME_ENTRY_SIZE)
                    time_last = _TIME_ENTRY.unpack(f.read(TIME_ENTRY_SIZE))
                if first_ts < 0 or first_ts > time_last[0] or time_last[1] < 0:
                    return False
            ts = time_last[0]
            at = self.base_offset + time_last[1] if ts >= 0 else -1
            next_offset = -1
            for _, header in self.iter_headers(last_position, self.size):
                if header.max_timestamp > ts:
                    ts, at = int(header.max_timestamp), int(header.base_offset)
                next_offset = header.next_offset
        except (OSError, struct.error, SegmentCorrupt, InvalidBatch):
            return False
        if at >= next_offset:
            return False
        self.next_offset = next_offset
        self.max_timestamp = ts
        self.offset_of_max_timestamp = at
        self.bytes_since_index = self.size - last_position
        return True

    def _batch_at(self, position: int, relative_offset: int) -> bool:
        head = os.pread(self.fd, HEADER_SIZE, position)
        if len(head) < HEADER_SIZE:
            return False
        header = BatchHeader(head)
        return bool(
            header.magic == MAGIC_V2 and header.base_offset == self.base_offset + relative_offset
        )

    def recover(self, durable: int = 0) -> bool:
        """Validate every batch (framing, magic, CRC-32C, increasing offsets), rebuild both
        indexes in memory, and truncate the file at the first bad batch. True if truncated.

        ``durable``: the first bytes of the file were on disk when the recovery checkpoint
        was written (see ``recovery-point-positions``): their batches are indexed from
        their headers without reading their data, and validation starts there. When the
        walk does not end exactly at ``durable`` the whole file is validated."""
        self.index = OffsetIndex()
        self.time_index = TimeIndex()
        self.indexes_loaded = True
        self.max_timestamp = self.offset_of_max_timestamp = -1
        self.bytes_since_index = 0
        self.next_offset = self.base_offset
        file_size = os.fstat(self.fd).st_size
        buf = b""
        buf_pos = 0
        pos = 0
        expected = self.base_offset
        if 0 < durable <= file_size:
            pos = self._index_durable_prefix(durable)
            if pos == durable:
                expected = self.next_offset
            else:
                self.index = OffsetIndex()
                self.time_index = TimeIndex()
                self.max_timestamp = self.offset_of_max_timestamp = -1
                self.bytes_since_index = 0
                self.next_offset = self.base_offset
                pos = 0
        while file_size - pos >= HEADER_SIZE:
            off = pos - buf_pos
            if off + HEADER_SIZE > len(buf):
                buf = os.pread(self.fd, min(_RECOVERY_CHUNK, file_size - pos), pos)
                buf_pos, off = pos, 0
            size = _BATCH_LENGTH.unpack_from(buf, off + 8)[0] + LOG_OVERHEAD
            if size < HEADER_SIZE or pos + size > file_size:
                break
            if off + size > len(buf):
                buf = os.pread(self.fd, min(max(_RECOVERY_CHUNK, size), file_size - pos), pos)
                buf_pos, off = pos, 0
            try:
                header = validate_batch(buf, off)
            except InvalidBatch:
                break
            if header.base_offset < expected or header.last_offset_delta < 0:
                break
            self._note_batch(
                pos, header.base_offset, header.last_offset, header.max_timestamp, size
            )
            expected = header.next_offset
            pos += size
        self.size = pos
        self.synced_size = min(self.synced_size, pos)
        if pos < file_size:
            os.ftruncate(self.fd, pos)
            return True
        return False

    def _index_durable_prefix(self, durable: int) -> int:
        """Index the batches of ``[0, durable)`` from their headers (framing, magic and
        increasing offsets checked, the CRC not); returns where the walk stopped."""
        pos = 0
        expected = self.base_offset
        try:
            for pos, header in self.iter_headers(0, durable, _PREFIX_CHUNK):
                if header.base_offset < expected or header.last_offset_delta < 0:
                    return pos
                self._note_batch(
                    pos, header.base_offset, header.last_offset, header.max_timestamp, header.size
                )
                expected = header.next_offset
        except SegmentCorrupt:
            return -1
        return self.size

    def first_batch_timestamp(self, fd: int | None = None) -> int:
        """``fd``: a duplicate of the file's descriptor (a caller holding none of the log's
        locks must not use :attr:`fd`, which may be closed while idle)."""
        head = os.pread(self.fd if fd is None else fd, HEADER_SIZE, 0)
        return int(BatchHeader(head).max_timestamp) if len(head) == HEADER_SIZE else -1
