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
* ``last_stable_offset`` (LSO) bounds what ``read_committed`` consumers may read: the high
  watermark, held back to the first offset of any transaction that is still open, or whose
  marker is not below the high watermark yet.

Transactions (Kafka's rules): a transactional batch from a producer starts that producer's
transaction in the partition; :meth:`PartitionLog.append_marker` writes the COMMIT or ABORT
marker that ends it. Aborted transactions are remembered (per segment, in ``.txnindex``
files on disk) so that a fetch can tell read_committed consumers which records to drop.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from riverbed.protocol.errors import ErrorCode, KafkaError

__all__ = [
    "AppendInfo",
    "LogConfig",
    "LogStore",
    "NeedsRemote",
    "OffsetOutOfRange",
    "PartitionLog",
    "ProducerStateView",
    "ReadResult",
]

DAY_MS = 24 * 3600 * 1000
LONG_MAX = 2**63 - 1


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
    cleanup_delete: bool = True
    """cleanup.policy contains ``delete``: retention.ms / retention.bytes delete segments."""
    cleanup_compact: bool = False
    """cleanup.policy contains ``compact``: the log cleaner keeps the latest record per key."""
    min_cleanable_dirty_ratio: float = 0.5
    """min.cleanable.dirty.ratio: clean a log once its dirty part is this share of it."""
    min_compaction_lag_ms: int = 0
    """min.compaction.lag.ms: a record stays uncompacted at least this long (by the largest
    timestamp of its segment)."""
    max_compaction_lag_ms: int = LONG_MAX
    """max.compaction.lag.ms: a dirty record is compacted at most this long after it was
    written, whatever the dirty ratio (also caps how long the active segment stays open)."""
    delete_retention_ms: int = DAY_MS
    """delete.retention.ms: tombstones and transaction markers stay this long after the
    cleaner first saw them (their batch's delete horizon), then go."""
    remote_storage_enable: bool = False
    """remote.storage.enable: tier sealed segments to the broker's object store (when the
    log manager has one); local retention then only deletes segments that are remote."""
    local_retention_ms: int = -2
    """local.retention.ms: how long a segment that is safely remote stays on local disk
    (-2 = retention.ms, -1 = forever)."""
    local_retention_bytes: int = -2
    """local.retention.bytes: the most local bytes kept once older segments are remote
    (-2 = retention.bytes, -1 = unlimited)."""

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
        if not 0 <= self.min_cleanable_dirty_ratio <= 1:
            raise ValueError("min_cleanable_dirty_ratio must be between 0 and 1")
        if self.min_compaction_lag_ms < 0:
            raise ValueError("min_compaction_lag_ms must not be negative")
        if self.max_compaction_lag_ms < 1:
            raise ValueError("max_compaction_lag_ms must be positive")
        if self.delete_retention_ms < 0:
            raise ValueError("delete_retention_ms must not be negative")
        if self.local_retention_ms < -2 or self.local_retention_bytes < -2:
            raise ValueError("local_retention_ms / local_retention_bytes must be >= -2")

    @property
    def roll_ms(self) -> int:
        """How old the active segment may get before a roll: segment.ms, or
        max.compaction.lag.ms when compacting and smaller (Kafka's ``maxSegmentMs``), since
        the cleaner never touches the active segment."""
        if self.cleanup_compact:
            return min(self.segment_ms, self.max_compaction_lag_ms)
        return self.segment_ms

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
    """The log's :attr:`PartitionLog.last_stable_offset` when the read was made (the high
    watermark when no transaction is open)."""


@dataclass(frozen=True, slots=True)
class ProducerStateView:
    """What a partition knows about one producer (DescribeProducers)."""

    producer_id: int
    producer_epoch: int
    last_sequence: int
    """Last sequence number written by the producer (-1 when none is cached)."""
    last_timestamp: int
    """Largest timestamp of its batches and markers (-1 when none)."""
    coordinator_epoch: int
    """Coordinator epoch of the last transaction marker written for it (-1 when none)."""
    current_txn_start_offset: int
    """First offset of its ongoing transaction in this partition (-1 when none)."""


class NeedsRemote(Exception):
    """Raised by ``read`` / ``aborted_transactions`` / ``offset_for_timestamp`` called with
    ``remote_ok=False`` when the answer needs the object store (tiered data): the broker
    then does the request on its remote-read pool, off the event loop. Decided under the
    log's lock, so a segment tiered away in the meantime cannot slip a blocking store call
    onto the loop."""


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
    def local_log_start_offset(self) -> int:
        """The first offset held on local disk: the log start offset, or above it when
        older segments live only in the object store (tiered storage). Reads below it
        block on the object store, so the broker runs them off the event loop."""
        ...

    @property
    def log_end_offset(self) -> int: ...
    @property
    def high_watermark(self) -> int: ...
    @property
    def failed(self) -> str | None:
        """Why the log refuses every write until a restart (a failed fsync), else None."""
        ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def segment_count(self) -> int:
        """Local segments, the active one included (Kafka's NumLogSegments)."""
        ...

    @property
    def last_stable_offset(self) -> int:
        """Kafka's LSO: the lowest of the high watermark, the first offset of every ongoing
        transaction, and the first offset of every completed transaction whose marker is
        not below the high watermark yet; never below the log start offset. Equal to the
        high watermark when no transaction is open. read_committed fetches pass it as
        ``isolation_upper`` to :meth:`read`."""
        ...

    def append(
        self,
        batch: bytearray,
        *,
        now_ms: int,
        log_append_time: bool = False,
        origin_coordinator: bool = False,
        flush: bool = True,
    ) -> AppendInfo:
        """Append one validated v2 batch from a client: assign offsets by patching
        baseOffset in place (and, with ``log_append_time``, stamp ``now_ms`` as
        maxTimestamp and recompute the CRC), then store the bytes unchanged.

        Producer checks (idempotence and transactions): a retry of one of the producer's
        last five batches returns the original offsets and appends nothing; a fenced epoch
        is INVALID_PRODUCER_EPOCH, a sequence gap OUT_OF_ORDER_SEQUENCE_NUMBER. A
        transactional batch starts the producer's transaction here (at its base offset)
        unless one is ongoing; a non-transactional batch from a producer whose transaction
        is ongoing here is INVALID_TXN_STATE. A control batch, or a transactional batch
        without a producer id, is INVALID_RECORD (only :meth:`append_marker` writes
        markers). Nothing is appended when an error is raised.

        ``origin_coordinator``: the broker writes the batch itself (Kafka's
        ``AppendOrigin.COORDINATOR``, e.g. the offsets of TxnOffsetCommit, which carry the
        producer id and epoch but no sequence numbers): the epoch is checked and the
        transaction bookkeeping applies, but sequences are not checked and the batch is
        never taken for a duplicate.

        ``flush=False``: with ``flush_messages == 1``, do not ask the flusher for an fsync:
        the next flush of the log (asked for by a later append, or by the caller through
        :meth:`LogStore.request_flush`) takes the batch along; until then it is neither
        durable nor visible. For records nobody waits for, such as the transaction
        coordinator's Complete state. Storage without fsync ignores it."""
        ...

    def append_marker(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        *,
        now_ms: int,
    ) -> AppendInfo:
        """Append a COMMIT (``commit``) or ABORT transaction marker for the producer: one
        control batch (timestamp ``now_ms``) holding one control record, as the transaction
        coordinator writes it (Kafka's ``appendEndTxnMarker``).

        A producer epoch lower than the producer's known one is INVALID_PRODUCER_EPOCH, a
        coordinator epoch lower than the last marker's is TRANSACTION_COORDINATOR_FENCED
        (nothing appended). A higher producer epoch moves the producer to it and clears its
        cached batches (its next batch must have sequence 0). The marker ends the
        producer's ongoing transaction in this partition, if any (a marker is appended even
        when there is none); an ABORT that ends one is recorded for
        :meth:`aborted_transactions`. Like any append, the marker becomes durable and
        visible when the high watermark passes it."""
        ...

    def aborted_transactions(self, start_offset: int, upper_offset: int, *, remote_ok: bool = True) -> list[tuple[int, int]]:
        """(producer id, first offset) of every aborted transaction whose marker is at or
        after ``start_offset`` and whose first offset is below ``upper_offset``, ordered by
        first offset: what a read_committed fetch from ``start_offset`` whose data ends
        before ``upper_offset`` must report (Kafka's ``collectAbortedTransactions``)."""
        ...

    def producer_states(self) -> list[ProducerStateView]:
        """Every producer the partition remembers, ordered by producer id."""
        ...

    def read(
        self,
        offset: int,
        max_bytes: int,
        *,
        min_one_batch: bool = True,
        isolation_upper: int | None = None,
        remote_ok: bool = True,
    ) -> ReadResult:
        """Fetch semantics: whole batches starting with the one containing ``offset``, at
        most ``max_bytes`` unless the first batch alone is larger and ``min_one_batch``
        (KIP-74), never a batch at or after the high watermark (or ``isolation_upper``: with
        ``isolation_upper=last_stable_offset``, never a batch at or after the LSO).
        Raises :class:`OffsetOutOfRange` when ``offset`` is outside
        ``[log_start_offset, log_end_offset]``."""
        ...

    def offset_for_timestamp(self, ts: int, *, remote_ok: bool = True) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record below the high watermark, at or after
        the log start offset, whose timestamp is >= ``ts`` (Kafka scans inside the first
        batch whose max timestamp is >= ``ts``); None when there is none."""
        ...

    def max_timestamp(self, *, remote_ok: bool = True) -> tuple[int, int]:
        """(offset, timestamp) of the first record holding the largest timestamp among the
        batches that reach the log start offset (the offset is never below it); (-1, -1)
        when there is no timestamped batch, or when that batch is not below the high
        watermark yet (Kafka then answers "no offset" too). ``remote_ok=False``: raise
        :class:`NeedsRemote` instead of reading the object store."""
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
        (producer.id.expiration.ms), but never one with an ongoing transaction here;
        return how many."""
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
    def get_loaded(self, topic: str, partition: int) -> PartitionLog | None:
        """As :meth:`get`, without loading a partition not loaded yet (None then)."""
        ...
    def configure(self, topic: str, partition: int, config: LogConfig) -> bool:
        """Give an existing log its configuration (without loading it); False if unknown."""
        ...
    def partitions(self) -> Iterable[PartitionLog]: ...
    def delete_partition(self, topic: str, partition: int) -> bool: ...
    def delete_topic(self, topic: str) -> int: ...
    def request_flush(self, log: PartitionLog) -> None: ...
    def gather_flushes(self) -> AbstractContextManager[None]:
        """Inside the block, the flush requests of this thread (appends, :meth:`request_flush`)
        reach the flusher together when it ends: one flush cycle covers them all, instead of a
        flusher that wakes at the first request and needs a second cycle for the rest."""
        ...
    def run_retention(self, now_ms: int) -> None: ...
    def start_cleaner(self) -> None:
        """Start background compaction of ``cleanup.policy=compact`` logs (if any)."""
        ...
    def stop_cleaner(self) -> None: ...
    def flush_all(self) -> None: ...
    def close(self) -> None: ...
    def log_dir_error(self) -> str | None:
        """Why the log directory refuses writes (disk full), else None."""
        ...
