"""The partition log: segment files with sparse offset and time indexes, recovery,
retention, group-committed fsync (``SegmentLog`` / ``LogManager``), and an in-memory engine
(``MemoryLog`` / ``MemoryLogStore``) that passes the same contract suite.

The interface lives in :mod:`riverbed.storage.api`; the byte layout of every file is
described in ``docs/storage-format.md``."""

from typing import TYPE_CHECKING

from .api import (
    AppendInfo,
    LogConfig,
    LogStore,
    OffsetOutOfRange,
    PartitionLog,
    ProducerStateView,
    ReadResult,
)
from .cleaner import CleanerInfo, CleanStats
from .cleaner_manager import CleanerConfig
from .log import SegmentLog
from .manager import LogManager
from .memory import MemoryLog, MemoryLogStore

__all__ = [
    "AppendInfo",
    "CleanStats",
    "CleanerConfig",
    "CleanerInfo",
    "LogConfig",
    "LogManager",
    "LogStore",
    "MemoryLog",
    "MemoryLogStore",
    "OffsetOutOfRange",
    "PartitionLog",
    "ProducerStateView",
    "ReadResult",
    "SegmentLog",
]

if TYPE_CHECKING:  # mypy proves that every engine implements the interface

    def _conforms(
        a: SegmentLog, b: MemoryLog, c: LogManager, d: MemoryLogStore
    ) -> tuple[PartitionLog, PartitionLog, LogStore, LogStore]:
        return a, b, c, d
