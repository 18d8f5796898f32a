"""The background log cleaner of a :class:`LogManager` (Kafka's ``LogCleaner`` thread and
``LogCleanerManager``): which log to clean next, the cleaner checkpoint, the thread.

Each round the thread computes every compacted log's :class:`CleanerInfo`, picks the
dirtiest one that qualifies (dirty ratio >= ``min.cleanable.dirty.ratio``, or overdue by
``max.compaction.lag.ms``, or a delete horizon of a retained tombstone/marker has passed)
and cleans it; when none qualifies it sleeps ``backoff_ms``. All cleaning I/O goes through
one :class:`Throttler`. The first dirty offset of every cleaned log is kept in
``<data_dir>/cleaner-offset-checkpoint`` (rewritten atomically after each clean), so a
restart does not clean everything again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from riverbed.protocol.errors import KafkaError
from riverbed.stats import LATENCY_BUCKETS, Histogram

from .cleaner import (
    DEFAULT_DEDUPE_BUFFER_BYTES,
    IN_THREAD,
    CleanerError,
    CleanRunner,
    CleanStats,
    Throttler,
    clean_log,
)
from .cleaner_worker import ProcessRunner
from .files import CLEANER_CHECKPOINT, Fsync, read_offset_checkpoint, write_offset_checkpoint
from .log import SegmentLog

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CleanerConfig:
    """Broker-wide cleaner settings, named after Kafka's ``log.cleaner.*``."""

    enabled: bool = True
    """log.cleaner.enable: start the background thread with :meth:`LogCleaner.start`."""
    dedupe_buffer_bytes: int = DEFAULT_DEDUPE_BUFFER_BYTES
    """log.cleaner.dedupe.buffer.size: memory for the key -> offset map of one clean."""
    io_max_bytes_per_second: float = math.inf
    """log.cleaner.io.max.bytes.per.second: read + write throttle of the cleaner."""
    backoff_ms: int = 15_000
    """log.cleaner.backoff.ms: sleep when no log needs cleaning."""
    worker_process: bool = True
    """Run each clean's offset map and rewrite in a worker process
    (:mod:`.cleaner_worker`), off the broker's GIL; False: on the cleaner thread."""
    worker_nice: int = 10
    """Nice increment of the worker process: on a busy machine the broker's own threads
    get the CPU first (0: the same priority as the broker)."""

    def __post_init__(self) -> None:
        if self.dedupe_buffer_bytes < 1:
            raise ValueError("dedupe_buffer_bytes must be positive")
        if self.io_max_bytes_per_second <= 0:
            raise ValueError("io_max_bytes_per_second must be positive")
        if self.backoff_ms < 0:
            raise ValueError("backoff_ms must not be negative")


class LogCleaner:
    def __init__(
        self,
        data_dir: Path,
        logs: Callable[[], list[SegmentLog]],
        config: CleanerConfig,
        *,
        clock: Callable[[], float],
        fsync: Fsync,
    ) -> None:
        self._path = data_dir / CLEANER_CHECKPOINT
        self._logs = logs
        self.unloaded_points: Callable[[], list[tuple[str, int, int]]] = list
        """Checkpoint entries of partitions the log manager has not loaded yet (kept as
        they were read: their logs cannot have changed)."""
        self.config = config
        self._clock = clock
        self._fsync = fsync
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._checkpoint_lock = threading.Lock()
        self._throttle = Throttler(
            config.io_max_bytes_per_second, sleep=lambda s: self._stop.wait(s)
        )
        self.runner: CleanRunner = ProcessRunner(nice=config.worker_nice) if config.worker_process else IN_THREAD
        """Where each clean's rewrite runs."""
        self.rounds = 0
        """Background rounds run so far (for tests and metrics)."""
        self.clean_seconds = Histogram(LATENCY_BUCKETS)
        """Duration of each completed clean (metrics: Kafka's max-clean-time-secs)."""
        self.bytes_read = 0
        self.bytes_written = 0
        """Bytes the completed cleans read and wrote (metrics: Kafka's cleaner-recopy-percent)."""

    def reconfigure(self, *, dedupe_buffer_bytes: int, io_max_bytes_per_second: float, backoff_ms: int) -> None:
        """Dynamic broker configs: the next clean uses the new memory and throttle, the
        next idle sleep the new backoff."""
        self.config = replace(self.config, dedupe_buffer_bytes=dedupe_buffer_bytes, io_max_bytes_per_second=io_max_bytes_per_second, backoff_ms=backoff_ms)
        self._throttle.rate = io_max_bytes_per_second

    # -- checkpoint ------------------------------------------------------------------------

    def load_checkpoint(self, logs: list[SegmentLog]) -> None:
        """Give every log its first dirty offset from the checkpoint file."""
        points = read_offset_checkpoint(self._path)
        for log in logs:
            offset = points.get((log.topic, log.partition))
            if offset is not None:
                log.cleaner_state.first_dirty_offset = offset

    def write_checkpoint(self) -> None:
        with self._checkpoint_lock:
            # (unloaded first: a log loaded meanwhile then shows up in both, and its loaded
            # entry wins, rather than in neither)
            points = {(t, p): o for t, p, o in self.unloaded_points()}
            for log in self._logs():
                points.pop((log.topic, log.partition), None)
                if log.cleaner_state.first_dirty_offset >= 0:
                    points[(log.topic, log.partition)] = log.cleaner_state.first_dirty_offset
            entries = [(t, p, o) for (t, p), o in points.items()]
            write_offset_checkpoint(self._path, entries, self._fsync)

    # -- cleaning --------------------------------------------------------------------------

    def clean_now(self, log: SegmentLog, now_ms: int | None = None) -> CleanStats | None:
        """Clean ``log`` on the calling thread, whatever its dirty ratio, and checkpoint."""
        now = self._now_ms() if now_ms is None else now_ms
        t0 = time.perf_counter()
        stats = clean_log(
            log,
            now,
            dedupe_buffer_bytes=self.config.dedupe_buffer_bytes,
            throttle=self._throttle,
            stop=self._stop,
            fsync=self._fsync,
            runner=self.runner,
        )
        if stats is not None and not stats.aborted:
            self.clean_seconds.observe(time.perf_counter() - t0)
            self.bytes_read += stats.bytes_read
            self.bytes_written += stats.bytes_written
            self.write_checkpoint()
        return stats

    def pick(self, now_ms: int) -> SegmentLog | None:
        """The dirtiest log that needs cleaning (overdue ones first), if any."""
        best: tuple[bool, float] | None = None
        chosen = None
        for log in self._logs():
            if not log.config.cleanup_compact or log.closed:
                continue
            try:
                info = log.cleaner_info(now_ms)
            except KafkaError:
                continue  # closed meanwhile
            if not info.should_clean:
                continue
            rank = (info.needs_compaction_now, info.dirty_ratio)
            if best is None or rank > best:
                best, chosen = rank, log
        return chosen

    def run_once(self, now_ms: int | None = None) -> CleanStats | None:
        """One background round: clean the log :meth:`pick` chooses; None if none."""
        now = self._now_ms() if now_ms is None else now_ms
        log = self.pick(now)
        if log is None:
            return None
        try:
            return self.clean_now(log, now)
        except (CleanerError, KafkaError) as exc:
            if not log.closed:
                logger.error("%s: marking the log uncleanable: %s", log.directory, exc)
                log.cleaner_state.uncleanable = str(exc)
            return None

    # -- the thread ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None or not self.config.enabled:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="riverbed-cleaner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; a clean in progress stops at its next batch and swaps nothing
        more."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if isinstance(self.runner, ProcessRunner):
            self.runner.close()

    def wake(self) -> None:
        """Cut the current backoff short (e.g. after a config change)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                stats = self.run_once()
            except Exception:  # pragma: no cover - logged, the thread carries on
                logger.exception("log cleaner round failed")
                stats = None
            self.rounds += 1
            if stats is None or stats.aborted:
                self._wake.wait(self.config.backoff_ms / 1000)
                self._wake.clear()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)
