"""The log cleaner: compaction of ``cleanup.policy=compact`` logs (Kafka's ``Cleaner``).

One clean of a log (:func:`clean_log`, what :meth:`SegmentLog.clean` runs):

1. **Plan**, under the log's state lock (a few microseconds): which sealed segments may be
   touched. The *first uncleanable offset* is the base offset of the first segment that
   holds the last stable offset (so nothing of an open transaction, nor anything above the
   high watermark), is not yet finalized by the flusher, is the active segment, or is
   younger than ``min.compaction.lag.ms`` (by its largest timestamp). The *first dirty
   offset* comes from the cleaner checkpoint (the end of the previous clean).
2. **Offset map**: key -> latest offset for the dirty records ``[first dirty, first
   uncleanable)``, skipping aborted transactions and control batches. The map is bounded
   (:class:`OffsetMap`); when it fills up the clean covers only the prefix that fit, and
   ``end_offset`` (the next first dirty offset) is where it stopped.
3. **Rewrite**, off every lock: every segment from the first one up to ``end_offset`` is
   read through its own duplicated file descriptor, in groups whose total size fits in
   ``segment.bytes``; each group becomes one new segment (base offset of its first member)
   written under ``.cleaned`` names. A record stays when it is the latest of its key (or
   lies beyond ``end_offset``), unless it is a tombstone whose batch's delete horizon has
   passed, or belongs to an aborted transaction. Offsets never change (a batch keeps its
   base offset and its last offset delta: Kafka's rule, which also keeps the producer's
   last sequence); batches that lose records are re-encoded with the same codec; untouched
   batches are copied byte for byte.
4. **Swap**, under the log's flush lock (state lock only for the in-memory exchange): see
   :mod:`riverbed.storage.swap` for the crash-safe file protocol.

Appends, reads and the flusher carry on meanwhile (the active segment is never part of a
clean). Thread-safety: one clean per log at a time (``CleanerState.lock``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from crc32c import crc32c

from riverbed.protocol.records.batch import (
    COMPRESSION_MASK,
    CONTROL_MASK,
    DELETE_HORIZON_MASK,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC_V2,
    TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_MASK,
    BatchHeader,
    InvalidBatch,
    validate_batch,
)
from riverbed.protocol.records.compression import compress
from riverbed.protocol.records.records import Record, decode_records, records_block
from riverbed.protocol.varint import encode_varint

from .api import LogConfig
from .cleaner_scan import SHORT_KEY, filter_records, map_keys
from .files import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    TXN_INDEX_SUFFIX,
    Fsync,
    fsync_dir,
    segment_name,
    write_file,
)
from .producer_state import parse_marker
from .segment import MAX_RELATIVE_OFFSET, MAX_SEGMENT_SIZE, Segment
from .swap import SwapManifest, cleaned_path, discard_cleaned
from .txn_index import AbortedTxn, encode_entries

if TYPE_CHECKING:
    from .log import SegmentLog

logger = logging.getLogger(__name__)

_BATCH_LENGTH = struct.Struct(">i")
_HEADER = struct.Struct(">qiibIhiqqqhii")
_UINT32 = struct.Struct(">I")
_READ_CHUNK: Final = 1 << 20
_YIELD_S: Final = 0.001
_KEEP_ATTRIBUTES: Final = COMPRESSION_MASK | TIMESTAMP_TYPE_MASK | TRANSACTIONAL_MASK | CONTROL_MASK
_OPEN_FLAGS: Final = os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
DEFAULT_DEDUPE_BUFFER_BYTES: Final = 128 * 1024 * 1024


class CleanerError(Exception):
    """A clean could not complete (corrupt batch, I/O error); the log was left as it was."""


class CleanAborted(Exception):
    """The clean was stopped (shutdown) or the log changed under it (retention, truncation,
    close); nothing was swapped in for the current group."""


# -- the offset map ----------------------------------------------------------------------


class OffsetMap:
    """Key -> latest offset, bounded by a memory budget (Kafka's ``SkimpyOffsetMap``).

    Keys are kept as they are (a ``dict`` of ``bytes``: exact, so no two keys can ever be
    taken for one another, and the C walk of :mod:`.cleaner_scan` can fill it without
    hashing in Python). A key of up to 16 bytes costs :attr:`BYTES_PER_ENTRY` of the budget,
    a longer one also its extra bytes."""

    BYTES_PER_ENTRY: Final = 160
    """Estimated heap per entry: dict slot (~40) + a short ``bytes`` (~49) + ``int`` (32),
    rounded up for the dict's spare capacity."""

    __slots__ = ("_map", "budget", "capacity", "latest_offset", "used")

    def __init__(self, memory_bytes: int = DEFAULT_DEDUPE_BUFFER_BYTES) -> None:
        self.budget = max(self.BYTES_PER_ENTRY, memory_bytes)
        self.capacity = self.budget // self.BYTES_PER_ENTRY
        """The most entries the map can hold (all keys short)."""
        self.used = 0
        self._map: dict[bytes, int] = {}
        self.latest_offset = -1
        """The largest offset put so far (-1: none)."""

    def __len__(self) -> int:
        return len(self._map)

    @property
    def full(self) -> bool:
        return self.used + self.BYTES_PER_ENTRY > self.budget

    def put(self, key: bytes, offset: int) -> bool:
        """Record ``offset`` as the latest of ``key``; False (and nothing changes) when the
        key is new and does not fit."""
        if key not in self._map:
            cost = self.BYTES_PER_ENTRY + max(0, len(key) - SHORT_KEY)
            if self.used + cost > self.budget:
                return False
            self.used += cost
        self._map[key] = offset
        if offset > self.latest_offset:
            self.latest_offset = offset
        return True

    def put_block(self, block: bytes, count: int, base_offset: int, first_dirty: int) -> int:
        """Put every keyed record at or beyond ``first_dirty`` of a records block; returns
        the offset of the first record whose key did not fit (-1: all did). Raises
        ValueError for a malformed block."""
        stop, used, latest = map_keys(
            block, count, base_offset, first_dirty, self._map, self.budget - self.used, self.BYTES_PER_ENTRY
        )
        self.used += used
        if latest > self.latest_offset:
            self.latest_offset = latest
        return int(stop)

    @property
    def keys(self) -> dict[bytes, int]:
        """The map itself (read-only use: :func:`.cleaner_scan.filter_records`)."""
        return self._map

    def get(self, key: bytes) -> int:
        """The latest offset of ``key``, -1 when the map does not know it."""
        return self._map.get(key, -1)

    def clear(self) -> None:
        self._map.clear()
        self.used = 0
        self.latest_offset = -1


# -- throttling --------------------------------------------------------------------------


class Throttler:
    """Keeps the cleaner's I/O (bytes read + written) under ``bytes_per_second``, measured
    over windows of about a second (Kafka's ``Throttler``). ``sleep`` may return early to
    stop (a ``threading.Event.wait``)."""

    def __init__(
        self,
        bytes_per_second: float = math.inf,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        self.rate = bytes_per_second
        self._clock = clock
        self._sleep = sleep
        self._start = clock()
        self._bytes = 0
        self.slept_s = 0.0

    def note(self, nbytes: int) -> None:
        if math.isinf(self.rate):
            return
        self._bytes += nbytes
        elapsed = self._clock() - self._start
        wanted = self._bytes / self.rate
        if wanted > elapsed:
            self._sleep(wanted - elapsed)
            self.slept_s += wanted - elapsed
        if elapsed >= 1.0 or wanted >= 1.0:
            self._start = self._clock()
            self._bytes = 0


# -- per-log state and statistics ---------------------------------------------------------


@dataclass(slots=True)
class CleanStats:
    """What one clean did."""

    first_dirty_offset: int = 0
    end_offset: int = 0
    """The next first dirty offset (where the offset map stopped)."""
    map_entries: int = 0
    map_full: bool = False
    segments_before: int = 0
    segments_after: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    log_bytes_before: int = 0
    log_bytes_after: int = 0
    records_read: int = 0
    records_removed: int = 0
    tombstones_removed: int = 0
    aborted_records_removed: int = 0
    invalid_records_removed: int = 0
    """Records without a key (Kafka's cleaner drops them too)."""
    markers_removed: int = 0
    batches_rewritten: int = 0
    throttled_s: float = 0.0
    duration_s: float = 0.0
    next_delete_horizon_ms: int = -1
    """Earliest delete horizon of a tombstone or marker the clean kept (-1: none)."""
    cpu_s: float = 0.0
    """CPU seconds of the cleaning thread (plan, rewrite on that thread or the wait for the
    worker, swaps)."""
    worker_cpu_s: float = 0.0
    """CPU seconds of the worker process (0 when the rewrite ran on the thread)."""
    aborted: bool = False
    """The clean stopped before its end (shutdown, or the log changed under it); the groups
    swapped before that stay cleaned."""


@dataclass(slots=True)
class CleanerState:
    """The cleaner's memory of one log (kept on the :class:`SegmentLog`)."""

    first_dirty_offset: int = -1
    """From the cleaner checkpoint: where the previous clean stopped (-1: never cleaned,
    which means the log start offset)."""
    last_clean_ms: int = -1
    last_stats: CleanStats | None = None
    cleans: int = 0
    next_delete_horizon_ms: int = -1
    """Earliest delete horizon of a retained tombstone or marker (-1: none known): once it
    passes, a clean can remove something even without new dirty data."""
    uncleanable: str | None = None
    """Why the background cleaner skips this log (a clean failed); None if it does not."""
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True, slots=True)
class CleanerInfo:
    """How dirty a log is (for the cleaner's choice, and for display)."""

    compact: bool
    first_dirty_offset: int
    first_uncleanable_offset: int
    clean_bytes: int
    cleanable_bytes: int
    dirty_ratio: float
    """cleanable / (clean + cleanable); 0 for an empty log."""
    needs_compaction_now: bool
    """max.compaction.lag.ms has passed for the first dirty segment, or a delete horizon of
    a retained tombstone or marker has passed."""
    last_clean_ms: int
    last_stats: CleanStats | None
    uncleanable: str | None
    min_ratio: float
    """min.cleanable.dirty.ratio of the log."""

    @property
    def should_clean(self) -> bool:
        """What the background cleaner asks: compacted, something cleanable, and dirty
        enough (or overdue by max.compaction.lag.ms or a passed delete horizon)."""
        return (
            self.compact
            and self.uncleanable is None
            and self.cleanable_bytes > 0
            and (self.needs_compaction_now or self.dirty_ratio >= self.min_ratio)
        )


@dataclass(slots=True)
class CleanerView:
    """What a clean needs from a log, taken under its state lock by
    :meth:`SegmentLog.cleaner_view`. ``fds`` are duplicates of the sealed segments' file
    descriptors, so the clean can read them even if the log closes or deletes one meanwhile;
    the caller closes them."""

    directory: Path
    config: LogConfig
    segments: list[Segment]
    sizes: list[int]
    fds: list[int]
    log_start: int
    log_end: int
    stable_limit: int
    """min(last stable offset, high watermark, recovery point): nothing at or beyond it is
    cleaned."""
    last_records: dict[int, tuple[int, int]]
    """producer id -> (offset of its last data batch or -1, epoch), for the producers the
    partition remembers: their last batch stays (empty if need be), so that their state
    survives a reload."""
    aborted: list[AbortedTxn]
    size_bytes: int

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


def bounds(view: CleanerView, state: CleanerState, now_ms: int) -> tuple[int, int, int]:
    """(first dirty offset, number of segments below the first uncleanable offset, that
    offset)."""
    segments = view.segments
    sealed = len(segments) - 1
    k = 0
    while k < sealed and segments[k + 1].base_offset <= view.stable_limit:
        k += 1
    first_dirty = state.first_dirty_offset
    if first_dirty < view.log_start or first_dirty > view.log_end:
        first_dirty = view.log_start
    lag = view.config.min_compaction_lag_ms
    if lag > 0:
        for i in range(k):
            dirty = segments[i + 1].base_offset > first_dirty
            if dirty and now_ms - segments[i].largest_timestamp < lag:
                k = i
                break
    return first_dirty, k, segments[k].base_offset


def cleaner_info(view: CleanerView, state: CleanerState, now_ms: int) -> CleanerInfo:
    config = view.config
    first_dirty, k, upper = bounds(view, state, now_ms)
    segments = view.segments
    clean = dirty = 0
    first_dirty_segment = -1
    for i in range(k):
        if segments[i + 1].base_offset <= first_dirty:
            clean += view.sizes[i]
        else:
            dirty += view.sizes[i]
            if first_dirty_segment < 0:
                first_dirty_segment = i
    total = clean + dirty
    now = False
    if first_dirty_segment >= 0 and config.max_compaction_lag_ms < (1 << 62):
        fd = view.fds[first_dirty_segment] if view.fds else None
        ts = segments[first_dirty_segment].first_batch_timestamp(fd)
        now = ts >= 0 and now_ms - ts > config.max_compaction_lag_ms
    horizon = state.next_delete_horizon_ms
    if horizon >= 0 and horizon <= now_ms and k > 0:
        now = True
        dirty = max(dirty, 1)  # worth a pass even without new data
    return CleanerInfo(
        compact=config.cleanup_compact,
        first_dirty_offset=first_dirty,
        first_uncleanable_offset=upper,
        clean_bytes=clean,
        cleanable_bytes=dirty,
        dirty_ratio=dirty / total if total else 0.0,
        needs_compaction_now=now,
        last_clean_ms=state.last_clean_ms,
        last_stats=state.last_stats,
        uncleanable=state.uncleanable,
        min_ratio=config.min_cleanable_dirty_ratio,
    )


# -- reading -----------------------------------------------------------------------------


def _iter_batches(fd: int, size: int, path: Path, yield_gil: bool = True) -> Iterator[bytes]:
    """The batches of a sealed segment file, read ``_READ_CHUNK`` bytes at a time (one
    larger read for a batch larger than that): bounded memory."""
    buf = b""
    buf_pos = 0
    pos = 0
    yielded = time.perf_counter()
    while pos < size:
        off = pos - buf_pos
        if off + LOG_OVERHEAD > len(buf):
            buf = os.pread(fd, min(_READ_CHUNK, size - pos), pos)
            buf_pos, off = pos, 0
            if len(buf) < LOG_OVERHEAD:
                raise CleanerError(f"{path}: short read at {pos}")
        n = _BATCH_LENGTH.unpack_from(buf, off + 8)[0] + LOG_OVERHEAD
        if n < HEADER_SIZE or pos + n > size:
            raise CleanerError(f"{path}: bad batch framing at {pos}")
        if off + n > len(buf):
            buf = os.pread(fd, min(max(_READ_CHUNK, n), size - pos), pos)
            buf_pos, off = pos, 0
            if len(buf) < n:
                raise CleanerError(f"{path}: short read at {pos}")
        yield buf[off : off + n]
        pos += n
        # The cleaner is pure Python in a thread of the broker's process: without a pause it
        # keeps the GIL for whole switch intervals (5 ms) at a time, and the event loop and
        # the flusher, which take and drop the GIL around every socket and fsync call, wait
        # for it each time (produce p99 went from 3 ms to 600 ms while a clean ran). A
        # zero sleep every millisecond hands the GIL over to whoever is waiting for it (one
        # per batch cost 2.5x the CPU of the clean on a loaded machine: each one gives the
        # core away). A worker process has no one to hand it to.
        if yield_gil and time.perf_counter() - yielded >= _YIELD_S:
            time.sleep(0)
            yielded = time.perf_counter()


# -- transactions ------------------------------------------------------------------------


class _AbortedTxn:
    __slots__ = ("entry", "observed")

    def __init__(self, entry: AbortedTxn) -> None:
        self.entry = entry
        self.observed = False


class TxnTracker:
    """Kafka's ``CleanedTransactionMetadata``, over one whole pass: which data batches
    belong to aborted transactions (they go), and when a marker may go (once no batch of
    its transaction is left before it: nothing seen in this pass, which always starts at
    the log's first segment)."""

    def __init__(self, aborted: Iterable[AbortedTxn]) -> None:
        self._pending = deque(sorted(aborted, key=lambda e: (e.first_offset, e.last_offset)))
        self._aborted: dict[int, _AbortedTxn] = {}
        self._committed: set[int] = set()

    def _consume(self, offset: int) -> None:
        pending = self._pending
        while pending and pending[0].first_offset <= offset:
            e = pending.popleft()
            self._aborted.setdefault(e.producer_id, _AbortedTxn(e))

    def on_batch(self, header: BatchHeader, data: bytes) -> tuple[bool, AbortedTxn | None]:
        """(the batch may be discarded, the aborted-transaction entry to keep with it)."""
        self._consume(header.last_offset)
        pid = int(header.producer_id)
        if header.is_control:
            if header.records_count == 0:
                return True, None  # an emptied marker: already cleaned
            marker = parse_marker(data, header)
            if marker is None:
                return False, None
            if not marker[0]:
                aborted = self._aborted.pop(pid, None)
                if aborted is not None and aborted.observed:
                    return False, aborted.entry
                return True, None
            if pid in self._committed:
                self._committed.discard(pid)
                return False, None
            return True, None
        if header.is_transactional:
            aborted = self._aborted.get(pid)
            if aborted is not None:
                aborted.observed = True
                return True, None
            self._committed.add(pid)
        return False, None


# -- encoding ----------------------------------------------------------------------------


def _encode_bytes(out: bytearray, value: bytes | None) -> None:
    if value is None:
        out += b"\x01"  # zigzag(-1)
    else:
        out += encode_varint(len(value))
        out += value


def _encode_record(out: bytearray, record: Record, offset_delta: int, ts_delta: int) -> None:
    body = bytearray((record.attributes & 0xFF,))
    body += encode_varint(ts_delta)
    body += encode_varint(offset_delta)
    _encode_bytes(body, record.key)
    _encode_bytes(body, record.value)
    body += encode_varint(len(record.headers))
    for hkey, hvalue in record.headers:
        kb = hkey.encode("utf-8", "surrogateescape")
        body += encode_varint(len(kb))
        body += kb
        _encode_bytes(body, hvalue)
    out += encode_varint(len(body))
    out += body


def rebuild_batch(header: BatchHeader, records: list[Record], horizon_ms: int | None) -> bytes:
    """A batch holding ``records`` (a subset of the batch ``header``'s, in order) with the
    same base offset, last offset delta, producer fields, leader epoch, codec and timestamp
    type. With ``horizon_ms`` the delete-horizon attribute is set and the base timestamp
    holds it (KIP-534; record timestamps stay exact, as deltas from it). Without records:
    an empty batch (no compression, timestamps = the original max timestamp), which keeps a
    producer's last sequence and epoch."""
    attributes = int(header.attributes) & _KEEP_ATTRIBUTES
    base = int(header.base_offset)
    append_time = header.is_log_append_time
    if not records:
        attributes &= ~COMPRESSION_MASK
        base_ts = max_ts = int(header.max_timestamp)
        payload: bytes | bytearray = b""
    else:
        if horizon_ms is not None:
            attributes |= DELETE_HORIZON_MASK
            base_ts = horizon_ms
        else:
            base_ts = int(header.base_timestamp)
        block = bytearray()
        for r in records:
            _encode_record(block, r, r.offset - base, 0 if append_time else r.timestamp - base_ts)
        max_ts = (
            int(header.max_timestamp) if append_time else max(r.timestamp for r in records)
        )
        codec = header.compression
        payload = compress(codec, block) if codec else block
    size = HEADER_SIZE + len(payload)
    out = bytearray(size)
    _HEADER.pack_into(
        out,
        0,
        base,
        size - LOG_OVERHEAD,
        int(header.partition_leader_epoch),
        MAGIC_V2,
        0,
        attributes,
        int(header.last_offset_delta),
        base_ts,
        max_ts,
        int(header.producer_id),
        int(header.producer_epoch),
        int(header.base_sequence),
        len(records),
    )
    out[HEADER_SIZE:] = payload
    _UINT32.pack_into(out, 17, crc32c(memoryview(out)[21:]))
    return bytes(out)


# -- one clean ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CleanJob:
    """Everything the rewrite of one clean needs, as plain data: what the broker's process
    plans under the log's lock and hands to :func:`rewrite` (on its own thread, or in a
    worker process: :mod:`.cleaner_worker`)."""

    directory: Path
    read_paths: tuple[str, ...]
    """Per segment ``[0, k)``: where the worker process opens it (``/proc/<pid>/fd/<n>`` of
    the broker's duplicated descriptor where there is one, so a segment deleted meanwhile
    still reads as it was planned)."""
    bases: tuple[int, ...]
    """Base offsets of segments ``[0, k]`` (the last one: the first uncleanable segment)."""
    sizes: tuple[int, ...]
    modified_ms: tuple[int, ...]
    k: int
    first_dirty: int
    now_ms: int
    delete_retention_ms: int
    segment_bytes: int
    index_interval_bytes: int
    aborted: tuple[AbortedTxn, ...]
    last_records: dict[int, tuple[int, int]]
    dedupe_buffer_bytes: int
    io_max_bytes_per_second: float = math.inf

    def path(self, i: int) -> Path:
        return self.directory / segment_name(self.bases[i], LOG_SUFFIX)


@dataclass(slots=True)
class _Pass:
    now_ms: int
    delete_retention_ms: int
    end_offset: int
    offset_map: OffsetMap
    txn: TxnTracker
    last_records: dict[int, tuple[int, int]]
    stats: CleanStats
    throttle: Throttler | None
    stop: threading.Event | None
    next_horizon: int = -1
    yield_gil: bool = True

    def check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise CleanAborted("the cleaner is stopping")

    def note_horizon(self, horizon: int) -> None:
        if self.next_horizon < 0 or horizon < self.next_horizon:
            self.next_horizon = horizon


def _block(data: bytes, header: BatchHeader, path: Path) -> bytes:
    """The batch's records block, decompressed, after checking its framing and CRC."""
    try:
        validate_batch(data, 0, check_crc=True)
        return records_block(data, header)
    except InvalidBatch as exc:
        raise CleanerError(f"{path}: unreadable batch: {exc}") from exc


def _build_offset_map(job: CleanJob, fds: list[int], first: int, p: _Pass) -> int:
    """Fill the map from the dirty records of segments ``[first, k)``; returns the end
    offset (first offset not in the map's range)."""
    offset_map = p.offset_map
    first_dirty = job.first_dirty
    txn = TxnTracker(job.aborted)
    for i in range(first, job.k):
        path = job.path(i)
        for data in _iter_batches(fds[i], job.sizes[i], path, p.yield_gil):
            p.check_stop()
            header = BatchHeader(data)
            if p.throttle is not None:
                p.throttle.note(len(data))
            p.stats.bytes_read += len(data)
            discard, _ = txn.on_batch(header, data)
            if header.is_control or discard or header.last_offset < first_dirty:
                continue
            block = _block(data, header, path)
            try:
                stop = offset_map.put_block(block, int(header.records_count), int(header.base_offset), first_dirty)
            except ValueError as exc:
                raise CleanerError(f"{path}: unreadable batch: {exc}") from exc
            if stop >= 0:
                p.stats.map_full = True
                return stop
    return job.bases[job.k]


def _decode(data: bytes, path: Path) -> list[Record]:
    try:
        return decode_records(data, check_crc=True)
    except InvalidBatch as exc:
        raise CleanerError(f"{path}: unreadable batch: {exc}") from exc


def _is_last_of_producer(header: BatchHeader, last_records: dict[int, tuple[int, int]]) -> bool:
    """Kafka keeps the batch holding a live producer's last sequence (or, when its last
    entry is a marker, that marker: it carries the latest epoch) even if it empties."""
    pid = int(header.producer_id)
    last = last_records.get(pid) if pid >= 0 else None
    if last is None:
        return False
    if last[0] >= 0:
        return header.last_offset == last[0]
    return header.is_control and int(header.producer_epoch) == last[1]


def _clean_batch(data: bytes, path: Path, p: _Pass, entries: list[AbortedTxn]) -> bytes | None:
    """The batch as it must be written to the cleaned segment, or None when it goes."""
    header = BatchHeader(data)
    stats = p.stats
    discard, entry = p.txn.on_batch(header, data)
    horizon = int(header.base_timestamp) if header.attributes & DELETE_HORIZON_MASK else None
    count = max(int(header.records_count), 0)
    stats.records_read += count
    if header.is_control:
        # a marker goes once its transaction has no batch left and its horizon has passed
        discard_records = discard and horizon is not None and horizon <= p.now_ms
    else:
        discard_records = discard  # aborted data
    kept: list[Record]
    if discard_records:
        kept = []
        if header.is_control:
            stats.markers_removed += count
        else:
            stats.aborted_records_removed += count
        stats.records_removed += count
        need_horizon = False
    elif header.is_control:
        need_horizon = discard and horizon is None and count > 0
        if not need_horizon:
            if entry is not None:
                entries.append(entry)
            if discard and horizon is not None:
                p.note_horizon(horizon)
            return data
        kept = _decode(data, path)
    elif header.base_offset >= p.end_offset:
        return data  # wholly beyond the offset map: untouched
    else:
        # the records' keys and offsets only, without Record objects (cleaner_scan)
        block = _block(data, header, path)
        drop_tombstones = horizon is not None and p.now_ms >= horizon
        try:
            kept_block, n_kept, invalid, tombstones_removed, tombstones, max_ts_delta = filter_records(
                block, count, int(header.base_offset), p.end_offset, p.offset_map.keys, drop_tombstones
            )
        except ValueError as exc:
            raise CleanerError(f"{path}: unreadable batch: {exc}") from exc
        stats.invalid_records_removed += invalid
        stats.tombstones_removed += tombstones_removed
        stats.records_removed += count - n_kept
        need_horizon = tombstones and horizon is None
        if kept_block is None and not need_horizon:
            if tombstones and horizon is not None:
                p.note_horizon(horizon)
            return data  # byte for byte
        if n_kept == 0 and not _is_last_of_producer(header, p.last_records):
            return None
        stats.batches_rewritten += 1
        if not need_horizon and n_kept > 0:
            # the kept records' bytes stay as they are: base offset and base timestamp
            # (the horizon, if set) do not change, so neither do their deltas
            if horizon is not None:
                p.note_horizon(horizon)
            return _rebuild_raw(header, kept_block or b"", n_kept, max_ts_delta, horizon)
        if n_kept == 0:
            return rebuild_batch(header, [], None)
        # tombstones kept in a batch without a delete horizon yet: the base timestamp
        # becomes the horizon and every timestamp delta changes (once per batch)
        records = _decode(data, path)
        kept = _kept_records(records, p, horizon)
    if not kept and not _is_last_of_producer(header, p.last_records):
        return None
    if need_horizon:
        horizon = p.now_ms + p.delete_retention_ms
    if kept and horizon is not None:
        p.note_horizon(horizon)
    if header.is_control or discard_records:
        stats.batches_rewritten += 1
    return rebuild_batch(header, kept, horizon if kept else None)


def _kept_records(records: list[Record], p: _Pass, horizon: int | None) -> list[Record]:
    """The records of a data batch that stay (the rule :func:`.cleaner_scan.filter_records`
    applies; here for the batches whose records must be encoded again)."""
    kept = []
    for r in records:
        if r.offset >= p.end_offset:
            keep = True
        elif r.key is None:
            keep = False
        elif r.offset < p.offset_map.get(r.key):
            keep = False  # superseded
        elif r.value is None:
            keep = horizon is None or p.now_ms < horizon
        else:
            keep = True
        if keep:
            kept.append(r)
    return kept


def _rebuild_raw(header: BatchHeader, block: bytes, count: int, max_ts_delta: int, horizon_ms: int | None) -> bytes:
    """A batch of ``count`` records whose encoded bytes are ``block`` (a subset of the
    batch ``header``'s, unchanged), with the same base offset, last offset delta, producer
    fields, leader epoch, codec, timestamp type and base timestamp; CRC computed again."""
    attributes = int(header.attributes) & _KEEP_ATTRIBUTES
    if horizon_ms is not None:
        attributes |= DELETE_HORIZON_MASK
    base_ts = int(header.base_timestamp)
    max_ts = int(header.max_timestamp) if header.is_log_append_time else base_ts + max_ts_delta
    codec = header.compression
    payload = compress(codec, block) if codec else block
    size = HEADER_SIZE + len(payload)
    out = bytearray(size)
    _HEADER.pack_into(
        out,
        0,
        int(header.base_offset),
        size - LOG_OVERHEAD,
        int(header.partition_leader_epoch),
        MAGIC_V2,
        0,
        attributes,
        int(header.last_offset_delta),
        base_ts,
        max_ts,
        int(header.producer_id),
        int(header.producer_epoch),
        int(header.base_sequence),
        count,
    )
    out[HEADER_SIZE:] = payload
    _UINT32.pack_into(out, 17, crc32c(memoryview(out)[21:]))
    return bytes(out)


#: "never": the horizon of tombstones and markers in tiered logs
_FOREVER_MS = 1 << 60


def _delete_retention_ms(config: LogConfig) -> int:
    """delete.retention.ms, except for a tiered log, whose tombstones and markers stay for
    ever: remote segments are never compacted again, so an older value of a key (or the
    records of an aborted transaction) may sit in the object store, and only the tombstone
    (or the ABORT marker and its index entry) tells a reader from offset 0 that it is gone.
    Removing it locally, before or after the segment holding it is copied, would bring the
    deleted key back (the same holds for aborted records and their marker)."""
    return _FOREVER_MS if config.remote_storage_enable else config.delete_retention_ms


def _groups(job: CleanJob, n: int) -> list[list[int]]:
    """Consecutive runs of the first ``n`` segments whose sizes add up to at most
    segment.bytes (and whose offsets fit in int32 relative offsets)."""
    limit = min(job.segment_bytes, MAX_SEGMENT_SIZE)
    groups: list[list[int]] = []
    i = 0
    while i < n:
        group = [i]
        size = job.sizes[i]
        base = job.bases[i]
        i += 1
        while (
            i < n
            and size + job.sizes[i] <= limit
            and job.bases[i + 1] - 1 - base <= MAX_RELATIVE_OFFSET
        ):
            size += job.sizes[i]
            group.append(i)
            i += 1
        groups.append(group)
    return groups


def _write_group(
    job: CleanJob, fds: list[int], group: list[int], p: _Pass, fsync: Fsync
) -> tuple[Segment, list[AbortedTxn]]:
    directory = job.directory
    base = job.bases[group[0]]
    fd = os.open(cleaned_path(directory, base, LOG_SUFFIX), _OPEN_FLAGS, 0o644)
    new = Segment(directory, base, fd, job.index_interval_bytes)
    entries: list[AbortedTxn] = []
    try:
        for i in group:
            path = job.path(i)
            for data in _iter_batches(fds[i], job.sizes[i], path, p.yield_gil):
                p.check_stop()
                p.stats.bytes_read += len(data)
                out = _clean_batch(data, path, p, entries)
                nbytes = len(data)
                if out is not None:
                    h = BatchHeader(out)
                    new.append(out, int(h.base_offset), h.last_offset, int(h.max_timestamp), p.now_ms)
                    p.stats.bytes_written += len(out)
                    nbytes += len(out)
                if p.throttle is not None:
                    p.throttle.note(nbytes)
        new.seal()
        fsync(fd)
        new.synced_size = new.size
        new.first_append_ms = -1
        write_file(cleaned_path(directory, base, INDEX_SUFFIX), new.index.to_bytes(), fsync)
        write_file(cleaned_path(directory, base, TIME_INDEX_SUFFIX), new.time_index.to_bytes(), fsync)
        if entries:
            write_file(cleaned_path(directory, base, TXN_INDEX_SUFFIX), encode_entries(entries), fsync)
        new.aborted = entries
        new.txn_loaded = True
        new.txn_dirty = False
        modified = max(job.modified_ms[i] for i in group)
        new.last_modified_ms = modified
        os.utime(cleaned_path(directory, base, LOG_SUFFIX), ns=(modified * 1_000_000,) * 2)
        fsync_dir(directory, fsync)
    except BaseException:
        new.close()
        discard_cleaned(directory, base)
        raise
    return new, entries


@dataclass(slots=True)
class GroupResult:
    """One group of segments cleaned into one (``.cleaned`` files, fsynced), or into nothing
    (``segment`` None: the group simply goes)."""

    group: list[int]
    base_offset: int
    segment: Segment | None
    entries: list[AbortedTxn]


def _first_segment(job: CleanJob) -> int:
    first = 0
    while first < job.k and job.bases[first + 1] <= job.first_dirty:
        first += 1
    return first


def rewrite(
    job: CleanJob,
    fds: list[int],
    stats: CleanStats,
    *,
    throttle: Throttler | None = None,
    stop: threading.Event | None = None,
    fsync: Fsync = os.fsync,
    yield_gil: bool = True,
) -> Generator[GroupResult, None, None]:
    """Steps 2 and 3 of a clean (offset map, then the ``.cleaned`` files of each group,
    yielded one group at a time so the caller may swap each in before the next is
    written). Touches nothing but the files: ``fds`` are descriptors of the job's segments.
    ``stats`` gets ``end_offset``, ``map_entries``, ``segments_before``,
    ``next_delete_horizon_ms`` and the counts."""
    p = _Pass(
        job.now_ms,
        job.delete_retention_ms,
        job.first_dirty,
        OffsetMap(job.dedupe_buffer_bytes),
        TxnTracker(job.aborted),
        job.last_records,
        stats,
        throttle,
        stop,
        yield_gil=yield_gil,
    )
    first = _first_segment(job)
    if first < job.k:
        p.end_offset = _build_offset_map(job, fds, first, p)
    else:
        p.end_offset = job.first_dirty  # nothing dirty: a pass for expired tombstones/markers
    stats.end_offset = max(p.end_offset, job.first_dirty)
    stats.map_entries = len(p.offset_map)
    n = job.k
    if stats.map_full:  # segments wholly beyond the map's range are left alone
        n = sum(1 for i in range(job.k) if job.bases[i] < p.end_offset)
    stats.segments_before = n
    for group in _groups(job, n):
        p.check_stop()
        new, entries = _write_group(job, fds, group, p, fsync)
        stats.next_delete_horizon_ms = p.next_horizon
        if new.size == 0 and group[0] != 0:
            # cleaned down to nothing: the group simply goes (the first segment stays,
            # empty, to hold the log start offset)
            new.close()
            discard_cleaned(job.directory, new.base_offset)
            yield GroupResult(group, new.base_offset, None, entries)
        else:
            yield GroupResult(group, new.base_offset, new, entries)
    stats.next_delete_horizon_ms = p.next_horizon


def make_job(view: CleanerView, state: CleanerState, now_ms: int, dedupe_buffer_bytes: int) -> CleanJob | None:
    """Step 1 (the plan) as a :class:`CleanJob`; None when nothing is cleanable."""
    first_dirty, k, _ = bounds(view, state, now_ms)
    if k == 0:
        return None
    pid = os.getpid()
    proc = Path(f"/proc/{pid}/fd")
    read_paths = tuple(
        str(proc / str(view.fds[i])) if view.fds and proc.is_dir() else str(view.segments[i].path(LOG_SUFFIX))
        for i in range(k)
    )
    return CleanJob(
        directory=view.directory,
        read_paths=read_paths,
        bases=tuple(s.base_offset for s in view.segments[: k + 1]),
        sizes=tuple(view.sizes[:k]),
        modified_ms=tuple(s.last_modified_ms for s in view.segments[:k]),
        k=k,
        first_dirty=first_dirty,
        now_ms=now_ms,
        delete_retention_ms=_delete_retention_ms(view.config),
        segment_bytes=view.config.segment_bytes,
        index_interval_bytes=view.config.index_interval_bytes,
        aborted=tuple(view.aborted),
        last_records=dict(view.last_records),
        dedupe_buffer_bytes=dedupe_buffer_bytes,
    )


class CleanRunner:
    """Where the rewrite of a clean runs: this base class runs it on the calling thread;
    :class:`riverbed.storage.cleaner_worker.ProcessRunner` in a worker process."""

    def run(
        self,
        job: CleanJob,
        view: CleanerView,
        stats: CleanStats,
        throttle: Throttler | None,
        stop: threading.Event | None,
        fsync: Fsync,
    ) -> Generator[GroupResult, None, None]:
        return rewrite(job, view.fds, stats, throttle=throttle, stop=stop, fsync=fsync)


IN_THREAD: Final = CleanRunner()


def clean_log(
    log: SegmentLog,
    now_ms: int,
    *,
    dedupe_buffer_bytes: int = DEFAULT_DEDUPE_BUFFER_BYTES,
    throttle: Throttler | None = None,
    stop: threading.Event | None = None,
    fsync: Fsync = os.fsync,
    runner: CleanRunner = IN_THREAD,
) -> CleanStats | None:
    """Clean ``log`` now (see the module documentation). None when the log is not compacted
    or has no sealed segment below its first uncleanable offset. Raises
    :class:`CleanerError` when a batch cannot be read (nothing is swapped for that group).
    ``runner``: where the offset map and the rewrite run (this thread by default)."""
    state = log.cleaner_state
    with state.lock:
        if not log.config.cleanup_compact or log.closed:
            return None
        started = time.monotonic()
        cpu = time.thread_time()
        view = log.cleaner_view()
        try:
            stats = _clean(log, view, state, now_ms, dedupe_buffer_bytes, throttle, stop, fsync, started, runner)
            if stats is not None:
                stats.cpu_s = time.thread_time() - cpu
            return stats
        finally:
            view.close()


def _clean(
    log: SegmentLog,
    view: CleanerView,
    state: CleanerState,
    now_ms: int,
    dedupe_buffer_bytes: int,
    throttle: Throttler | None,
    stop: threading.Event | None,
    fsync: Fsync,
    started: float,
    runner: CleanRunner,
) -> CleanStats | None:
    job = make_job(view, state, now_ms, dedupe_buffer_bytes)
    if job is None:
        return None
    first_dirty = job.first_dirty
    stats = CleanStats(first_dirty_offset=first_dirty, log_bytes_before=view.size_bytes)
    results = runner.run(job, view, stats, throttle, stop, fsync)
    try:
        for result in results:
            members = [view.segments[i] for i in result.group]
            replacement = result.segment
            manifest = SwapManifest(
                tuple(s.base_offset for s in members),
                None if replacement is None else replacement.base_offset,
                bool(result.entries),
            )
            if not log.swap_cleaned(members, replacement, manifest):
                if replacement is not None:
                    replacement.close()
                discard_cleaned(view.directory, result.base_offset)
                raise CleanAborted("the log changed during the clean")
            stats.segments_after += replacement is not None
    except CleanAborted as exc:
        logger.info("%s: clean stopped: %s", view.directory, exc)
        stats.aborted = True
    except OSError as exc:
        raise CleanerError(f"{view.directory}: clean failed: {exc}") from exc
    finally:
        # groups written but not handed out (a worker process writes them all first): the
        # runner removes their files
        results.close()
    stats.log_bytes_after = log.size_bytes
    stats.throttled_s = throttle.slept_s if throttle is not None else 0.0
    stats.duration_s = time.monotonic() - started
    if not stats.aborted:
        state.first_dirty_offset = stats.end_offset
        state.next_delete_horizon_ms = stats.next_delete_horizon_ms
    state.last_clean_ms = now_ms
    state.last_stats = stats
    state.cleans += 1
    logger.info(
        "%s: cleaned offsets [%d, %d) below %d: %d -> %d segments, %d -> %d bytes, %d records removed",
        view.directory, first_dirty, stats.end_offset, job.bases[job.k], stats.segments_before,
        stats.segments_after, stats.log_bytes_before, stats.log_bytes_after, stats.records_removed,
    )
    return stats
