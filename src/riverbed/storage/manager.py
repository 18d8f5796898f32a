"""LogManager: every partition log under one data directory, plus the group-commit flusher.

Group commit. The event loop appends (a ``pwrite`` into the page cache) and the log asks the
flusher thread for an fsync. The flusher wakes, takes every log that asked, fsyncs each one
once (covering all the appends made since its last cycle), publishes the new durable offsets
(which, with ``flush.messages = 1``, are the high watermarks) and calls ``on_durable`` once
per cycle in which a durable offset moved. While it fsyncs, new appends pile up and are covered by the next cycle, so under
load one fsync serves many produce requests. Logs with ``flush.messages > 1`` are flushed
after that many records or ``flush.ms`` after their first unflushed append.

Files in the data directory: one ``<topic>-<partition>`` directory per log, the
``recovery-point-offset-checkpoint`` and, between a clean shutdown and the next start, the
``.clean-shutdown`` marker (see ``docs/storage-format.md``).

Tiered storage. With an object store (``remote_store``), the manager owns one
:class:`~riverbed.storage.remote.RemoteLogManager` (its own thread) and one
:class:`~riverbed.storage.remote.RemoteLogReader` (shared by every log). A log whose config
has ``remote_storage_enable`` is registered with the first and attached to the second
(:meth:`SegmentLog.attach_remote`); the flusher wakes the tiering thread after a cycle
that finalized rolled segments. See ``docs/adr/0005-tiered-storage.md``.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.stats import LATENCY_BUCKETS, SIZE_BUCKETS, Histogram

from .api import LogConfig, PartitionLog
from .cleaner import CleanerInfo, CleanStats
from .cleaner_manager import CleanerConfig, LogCleaner
from .files import (
    CLEAN_SHUTDOWN,
    CLEANER_CHECKPOINT,
    DELETED_SUFFIX,
    OPEN_TXNS_CHECKPOINT,
    Fsync,
    fsync_dir,
    is_legal_topic,
    make_dirs_durably,
    parse_partition_dir,
    partition_dir_name,
    read_offset_checkpoint,
    read_recovery_checkpoint,
    read_recovery_positions,
    remove_quietly,
    write_file,
    write_offset_checkpoint,
    write_recovery_checkpoint,
    write_recovery_positions,
)
from .log import LogHooks, SegmentLog
from .log_write import FlushMark
from .remote.api import TieringConfig
from .remote.copier import RemoteLogManager, RemoteLogManagerConfig
from .remote.metadata import MetadataCorrupt
from .remote.reader import RemoteLogReader
from .remote.store import ObjectStore, ObjectStoreError
from .segment import OPEN_SEGMENT_FILES, Segment
from .space import DiskSpace

logger = logging.getLogger(__name__)

#: the fewest logs in a flush cycle for which one syncfs(2) replaces their fsyncs. Two logs (a
#: transaction's state record and its batch) fsync in parallel instead: syncfs also writes back
#: every other dirty file of the file system, and with two files that costs more than it saves
#: (median 2.4-2.8 ms vs 1.2-1.7 ms for two parallel fsyncs on this shared VM, 2026-12-07)
SYNCFS_MIN_LOGS = 3


class FlushStats:
    """The flusher's group commits, for the metrics endpoint (written by the flusher thread
    only): seconds per cycle (syncfs and fsyncs), logs fsynced per cycle and records made
    durable per cycle (how many appends one cycle covers)."""

    __slots__ = ("logs", "records", "seconds")

    def __init__(self) -> None:
        self.seconds = Histogram(LATENCY_BUCKETS)
        self.logs = Histogram(SIZE_BUCKETS)
        self.records = Histogram(SIZE_BUCKETS)


class LogManager:
    """Owns ``data_dir/<topic>-<partition>/`` logs. ``create``/``get``/``delete_*`` and
    ``run_retention`` are meant for one thread (the event loop); the flusher thread is
    internal. ``clock`` is wall-clock seconds (as ``time.time``); ``fsync`` is injectable to
    count or slow down fsyncs in tests; ``default_config`` applies to logs found by
    :meth:`open` until ``create`` (or ``update_config``) supplies theirs.

    ``lazy_open``: after a clean shutdown, :meth:`open` only lists the partition
    directories; each is loaded at its first use (``get``, ``create``, ``partitions``) or by
    a loader thread started by ``open`` (``background_load``), whichever comes first. After a
    crash every partition is loaded, and recovered, by :meth:`open` as before
    (docs/storage-format.md, "Start-up")."""

    def __init__(
        self,
        data_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        on_durable: Callable[[], None] | None = None,
        default_config: LogConfig | None = None,
        fsync: Fsync = os.fsync,
        syncfs: bool = True,
        cleaner: CleanerConfig | None = None,
        remote_store: ObjectStore | None = None,
        remote_config: RemoteLogManagerConfig | None = None,
        remote_cache_bytes: int = 64 << 20,
        max_open_segment_files: int | None = None,
        lazy_open: bool = True,
        background_load: bool = True,
    ) -> None:
        self._data_dir = Path(data_dir)
        self._lazy_open = lazy_open
        self._background_load = background_load
        # after a clean shutdown, partitions found by open() are loaded at their first use
        # (get, create, partitions) or by the loader thread, whichever comes first
        self._unloaded: dict[tuple[str, int], _Unloaded] = {}
        self._load_lock = threading.Lock()
        self._loader: threading.Thread | None = None
        self._loader_stop = threading.Event()
        self.loaded_in_background = 0
        """Partitions the loader thread loaded (for tests)."""
        # With several dirty logs, one syncfs(2) first writes them all back in a single
        # journal commit; the per-file fsyncs that follow (still the durability guarantee)
        # then find clean files. Measured: 100 B records, 6 partitions, ~40 % more produce
        # throughput on this VM than 6 parallel fsyncs (docs/benchmarks.md). It also writes
        # back other processes' dirty data on the same file system: disable it there.
        self._syncfs = _load_syncfs() if syncfs and fsync is os.fsync else None
        self._data_fd: int | None = None
        self._max_open = max_open_segment_files
        self._syncfs_trusted = self._syncfs is not None
        """A successful syncfs stands in for the fsyncs of the files it wrote back until
        the first failed one: that failure consumed a writeback error of the file system
        that may concern a log outside its cycle, so from then on every log fsyncs its own
        files (each file descriptor still reports its own errors)."""
        self._clock = clock
        self._on_durable = on_durable
        self._default_config = default_config or LogConfig()
        self._fsync = fsync
        self._logs: dict[tuple[str, int], SegmentLog] = {}
        # logs whose directory is on another file system than the data directory (a mount
        # point): the data directory's syncfs does not cover them
        self._other_fs: set[SegmentLog] = set()
        self._data_dev = -1
        self._registry_lock = threading.Lock()
        self._checkpoint_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._requested: dict[SegmentLog, None] = {}  # insertion-ordered set
        # gather_flushes: the requests held back on one thread until its block ends
        self._gathered: dict[SegmentLog, None] | None = None
        self._gather_thread = -1
        self._scheduled: dict[SegmentLog, float] = {}  # log -> monotonic deadline
        self._stopping = False
        self._thread: threading.Thread | None = None
        # fsyncs of different logs run in parallel (fsync releases the GIL; the disk serves
        # several at once): one cycle costs about the slowest fsync, not their sum
        self._fsync_pool: ThreadPoolExecutor | None = None
        self._opened = False
        self._closed = False
        self.space = DiskSpace(self._data_dir)
        """The data directory's disk-full state (docs/storage-format.md, "Disk full")."""
        self._hooks = LogHooks(
            self._flush_soon,
            self._flush_later,
            self._recovery_point_lowered,
            self._sync_remote,
            space=self.space,
        )
        self.remote: RemoteLogManager | None = None
        """The tiering thread's manager (None: no object store configured)."""
        self.remote_reader: RemoteLogReader | None = None
        if remote_store is not None:
            self.remote = RemoteLogManager(remote_store, remote_config, fsync=fsync, on_log_start_moved=on_durable)
            self.remote_reader = RemoteLogReader(remote_store, cache_bytes=remote_cache_bytes)
        self.flush_cycles = 0
        self.flush_stats = FlushStats()
        """Flusher cycles run so far (for metrics and tests)."""
        self.cleaner = LogCleaner(
            self._data_dir,
            self.loaded_partitions,
            cleaner or CleanerConfig(),
            clock=clock,
            fsync=fsync,
        )
        self.cleaner.unloaded_points = self._unloaded_cleaner_points
        """The log cleaner (compaction); its thread runs between :meth:`start_cleaner` and
        :meth:`stop_cleaner` (or :meth:`close`)."""

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    def log_dir_error(self) -> str | None:
        """Why the data directory refuses writes (it is full), else None."""
        return self.space.error

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Discover and recover every partition directory, then start the flusher."""
        if self._opened:
            return
        soft, _ = raise_fd_limit()
        if self._max_open is not None:
            # (one bound for the process: OPEN_SEGMENT_FILES is shared by every manager)
            limit = self._max_open or (max(64, soft * 3 // 4 - 128) if soft > 0 else 0)
            OPEN_SEGMENT_FILES.limit = limit
            logger.info("at most %d segment files open at once", limit)
        make_dirs_durably(self._data_dir, self._fsync)
        self._data_dev = os.stat(self._data_dir).st_dev
        marker = self._data_dir / CLEAN_SHUTDOWN
        clean = marker.exists()
        points = read_recovery_checkpoint(self._data_dir)
        # (a position counts only for the segment it was written for: the recovery point's)
        positions = {
            key: pos
            for key, (base, pos) in read_recovery_positions(self._data_dir).items()
            if points.get(key) == base
        }
        with os.scandir(self._data_dir) as entries:
            dirs = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        # after a crash, the validated segments of every partition are made durable by one
        # syncfs below instead of an fsync each (which, for 10,000 partitions, took a second)
        recovered: dict[SegmentLog, list[Segment]] = {}
        pending: list[Segment] = []
        sync_later = pending.append if self._syncfs is not None and not clean else None
        # a partition holding an open transaction is loaded now (the transaction
        # coordinator's start-up looks for transactions it does not know); without the list
        # (a clean shutdown by an older version) every partition is
        open_txns_path = self._data_dir / OPEN_TXNS_CHECKPOINT
        lazy = clean and self._lazy_open and open_txns_path.exists()
        open_txns = read_offset_checkpoint(open_txns_path) if lazy else {}
        cleaner_points = read_offset_checkpoint(self._data_dir / CLEANER_CHECKPOINT) if lazy else {}
        for name in dirs:
            path = self._data_dir / name
            if name.endswith(DELETED_SUFFIX):
                shutil.rmtree(path, ignore_errors=True)
                continue
            parsed = parse_partition_dir(name)
            if parsed is None:
                logger.warning("ignoring %s: not a <topic>-<partition> directory", path)
                continue
            if lazy and parsed not in open_txns:
                # nothing to recover after a clean shutdown: read the directory at first use
                self._unloaded[parsed] = _Unloaded(
                    path, points.get(parsed), positions.get(parsed), cleaner_points.get(parsed)
                )
                continue
            log = SegmentLog.load(
                path,
                *parsed,
                self._default_config,
                clean=clean,
                recovery_point=points.get(parsed),
                recovery_position=positions.get(parsed),
                fsync=self._fsync,
                clock=self._clock,
                sync_later=sync_later,
            )
            log.hooks = self._hooks
            self._logs[parsed] = log
            self._note_device(log)
            if pending:
                recovered[log] = pending[:]
                pending.clear()
        if recovered:
            self._sync_recovered(recovered)
        if clean:
            marker.unlink()  # from now on a crash must be noticed
            fsync_dir(self._data_dir, self._fsync)
        remove_quietly(open_txns_path)  # (true of the last clean shutdown only)
        _check_fd_headroom(len(self._logs) + len(self._unloaded))
        self._write_checkpoint()
        self.cleaner.load_checkpoint(list(self._logs.values()))
        self._opened = True
        if self._unloaded and self._background_load:
            logger.info("%d partitions to load at first use or in the background", len(self._unloaded))
            self._loader = threading.Thread(target=self._load_rest, name="riverbed-log-loader", daemon=True)
            self._loader.start()
        self._fsync_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="riverbed-fsync")
        if self._syncfs is not None and self._data_fd is None:
            self._data_fd = os.open(self._data_dir, os.O_RDONLY)
        self._thread = threading.Thread(target=self._run, name="riverbed-flusher", daemon=True)
        self._thread.start()
        if self.remote is not None:
            self.remote.start()

    def _sync_recovered(self, recovered: dict[SegmentLog, list[Segment]]) -> None:
        """Make the segments validated at start-up durable (before the recovery checkpoint
        that trusts them is written): one syncfs for those on the data directory's file
        system, an fsync each for the others, or for all of them if syncfs fails."""
        assert self._syncfs is not None
        every = [seg for segs in recovered.values() for seg in segs]
        own = [seg for log, segs in recovered.items() if log not in self._other_fs for seg in segs]
        if self._data_fd is None:
            self._data_fd = os.open(self._data_dir, os.O_RDONLY)
        if self._syncfs(self._data_fd) == 0:
            for log, segs in recovered.items():
                if log in self._other_fs:
                    for seg in segs:
                        self._fsync(seg.fd)
            logger.info("%d recovered segments made durable by one syncfs", len(own))
            return
        err = ctypes.get_errno()
        self._syncfs_trusted = False
        logger.error("syncfs of %s failed (errno %d): fsyncing each recovered segment", self._data_dir, err)
        for seg in every:
            self._fsync(seg.fd)

    def close(self) -> None:
        """Stop the flusher, flush and close every log, write the recovery checkpoint and
        the clean-shutdown marker. Idempotent."""
        if self._closed or not self._opened:
            self._closed = True
            return
        self._stop_loader()
        if self.remote is not None:
            self.remote.stop()
        self.cleaner.stop()
        self._stop_flusher()
        with self._registry_lock:
            logs = list(self._logs.values())
        # (partitions never loaded since the clean shutdown before are as it left them)
        clean = True
        # with syncfs: every log writes its files without fsyncs, then one syncfs makes them
        # all durable before the clean-shutdown marker is written (one journal commit, not
        # several per partition); logs on another file system fsync their own files
        # (the descriptor opened at start-up: syncfs reports the writeback errors that
        # happened since it was opened; a fresh one would miss earlier ones)
        syncfs = self._syncfs if self._syncfs_trusted else None
        data_fd, self._data_fd = self._data_fd, None
        if data_fd is None:
            syncfs = None
        for log in logs:
            try:
                deferred = syncfs is not None and log not in self._other_fs
                log.close(fsync=_no_fsync if deferred else None)
            except (OSError, KafkaError):
                logger.exception("%s: unclean close", log.directory)
                clean = False
        if syncfs is not None and data_fd is not None and syncfs(data_fd) != 0:
            logger.error(
                "syncfs of %s failed (errno %d): the next start recovers every log",
                self._data_dir,
                ctypes.get_errno(),
            )
            clean = False
        if data_fd is not None:
            os.close(data_fd)
        self._write_checkpoint(logs)
        if clean:
            # (partitions never loaded had none: they would have been loaded at start-up)
            open_txns = []
            for log in logs:
                starts = [v.current_txn_start_offset for v in log.producer_states()]
                starts = [s for s in starts if s >= 0]
                if starts:
                    open_txns.append((log.topic, log.partition, min(starts)))
            write_offset_checkpoint(self._data_dir / OPEN_TXNS_CHECKPOINT, open_txns, self._fsync)
            write_file(self._data_dir / CLEAN_SHUTDOWN, b"", self._fsync)
            fsync_dir(self._data_dir, self._fsync)
        self._closed = True

    def abandon(self) -> None:
        """Stop as a crash would: no flush, no index files, no marker (for tests)."""
        self._stop_loader()
        if self.remote is not None:
            self.remote.stop()
        self.cleaner.stop()
        self._stop_flusher()
        with self._registry_lock:
            logs = list(self._logs.values())
        for log in logs:
            log.close(clean=False)
        if self._data_fd is not None:
            os.close(self._data_fd)
            self._data_fd = None
        self._closed = True

    def __enter__(self) -> LogManager:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- partitions ------------------------------------------------------------------------

    def create(self, topic: str, partition: int, config: LogConfig) -> SegmentLog:
        """The log of ``topic``/``partition``, created if needed. For an existing log (for
        instance one found by :meth:`open`), ``config`` replaces its configuration."""
        if not is_legal_topic(topic):
            raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, f"illegal topic name {topic!r}")
        if partition < 0:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS, f"illegal partition {partition}")
        self._check_open()
        key = (topic, partition)
        log = self.get(topic, partition)
        if log is not None:
            log.update_config(config)
            return log
        path = self._data_dir / partition_dir_name(topic, partition)
        if path.exists():
            log = SegmentLog.load(
                path, topic, partition, config, fsync=self._fsync, clock=self._clock
            )
        else:
            # with syncfs, the new files are made durable by the first flush cycle of the log
            # (before its first append is acknowledged), not by four fsyncs each: creating
            # 10,000 partitions then costs no journal commit per partition
            try:
                log = SegmentLog.create(
                    path,
                    topic,
                    partition,
                    config,
                    fsync=self._fsync,
                    clock=self._clock,
                    defer_sync=self._syncfs_trusted,
                )
            except OSError as exc:
                shutil.rmtree(path, ignore_errors=True)  # nothing half-made stays behind
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    soft, _ = raise_fd_limit()
                    message = (
                        f"cannot create {topic}-{partition}: too many open files "
                        f"({len(self._logs)} partitions open, ulimit -n {soft}); raise the limit"
                    )
                    logger.error("%s", message)
                    raise KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, message) from exc
                logger.error("cannot create %s: %s", path, exc)
                raise KafkaError(
                    ErrorCode.KAFKA_STORAGE_ERROR, f"cannot create {path.name}: {exc}"
                ) from exc
        log.hooks = self._hooks
        self._note_device(log)
        with self._registry_lock:
            self._logs[key] = log
        self._sync_remote(log)
        return log

    def _note_device(self, log: SegmentLog) -> None:
        if os.stat(log.directory).st_dev != self._data_dev:
            self._other_fs.add(log)

    def get(self, topic: str, partition: int) -> SegmentLog | None:
        log = self._logs.get((topic, partition))
        if log is None and self._unloaded:
            return self._load((topic, partition))
        return log

    def get_loaded(self, topic: str, partition: int) -> SegmentLog | None:
        """The log if it is loaded, else None (without loading it)."""
        return self._logs.get((topic, partition))

    def configure(self, topic: str, partition: int, config: LogConfig) -> bool:
        """Give a known log its configuration without loading it (it takes it when it
        loads). False when the partition is unknown."""
        log = self._logs.get((topic, partition))
        if log is None:
            with self._load_lock:
                pending = self._unloaded.get((topic, partition))
                if pending is not None:
                    pending.config = config
                    return True
            log = self._logs.get((topic, partition))
            if log is None:
                return False
        log.update_config(config)
        return True

    def partitions(self) -> list[SegmentLog]:
        """Every log (loading those not loaded yet)."""
        for key in list(self._unloaded):
            self._load(key)
        return self.loaded_partitions()

    def loaded_partitions(self) -> list[SegmentLog]:
        """The logs loaded so far (what periodic work such as retention, the cleaner and
        metrics iterates: the loader thread loads the others soon after start-up)."""
        with self._registry_lock:
            return list(self._logs.values())

    def unloaded_count(self) -> int:
        return len(self._unloaded)

    def _load(self, key: tuple[str, int]) -> SegmentLog | None:
        """Load a partition found by :meth:`open` after a clean shutdown: what open did
        for every partition before (its directory listing, ``partition.metadata``, the
        segments' sanity checks, the producer snapshot), with nothing to recover."""
        with self._load_lock:
            pending = self._unloaded.get(key)
            if pending is None:
                return self._logs.get(key)
            try:
                log = SegmentLog.load(
                    pending.path,
                    *key,
                    pending.config or self._default_config,
                    clean=True,
                    recovery_point=pending.recovery_point,
                    fsync=self._fsync,
                    clock=self._clock,
                )
            except OSError as exc:
                logger.exception("%s: cannot load the partition", pending.path)
                raise KafkaError(
                    ErrorCode.KAFKA_STORAGE_ERROR, f"cannot load {pending.path.name}: {exc}"
                ) from exc
            if pending.cleaner_point is not None:
                log.cleaner_state.first_dirty_offset = pending.cleaner_point
            log.hooks = self._hooks
            self._note_device(log)
            with self._registry_lock:
                self._logs[key] = log
            del self._unloaded[key]
        self._sync_remote(log)
        return log

    def _load_rest(self) -> None:
        """The loader thread: load every partition not used yet, so that retention, the
        cleaner and metrics see them all soon after a fast start."""
        # first let the broker finish starting and answer its first requests
        if self._loader_stop.wait(LOADER_DELAY_S):
            return
        started = time.monotonic()
        loaded = 0
        for key in list(self._unloaded):
            if self._loader_stop.is_set():
                return
            if key not in self._unloaded:
                continue
            try:
                self._load(key)
            except KafkaError:
                continue  # (logged; a request for it tries again)
            loaded += 1
            self.loaded_in_background += 1
            if loaded % 8 == 0:
                # at most a quarter of a core, and the GIL free most of the time: requests
                # (a Metadata of every partition is pure Python) keep their speed meanwhile
                time.sleep(0.005)
        logger.info(
            "loaded %d partitions in the background in %.2f s",
            loaded,
            time.monotonic() - started,
        )

    def _stop_loader(self) -> None:
        self._loader_stop.set()
        if self._loader is not None:
            self._loader.join()
            self._loader = None

    def _unloaded_cleaner_points(self) -> list[tuple[str, int, int]]:
        with self._load_lock:
            return [
                (*key, u.cleaner_point)
                for key, u in self._unloaded.items()
                if u.cleaner_point is not None
            ]

    def __iter__(self) -> Iterator[SegmentLog]:
        return iter(self.partitions())

    def delete_partition(self, topic: str, partition: int) -> bool:
        """Forget the log and remove its directory (renamed to ``*.deleted`` first, so a
        crash half-way leaves a directory that the next open removes). False if unknown."""
        if (topic, partition) in self._unloaded:
            self._load((topic, partition))
        with self._registry_lock:
            log = self._logs.pop((topic, partition), None)
        if log is None:
            return False
        self._other_fs.discard(log)
        with self._cond:
            self._requested.pop(log, None)
            self._scheduled.pop(log, None)
        self._delete_remote(log)
        log.close(clean=False)
        doomed = log.directory.with_name(f"{log.directory.name}.{uuid.uuid4().hex}{DELETED_SUFFIX}")
        os.rename(log.directory, doomed)
        fsync_dir(self._data_dir, self._fsync)
        shutil.rmtree(doomed, ignore_errors=True)
        self._write_checkpoint()
        return True

    def delete_topic(self, topic: str) -> int:
        """Delete every partition of ``topic``; returns how many there were."""
        with self._registry_lock:
            keys = [key for key in self._logs if key[0] == topic]
        keys += [key for key in list(self._unloaded) if key[0] == topic]
        return sum(self.delete_partition(*key) for key in keys)

    # -- tiered storage --------------------------------------------------------------------

    def _sync_remote(self, log: SegmentLog) -> None:
        """Register ``log`` with the remote log manager when its config enables tiering (or
        update its tiering settings). Without an object store nothing happens: the log
        keeps every segment locally until its own retention deletes it."""
        remote, reader = self.remote, self.remote_reader
        if remote is None or reader is None or log.closed:
            return
        tiering = TieringConfig.from_log_config(log.config)
        if remote.status(log.topic, log.partition) is not None:
            remote.update_tiering(log.topic, log.partition, tiering)
            return
        if not tiering.remote_storage_enable:
            return
        try:
            metadata = remote.register(log, tiering)
        except (MetadataCorrupt, OSError):
            logger.exception("%s: cannot tier this partition", log.directory)
            return
        log.attach_remote(metadata, reader)

    def _delete_remote(self, log: SegmentLog) -> None:
        """Topic deletion: stop tiering the partition and delete its objects on a background
        thread (with a few retries), so a slow or unreachable store never blocks the
        caller; objects it cannot delete are logged and left behind."""
        remote = self.remote
        metadata = log.remote_metadata
        if remote is None or metadata is None:
            return
        # not unregister() here: it waits for a tiering pass in progress (an upload may take
        # seconds) and this runs on the event loop; closing the metadata is enough to stop
        # that pass from writing, and the thread below unregisters
        metadata.close()
        log.detach_remote()
        store, prefix = remote.store, metadata.prefix

        def run() -> None:
            remote.unregister(log.topic, log.partition)
            delay = 0.5
            for attempt in range(6):
                try:
                    for key in store.list(prefix):
                        store.delete(key)
                    return
                except ObjectStoreError as exc:
                    if not exc.retriable or attempt == 5:
                        logger.error("objects under %s left behind: %s", prefix, exc)
                        return
                    time.sleep(delay)
                    delay *= 2

        threading.Thread(target=run, name="riverbed-remote-delete", daemon=True).start()

    # -- background work -------------------------------------------------------------------

    def request_flush(self, log: PartitionLog) -> None:
        """Ask the flusher to fsync ``log`` soon (appends already do this by themselves)."""
        if isinstance(log, SegmentLog):
            self._flush_soon(log)

    @contextmanager
    def gather_flushes(self) -> Iterator[None]:
        """Hold back this thread's flush requests until the block ends, then hand them to the
        flusher at once (see :meth:`LogStore.gather_flushes`). Nested blocks join the outer one."""
        if self._gathered is not None:
            yield
            return
        gathered: dict[SegmentLog, None] = {}
        self._gathered = gathered
        self._gather_thread = threading.get_ident()
        try:
            yield
        finally:
            self._gathered = None
            self._gather_thread = -1
            if gathered:
                with self._cond:
                    self._requested.update(gathered)
                    self._cond.notify()

    def run_retention(self, now_ms: int) -> None:
        """One retention pass over every log (see :meth:`SegmentLog.enforce_retention`)."""
        for log in self.loaded_partitions():
            try:
                log.enforce_retention(now_ms)
            except KafkaError:
                if not log.closed:
                    logger.exception("%s: retention failed", log.directory)

    # -- the log cleaner -------------------------------------------------------------------

    def start_cleaner(self) -> None:
        """Start the background cleaner thread (unless ``CleanerConfig.enabled`` is off)."""
        self._check_open()
        self.cleaner.start()

    def stop_cleaner(self) -> None:
        """Stop the background cleaner thread (waits for it; a clean in progress stops at
        its next batch). Idempotent."""
        self.cleaner.stop()

    def clean_now(self, log: SegmentLog, now_ms: int | None = None) -> CleanStats | None:
        """Compact ``log`` now on the calling thread, whatever its dirty ratio, and update
        the cleaner checkpoint; None when it is not compacted or has nothing cleanable."""
        return self.cleaner.clean_now(log, now_ms)

    def remote_stats(self, topic: str, partition: int) -> tuple[int, int] | None:
        """(bytes, segments) of the partition's finished remote segments; None when the
        partition is not tiered (or no remote store is configured)."""
        if self.remote is None:
            return None
        metadata = self.remote.metadata(topic, partition)
        if metadata is None:
            return None
        finished = metadata.finished()
        return sum(seg.size for seg in finished), len(finished)

    def cleaner_info(
        self, topic: str, partition: int, now_ms: int | None = None
    ) -> CleanerInfo | None:
        """Dirty ratio, cleanable bytes, last clean time and statistics of one log."""
        log = self.get(topic, partition)
        return None if log is None else log.cleaner_info(now_ms)

    def flush_all(self) -> None:
        """fsync every log now, on the calling thread."""
        advanced = False
        for log in self.loaded_partitions():
            advanced |= log.flush_cycle()[0]
        self._write_checkpoint()
        OPEN_SEGMENT_FILES.trim()
        if advanced and self._on_durable is not None:
            self._on_durable()

    # -- the flusher -----------------------------------------------------------------------

    def _flush_soon(self, log: SegmentLog) -> None:
        gathered = self._gathered
        if gathered is not None and self._gather_thread == threading.get_ident():
            gathered[log] = None
            return
        with self._cond:
            self._requested[log] = None
            self._cond.notify()

    def _flush_later(self, log: SegmentLog, delay_s: float) -> None:
        with self._cond:
            if log not in self._scheduled:
                self._scheduled[log] = time.monotonic() + delay_s
                self._cond.notify()

    def _recovery_point_lowered(self, log: SegmentLog) -> None:
        self._write_checkpoint()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._requested:
                        break
                    now = time.monotonic()
                    deadline = min(self._scheduled.values(), default=None)
                    if deadline is not None and deadline <= now:
                        break
                    if self._stopping:
                        return
                    self._cond.wait(None if deadline is None else deadline - now)
                batch = list(self._requested)
                self._requested.clear()
                now = time.monotonic()
                for log in [log for log, due in self._scheduled.items() if due <= now]:
                    del self._scheduled[log]
                    if log not in batch:
                        batch.append(log)
            self._cycle(batch)

    @staticmethod
    def _flush_one(log: SegmentLog) -> tuple[bool, bool]:
        try:
            return log.flush_cycle()
        except KafkaError:
            logger.exception("%s: flush failed", log.directory)
            return False, False

    @staticmethod
    def _finish_one(log: SegmentLog, mark: FlushMark | None, synced: bool) -> tuple[bool, bool]:
        try:
            return log.flush_finish(mark, synced=synced)
        except KafkaError:
            logger.exception("%s: flush failed", log.directory)
            return False, False

    def _cycle_syncfs(self, logs: list[SegmentLog], data_fd: int) -> list[tuple[bool, bool]]:
        """One syncfs(2) for the whole cycle. Each log's flush lock is taken and what it has
        appended noted first; the syncfs that follows makes all of it durable at once (the
        kernel reports writeback errors of the file system to syncfs since Linux 5.8), so
        no per-file fsync is needed: one cycle costs one journal commit and one cache flush,
        not one per partition. When syncfs fails, every log falls back to its own fsyncs,
        which report the error on the files it concerns."""
        assert self._syncfs is not None
        marks: list[FlushMark | None] = []
        try:
            for log in logs:
                try:
                    marks.append(log.flush_begin())
                except KafkaError:  # pragma: no cover - flush_begin raises nothing today
                    logger.exception("%s: flush failed", log.directory)
                    marks.append(None)
            synced = self._syncfs(data_fd) == 0
            if not synced:
                self._syncfs_trusted = False
        except BaseException:
            for log, mark in zip(logs, marks, strict=False):  # release every flush lock taken
                self._finish_one(log, mark, False)
            raise
        if not synced:
            logger.warning(
                "syncfs of %s failed (errno %d): fsyncing each log",
                self._data_dir,
                ctypes.get_errno(),
            )
        other = self._other_fs
        synced_logs = [synced and log not in other for log in logs]
        pool = self._fsync_pool
        if pool is not None and not all(synced_logs):
            return list(pool.map(self._finish_one, logs, marks, synced_logs))
        return [
            self._finish_one(log, mark, ok)
            for log, mark, ok in zip(logs, marks, synced_logs, strict=True)
        ]

    def _cycle(self, logs: list[SegmentLog]) -> None:
        t0 = time.perf_counter()
        pool = self._fsync_pool
        data_fd = self._data_fd
        if len(logs) >= SYNCFS_MIN_LOGS and self._syncfs_trusted and data_fd is not None:
            results = self._cycle_syncfs(logs, data_fd)
        elif len(logs) > 1 and pool is not None:
            results = list(pool.map(self._flush_one, logs))
        else:
            results = [self._flush_one(log) for log in logs]
        # a log whose flush failed wakes its waiters too: they answer KAFKA_STORAGE_ERROR
        # now instead of at their timeout
        stats = self.flush_stats
        stats.seconds.observe(time.perf_counter() - t0)
        stats.logs.observe(len(logs))
        stats.records.observe(
            sum(log.flushed_records for log, (moved, _) in zip(logs, results, strict=True) if moved)
        )
        advanced = any(moved for moved, _ in results) or any(log.failed for log in logs)
        checkpoint = any(sealed for _, sealed in results)
        self.flush_cycles += 1
        OPEN_SEGMENT_FILES.trim()
        if checkpoint and self.remote is not None:
            self.remote.wake()  # rolled segments are finalized: something to tier
        if checkpoint:
            try:
                self._write_checkpoint()
            except OSError:
                logger.exception("writing the recovery checkpoint failed")
        if advanced and self._on_durable is not None:
            try:
                self._on_durable()
            except Exception:
                logger.exception("on_durable callback failed")

    def _stop_flusher(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._fsync_pool is not None:
            self._fsync_pool.shutdown(wait=True)
            self._fsync_pool = None

    def _write_checkpoint(self, logs: list[SegmentLog] | None = None) -> None:
        with self._checkpoint_lock:
            with self._load_lock:
                # (a partition never loaded keeps the point the last clean shutdown wrote)
                points = {
                    key: (u.recovery_point, u.recovery_position or 0)
                    for key, u in self._unloaded.items()
                    if u.recovery_point is not None
                }
            if logs is None:
                logs = self.loaded_partitions()
            for log in logs:
                points[(log.topic, log.partition)] = log.recovery_point_and_position()
            # each position names its segment, so whichever of the two files a crash
            # leaves older, a position is never applied to another segment than its own
            write_recovery_positions(
                self._data_dir,
                [(t, p, base, pos) for (t, p), (base, pos) in points.items() if pos > 0],
                self._fsync,
            )
            entries = [(t, p, point) for (t, p), (point, _) in points.items()]
            write_recovery_checkpoint(self._data_dir, entries, self._fsync)

    def _check_open(self) -> None:
        if not self._opened or self._closed:
            raise KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, "log manager is not open")


LOADER_DELAY_S = 1.0
"""How long the loader thread waits after open() before loading the partitions not used yet."""


class _Unloaded:
    """A partition directory found at start-up after a clean shutdown, not loaded yet."""

    __slots__ = ("cleaner_point", "config", "path", "recovery_point", "recovery_position")

    def __init__(
        self,
        path: Path,
        recovery_point: int | None,
        recovery_position: int | None,
        cleaner_point: int | None,
    ) -> None:
        self.path = path
        self.recovery_point = recovery_point
        self.recovery_position = recovery_position
        self.cleaner_point = cleaner_point
        self.config: LogConfig | None = None


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft limit on open files (``ulimit -n``) to the hard limit, as the JVM does
    for Kafka (``-XX:+MaxFDLimit``, on by default): every partition keeps its active
    segment open. Returns the (soft, hard) limits now in force; (-1, -1) where unknown."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux/macOS
        return -1, -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            logger.debug("cannot raise the open-files limit from %d to %d", soft, target)
    return soft, hard


def _check_fd_headroom(partitions: int) -> None:
    """After start-up: a log line when the open segments use most of the open-files limit
    (new partitions, segments and connections would then fail with EMFILE, answered
    KAFKA_STORAGE_ERROR)."""
    soft, _ = raise_fd_limit()
    if soft < 0:
        return
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = partitions
    if in_use > soft * 0.8:
        logger.warning(
            "%d of the %d open files allowed (ulimit -n) are in use after opening %d "
            "partitions (each keeps its active segment open): raise the limit",
            in_use,
            soft,
            partitions,
        )


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(2) (Linux 5.8 or later), or None where it is not available. Before
    5.8, syncfs did not report writeback errors, so its success could not stand in for
    the fsyncs of the files it wrote back."""
    if not sys.platform.startswith("linux") or _kernel_version() < (5, 8):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return cast(Callable[[int], int], fn)


def _kernel_version() -> tuple[int, int]:
    try:
        major, minor = os.uname().release.split(".")[:2]
        return int(major), int("".join(c for c in minor if c.isdigit()) or 0)
    except ValueError:
        return 0, 0


def _no_fsync(fd: int) -> None:
    """For writes that the syncfs(2) following them makes durable."""
