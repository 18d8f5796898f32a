"""The state shared by every part of a SegmentLog, and the read-only views of it.

:class:`LogState` holds the fields of a :class:`riverbed.storage.log.SegmentLog` (the
segment list and its base offsets, the offsets, both locks, the producer table, the flush
bookkeeping) and implements the properties of the PartitionLog interface. It also holds
the few primitives that more than one part of the log needs: the last stable offset,
dropping a prefix of segments, the closed check and the clock. The ``log_*`` mixins build on
it; which lock guards what is described in :mod:`riverbed.storage.log`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from riverbed.protocol.errors import ErrorCode, KafkaError

from .api import LogConfig
from .cleaner import CleanerState
from .files import Fsync
from .producer_state import ProducerStateTable
from .remote.metadata import RemoteLogMetadata
from .remote.reader import RemoteLogReader
from .segment import Segment
from .space import DiskSpace

if TYPE_CHECKING:
    from .log import SegmentLog

# one logger for all the parts of SegmentLog, under the name it had as a single module
logger = logging.getLogger("riverbed.storage.log")
PRODUCER_SNAPSHOT = "producer.snapshot"


@dataclass(frozen=True, slots=True)
class LogHooks:
    """How a log asks its owner (the LogManager) for background work."""

    flush_soon: Callable[[SegmentLog], None]
    flush_later: Callable[[SegmentLog, float], None]
    recovery_point_lowered: Callable[[SegmentLog], None]
    config_changed: Callable[[SegmentLog], None] | None = None
    """Called after :meth:`SegmentLog.update_config` (tiering may have been switched on)."""
    space: DiskSpace | None = None
    """The data directory's disk-full state: appends are refused while it is full, and
    ENOSPC/EDQUOT on a write is reported to it."""


def storage_error(message: str) -> KafkaError:
    return KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, message)


class LogState:
    """The fields of a :class:`riverbed.storage.log.SegmentLog` and the views of them."""

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
        for segment in segments:
            self._own(segment)
        self._bases = [s.base_offset for s in segments]
        self._log_start = log_start_offset
        self._leo = segments[-1].next_offset
        self._hw = self._leo
        self._durable = self._leo
        self._size = sum(s.size for s in segments)
        self._unfinalized: list[Segment] = []  # rolled, not yet fsynced with their indexes
        self._position_trusted = True  # (False while a truncation rewrites the active segment)
        self._changes = 0  # appends, truncations, log start moves, producer expirations
        self._pristine_at = -1
        """``_changes`` when the files on disk were last known to be what a clean close would
        write (a load after a clean shutdown that recovered nothing); -1: unknown."""
        self._dir_dirty = False
        self._created_unsynced = False
        """Created with deferred fsyncs (``SegmentLog.create(defer_sync=True)``): the next
        flush cycle makes the directory and its entry in the data directory durable."""
        self._flush_requested = False
        self._flush_scheduled = False
        self._unflushed_messages = 0
        self.flushed_records = 0  # records made durable by the last flush cycle (metrics)
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
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def last_stable_offset(self) -> int:
        with self._lock:
            return self._lso_locked()

    def _lso_locked(self) -> int:
        hw = self._hw
        producers = self.producers
        if not producers.ongoing and not producers.unreplicated:  # no transaction to wait for
            return max(hw, self._log_start)
        first = self.producers.first_unstable_offset(hw)
        lso = hw if first is None else min(hw, first)
        return max(lso, self._log_start)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def failed(self) -> str | None:
        """Why the log refuses every write until a restart (an fsync failed), else None."""
        return self._failed

    @property
    def recovery_point(self) -> int:
        """Base offset of the first segment whose data or indexes may not be on disk yet;
        recovery after a crash validates from here on."""
        with self._lock:
            if self._unfinalized:
                return self._unfinalized[0].base_offset
            return self._segments[-1].base_offset

    def recovery_point_and_position(self) -> tuple[int, int]:
        """The recovery point and how many bytes of its segment are on disk (fsynced, or
        written back by a syncfs): recovery after a crash validates from there."""
        with self._lock:
            segment = self._unfinalized[0] if self._unfinalized else self._segments[-1]
            return segment.base_offset, segment.synced_size if self._position_trusted else 0

    def segment_base_offsets(self) -> list[int]:
        with self._lock:
            return list(self._bases)

    # -- shared by the parts of the log ----------------------------------------------------

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

    def _own(self, segment: Segment) -> Segment:
        """Make ``segment`` one of this log's: from now on its file may be closed while idle
        (``riverbed.storage.segment.OPEN_SEGMENT_FILES``), under this log's locks."""
        segment.locks = (self._flush_lock, self._lock)
        return segment

    def _check_open(self) -> None:
        if self._closed:
            raise storage_error(f"log {self._topic}-{self._partition} is closed")

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _as_log(self) -> SegmentLog:
        """This object as the SegmentLog it is a part of (what the hooks are called with)."""
        return cast("SegmentLog", self)
