"""SegmentLog: a partition log made of segment files (the on-disk engine).

Thread-safety. Two locks per log, always taken in this order:

* ``_flush_lock`` serialises everything that fsyncs, closes, truncates or deletes files:
  the flusher's cycle, truncation, DeleteRecords, retention, close. The flusher holds it
  across its fsyncs, so nobody can close or shrink a file under an fsync.
* ``_lock`` guards the in-memory state (segment list, offsets, indexes) and is held only
  briefly: by append (one ``pwrite``), by read (a few ``pread``), and by the flusher to take
  a snapshot before its fsyncs and to publish the result after them. Append never waits for
  an fsync.

Appends and reads are expected from one thread (the event loop); the flusher thread of
:class:`riverbed.storage.manager.LogManager` calls :meth:`SegmentLog.flush_cycle`.

Producer and transaction state (``producers``, and each segment's aborted transactions) is
changed under ``_lock``. A producer snapshot is captured at every roll and written by the
next flush cycle, after the index files (``.txnindex`` included) of the segments below it
are on disk: recovery after a crash replays the batches after the snapshot, which rebuilds
everything that could be missing (see "Transactions" in ``docs/storage-format.md``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.records.batch import (
    BatchHeader,
    set_base_offset,
    set_log_append_time,
)
from riverbed.protocol.records.records import build_control_batch

from .api import AppendInfo, LogConfig, NeedsRemote, OffsetOutOfRange, ProducerStateView, ReadResult
from .cleaner import (
    DEFAULT_DEDUPE_BUFFER_BYTES,
    CleanerInfo,
    CleanerState,
    CleanerView,
    CleanStats,
    Throttler,
    clean_log,
    cleaner_info,
)
from .files import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    TXN_INDEX_SUFFIX,
    Fsync,
    atomic_write,
    fsync_dir,
    write_partition_metadata,
)
from .producer_state import (
    ProducerStateTable,
    check_client_batch,
    check_marker_producer,
    parse_marker,
)
from .recovery import adopt_as_active, recover_partition
from .remote.api import SealedSegment, StagedSegment
from .remote.metadata import METADATA_FILE, MetadataCorrupt, RemoteLogMetadata
from .remote.reader import RemoteLogReader
from .remote.store import ObjectStoreError
from .segment import Segment
from .swap import SwapManifest, apply_swap, commit_swap, finish_swap
from .txn_index import AbortedTxn, collect_aborted

logger = logging.getLogger(__name__)
PRODUCER_SNAPSHOT = "producer.snapshot"


@dataclass(frozen=True, slots=True)
class LogHooks:
    """How a log asks its owner (the LogManager) for background work."""

    flush_soon: Callable[[SegmentLog], None]
    flush_later: Callable[[SegmentLog, float], None]
    recovery_point_lowered: Callable[[SegmentLog], None]
    config_changed: Callable[[SegmentLog], None] | None = None
    """Called after :meth:`SegmentLog.update_config` (tiering may have been switched on)."""


def _storage_error(message: str) -> KafkaError:
    return KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, message)


class SegmentLog:
    """Implements :class:`riverbed.storage.api.PartitionLog` over ``directory``.
    Build one with :meth:`create` or :meth:`load`."""

    def __init__(
        self,
        directory: Path,
        topic: str,
        partition: int,
        config: LogConfig,
        segments: list[Segment],
        log_start_offset: int,
        *,
        fsync: Fsync,
        clock: Callable[[], float],
    ) -> None:
        self._dir = directory
        self._topic = topic
        self._partition = partition
        self._config = config
        self._fsync = fsync
        self._clock = clock
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._segments = segments
        self._bases = [s.base_offset for s in segments]
        self._log_start = log_start_offset
        self._leo = segments[-1].next_offset
        self._hw = self._leo
        self._durable = self._leo
        self._size = sum(s.size for s in segments)
        self._unfinalized: list[Segment] = []  # rolled, not yet fsynced with their indexes
        self._dir_dirty = False
        self._flush_requested = False
        self._flush_scheduled = False
        self._unflushed_messages = 0
        self._closed = False
        self._failed: str | None = None
        self.hooks: LogHooks | None = None
        self.producers = ProducerStateTable()
        self._last_snapshot: tuple[int, bytes] | None = None
        """The latest producer snapshot taken (offset, bytes): the base for rebuilding the
        producer state after a truncation."""
        self._pending_snapshot: tuple[int, bytes] | None = None
        """A snapshot taken at a roll or truncation that the next flush cycle writes."""
        self.cleaner_state = CleanerState()
        """The log cleaner's memory of this log (first dirty offset, last clean)."""
        self._remote: tuple[RemoteLogMetadata, RemoteLogReader] | None = None
        """Set by :meth:`attach_remote` (tiered storage): the partition's remote-log
        metadata and the reader serving offsets below the local log start."""

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path,
        topic: str,
        partition: int,
        config: LogConfig,
        *,
        fsync: Fsync = os.fsync,
        clock: Callable[[], float] = time.time,
    ) -> SegmentLog:
        """A new, empty log in a new directory."""
        directory.mkdir(parents=True)
        write_partition_metadata(directory, topic, partition, 0, fsync)
        segment = Segment.create(directory, 0, config.index_interval_bytes, int(clock() * 1000))
        fsync_dir(directory, fsync)
        fsync_dir(directory.parent, fsync)
        return cls(directory, topic, partition, config, [segment], 0, fsync=fsync, clock=clock)

    @classmethod
    def load(
        cls,
        directory: Path,
        topic: str,
        partition: int,
        config: LogConfig,
        *,
        clean: bool = False,
        recovery_point: int | None = None,
        fsync: Fsync = os.fsync,
        clock: Callable[[], float] = time.time,
    ) -> SegmentLog:
        """Open an existing log directory and recover it.

        After a clean shutdown every segment's indexes are trusted (after sanity checks).
        Otherwise every segment at or above ``recovery_point`` (None: all of them) and the
        last one are validated batch by batch; the first torn or corrupt batch truncates
        the log there and later segments are deleted. Indexes that fail their sanity checks
        are rebuilt."""
        segments, log_start = recover_partition(
            directory,
            topic,
            partition,
            config.index_interval_bytes,
            clean=clean,
            recovery_point=recovery_point,
            fsync=fsync,
            now_ms=int(clock() * 1000),
            remote_coverage=_remote_coverage(directory, topic, partition),
        )
        log = cls(
            directory, topic, partition, config, segments, log_start, fsync=fsync, clock=clock
        )
        log._rebuild_producer_state()
        return log

    def _rebuild_producer_state(self) -> None:
        """Read every segment's transaction index, load the producer snapshot, then replay
        the batch headers written after it: that restores the idempotence state, the
        ongoing transactions, and the aborted-transaction entries of markers after the
        snapshot (files missing, short or torn after a crash included). A snapshot beyond
        the recovered log end (the tail was truncated) is ignored. After a clean shutdown
        the snapshot is at the log end and nothing is replayed."""
        for segment in self._segments:
            segment.load_txn_index()
        start = self._log_start
        path = self._dir / PRODUCER_SNAPSHOT
        usable = False
        try:
            data = path.read_bytes()
            offset, table = ProducerStateTable.from_bytes(data)
            if offset <= self._leo:
                self.producers, start = table, max(offset, self._log_start)
                self._last_snapshot = (offset, data)
                usable = True
        except FileNotFoundError:
            usable = True
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("%s-%d: ignoring unreadable producer snapshot: %s", self._topic, self._partition, exc)
        rewritten = False
        if not usable:
            # Beyond the recovered end (or unreadable): once new batches reach its offset
            # it would describe a history that no longer exists.
            path.unlink()
            rewritten = True
        self._replay_locked(start)
        self.producers.unreplicated.clear()  # the high watermark is the log end
        for segment in self._segments:  # so that no dropped entry lingers on disk
            rewritten |= segment.txn_dirty
            segment.write_txn_index(self._fsync)
        if rewritten:
            fsync_dir(self._dir, self._fsync)

    def _replay_locked(self, start: int) -> None:
        """Apply the batches from ``start`` (a batch boundary) to the log end to the
        producer table, as their appends did; the ABORT markers that end a transaction
        (re)create their transaction-index entries. Other entries already present for
        markers at or after ``start`` (a file may hold stale or garbage ones after a crash)
        are kept only if an ABORT marker of that producer is at their last offset and their
        first offset is before ``start`` (a transaction the replay could not see begin)."""
        if start >= self._leo:
            return
        aborts: set[tuple[int, int]] = set()
        produced: set[tuple[int, int]] = set()
        i = max(bisect_right(self._bases, start) - 1, 0)
        for segment in self._segments[i:]:
            if segment.size == 0 or segment.next_offset <= start:
                continue
            for position, header in segment.iter_headers(segment.find_position(start), segment.size):
                if header.next_offset <= start or header.producer_id < 0:
                    continue
                base = int(header.base_offset)
                if not header.is_control:
                    self.producers.record_header(header, base, header.last_offset)
                    continue
                data = os.pread(segment.fd, header.size, position)
                marker = parse_marker(data, BatchHeader(data))
                if marker is None:
                    continue
                key = (int(header.producer_id), base)
                if not marker[0]:
                    aborts.add(key)
                if self._apply_marker_locked(
                    segment, key[0], int(header.producer_epoch), marker, base, int(header.max_timestamp)
                ):
                    produced.add(key)

        def keep(e: AbortedTxn) -> bool:
            key = (e.producer_id, e.last_offset)
            return (
                e.last_offset < start
                or key in produced
                or (key in aborts and e.first_offset < start)
            )

        for segment in self._segments[i:]:
            segment.keep_aborted(keep)

    def _apply_marker_locked(
        self,
        segment: Segment,
        producer_id: int,
        producer_epoch: int,
        marker: tuple[bool, int],
        offset: int,
        timestamp: int,
    ) -> bool:
        """Apply a marker stored in ``segment``; True when it aborted a transaction (and
        so added an entry to the segment's transaction index)."""
        commit, coordinator_epoch = marker
        producers = self.producers
        done = producers.record_marker(
            producer_id, producer_epoch, commit, coordinator_epoch, offset, timestamp
        )
        if done is None or not done.aborted:
            return False
        lso = producers.last_stable_after(done)
        segment.add_aborted(AbortedTxn(producer_id, done.first_offset, offset, lso))
        return True

    def _take_snapshot_locked(self) -> None:
        """Capture the producer state at the log end, for the next flush cycle to write."""
        snapshot = (self._leo, self.producers.to_bytes(self._leo))
        self._last_snapshot = self._pending_snapshot = snapshot

    # -- PartitionLog properties -----------------------------------------------------------

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def partition(self) -> int:
        return self._partition

    @property
    def config(self) -> LogConfig:
        return self._config

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def log_start_offset(self) -> int:
        """The partition's log start offset, remote data included (without a remote tier
        attached, offsets below the local segments are not readable, so not counted)."""
        if self._remote is None:
            return max(self._log_start, self._bases[0])
        return self._log_start

    @property
    def local_log_start_offset(self) -> int:
        """The first offset held by a local segment (tiered storage: above the log start
        once older segments live only in the object store)."""
        return max(self._log_start, self._bases[0])

    @property
    def log_end_offset(self) -> int:
        return self._leo

    @property
    def high_watermark(self) -> int:
        return self._hw

    @property
    def durable_offset(self) -> int:
        """Everything below this offset has been fsynced."""
        return self._durable

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def last_stable_offset(self) -> int:
        with self._lock:
            return self._lso_locked()

    def _lso_locked(self) -> int:
        hw = self._hw
        first = self.producers.first_unstable_offset(hw)
        lso = hw if first is None else min(hw, first)
        return max(lso, self._log_start)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def recovery_point(self) -> int:
        """Base offset of the first segment whose data or indexes may not be on disk yet;
        recovery after a crash validates from here on."""
        with self._lock:
            if self._unfinalized:
                return self._unfinalized[0].base_offset
            return self._segments[-1].base_offset

    def segment_base_offsets(self) -> list[int]:
        with self._lock:
            return list(self._bases)

    # -- append ----------------------------------------------------------------------------

    def append(
        self,
        batch: bytearray,
        *,
        now_ms: int,
        log_append_time: bool = False,
        origin_coordinator: bool = False,
    ) -> AppendInfo:
        header = BatchHeader(batch)
        if header.size != len(batch):
            raise KafkaError(ErrorCode.CORRUPT_MESSAGE, "expected exactly one record batch")
        check_client_batch(header)
        if header.producer_id >= 0:
            duplicate = self.producers.check_header(header, origin_coordinator=origin_coordinator)
            if duplicate is not None:
                return AppendInfo(duplicate.first_offset, duplicate.last_offset, -1, self._log_start)
        max_timestamp = int(header.max_timestamp)
        append_time = -1
        if log_append_time:
            set_log_append_time(batch, now_ms)
            append_time = max_timestamp = now_ms
        base, last, log_start = self._store(batch, header, max_timestamp, now_ms, None)
        return AppendInfo(base, last, append_time, log_start)

    def append_marker(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        *,
        now_ms: int,
    ) -> AppendInfo:
        check_marker_producer(producer_id, producer_epoch)
        self.producers.check_marker(producer_id, producer_epoch, coordinator_epoch)
        batch = build_control_batch(
            producer_id, producer_epoch, commit, coordinator_epoch, 0, now_ms
        )
        header = BatchHeader(batch)
        base, _, log_start = self._store(
            batch, header, now_ms, now_ms, (commit, coordinator_epoch)
        )
        return AppendInfo(base, base, -1, log_start)

    def _store(
        self,
        batch: bytearray,
        header: BatchHeader,
        max_timestamp: int,
        now_ms: int,
        marker: tuple[bool, int] | None,
    ) -> tuple[int, int, int]:
        """Write a checked batch at the log end and account for it (producer state, flush
        requests): (base offset, last offset, log start offset)."""
        nbytes = len(batch)
        delta = int(header.last_offset_delta)
        config = self._config
        soon = later = False
        with self._lock:
            if self._closed or self._failed is not None:
                raise _storage_error(self._failed or "log is closed")
            base = self._leo
            last = base + delta
            segment = self._segments[-1]
            if not segment.can_hold(nbytes, last, config.segment_bytes) or (
                segment.size and now_ms - segment.first_append_ms > config.roll_ms
            ):
                segment = self._roll_locked(now_ms)
                soon = not self._flush_requested
                self._flush_requested = True
            set_base_offset(batch, base)
            segment.append(batch, base, last, max_timestamp, now_ms)
            if marker is not None:
                self._apply_marker_locked(
                    segment,
                    int(header.producer_id),
                    int(header.producer_epoch),
                    marker,
                    base,
                    now_ms,
                )
            elif header.producer_id >= 0:
                self.producers.record_header(header, base, last)
            self._leo = last + 1
            self._size += nbytes
            if config.flush_messages == 1:
                if not self._flush_requested:
                    self._flush_requested = soon = True
            else:
                self._hw = self._leo
                self._unflushed_messages += header.records_count
                if self._unflushed_messages >= config.flush_messages:
                    if not self._flush_requested:
                        self._flush_requested = soon = True
                elif not self._flush_scheduled:
                    self._flush_scheduled = later = True
            log_start = self._log_start
        hooks = self.hooks
        if hooks is not None:
            if soon:
                hooks.flush_soon(self)
            elif later:
                hooks.flush_later(self, config.flush_ms / 1000)
        return base, last, log_start

    def roll(self, now_ms: int | None = None) -> bool:
        """Start a new segment now (if the active one holds anything)."""
        with self._lock:
            self._check_open()
            if self._segments[-1].size == 0:
                return False
            self._roll_locked(self._now_ms() if now_ms is None else now_ms)
            soon = not self._flush_requested
            self._flush_requested = True
        if soon and self.hooks is not None:
            self.hooks.flush_soon(self)
        return True

    def _roll_locked(self, now_ms: int) -> Segment:
        old = self._segments[-1]
        old.seal()
        # once the flusher has written it, recovery after a crash replays only the batches
        # after this point
        self._take_snapshot_locked()
        new = Segment.create(self._dir, self._leo, self._config.index_interval_bytes, now_ms)
        self._segments.append(new)
        self._bases.append(new.base_offset)
        self._unfinalized.append(old)
        self._dir_dirty = True
        return new

    # -- read ------------------------------------------------------------------------------

    def read(
        self,
        offset: int,
        max_bytes: int,
        *,
        min_one_batch: bool = True,
        isolation_upper: int | None = None,
        remote_ok: bool = True,
    ) -> ReadResult:
        with self._lock:
            self._check_open()
            remote = self._remote
            start = self._log_start if remote is not None else max(self._log_start, self._bases[0])
            if offset < start or offset > self._leo:
                raise OffsetOutOfRange(
                    f"offset {offset} outside [{start}, {self._leo}] "
                    f"of {self._topic}-{self._partition}"
                )
            hw = self._hw
            upper = hw if isolation_upper is None else min(hw, isolation_upper)
            if remote is None or offset >= self._bases[0]:  # local data: the fast path
                records: bytes | memoryview = b""
                if offset < upper:
                    i = max(bisect_right(self._bases, offset) - 1, 0)
                    for segment in self._segments[i:]:
                        if segment.base_offset >= upper:
                            break
                        data = segment.read(offset, max_bytes, upper, min_one_batch)
                        if data is not None:
                            records = data
                            break
                return ReadResult(records, hw, start, self._lso_locked())
            result = ReadResult(b"", hw, start, self._lso_locked())
            local_start = self._bases[0]
        # below the local log start: the object store (blocking; the broker calls this
        # off the event loop)
        assert remote is not None
        if offset >= upper:
            return result
        if not remote_ok:  # decided under the lock: the caller must come back off the loop
            raise NeedsRemote(f"{self._topic}-{self._partition}@{offset}")
        metadata, reader = remote
        try:
            data = reader.read(
                metadata, offset, max_bytes, upper=upper, min_one_batch=min_one_batch
            )
        except ObjectStoreError as exc:
            raise _storage_error(f"remote read of {self._topic}-{self._partition}: {exc}") from exc
        if data is None:  # nothing remote at or after the offset: continue locally
            return self.read(
                max(offset, local_start),
                max_bytes,
                min_one_batch=min_one_batch,
                isolation_upper=isolation_upper,
            )
        result.records = data
        return result

    # -- transactions ----------------------------------------------------------------------

    def aborted_transactions(self, start_offset: int, upper_offset: int, *, remote_ok: bool = True) -> list[tuple[int, int]]:
        found: list[AbortedTxn] = []
        remote = self._remote
        if remote is not None and start_offset < self._bases[0]:
            if not remote_ok:
                raise NeedsRemote(f"{self._topic}-{self._partition}@{start_offset}")
            try:
                found, complete = remote[1].aborted_transactions(
                    remote[0], start_offset, upper_offset
                )
            except ObjectStoreError as exc:
                raise _storage_error(f"remote read of {self._topic}-{self._partition}: {exc}") from exc
            if complete:
                found.sort(key=lambda e: (e.first_offset, e.producer_id))
                return [(e.producer_id, e.first_offset) for e in found]
        with self._lock:
            self._check_open()
            i = max(bisect_right(self._bases, start_offset) - 1, 0)
            for segment in self._segments[i:]:
                if collect_aborted(segment.aborted, start_offset, upper_offset, found):
                    break
        found.sort(key=lambda e: (e.first_offset, e.producer_id))
        return [(e.producer_id, e.first_offset) for e in found]

    def producer_states(self) -> list[ProducerStateView]:
        with self._lock:
            return self.producers.views()

    # -- timestamps ------------------------------------------------------------------------

    def offset_for_timestamp(self, ts: int, *, remote_ok: bool = True) -> tuple[int, int] | None:
        remote = self._remote
        if remote is not None and self._log_start < self._bases[0]:
            if not remote_ok:
                raise NeedsRemote(f"{self._topic}-{self._partition} by timestamp")
            try:
                found = remote[1].offset_for_timestamp(remote[0], ts, self._log_start)
            except ObjectStoreError as exc:
                raise _storage_error(f"remote read of {self._topic}-{self._partition}: {exc}") from exc
            if found is not None and found[0] < self._hw:
                return max(found[0], self._log_start), found[1]
        with self._lock:
            self._check_open()
            log_start = self._log_start
            for segment in self._segments:
                if segment.next_offset <= log_start or segment.max_timestamp < ts:
                    continue
                found = segment.find_timestamp(ts, log_start)
                if found is not None:
                    offset, timestamp = found
                    if offset >= self._hw:
                        return None
                    return max(offset, log_start), timestamp
            return None

    def max_timestamp(self) -> tuple[int, int]:
        best_ts, best_offset = -1, -1
        remote = self._remote
        if remote is not None and self._log_start < self._bases[0]:
            # from the metadata alone (no object-store call): a remote segment whose
            # largest timestamp lies below the log start is skipped
            for s in remote[0].finished():
                if (
                    s.offset_of_max_timestamp >= self._log_start
                    and s.max_timestamp > best_ts
                ):
                    best_ts, best_offset = s.max_timestamp, s.offset_of_max_timestamp
        with self._lock:
            self._check_open()
            log_start = self._log_start
            for segment in self._segments:
                if segment.next_offset <= log_start or segment.max_timestamp <= best_ts:
                    continue
                ts, offset = segment.max_timestamp_from(log_start)
                if ts > best_ts:
                    best_ts, best_offset = ts, offset
            if best_ts < 0 or best_offset >= self._hw:
                return -1, -1  # as Kafka: nothing when the answer is not visible yet
            return max(best_offset, log_start), best_ts

    # -- flushing --------------------------------------------------------------------------

    def flush(self) -> bool:
        hw = self._hw
        self.flush_cycle()
        return self._hw > hw

    def flush_cycle(self) -> tuple[bool, bool]:
        """fsync what was appended so far (one fsync per dirty segment, however many appends
        it covers), write the indexes of rolled segments, then publish the new durable
        offset (and, with flush.messages = 1, the high watermark). Returns (durable offset
        advanced, recovery point advanced)."""
        with self._flush_lock:
            with self._lock:
                if self._closed:
                    return False, False
                self._flush_requested = self._flush_scheduled = False
                self._unflushed_messages = 0
                target = self._leo
                snapshot, self._pending_snapshot = self._pending_snapshot, None
                finalize = list(self._unfinalized)
                to_sync = [s for s in (*finalize, self._segments[-1]) if s.synced_size < s.size]
                sizes = [s.size for s in to_sync]
                dir_dirty = self._dir_dirty
                self._dir_dirty = False
            try:
                for segment in to_sync:
                    self._fsync(segment.fd)
                for segment in finalize:
                    segment.write_indexes(self._fsync)
                if snapshot is not None:
                    # every segment below it now has its index files on disk
                    atomic_write(self._dir / PRODUCER_SNAPSHOT, snapshot[1], self._fsync)
                if dir_dirty:
                    fsync_dir(self._dir, self._fsync)
            except OSError as exc:
                self._failed = f"fsync failed: {exc}"
                logger.error("%s: %s", self._dir, self._failed)
                raise _storage_error(self._failed) from exc
            with self._lock:
                for segment, size in zip(to_sync, sizes, strict=True):
                    segment.synced_size = max(segment.synced_size, size)
                for segment in finalize:
                    if segment in self._unfinalized:
                        self._unfinalized.remove(segment)
                advanced = target > self._durable
                if advanced:
                    self._durable = target
                if self._config.flush_messages == 1 and target > self._hw:
                    self._hw = target
                    # forget completed transactions the HW has passed, even on a log that
                    # nobody reads (the LSO computation is what trims them otherwise)
                    self.producers.first_unstable_offset(self._hw)
            return advanced, bool(finalize)

    # -- log start, retention, truncation ----------------------------------------------------

    def delete_records(self, before_offset: int) -> int:
        with self._flush_lock:
            with self._lock:
                self._check_open()
                target = self._hw if before_offset == -1 else before_offset
                if target < 0 or target > self._hw:
                    raise OffsetOutOfRange(
                        f"cannot delete records before {before_offset}: high watermark is "
                        f"{self._hw}"
                    )
                if target <= self._log_start:
                    return self._log_start
            return self._move_log_start_flush_locked(target)

    def _move_log_start_flush_locked(self, target: int) -> int:
        """Persist ``target`` as the log start, then delete the local segments wholly below
        it (``_flush_lock`` held)."""
        write_partition_metadata(self._dir, self._topic, self._partition, target, self._fsync)
        with self._lock:
            self._log_start = max(self._log_start, target)
            doomed = self._drop_prefix_locked(self._count_below_log_start_locked(0))
            log_start = self._log_start
        for segment in doomed:
            segment.delete()
        return log_start

    def enforce_retention(self, now_ms: int) -> int:
        """Kafka's retention pass: roll the active segment when segment.ms says so (or when
        it is itself expired, so it can go), then delete the oldest sealed segments that are
        wholly below the high watermark and either older than retention.ms (by their largest
        timestamp) or in excess of retention.bytes, or wholly below the log start offset.
        Returns the number of segments deleted. A pass with nothing to do takes only the
        state lock, so it never waits for an fsync in progress."""
        with self._lock:
            self._check_open()
            idle = not self._should_roll_for_retention_locked(now_ms)
            if idle and self._deletable_for_retention_locked(now_ms) == 0:
                return 0
        soon = False
        with self._flush_lock:
            with self._lock:
                self._check_open()
                if self._should_roll_for_retention_locked(now_ms):
                    self._roll_locked(now_ms)
                    soon = not self._flush_requested
                    self._flush_requested = True
                doomed = self._drop_prefix_locked(self._deletable_for_retention_locked(now_ms))
                if doomed:
                    self._log_start = max(self._log_start, self._segments[0].base_offset)
            for segment in doomed:
                segment.delete()
        if soon and self.hooks is not None:
            self.hooks.flush_soon(self)
        return len(doomed)

    def _should_roll_for_retention_locked(self, now_ms: int) -> bool:
        config = self._config
        active = self._segments[-1]
        if not active.size:
            return False
        expired = (
            config.cleanup_delete
            and config.retention_ms >= 0
            and now_ms - active.largest_timestamp > config.retention_ms
        )
        return now_ms - active.first_append_ms > config.roll_ms or (
            expired and active.next_offset <= self._hw
        )

    def _deletable_for_retention_locked(self, now_ms: int) -> int:
        """How many of the oldest segments retention (or the log start offset) removes.
        Time and size retention apply only when cleanup.policy contains ``delete`` (a
        compact-only log, such as ``__consumer_offsets``, keeps every segment)."""
        config = self._config
        segments = self._segments
        limit = len(segments) - 1  # never the active segment
        n = 0
        if not config.cleanup_delete or self._remote is not None:
            # tiered: the remote log manager deletes local segments once they are remote
            return self._count_below_log_start_locked(0)
        if config.retention_ms >= 0:
            while (
                n < limit
                and now_ms - segments[n].largest_timestamp > config.retention_ms
                and segments[n + 1].base_offset <= self._hw
            ):
                n += 1
        if config.retention_bytes >= 0:
            excess = self._size - config.retention_bytes - sum(s.size for s in segments[:n])
            while (
                n < limit
                and excess - segments[n].size >= 0
                and segments[n + 1].base_offset <= self._hw
            ):
                excess -= segments[n].size
                n += 1
        return self._count_below_log_start_locked(n)

    def _count_below_log_start_locked(self, n: int) -> int:
        segments = self._segments
        while n < len(segments) - 1 and segments[n + 1].base_offset <= self._log_start:
            n += 1
        return n

    def _drop_prefix_locked(self, n: int) -> list[Segment]:
        doomed = self._segments[:n]
        del self._segments[:n]
        del self._bases[:n]
        for segment in doomed:
            self._size -= segment.size
            if segment in self._unfinalized:
                self._unfinalized.remove(segment)
        return doomed

    def truncate_to(self, offset: int) -> None:
        with self._flush_lock:
            with self._lock:
                self._check_open()
                if offset >= self._leo:
                    return
                if offset < 0:
                    raise OffsetOutOfRange(f"cannot truncate to {offset}")
                (self._dir / PRODUCER_SNAPSHOT).unlink(missing_ok=True)
                now_ms = self._now_ms()
                old_start = self._log_start
                doomed: list[Segment] = []
                if offset < self._log_start or offset <= self._segments[0].base_offset:
                    self._truncate_fully_locked(offset, now_ms)
                else:
                    k = bisect_left(self._bases, offset)
                    doomed = self._segments[k:]
                    del self._segments[k:]
                    del self._bases[k:]
                    for segment in doomed:
                        self._size -= segment.size
                        if segment in self._unfinalized:
                            self._unfinalized.remove(segment)
                    active = self._segments[-1]
                    self._size -= active.truncate_to(offset)
                    if active in self._unfinalized:
                        self._unfinalized.remove(active)
                    if active.next_offset < self._log_start:
                        # Nothing visible is left: restart empty at the log start offset.
                        for segment in doomed:
                            segment.delete()
                        doomed = []
                        self._truncate_fully_locked(self._log_start, now_ms)
                    else:
                        adopt_as_active(active, now_ms)
                active = self._segments[-1]
                self._leo = active.next_offset
                self._hw = min(self._hw, self._leo)
                self._durable = min(self._durable, self._leo)
                self._unflushed_messages = 0
                new_start = self._log_start
                self._rebuild_after_truncation_locked()
            for segment in doomed:
                segment.delete()
            self._fsync(active.fd)
            active.synced_size = active.size
            with self._lock:
                kept = list(self._segments)
            for segment in kept:  # at least the active one lost entries
                segment.write_txn_index(self._fsync)
            fsync_dir(self._dir, self._fsync)
            if new_start != old_start:
                write_partition_metadata(
                    self._dir, self._topic, self._partition, new_start, self._fsync
                )
        if self.hooks is not None:
            self.hooks.recovery_point_lowered(self)

    def _rebuild_after_truncation_locked(self) -> None:
        """Producer state after a truncation to the (new) log end: the latest snapshot at or
        below it plus a replay of the batches after it; without one, a replay from the log
        start (which reads the whole log). Completed transactions still above the high
        watermark are kept when their marker survived."""
        leo = self._leo
        start, table = self._log_start, ProducerStateTable()
        snapshot = self._last_snapshot
        if snapshot is not None and snapshot[0] <= leo:
            offset, table = ProducerStateTable.from_bytes(snapshot[1])
            start = max(offset, self._log_start)
        old = self.producers
        self.producers = table
        self._replay_locked(start)
        kept = deque(t for t in old.unreplicated if t.last_offset < start)
        table.unreplicated = kept + table.unreplicated
        self._take_snapshot_locked()

    def _truncate_fully_locked(self, offset: int, now_ms: int) -> None:
        for segment in self._drop_prefix_locked(len(self._segments)):
            segment.delete()  # before creating a segment that may share its name
        fresh = Segment.create(self._dir, offset, self._config.index_interval_bytes, now_ms)
        self._segments, self._bases = [fresh], [offset]
        self._size = 0
        self._log_start = offset
        self._last_snapshot = None

    # -- compaction (the log cleaner: storage/cleaner.py) -----------------------------------

    def clean(
        self,
        now_ms: int | None = None,
        *,
        dedupe_buffer_bytes: int = DEFAULT_DEDUPE_BUFFER_BYTES,
        throttle: Throttler | None = None,
        stop: threading.Event | None = None,
    ) -> CleanStats | None:
        """Compact this log now, on the calling thread, whatever its dirty ratio (see
        :func:`riverbed.storage.cleaner.clean_log`); None when it is not compacted or has
        nothing cleanable. Appends and reads may continue meanwhile."""
        return clean_log(
            self,
            self._now_ms() if now_ms is None else now_ms,
            dedupe_buffer_bytes=dedupe_buffer_bytes,
            throttle=throttle,
            stop=stop,
            fsync=self._fsync,
        )

    def cleaner_info(self, now_ms: int | None = None) -> CleanerInfo:
        """Dirty ratio, cleanable bytes, last clean and its statistics."""
        now = self._now_ms() if now_ms is None else now_ms
        with self._lock:  # (it may read the first dirty segment's first batch header)
            return cleaner_info(self._cleaner_view_locked(dup=False), self.cleaner_state, now)

    def cleaner_view(self, *, dup: bool = True) -> CleanerView:
        """A consistent picture of the log for the cleaner (duplicated descriptors of the
        sealed segments when ``dup``)."""
        with self._lock:
            return self._cleaner_view_locked(dup=dup)

    def _cleaner_view_locked(self, *, dup: bool) -> CleanerView:
        self._check_open()
        segments = list(self._segments)
        recovery_point = (
            self._unfinalized[0].base_offset if self._unfinalized else segments[-1].base_offset
        )
        fds = [os.dup(s.fd) for s in segments[:-1]] if dup else []
        last_records = {
            pid: (e.batches[-1].last_offset if e.batches else -1, e.epoch)
            for pid, e in self.producers.producers.items()
        }
        return CleanerView(
            directory=self._dir,
            config=self._config,
            segments=segments,
            sizes=[s.size for s in segments],
            fds=fds,
            log_start=max(self._log_start, self._bases[0]),
            log_end=self._leo,
            stable_limit=min(self._lso_locked(), self._hw, recovery_point),
            last_records=last_records,
            aborted=[e for s in segments for e in s.aborted],
            size_bytes=self._size,
        )

    def swap_cleaned(
        self, old: list[Segment], new: Segment | None, manifest: SwapManifest
    ) -> bool:
        """Replace the consecutive sealed segments ``old`` by ``new`` (written under
        ``.cleaned`` names, fsynced) following the protocol of :mod:`riverbed.storage.swap`.
        False, with nothing done, when ``old`` is no longer a run of finalized sealed
        segments of this log (retention, truncation, close happened meanwhile)."""
        with self._flush_lock:
            with self._lock:
                if self._closed or self._failed is not None or not self._holds_run_locked(old):
                    return False
            try:
                commit_swap(self._dir, manifest, self._fsync)
                with self._lock:
                    apply_swap(self._dir, manifest)
                    i = self._segments.index(old[0])
                    replacement = [] if new is None else [new]
                    self._segments[i : i + len(old)] = replacement
                    self._bases[i : i + len(old)] = [s.base_offset for s in replacement]
                    self._size += sum(s.size for s in replacement) - sum(s.size for s in old)
                    for segment in old:
                        segment.close()
                finish_swap(self._dir, manifest, self._fsync)
            except OSError as exc:
                self._failed = f"swapping cleaned segments failed: {exc}"
                logger.error("%s: %s", self._dir, self._failed)
                raise _storage_error(self._failed) from exc
        return True

    def _holds_run_locked(self, old: list[Segment]) -> bool:
        segments = self._segments
        try:
            i = segments.index(old[0])
        except ValueError:
            return False
        run = segments[i : i + len(old)]
        return (
            len(run) == len(old)
            and all(a is b for a, b in zip(run, old, strict=True))
            and i + len(old) < len(segments)  # never the active segment
            and not any(s in self._unfinalized for s in old)
        )

    # -- config and lifecycle --------------------------------------------------------------

    def expire_producers(self, now_ms: int, expiration_ms: int) -> int:
        with self._lock:
            return self.producers.expire(now_ms, expiration_ms)

    def update_config(self, config: LogConfig) -> None:
        with self._lock:
            self._config = config
            if config.flush_messages > 1:
                self._hw = self._leo
            for segment in self._segments:
                segment.index_interval = config.index_interval_bytes
        hooks = self.hooks
        if hooks is not None and hooks.config_changed is not None:
            hooks.config_changed(self)

    # -- tiered storage (remote.api.TieredLog; see docs/adr/0005-tiered-storage.md) ----------

    def attach_remote(self, metadata: RemoteLogMetadata, reader: RemoteLogReader) -> None:
        """Serve offsets below the local log start from the object store, and leave the
        deletion of sealed segments to the remote log manager."""
        self._remote = (metadata, reader)

    def detach_remote(self) -> None:
        self._remote = None

    @property
    def remote_metadata(self) -> RemoteLogMetadata | None:
        remote = self._remote
        return None if remote is None else remote[0]

    def _sealed_locked(self) -> list[Segment]:
        """The prefix of sealed segments that may be tiered: finalized, non-empty, wholly
        below the high watermark and (compacted logs) below the cleaner's first dirty
        offset. Never the active segment."""
        limit = self._hw
        if self._config.cleanup_compact:
            limit = min(limit, self.cleaner_state.first_dirty_offset)
        out: list[Segment] = []
        for segment in self._segments[:-1]:
            if segment in self._unfinalized or segment.next_offset > limit:
                break
            if segment.size:
                out.append(segment)
        return out

    def sealed_segments(self) -> list[SealedSegment]:
        with self._lock:
            if self._closed:
                return []
            return [_describe(s) for s in self._sealed_locked()]

    def stage_segment(self, base_offset: int, staging_dir: Path) -> StagedSegment | None:
        with self._flush_lock:  # no deletion, truncation or cleaner swap meanwhile
            with self._lock:
                if self._closed:
                    return None
                found = [s for s in self._sealed_locked() if s.base_offset == base_offset]
                if not found:
                    return None
                segment = found[0]
                described = _describe(segment)
                snapshot = self._last_snapshot
            files: dict[str, Path] = {}
            for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX):
                source = segment.path(suffix)
                target = staging_dir / source.name
                try:
                    os.link(source, target)
                except FileNotFoundError:
                    if suffix == TXN_INDEX_SUFFIX:
                        continue
                    raise
                files[suffix] = target
        data = snapshot[1] if snapshot is not None and snapshot[0] >= segment.next_offset else None
        return StagedSegment(described, files, data)

    def drop_local_below(self, offset: int) -> int:
        with self._flush_lock:
            with self._lock:
                if self._closed:
                    return 0
                remote = self._remote
                if remote is not None:  # never a segment that is not safely remote
                    offset = min(offset, remote[0].highest_copied_offset() + 1)
                segments = self._segments
                n = 0
                while (
                    n < len(segments) - 1
                    and segments[n].next_offset <= offset
                    and segments[n].next_offset <= self._hw
                    and segments[n] not in self._unfinalized
                ):
                    n += 1
                doomed = self._drop_prefix_locked(n)
            for segment in doomed:
                segment.delete()
        return len(doomed)

    def advance_log_start(self, offset: int) -> None:
        with self._flush_lock:
            with self._lock:
                self._check_open()
                if offset <= self._log_start:
                    return
            self._move_log_start_flush_locked(offset)

    def close(self, *, clean: bool = True) -> None:
        """Close the files. ``clean``: first fsync everything and write every index file, so
        the next open can trust them. ``clean=False`` is what a crash leaves behind."""
        with self._flush_lock:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
                segments = list(self._segments)
                pending = [*self._unfinalized, segments[-1]]
            try:
                if clean:
                    if self._failed is not None:
                        raise _storage_error(self._failed)
                    segments[-1].seal()
                    for segment in pending:
                        if segment.synced_size < segment.size:
                            self._fsync(segment.fd)
                            segment.synced_size = segment.size
                        segment.write_indexes(self._fsync)
                    snapshot = self.producers.to_bytes(self._leo)
                    atomic_write(self._dir / PRODUCER_SNAPSHOT, snapshot, self._fsync)
                    fsync_dir(self._dir, self._fsync)
                    self._unfinalized.clear()
                    self._durable = self._leo
            finally:
                for segment in segments:
                    segment.close()

    def _check_open(self) -> None:
        if self._closed:
            raise _storage_error(f"log {self._topic}-{self._partition} is closed")

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def __repr__(self) -> str:
        return (
            f"SegmentLog({self._topic}-{self._partition}, start={self._log_start}, "
            f"hw={self._hw}, end={self._leo}, segments={len(self._segments)})"
        )


def _describe(segment: Segment) -> SealedSegment:
    return SealedSegment(
        base_offset=segment.base_offset,
        last_offset=segment.next_offset - 1,
        max_timestamp=segment.largest_timestamp,
        size=segment.size,
        offset_of_max_timestamp=segment.offset_of_max_timestamp,
    )


#: the remote-log metadata exists but cannot be read
UNKNOWN_COVERAGE = (-1, -1)


def _remote_coverage(directory: Path, topic: str, partition: int) -> tuple[int, int] | None:
    """[start, end) of the offsets the partition's COPY_FINISHED remote segments cover
    without a gap, from its remote-log metadata file (read only); None without one."""
    if not (directory / METADATA_FILE).exists():
        return None
    try:
        finished = RemoteLogMetadata.load(directory, topic, partition).finished()
    except (MetadataCorrupt, OSError) as exc:
        # not None: that would let recovery raise the persisted log start above the remote
        # data for good; UNKNOWN_COVERAGE keeps it until the file is repaired
        logger.error("%s: unreadable remote-log metadata (tiered offsets unreadable until it is repaired): %s", directory, exc)
        return UNKNOWN_COVERAGE
    if not finished:
        return None
    start = end = finished[0].base_offset
    for segment in finished:
        if segment.base_offset > end:
            break
        end = max(end, segment.last_offset + 1)
    return start, end
