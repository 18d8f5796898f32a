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

The class is assembled from mixins, one module per concern: the shared fields and
properties (:mod:`.log_state`), producer and transaction state (:mod:`.log_producers`),
append and flush (:mod:`.log_write`), reads (:mod:`.log_read`), log start, retention and
truncation (:mod:`.log_retention`) and tiered storage (:mod:`.log_tiering`). This module
adds construction and recovery, the log cleaner's entry points, and the lifecycle.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .api import LogConfig
from .cleaner import (
    DEFAULT_DEDUPE_BUFFER_BYTES,
    CleanerInfo,
    CleanerView,
    CleanStats,
    Throttler,
    clean_log,
    cleaner_info,
)
from .files import Fsync, atomic_write, fsync_dir, write_partition_metadata
from .log_read import ReadMixin
from .log_retention import RetentionMixin
from .log_state import PRODUCER_SNAPSHOT, LogHooks, logger, storage_error
from .log_tiering import UNKNOWN_COVERAGE, TieringMixin, remote_coverage
from .recovery import recover_partition
from .segment import Segment
from .swap import SwapManifest, apply_swap, commit_swap, finish_swap

__all__ = ["PRODUCER_SNAPSHOT", "UNKNOWN_COVERAGE", "LogHooks", "SegmentLog"]


class SegmentLog(RetentionMixin, ReadMixin, TieringMixin):
    """Implements :class:`riverbed.storage.api.PartitionLog` over ``directory``.
    Build one with :meth:`create` or :meth:`load`."""

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
        defer_sync: bool = False,
    ) -> SegmentLog:
        """A new, empty log in a new directory. ``defer_sync``: write the files without
        fsyncing them; the first flush cycle makes the new directory durable before any
        append can be (a syncfs of the file system covers it, or explicit fsyncs)."""
        now_ms = int(clock() * 1000)
        if defer_sync:
            # the fewest file-system operations (10,000 partitions at once): the directory
            # is new, so there is nothing to replace atomically or to remove, and a torn
            # partition.metadata (a crash before the first flush cycle) reads as missing,
            # which recovery rewrites (log start 0, as here)
            os.mkdir(directory)
            write_partition_metadata(directory, topic, partition, 0, None)
            segment = Segment.create(directory, 0, config.index_interval_bytes, now_ms, fresh=True)
        else:
            directory.mkdir(parents=True)
            write_partition_metadata(directory, topic, partition, 0, fsync)
            segment = Segment.create(directory, 0, config.index_interval_bytes, now_ms)
            fsync_dir(directory, fsync)
            fsync_dir(directory.parent, fsync)
        log = cls(directory, topic, partition, config, [segment], 0, fsync=fsync, clock=clock)
        log._created_unsynced = defer_sync
        return log

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
        sync_later: Callable[[Segment], None] | None = None,
        recovery_position: int | None = None,
    ) -> SegmentLog:
        """Open an existing log directory and recover it (``sync_later``: see
        ``recover_partition``).

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
            recovery_position=recovery_position,
            fsync=fsync,
            now_ms=int(clock() * 1000),
            remote_coverage=lambda: remote_coverage(directory, topic, partition),
            sync_later=sync_later,
        )
        log = cls(
            directory, topic, partition, config, segments, log_start, fsync=fsync, clock=clock
        )
        with log._flush_lock, log._lock:  # (its segments' files may not be closed meanwhile)
            log._rebuild_producer_state()
            if clean and not any(s.indexes_loaded for s in segments):
                # every segment trusted as the last clean close left it: a clean close
                # without a change since has nothing to write again
                log._pristine_at = log._changes
        return log

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

    def swap_cleaned(self, old: list[Segment], new: Segment | None, manifest: SwapManifest) -> bool:
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
                    replacement = [] if new is None else [self._own(new)]
                    self._segments[i : i + len(old)] = replacement
                    self._bases[i : i + len(old)] = [s.base_offset for s in replacement]
                    self._size += sum(s.size for s in replacement) - sum(s.size for s in old)
                    for segment in old:
                        segment.close()
                finish_swap(self._dir, manifest, self._fsync)
            except OSError as exc:
                self._failed = f"swapping cleaned segments failed: {exc}"
                logger.error("%s: %s", self._dir, self._failed)
                raise storage_error(self._failed) from exc
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

    def close(self, *, clean: bool = True, fsync: Fsync | None = None) -> None:
        """Close the files. ``clean``: first fsync everything and write every index file, so
        the next open can trust them. ``clean=False`` is what a crash leaves behind.
        ``fsync`` replaces the log's own for this close (the manager passes a no-op and
        syncfs(2)es the whole file system afterwards)."""
        fsync = self._fsync if fsync is None else fsync
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
                        raise storage_error(self._failed)
                    if self._pristine_at == self._changes and not self._unfinalized:
                        return  # (the segments are closed below)
                    segments[-1].seal()
                    for segment in pending:
                        if segment.synced_size < segment.size:
                            fsync(segment.fd)
                            segment.synced_size = segment.size
                        segment.write_indexes(fsync)
                    # the index files' names before the snapshot that vouches for them
                    fsync_dir(self._dir, fsync)
                    snapshot = self.producers.to_bytes(self._leo)
                    atomic_write(self._dir / PRODUCER_SNAPSHOT, snapshot, fsync)
                    self._unfinalized.clear()
                    self._durable = self._leo
            finally:
                for segment in segments:
                    segment.close()

    def __repr__(self) -> str:
        return (
            f"SegmentLog({self._topic}-{self._partition}, start={self._log_start}, "
            f"hw={self._hw}, end={self._leo}, segments={len(self._segments)})"
        )
