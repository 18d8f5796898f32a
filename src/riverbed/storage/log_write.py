"""The write path of a SegmentLog: append, roll, and the group-committed flush.

An append checks the batch (or builds a transaction marker), stamps its base offset and
writes it to the active segment with one ``pwrite`` under the state lock, rolling to a new
segment when the active one is full or too old, then asks the owner's flusher for a flush
when the flush settings call for one. :meth:`WriteMixin.flush_cycle` runs on the flusher
thread: it fsyncs the dirty segments, writes the index files of rolled segments and the
pending producer snapshot, then publishes the durable offset (and, with flush.messages = 1,
the high watermark).
"""

from __future__ import annotations

from typing import NamedTuple

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.records.batch import (
    BatchHeader,
    set_base_offset,
    set_log_append_time,
)
from riverbed.protocol.records.records import build_control_batch

from .api import AppendInfo
from .files import PARTITION_METADATA, atomic_write, fsync_dir, fsync_file
from .log_producers import ProducerStateMixin
from .log_state import PRODUCER_SNAPSHOT, logger, storage_error
from .producer_state import check_client_batch, check_marker_producer
from .segment import Segment
from .space import is_no_space

_INDEX_RETRY_S = 1.0


class FlushMark(NamedTuple):
    """What one flush cycle of a log makes durable (taken by :meth:`WriteMixin.flush_begin`)."""

    target: int
    """The log end offset when the mark was taken: the new durable offset."""
    snapshot: tuple[int, bytes] | None
    finalize: list[Segment]
    to_sync: list[Segment]
    sizes: list[int]
    dir_dirty: bool
    created: bool
    """The log was created with deferred fsyncs and this is its first flush cycle."""


class WriteMixin(ProducerStateMixin):
    """Appending to a SegmentLog and making the appends durable."""

    # -- append ----------------------------------------------------------------------------

    def append(
        self,
        batch: bytearray,
        *,
        now_ms: int,
        log_append_time: bool = False,
        origin_coordinator: bool = False,
        flush: bool = True,
    ) -> AppendInfo:
        header = BatchHeader(batch)
        if header.size != len(batch):
            raise KafkaError(ErrorCode.CORRUPT_MESSAGE, "expected exactly one record batch")
        check_client_batch(header)
        if header.producer_id >= 0:
            duplicate = self.producers.check_header(header, origin_coordinator=origin_coordinator)
            if duplicate is not None:
                return AppendInfo(
                    duplicate.first_offset, duplicate.last_offset, -1, self._log_start
                )
        max_timestamp = int(header.max_timestamp)
        append_time = -1
        if log_append_time:
            set_log_append_time(batch, now_ms)
            append_time = max_timestamp = now_ms
        base, last, log_start = self._store(batch, header, max_timestamp, now_ms, None, flush)
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
        base, _, log_start = self._store(batch, header, now_ms, now_ms, (commit, coordinator_epoch))
        return AppendInfo(base, base, -1, log_start)

    def _store(
        self,
        batch: bytearray,
        header: BatchHeader,
        max_timestamp: int,
        now_ms: int,
        marker: tuple[bool, int] | None,
        flush: bool = True,
    ) -> tuple[int, int, int]:
        """Write a checked batch at the log end and account for it (producer state, flush
        requests): (base offset, last offset, log start offset). ``flush``: see
        :meth:`append`."""
        nbytes = len(batch)
        delta = int(header.last_offset_delta)
        config = self._config
        soon = later = False
        hooks = self.hooks
        space = hooks.space if hooks is not None else None
        with self._lock:
            if self._closed or self._failed is not None:
                raise storage_error(self._failed or "log is closed")
            if space is not None:
                space.check_writable()  # a full disk: refused before anything is written
            base = self._leo
            last = base + delta
            segment = self._segments[-1]
            try:
                if not segment.can_hold(nbytes, last, config.segment_bytes) or (
                    segment.size and now_ms - segment.first_append_ms > config.roll_ms
                ):
                    segment = self._roll_locked(now_ms)
                    soon = not self._flush_requested
                    self._flush_requested = True
                set_base_offset(batch, base)
                # a failed write is cut off the file again and nothing is accounted for: a
                # partial batch never becomes visible (Segment.append)
                segment.append(batch, base, last, max_timestamp, now_ms)
            except (OSError, KafkaError) as exc:
                if soon:  # rolled, but no flush was asked for: the next append asks
                    self._flush_requested = False
                if space is not None and is_no_space(exc):
                    space.report(exc)
                if isinstance(exc, KafkaError):
                    raise
                raise storage_error(f"cannot roll {self._dir}: {exc}") from exc
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
            self._changes += 1
            self._size += nbytes
            if config.flush_messages == 1:
                # flush=False: nobody waits for it, the caller asks for its flush
                if flush and not self._flush_requested:
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
        if hooks is not None:
            if soon:
                hooks.flush_soon(self._as_log())
            elif later:
                hooks.flush_later(self._as_log(), config.flush_ms / 1000)
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
            self.hooks.flush_soon(self._as_log())
        return True

    def _roll_locked(self, now_ms: int) -> Segment:
        old = self._segments[-1]
        old.seal()
        # once the flusher has written it, recovery after a crash replays only the batches
        # after this point
        self._take_snapshot_locked()
        new = self._own(
            Segment.create(self._dir, self._leo, self._config.index_interval_bytes, now_ms)
        )
        self._segments.append(new)
        self._bases.append(new.base_offset)
        self._unfinalized.append(old)
        self._dir_dirty = True
        return new

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
        return self.flush_finish(self.flush_begin(), synced=False)

    def flush_begin(self) -> FlushMark | None:
        """First half of :meth:`flush_cycle`: take the log's flush lock and note what is to
        be made durable (None, with the lock released, for a closed or failed log). The
        caller must pass the mark to :meth:`flush_finish`, which releases the lock, on any
        thread. Between the two, the manager may syncfs(2) the file system: every byte
        noted here was written before it (appends hold the state lock)."""
        self._flush_lock.acquire()
        try:
            with self._lock:
                # after a failed fsync nothing becomes durable: a retried fsync may "succeed"
                # although the kernel has dropped the dirty pages it could not write
                if self._closed or self._failed is not None:
                    self._flush_lock.release()
                    return None
                self._flush_requested = self._flush_scheduled = False
                self._unflushed_messages = 0
                finalize = list(self._unfinalized)
                to_sync = [s for s in (*finalize, self._segments[-1]) if s.synced_size < s.size]
                mark = FlushMark(
                    self._leo,
                    self._pending_snapshot,
                    finalize,
                    to_sync,
                    [s.size for s in to_sync],
                    self._dir_dirty,
                    self._created_unsynced,
                )
                self._pending_snapshot = None
                self._dir_dirty = self._created_unsynced = False
        except BaseException:
            self._flush_lock.release()
            raise
        return mark

    def flush_finish(self, mark: FlushMark | None, *, synced: bool) -> tuple[bool, bool]:
        """Second half of :meth:`flush_cycle`: fsync the segments noted in ``mark`` (skipped
        when ``synced``: a successful syncfs(2) of this log's file system, begun after
        ``mark`` was taken, already made their bytes durable), write the indexes of rolled
        segments and the pending producer snapshot, publish, release the flush lock."""
        if mark is None:
            return False, False
        try:
            return self._flush_finish_locked(mark, synced)
        finally:
            self._flush_lock.release()

    def _flush_finish_locked(self, mark: FlushMark, synced: bool) -> tuple[bool, bool]:
        target, snapshot, finalize = mark.target, mark.snapshot, mark.finalize
        to_sync, sizes, dir_dirty = mark.to_sync, mark.sizes, mark.dir_dirty
        fsync_failed = False

        def fsync(fd: int) -> None:
            nonlocal fsync_failed
            try:
                self._fsync(fd)
            except OSError:
                fsync_failed = True
                raise

        no_space: OSError | None = None
        try:
            if not synced:
                if mark.created:
                    # the new log's files and names, before any of its appends is durable
                    fsync_file(self._dir / PARTITION_METADATA, fsync)
                    fsync_dir(self._dir, fsync)
                    fsync_dir(self._dir.parent, fsync)
                for segment in to_sync:
                    fsync(segment.fd)
            try:
                for segment in finalize:
                    segment.write_indexes(fsync)
                if dir_dirty or finalize:
                    # before the snapshot: the names of a new segment and of the index files
                    # just written must be durable before a snapshot that relies on them (a
                    # .txnindex lost while a later snapshot survives forgets its aborts)
                    fsync_dir(self._dir, fsync)
                    dir_dirty = False
                if snapshot is not None:
                    # every segment below it now has its index files on disk
                    atomic_write(self._dir / PRODUCER_SNAPSHOT, snapshot[1], fsync)
            except OSError as exc:
                # no room for an index file or the producer snapshot: the batches are
                # already fsynced, and both files can be rebuilt from them, so this is
                # not a failed log; the rolled segments stay below the recovery point
                # (validated after a crash) and the writes are retried later
                if fsync_failed or not is_no_space(exc):
                    raise
                no_space = exc
            if dir_dirty:
                # the names of new segments are durable even when the index files or the
                # snapshot could not be written
                fsync_dir(self._dir, fsync)
        except OSError as exc:
            self._failed = f"fsync failed: {exc}"
            logger.error("%s: %s", self._dir, self._failed)
            raise storage_error(self._failed) from exc
        if no_space is not None:
            self._index_write_failed(no_space, snapshot)
            finalize = []
        with self._lock:
            for segment, size in zip(to_sync, sizes, strict=True):
                segment.synced_size = max(segment.synced_size, size)
            for segment in finalize:
                if segment in self._unfinalized:
                    self._unfinalized.remove(segment)
            advanced = target > self._durable
            self.flushed_records = target - self._durable if advanced else 0  # for metrics
            if advanced:
                self._durable = target
            if self._config.flush_messages == 1 and target > self._hw:
                self._hw = target
                # forget completed transactions the HW has passed, even on a log that
                # nobody reads (the LSO computation is what trims them otherwise)
                self.producers.first_unstable_offset(self._hw)
        return advanced, bool(finalize)

    def _index_write_failed(self, exc: OSError, snapshot: tuple[int, bytes] | None) -> None:
        """ENOSPC/EDQUOT writing index files or the producer snapshot in a flush cycle: keep
        what is still to be written (the rolled segments stay unfinalized, the snapshot
        pending unless a newer one was taken) and try again in a second."""
        with self._lock:
            if self._pending_snapshot is None:
                self._pending_snapshot = snapshot
        logger.debug("%s: index files not written (%s); retrying", self._dir, exc)
        hooks = self.hooks
        if hooks is not None:
            if hooks.space is not None:
                hooks.space.report(exc)
            hooks.flush_later(self._as_log(), _INDEX_RETRY_S)
