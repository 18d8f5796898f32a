"""RemoteLogManager: copies sealed segments to an object store, deletes local segments
once they are safely remote and local retention says so, and applies total retention to
the remote segments. One background thread does all of it; nothing here is ever called on
the produce or fetch path, so a slow or failing store only delays tiering.

One pass over a partition (:meth:`RemoteLogManager.run_once`), in this order:

1. **clean up**: every COPY_STARTED entry (an upload that failed or was cut by a crash)
   and every DELETE_STARTED entry has its objects deleted and is dropped;
2. **copy**, oldest first, each sealed segment not yet remote: stage its files (hard
   links taken by the log under its file lock), write the COPY_STARTED entry, upload every
   object and check its size, write COPY_FINISHED. A failure deletes what was uploaded
   and drops the entry (or leaves it for step 1 of a later pass);
3. **local retention**: delete the local segments that are COPY_FINISHED and that
   local.retention.ms / local.retention.bytes expire (:func:`policy.local_delete_below`);
4. **total retention**: for the remote segments that retention.ms / retention.bytes (or
   DeleteRecords) remove: move the log start past them, then DELETE_STARTED -> delete
   objects -> drop.

A failed pass (any :class:`ObjectStoreError`, or anything else) backs the partition off
exponentially (with jitter) before its next attempt; other partitions go on. The state on
disk is consistent after a crash at any point: an entry is durable before its first object
exists and is dropped only after its last object is gone, and a local segment is deleted
only after its entry is COPY_FINISHED.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from .api import StagedSegment, TieredLog, TieringConfig
from .metadata import SNAPSHOT_SUFFIX, RemoteLogMetadata, RemoteSegment, SegmentState
from .policy import copy_candidates, local_delete_below, local_only_bytes, remote_deletions
from .store import ObjectStore, ObjectStoreError

__all__ = ["PartitionStatus", "RemoteLogManager", "RemoteLogManagerConfig"]

logger = logging.getLogger(__name__)
STAGING_DIR: Final = ".remote-staging"
"""Subdirectory of the partition directory holding the hard links of an upload."""


@dataclass(frozen=True, slots=True)
class RemoteLogManagerConfig:
    interval_s: float = 1.0
    """How often the thread runs a pass (it also runs when :meth:`RemoteLogManager.wake`
    is called, e.g. after a roll)."""
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0
    backoff_jitter: float = 0.2
    """Each delay is multiplied by a random factor in ``[1 - jitter, 1 + jitter]``."""
    max_copies_per_pass: int = 8
    """Segments copied per partition per pass, so one busy partition cannot starve others."""

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.backoff_initial_s <= 0:
            raise ValueError("interval_s and backoff_initial_s must be positive")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        if not 0 <= self.backoff_jitter < 1:
            raise ValueError("backoff_jitter must be in [0, 1)")
        if self.max_copies_per_pass < 1:
            raise ValueError("max_copies_per_pass must be positive")


@dataclass(slots=True)
class PartitionStatus:
    """What the manager knows of one partition (also for metrics and tests)."""

    log: TieredLog
    tiering: TieringConfig
    metadata: RemoteLogMetadata
    failures: int = 0
    """Consecutive failed passes."""
    next_attempt: float = 0.0
    """Monotonic time before which no pass runs for this partition."""
    last_error: str | None = None
    copied: int = 0
    deleted_local: int = 0
    deleted_remote: int = 0
    delays: list[float] = field(default_factory=list)
    """Every backoff delay applied so far (the last 100)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    removed: bool = False


class RemoteLogManager:
    """Tiers the registered partitions to ``store``. Thread-safe; :meth:`run_once` is what
    the background thread calls (tests call it directly with a manual clock)."""

    def __init__(
        self,
        store: ObjectStore,
        config: RemoteLogManagerConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        fsync: Callable[[int], None] = os.fsync,
        rng: random.Random | None = None,
        on_log_start_moved: Callable[[], None] | None = None,
    ) -> None:
        """``on_log_start_moved``: called (from the tiering thread) after remote retention
        moved a partition's log start offset, as a local append or retention run would tell
        the broker (its waiting fetches, and the idle answers it keeps, look again)."""
        self.on_log_start_moved = on_log_start_moved
        self.store = store
        self.config = config or RemoteLogManagerConfig()
        self._clock = clock
        self._monotonic = monotonic
        self._fsync = fsync
        self._rng = rng or random.Random()
        self._partitions: dict[tuple[str, int], PartitionStatus] = {}
        self._registry_lock = threading.Lock()
        self._wakeup = threading.Condition(threading.Lock())
        self._woken = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- registration ----------------------------------------------------------------------

    def register(self, log: TieredLog, tiering: TieringConfig) -> RemoteLogMetadata:
        """Start managing ``log``: load (or create) its metadata file and clear leftovers of
        an interrupted upload from its staging directory. Raises
        :class:`~riverbed.storage.remote.metadata.MetadataCorrupt` for an unreadable file."""
        metadata = RemoteLogMetadata.load(
            log.directory, log.topic, log.partition, fsync=self._fsync
        )
        shutil.rmtree(log.directory / STAGING_DIR, ignore_errors=True)
        status = PartitionStatus(log, tiering, metadata)
        with self._registry_lock:
            self._partitions[(log.topic, log.partition)] = status
        self.wake()
        return metadata

    def update_tiering(self, topic: str, partition: int, tiering: TieringConfig) -> None:
        with self._registry_lock:
            status = self._partitions.get((topic, partition))
            if status is not None:
                status.tiering = tiering
        self.wake()

    def unregister(self, topic: str, partition: int) -> None:
        """Stop managing the partition; waits for a pass in progress on it to end (a pass
        checks between steps, so at most one object-store call)."""
        with self._registry_lock:
            status = self._partitions.pop((topic, partition), None)
        if status is not None:
            status.removed = True
            with status.lock:
                pass

    def status(self, topic: str, partition: int) -> PartitionStatus | None:
        with self._registry_lock:
            return self._partitions.get((topic, partition))

    def metadata(self, topic: str, partition: int) -> RemoteLogMetadata | None:
        status = self.status(topic, partition)
        return None if status is None else status.metadata

    def delete_remote_partition(self, topic: str, partition: int) -> int:
        """Delete every object of the partition (topic deletion), synchronously; raises
        :class:`ObjectStoreError` if the store fails (call again later). Returns the number
        of objects deleted. Unregisters the partition first."""
        status = self.status(topic, partition)
        if status is None:
            return 0
        self.unregister(topic, partition)
        metadata = status.metadata
        for segment in metadata.segments():
            metadata.start_delete(segment.segment_id)
        keys = self.store.list(metadata.prefix)
        for key in keys:
            self.store.delete(key)
        for segment in metadata.segments():
            metadata.drop(segment.segment_id)
        return len(keys)

    # -- the thread ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="riverbed-remote-log", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def wake(self) -> None:
        with self._wakeup:
            self._woken = True
            self._wakeup.notify_all()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                if not self._woken and not self._stopping:
                    self._wakeup.wait(self.config.interval_s)
                self._woken = False
                if self._stopping:
                    return
            try:
                self.run_once()
            except Exception:  # pragma: no cover - run_once contains its own failures
                logger.exception("remote log manager pass failed")

    # -- one pass --------------------------------------------------------------------------

    def run_once(self) -> int:
        """One pass over every partition that is not backing off; returns how many
        partitions failed."""
        with self._registry_lock:
            statuses = list(self._partitions.values())
        failed = 0
        for status in statuses:
            if self._stopping or status.next_attempt > self._monotonic():
                continue
            with status.lock:
                if status.removed:
                    continue
                try:
                    self._tier(status)
                except Exception as exc:
                    failed += 1
                    self._back_off(status, exc)
                else:
                    status.failures = 0
                    status.next_attempt = 0.0
                    status.last_error = None
        return failed

    def _back_off(self, status: PartitionStatus, exc: Exception) -> None:
        status.failures += 1
        cfg = self.config
        delay = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** (status.failures - 1))
        delay *= 1 + cfg.backoff_jitter * self._rng.uniform(-1.0, 1.0)
        status.next_attempt = self._monotonic() + delay
        status.last_error = f"{type(exc).__name__}: {exc}"
        status.delays.append(delay)
        del status.delays[:-100]
        log = status.log
        retriable = isinstance(exc, ObjectStoreError) and exc.retriable
        level = logging.WARNING if retriable else logging.ERROR
        logger.log(
            level,
            "tiering %s-%d failed (%d in a row), next try in %.1fs: %s",
            log.topic,
            log.partition,
            status.failures,
            delay,
            status.last_error,
            exc_info=not isinstance(exc, ObjectStoreError),
        )

    def _tier(self, status: PartitionStatus) -> None:
        self._clean_up(status)
        if status.tiering.remote_storage_enable:
            self._copy(status)
        if status.removed:
            return
        self._delete_local(status)
        self._apply_total_retention(status)

    def _clean_up(self, status: PartitionStatus) -> None:
        metadata = status.metadata
        for segment in metadata.segments():
            if segment.state is SegmentState.COPY_FINISHED:
                continue
            self._delete_objects(segment, metadata.prefix)
            metadata.drop(segment.segment_id)

    def _delete_objects(self, segment: RemoteSegment, prefix: str) -> None:
        for key in segment.keys(prefix):
            self.store.delete(key)

    def _copy(self, status: PartitionStatus) -> None:
        log, metadata = status.log, status.metadata
        candidates = copy_candidates(
            log.sealed_segments(), metadata.highest_copied_offset(), log.log_start_offset
        )
        for segment in candidates[: self.config.max_copies_per_pass]:
            if status.removed or self._stopping:
                return
            staging = log.directory / STAGING_DIR / uuid.uuid4().hex
            staging.mkdir(parents=True)
            try:
                staged = log.stage_segment(segment.base_offset, staging)
                if staged is None or staged.segment != segment:
                    return  # the segment changed (cleaner, retention): next pass
                self._upload(status, staged)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _upload(self, status: PartitionStatus, staged: StagedSegment) -> None:
        metadata, store = status.metadata, self.store
        segment = staged.segment
        sizes = {suffix: os.stat(path).st_size for suffix, path in staged.files.items()}
        if sizes.get(".log") != segment.size:
            raise ObjectStoreError(
                f"staged .log of segment {segment.base_offset} has {sizes.get('.log')} bytes, "
                f"expected {segment.size}",
                retriable=True,
            )
        snapshot = staged.producer_snapshot
        if snapshot is not None:
            sizes[SNAPSHOT_SUFFIX] = len(snapshot)
        entry = RemoteSegment(
            segment_id=uuid.uuid4().hex,
            base_offset=segment.base_offset,
            last_offset=segment.last_offset,
            max_timestamp=segment.max_timestamp,
            size=segment.size,
            state=SegmentState.COPY_STARTED,
            offset_of_max_timestamp=segment.offset_of_max_timestamp,
            files=sizes,
            created_ms=int(self._clock() * 1000),
        )
        prefix = metadata.prefix
        metadata.start_copy(entry)  # durable before the first object exists
        try:
            for suffix, path in staged.files.items():
                key = entry.key(prefix, suffix)
                store.put_file(key, path)
                self._verify(key, sizes[suffix])
            if snapshot is not None:
                key = entry.key(prefix, SNAPSHOT_SUFFIX)
                store.put_bytes(key, snapshot)
                self._verify(key, len(snapshot))
        except BaseException:
            try:  # best effort now; otherwise the clean-up step of a later pass does it
                self._delete_objects(entry, prefix)
                metadata.drop(entry.segment_id)
            except ObjectStoreError:
                pass
            raise
        metadata.finish_copy(entry.segment_id)
        status.copied += 1

    def _verify(self, key: str, size: int) -> None:
        """An object that is not all there counts as a failed upload."""
        found = self.store.head(key)
        if found != size:
            raise ObjectStoreError(
                f"partial upload of {key}: {found} bytes stored, {size} sent", retriable=True
            )

    def _delete_local(self, status: PartitionStatus) -> None:
        log, metadata = status.log, status.metadata
        below = local_delete_below(
            log.sealed_segments(),
            log.size_bytes,
            metadata.highest_copied_offset(),
            status.tiering,
            log.config,
            int(self._clock() * 1000),
        )
        if below >= 0:
            status.deleted_local += log.drop_local_below(below)

    def _apply_total_retention(self, status: PartitionStatus) -> None:
        log, metadata = status.log, status.metadata
        highest = metadata.highest_copied_offset()
        log_start = log.log_start_offset
        metadata.advance_log_start(log_start)
        doomed = remote_deletions(
            metadata.finished(),
            log_start,
            local_only_bytes(log.sealed_segments(), log.size_bytes, highest),
            log.config,
            int(self._clock() * 1000),
        )
        if not doomed:
            return
        # the log start moves first: a crash before the objects are gone leaves remote
        # segments below it, which the next pass deletes (they are "below the log start")
        new_start = max(s.last_offset + 1 for s in doomed)
        if new_start > log_start:
            log.advance_log_start(new_start)
            metadata.advance_log_start(new_start)
            if self.on_log_start_moved is not None:
                self.on_log_start_moved()
        for segment in doomed:
            if status.removed:
                break
            metadata.start_delete(segment.segment_id)
            self._delete_objects(segment, metadata.prefix)
            metadata.drop(segment.segment_id)
            status.deleted_remote += 1
