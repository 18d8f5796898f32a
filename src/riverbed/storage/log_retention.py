"""Removing data from a SegmentLog: log start offset, retention, truncation.

The log start offset moves up through DeleteRecords and through tiered storage
(:meth:`RetentionMixin.advance_log_start`); it is written to the partition metadata file
before the segments wholly below it are deleted. The retention pass rolls and deletes the
oldest segments by time (retention.ms) and size (retention.bytes). Truncation (to follow a
leader) cuts the log end back and rebuilds the producer state to match.
"""

from __future__ import annotations

from bisect import bisect_left

from .api import OffsetOutOfRange
from .files import fsync_dir, write_partition_metadata
from .log_state import PRODUCER_SNAPSHOT
from .log_write import WriteMixin
from .recovery import adopt_as_active
from .segment import Segment


class RetentionMixin(WriteMixin):
    """Moving the log start offset, retention and truncation of a SegmentLog."""

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

    def advance_log_start(self, offset: int) -> None:
        # (remote.api.TieredLog: the remote tier's total retention deleted the data below
        # ``offset``)
        with self._flush_lock:
            with self._lock:
                self._check_open()
                if offset <= self._log_start:
                    return
            self._move_log_start_flush_locked(offset)

    def _move_log_start_flush_locked(self, target: int) -> int:
        """Persist ``target`` as the log start, then delete the local segments wholly below
        it (``_flush_lock`` held)."""
        write_partition_metadata(self._dir, self._topic, self._partition, target, self._fsync)
        with self._lock:
            self._log_start = max(self._log_start, target)
            self._changes += 1
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
                    self._changes += 1
            for segment in doomed:
                segment.delete()
        if soon and self.hooks is not None:
            self.hooks.flush_soon(self._as_log())
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

    def truncate_to(self, offset: int) -> None:
        hooks = self.hooks if 0 <= offset < self.log_end_offset else None
        if hooks is not None:
            # the recovery checkpoint first forgets how much of the active segment was on
            # disk: bytes rewritten after the truncation must be validated after a crash
            with self._lock:
                self._position_trusted = False
            hooks.recovery_point_lowered(self._as_log())
        try:
            self._truncate_to(offset)
        finally:
            with self._lock:
                self._position_trusted = True
        if hooks is not None:
            hooks.recovery_point_lowered(self._as_log())

    def _truncate_to(self, offset: int) -> None:
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
                self._changes += 1
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

    def _truncate_fully_locked(self, offset: int, now_ms: int) -> None:
        for segment in self._drop_prefix_locked(len(self._segments)):
            segment.delete()  # before creating a segment that may share its name
        fresh = self._own(
            Segment.create(self._dir, offset, self._config.index_interval_bytes, now_ms)
        )
        self._segments, self._bases = [fresh], [offset]
        self._size = 0
        self._log_start = offset
        self._last_snapshot = None
