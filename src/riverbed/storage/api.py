"""The storage interface: what the broker may ask of a partition log and of the set of logs.

Two engines implement it: :class:`riverbed.storage.log.SegmentLog` (segment files on disk,
managed by :class:`riverbed.storage.manager.LogManager`) and
:class:`riverbed.storage.memory.MemoryLog` (a list in memory, for tests). Both pass the same
contract suite (``tests/unit/storage/test_contract.py``).

Offsets, in the vocabulary of Kafka::

    log_start_offset <= (visible data) < high_watermark <= log_end_offset

* ``log_end_offset`` (LEO) is the next offset to assign.
* ``high_watermark`` (HW) bounds what consumers may read. With ``flush_messages == 1`` (the
  riverbed default) it is the *durable* end: an append counts only once an fsync covered it,
  so a fetch never returns a record that a power cut could take back. With a larger
  ``flush_messages`` the HW equals the LEO (Kafka's own default trade-off: rely on
  replication / the page cache, fsync by count or time).
* ``log_start_offset`` moves forward with retention and DeleteRecords; it never moves back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from riverbed.protocol.errors import ErrorCode, KafkaError

__all__ = [
    "AppendInfo",
    "LogConfig",
    "LogStore",
    "OffsetOutOfRange",
    "PartitionLog",
    "ReadResult",
]

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Per-partition settings, named after Kafka's topic configs."""

    segment_bytes: int = 1 << 30
    """segment.bytes: roll the active segment before an append would make it larger than this."""
    segment_ms: int = 7 * DAY_MS
    """segment.ms: roll the active segment once its first batch is this old (wall clock)."""
    index_interval_bytes: int = 4096
    """index.interval.bytes: bytes of log between two entries of the sparse indexes."""
    retention_ms: int = 7 * DAY_MS
    """retention.ms: delete a segment whose largest timestamp is older than this (-1 = forever)."""
    retention_bytes: int = -1
    """retention.bytes: delete the oldest segments while the log is larger (-1 = unlimited)."""
    flush_messages: int = 1
    """flush.messages: 1 = every append is fsynced (group commit) before it is visible;
    larger = appends are visible at once and fsynced every ``flush_messages`` records."""
    flush_ms: int = 1000
    """flush.ms: with ``flush_messages > 1``, fsync a dirty log at least this often."""
    max_message_bytes: int = 1048588
    """max.message.bytes: the largest batch the broker accepts (informational here)."""

    def __post_init__(self) -> None:
        if self.segment_bytes < 14:
            raise ValueError("segment_bytes must be at least 14")
        if self.segment_ms < 1:
            raise ValueError("segment_ms must be positive")
        if self.index_interval_bytes < 0:
            raise ValueError("index_interval_bytes must not be negative")
        if self.flush_messages < 1:
            raise ValueError("flush_messages must be at least 1")
        if self.flush_ms < 0:
            raise ValueError("flush_ms must not be negative")

    @property
    def sync_appends(self) -> bool:
        """True when the high watermark waits for fsync (``flush_messages == 1``)."""
        return self.flush_messages == 1


@dataclass(slots=True)
class AppendInfo:
    base_offset: int
    last_offset: int
    log_append_time: int
    """The timestamp written into the batch when the topic uses LogAppendTime, else -1."""
    log_start_offset: int


@dataclass(slots=True)
class ReadResult:
    records: bytes | memoryview
    """Whole v2 batches exactly as stored (possibly empty)."""
    high_watermark: int
    log_start_offset: int
    last_stable_offset: int
    """Equal to the high watermark until transactions arrive."""


class OffsetOutOfRange(KafkaError):
    def __init__(self, message: str = "") -> None:
        super().__init__(ErrorCode.OFFSET_OUT_OF_RANGE, message)


class PartitionLog(Protocol):
    """One partition's log. Appends and reads come from one thread (the event loop);
    engines with a background flusher make the rest thread-safe themselves."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def config(self) -> LogConfig: ...
    @property
    def log_start_offset(self) -> int: ...
    @property
    def log_end_offset(self) -> int: ...
    @property
    def high_watermark(self) -> int: ...
    @property
    def size_bytes(self) -> int: ...

    def append(self, batch: bytearray, *, now_ms: int, log_append_time: bool = False) -> AppendInfo:
        """Append one validated v2 batch: assign offsets by patching baseOffset in place
        (and, with ``log_append_time``, stamp ``now_ms`` as maxTimestamp and recompute the
        CRC), then store the bytes unchanged."""
        ...

    def read(
        self,
        offset: int,
        max_bytes: int,
        *,
        min_one_batch: bool = True,
        isolation_upper: int | None = None,
    ) -> ReadResult:
        """Fetch semantics: whole batches starting with the one containing ``offset``, at
        most ``max_bytes`` unless the first batch alone is larger and ``min_one_batch``
        (KIP-74), never a batch at or after the high watermark (or ``isolation_upper``).
        Raises :class:`OffsetOutOfRange` when ``offset`` is outside
        ``[log_start_offset, log_end_offset]``."""
        ...

    def offset_for_timestamp(self, ts: int) -> tuple[int, int] | None:
        """(base offset, max timestamp) of the first batch below the high watermark whose
        max timestamp is >= ``ts``; the offset is never below the log start offset."""
        ...

    def max_timestamp(self) -> tuple[int, int]:
        """(base offset, timestamp) of the first batch holding the largest timestamp among
        the batches that reach the log start offset (the offset is never below it);
        (-1, -1) when there is no timestamped batch, or when that batch is not below the
        high watermark yet (Kafka then answers "no offset" too)."""
        ...

    def delete_records(self, before_offset: int) -> int:
        """DeleteRecords: advance the log start offset to ``before_offset`` (-1 = the high
        watermark), drop storage wholly below it, return the new log start offset."""
        ...

    def truncate_to(self, offset: int) -> None:
        """Remove every batch holding an offset >= ``offset``; a batch straddling ``offset``
        goes whole, so the log end becomes that batch's base offset. Below the log start
        offset the log is emptied and restarts at ``offset``; if nothing at or above the
        log start offset would remain, the log is emptied and restarts there."""
        ...

    def expire_producers(self, now_ms: int, expiration_ms: int) -> int:
        """Forget idempotent producers idle for longer than ``expiration_ms``
        (producer.id.expiration.ms); return how many."""
        ...

    def update_config(self, config: LogConfig) -> None: ...

    def flush(self) -> bool:
        """Make everything appended so far durable now (synchronously) and advance the high
        watermark; returns True when the high watermark moved."""
        ...


class LogStore(Protocol):
    """The set of partition logs of one broker (a data directory, or memory)."""

    def open(self) -> None: ...
    def create(self, topic: str, partition: int, config: LogConfig) -> PartitionLog: ...
    def get(self, topic: str, partition: int) -> PartitionLog | None: ...
    def partitions(self) -> Iterable[PartitionLog]: ...
    def delete_partition(self, topic: str, partition: int) -> bool: ...
    def delete_topic(self, topic: str) -> int: ...
    def request_flush(self, log: PartitionLog) -> None: ...
    def run_retention(self, now_ms: int) -> None: ...
    def flush_all(self) -> None: ...
    def close(self) -> None: ...
