"""What tiered storage needs from a partition log, and its per-topic settings.

The remote log manager never reaches into a log's internals: it asks for the log's sealed
segments (:meth:`TieredLog.sealed_segments`), for a consistent copy of one segment's files
(:meth:`TieredLog.stage_segment`, hard links taken under the lock that guards file
replacement), and it tells the log which local segments may go
(:meth:`TieredLog.drop_local_below`) and when total retention moved the log start
(:meth:`TieredLog.advance_log_start`). See ``docs/adr/0005-tiered-storage.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..api import LogConfig

__all__ = ["SealedSegment", "StagedSegment", "TieredLog", "TieringConfig"]

USE_TOTAL = -2
"""``local.retention.*`` value meaning "the same as ``retention.*``" (Kafka's default)."""


@dataclass(frozen=True, slots=True)
class TieringConfig:
    """The tiering settings of one topic (Kafka's names)."""

    remote_storage_enable: bool = False
    """remote.storage.enable: copy sealed segments to the object store."""
    local_retention_ms: int = USE_TOTAL
    """local.retention.ms: how long a segment that is safely remote stays on local disk
    (-2 = retention.ms, -1 = forever)."""
    local_retention_bytes: int = USE_TOTAL
    """local.retention.bytes: the most local bytes to keep once older segments are remote
    (-2 = retention.bytes, -1 = unlimited)."""

    def __post_init__(self) -> None:
        if self.local_retention_ms < USE_TOTAL or self.local_retention_bytes < USE_TOTAL:
            raise ValueError("local.retention.* must be -2, -1 or >= 0")

    @classmethod
    def from_log_config(cls, config: LogConfig) -> TieringConfig:
        return cls(
            config.remote_storage_enable, config.local_retention_ms, config.local_retention_bytes
        )

    def effective_local_retention_ms(self, config: LogConfig) -> int:
        """The local time limit, never longer than the total one (Kafka refuses a larger
        local.retention.ms; here the total wins)."""
        if self.local_retention_ms == USE_TOTAL:
            return config.retention_ms
        if config.retention_ms >= 0 and config.cleanup_delete:
            if self.local_retention_ms < 0:
                return config.retention_ms
            return min(self.local_retention_ms, config.retention_ms)
        return self.local_retention_ms

    def effective_local_retention_bytes(self, config: LogConfig) -> int:
        if self.local_retention_bytes == USE_TOTAL:
            return config.retention_bytes
        if config.retention_bytes >= 0 and config.cleanup_delete:
            if self.local_retention_bytes < 0:
                return config.retention_bytes
            return min(self.local_retention_bytes, config.retention_bytes)
        return self.local_retention_bytes


@dataclass(frozen=True, slots=True)
class SealedSegment:
    """A sealed, finalized local segment (its index files are on disk and fsynced)."""

    base_offset: int
    last_offset: int
    """Last offset of its last batch (inclusive)."""
    max_timestamp: int
    """What retention compares: the largest batch timestamp, else the file's mtime (ms)."""
    size: int
    """Bytes of the ``.log`` file."""
    offset_of_max_timestamp: int = -1
    """Base offset of the first batch holding ``max_timestamp`` (-1 when none)."""


@dataclass(frozen=True, slots=True)
class StagedSegment:
    """A consistent copy of one segment's files, made for the upload."""

    segment: SealedSegment
    files: Mapping[str, Path]
    """Suffix (``.log``, ``.index``, ``.timeindex`` and, when it has one, ``.txnindex``) ->
    a hard link (or copy) of that file in the staging directory."""
    producer_snapshot: bytes | None = None
    """The producer table as of an offset at or after the segment's end (uploaded as is,
    for rebuilding producer state from remote data later); None when not available."""


class TieredLog(Protocol):
    """The hooks a partition log offers the remote log manager.

    Thread-safety: every method is called from the manager's thread while the event loop
    appends and reads; implementations take their own locks."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def directory(self) -> Path:
        """The partition directory: the remote-log metadata file lives there."""
        ...

    @property
    def config(self) -> LogConfig: ...
    @property
    def log_start_offset(self) -> int:
        """The partition's log start offset (remote data included); DeleteRecords moves it."""
        ...

    @property
    def size_bytes(self) -> int:
        """Bytes of every local segment, the active one included."""
        ...

    def sealed_segments(self) -> list[SealedSegment]:
        """The local segments that may be tiered, oldest first: sealed, finalized (index
        files fsynced), wholly below the high watermark; for a compacted log, only the ones
        the cleaner has cleaned (the log decides). Never the active segment."""
        ...

    def stage_segment(self, base_offset: int, staging_dir: Path) -> StagedSegment | None:
        """Hard-link the files of the sealed segment starting at ``base_offset`` into
        ``staging_dir`` while holding the lock under which the log deletes, truncates or
        swaps (cleaner) segment files, so the links form one consistent version. None
        when that segment is gone or is not sealed and finalized any more."""
        ...

    def drop_local_below(self, offset: int) -> int:
        """Delete the local sealed segments whose last offset is below ``offset`` (never the
        active one); the local log start moves, the partition's log start does not.
        Returns the number of segments deleted."""
        ...

    def advance_log_start(self, offset: int) -> None:
        """Total retention deleted remote data below ``offset``: move the partition's log
        start offset up to it (persisted, like DeleteRecords); never moves it back."""
        ...
