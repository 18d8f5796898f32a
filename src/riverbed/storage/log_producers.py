"""Keeping a SegmentLog's producer and transaction state in step with its batches.

The producer table (:mod:`riverbed.storage.producer_state`) and each segment's aborted
transactions are derived from the batches in the log. This module rebuilds them when a log
is opened (the producer snapshot plus a replay of the batches written after it) and after a
truncation, applies transaction markers, and captures the snapshots that the next flush
cycle writes to disk.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections import deque

from riverbed.protocol.records.batch import BatchHeader

from .api import ProducerStateView
from .files import fsync_dir
from .log_state import PRODUCER_SNAPSHOT, LogState, logger
from .producer_state import ProducerStateTable, parse_marker
from .segment import Segment
from .txn_index import AbortedTxn


class ProducerStateMixin(LogState):
    """Producer state of a SegmentLog: rebuild, replay, markers, snapshots."""

    def _rebuild_producer_state(self) -> None:
        """Read every segment's transaction index, load the producer snapshot, then replay
        the batch headers written after it: that restores the idempotence state, the
        ongoing transactions, and the aborted-transaction entries of markers after the
        snapshot (files missing, short or torn after a crash included). A snapshot beyond
        the recovered log end (the tail was truncated) is ignored. After a clean shutdown
        the snapshot is at the log end and nothing is replayed."""
        for segment in self._segments:
            if not segment.txn_loaded:
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

    def producer_states(self) -> list[ProducerStateView]:
        with self._lock:
            return self.producers.views()

    def expire_producers(self, now_ms: int, expiration_ms: int) -> int:
        with self._lock:
            expired = self.producers.expire(now_ms, expiration_ms)
            if expired:
                self._changes += 1
            return expired
