"""Producer state of one partition: for each producer id, its epoch, the last five batches
it wrote (sequence ranges and offsets), and its transaction in this partition, if any.

Checks on append (Kafka's rules, ``ProducerStateManager`` / ``ProducerAppendInfo``):

* no state for the producer id: any sequence is accepted (state may have expired);
* a lower epoch than the known one: INVALID_PRODUCER_EPOCH;
* a higher epoch: the sequence must restart at 0, else OUT_OF_ORDER_SEQUENCE_NUMBER;
* the same epoch and a (first, last) sequence range equal to one of the five cached
  batches: a duplicate (a retry whose response was lost) — the append is skipped and the
  original offsets are returned;
* otherwise the first sequence must follow the last one (wrapping at 2^31 - 1 -> 0; 0 when
  the epoch is known but no batch is cached, e.g. after a marker bumped it), else
  OUT_OF_ORDER_SEQUENCE_NUMBER;
* a non-transactional batch from a producer with an ongoing transaction here:
  INVALID_TXN_STATE. A transactional batch from a producer without one starts one at the
  batch's offset.

Transaction markers (``appendEndTxnMarker``): a marker with a lower producer epoch is
INVALID_PRODUCER_EPOCH, one with a lower coordinator epoch than the last marker's is
TRANSACTION_COORDINATOR_FENCED; a higher producer epoch moves the producer to it (cached
batches cleared). The marker completes the ongoing transaction, if any.

The table is rebuilt at start-up from a snapshot plus the batch headers appended after it
(see ``storage-format.md``). Entries expire after ``producer.id.expiration.ms`` without a
write, except while a transaction is ongoing.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.records.batch import BatchHeader, Buffer, InvalidBatch
from riverbed.protocol.records.records import decode_records, parse_control_record

from .api import ProducerStateView

BATCHES_TO_RETAIN = 5
SEQ_MODULUS = 1 << 31
SNAPSHOT_VERSION = 2


@dataclass(slots=True)
class BatchMeta:
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    timestamp: int


@dataclass(slots=True)
class ProducerEntry:
    epoch: int
    batches: deque[BatchMeta] = field(default_factory=lambda: deque(maxlen=BATCHES_TO_RETAIN))
    last_timestamp: int = -1
    coordinator_epoch: int = -1
    """Coordinator epoch of the last marker written for this producer (-1: none yet)."""
    txn_first_offset: int = -1
    """First offset of the producer's ongoing transaction in this partition (-1: none)."""

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1

    def copy(self) -> ProducerEntry:
        return ProducerEntry(
            self.epoch,
            deque(self.batches, maxlen=BATCHES_TO_RETAIN),
            self.last_timestamp,
            self.coordinator_epoch,
            self.txn_first_offset,
        )


class CompletedTxn(NamedTuple):
    """A transaction closed by a marker: its first offset and the marker's offset."""

    producer_id: int
    first_offset: int
    last_offset: int
    aborted: bool


class Duplicate(Exception):
    """The batch was already appended; ``batch`` holds its original offsets."""

    def __init__(self, batch: BatchMeta) -> None:
        super().__init__("duplicate batch")
        self.batch = batch


class ProducerStateTable:
    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}
        self.ongoing: dict[int, int] = {}
        """producer id -> first offset of its ongoing transaction (mirrors the entries)."""
        self.unreplicated: deque[CompletedTxn] = deque()
        """Completed transactions whose marker may not be below the high watermark yet, in
        marker order (Kafka's ``unreplicatedTxns``): they still hold the LSO back."""

    def __len__(self) -> int:
        return len(self.producers)

    def check(self, producer_id: int, epoch: int, first_seq: int, last_seq: int) -> None:
        """Validate an append; raise :class:`Duplicate` or KafkaError. Pure (no change)."""
        entry = self.producers.get(producer_id)
        if entry is None:
            return
        if epoch < entry.epoch:
            raise KafkaError(
                ErrorCode.INVALID_PRODUCER_EPOCH,
                f"Producer {producer_id}'s epoch {epoch} is older than the current epoch {entry.epoch}",
            )
        if epoch > entry.epoch:
            if first_seq != 0:
                raise KafkaError(
                    ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                    f"Invalid sequence number for new epoch {epoch} of producer {producer_id}: {first_seq} (expected 0)",
                )
            return
        for batch in entry.batches:
            if batch.first_seq == first_seq and batch.last_seq == last_seq:
                raise Duplicate(batch)
        expected = (entry.last_seq + 1) % SEQ_MODULUS
        if first_seq != expected:
            raise KafkaError(
                ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                f"Out of order sequence number for producer {producer_id} at epoch {epoch}: {first_seq} (expected {expected})",
            )

    def check_header(self, header: BatchHeader, *, origin_coordinator: bool = False) -> BatchMeta | None:
        """Check a batch about to be appended: None to go ahead, or the original batch when
        it is a duplicate. Raises KafkaError for a fenced epoch, a sequence gap, or a
        non-transactional batch from a producer with an ongoing transaction. A batch the
        broker writes itself (``origin_coordinator``, e.g. TxnOffsetCommit offsets) has no
        sequence numbers: only its epoch is checked, and it is never a duplicate."""
        if header.producer_id < 0:
            return None
        pid = int(header.producer_id)
        epoch = int(header.producer_epoch)
        if origin_coordinator:
            entry = self.producers.get(pid)
            if entry is not None and epoch < entry.epoch:
                raise KafkaError(
                    ErrorCode.INVALID_PRODUCER_EPOCH,
                    f"Producer {pid}'s epoch {epoch} is older than the current epoch {entry.epoch}",
                )
        else:
            try:
                self.check(pid, epoch, int(header.base_sequence), header.last_sequence)
            except Duplicate as dup:
                return dup.batch
        if not header.is_transactional and pid in self.ongoing:
            raise KafkaError(
                ErrorCode.INVALID_TXN_STATE,
                f"Expected a transactional write from producer {pid}: its transaction "
                f"starting at offset {self.ongoing[pid]} is still ongoing",
            )
        return None

    def record_header(self, header: BatchHeader, base_offset: int, last_offset: int) -> None:
        """Remember an appended data batch (``header`` may still hold the client's base
        offset); a transactional batch starts the producer's transaction if none is ongoing.
        A batch without sequence numbers (written by the broker itself) updates the epoch
        and the timestamp but is not cached for duplicate detection."""
        if header.producer_id < 0 or header.is_control:
            return
        pid = int(header.producer_id)
        epoch = int(header.producer_epoch)
        timestamp = int(header.max_timestamp)
        if header.base_sequence < 0:
            entry = self._entry_at_epoch(pid, epoch)
            entry.last_timestamp = max(entry.last_timestamp, timestamp)
        else:
            meta = BatchMeta(int(header.base_sequence), header.last_sequence, base_offset, last_offset, timestamp)
            entry = self.record(pid, epoch, meta)
        if header.is_transactional and entry.txn_first_offset < 0:
            entry.txn_first_offset = base_offset
            self.ongoing[pid] = base_offset

    def _entry_at_epoch(self, producer_id: int, epoch: int) -> ProducerEntry:
        entry = self.producers.get(producer_id)
        if entry is None:
            entry = self.producers[producer_id] = ProducerEntry(epoch)
        elif epoch != entry.epoch:
            entry.epoch = epoch
            entry.batches.clear()  # a new epoch restarts the sequence at 0
        return entry

    def record(self, producer_id: int, epoch: int, meta: BatchMeta) -> ProducerEntry:
        """Remember an appended batch (after :meth:`check` passed, or during recovery)."""
        entry = self._entry_at_epoch(producer_id, epoch)
        entry.batches.append(meta)
        entry.last_timestamp = max(entry.last_timestamp, meta.timestamp)
        return entry

    # ------------------------------------------------------------------ transactions
    def check_marker(self, producer_id: int, epoch: int, coordinator_epoch: int) -> None:
        """Validate a transaction marker about to be appended (pure)."""
        entry = self.producers.get(producer_id)
        if entry is None:
            return
        if epoch < entry.epoch:
            raise KafkaError(
                ErrorCode.INVALID_PRODUCER_EPOCH,
                f"Transaction marker for producer {producer_id} has epoch {epoch}, older than "
                f"the current epoch {entry.epoch}",
            )
        if coordinator_epoch < entry.coordinator_epoch:
            raise KafkaError(
                ErrorCode.TRANSACTION_COORDINATOR_FENCED,
                f"Transaction marker for producer {producer_id} has coordinator epoch "
                f"{coordinator_epoch}, older than {entry.coordinator_epoch}",
            )

    def record_marker(
        self,
        producer_id: int,
        epoch: int,
        commit: bool,
        coordinator_epoch: int,
        offset: int,
        timestamp: int,
    ) -> CompletedTxn | None:
        """Apply a marker stored at ``offset`` (after :meth:`check_marker`, or during
        recovery): returns the transaction it completes, if one was ongoing."""
        entry = self._entry_at_epoch(producer_id, epoch)
        entry.coordinator_epoch = coordinator_epoch
        entry.last_timestamp = max(entry.last_timestamp, timestamp)
        entry.txn_first_offset = -1
        first = self.ongoing.pop(producer_id, None)
        if first is None:
            return None
        done = CompletedTxn(producer_id, first, offset, not commit)
        self.unreplicated.append(done)
        return done

    def last_stable_after(self, done: CompletedTxn) -> int:
        """Kafka's LSO as written in the transaction index for ``done``: the first offset of
        the earliest transaction still ongoing, else the offset after the marker."""
        return min(self.ongoing.values(), default=done.last_offset + 1)

    def first_unstable_offset(self, high_watermark: int) -> int | None:
        """The first offset of an ongoing transaction, or of a completed one whose marker is
        not below ``high_watermark`` yet (whichever is lowest); None when there is none.
        Forgets the completed transactions that ``high_watermark`` has passed."""
        unreplicated = self.unreplicated
        while unreplicated and unreplicated[0].last_offset < high_watermark:
            unreplicated.popleft()
        first = min(self.ongoing.values(), default=None)
        for txn in unreplicated:
            if first is None or txn.first_offset < first:
                first = txn.first_offset
        return first

    def views(self) -> list[ProducerStateView]:
        return [view_of(pid, self.producers[pid]) for pid in sorted(self.producers)]

    def forget_completed_from(self, offset: int) -> None:
        """Drop completed transactions whose marker is at or after ``offset`` (truncation)."""
        self.unreplicated = deque(t for t in self.unreplicated if t.last_offset < offset)

    # ------------------------------------------------------------------ whole entries
    def entry_copy(self, producer_id: int) -> ProducerEntry | None:
        entry = self.producers.get(producer_id)
        return None if entry is None else entry.copy()

    def restore(self, producer_id: int, entry: ProducerEntry | None) -> None:
        """Put back an entry saved by :meth:`entry_copy` (None: the producer was unknown)."""
        if entry is None:
            self.producers.pop(producer_id, None)
        else:
            self.producers[producer_id] = entry
        if entry is not None and entry.txn_first_offset >= 0:
            self.ongoing[producer_id] = entry.txn_first_offset
        else:
            self.ongoing.pop(producer_id, None)

    def expire(self, now_ms: int, expiration_ms: int) -> int:
        """Drop producers idle for longer than ``expiration_ms``, except those with an
        ongoing transaction; return how many."""
        dead = [
            pid
            for pid, e in self.producers.items()
            if now_ms - e.last_timestamp > expiration_ms and pid not in self.ongoing
        ]
        for pid in dead:
            del self.producers[pid]
        return len(dead)

    # ------------------------------------------------------------------ snapshots
    def to_bytes(self, offset: int) -> bytes:
        """A snapshot of the table as it stands after every batch below ``offset``."""
        doc = {
            str(pid): {
                "epoch": e.epoch,
                "ts": e.last_timestamp,
                "batches": [[b.first_seq, b.last_seq, b.first_offset, b.last_offset, b.timestamp] for b in e.batches],
                "coord": e.coordinator_epoch,
                "txn": e.txn_first_offset,
            }
            for pid, e in self.producers.items()
        }
        return json.dumps(
            {"version": SNAPSHOT_VERSION, "offset": offset, "producers": doc}, separators=(",", ":")
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> tuple[int, ProducerStateTable]:
        """(offset covered, table) from a snapshot (version 1 or 2); raises ValueError when
        unreadable."""
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"unreadable producer snapshot: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("version") not in (1, 2):
            raise ValueError("unknown producer snapshot version")
        table = cls()
        for pid, e in doc["producers"].items():
            entry = ProducerEntry(
                int(e["epoch"]),
                last_timestamp=int(e["ts"]),
                coordinator_epoch=int(e.get("coord", -1)),
                txn_first_offset=int(e.get("txn", -1)),
            )
            for fs, ls, fo, lo, ts in e["batches"]:
                entry.batches.append(BatchMeta(int(fs), int(ls), int(fo), int(lo), int(ts)))
            table.producers[int(pid)] = entry
            if entry.txn_first_offset >= 0:
                table.ongoing[int(pid)] = entry.txn_first_offset
        return int(doc["offset"]), table


def parse_marker(buf: Buffer, header: BatchHeader) -> tuple[bool, int] | None:
    """(commit, coordinator epoch) of the stored control batch ``header`` (at
    ``header.position`` in ``buf``); None when it is not a well-formed transaction marker."""
    if not header.is_control:
        return None
    try:
        records = decode_records(buf, header.position, check_crc=False)
        if len(records) != 1:
            return None
        return parse_control_record(records[0])
    except InvalidBatch:
        return None


def view_of(producer_id: int, entry: ProducerEntry) -> ProducerStateView:
    return ProducerStateView(
        producer_id,
        entry.epoch,
        entry.last_seq,
        entry.last_timestamp,
        entry.coordinator_epoch,
        entry.txn_first_offset,
    )


def check_client_batch(header: BatchHeader) -> None:
    """What storage refuses from a client whatever the validation before it let through:
    control batches (only the coordinator writes markers, through ``append_marker``) and
    transactional batches without a producer id."""
    if header.is_control:
        raise KafkaError(ErrorCode.INVALID_RECORD, "clients are not allowed to write control records")
    if header.is_transactional and header.producer_id < 0:
        raise KafkaError(ErrorCode.INVALID_RECORD, "a transactional batch must have a producer id")


def check_marker_producer(producer_id: int, producer_epoch: int) -> None:
    if producer_id < 0 or producer_epoch < 0:
        raise KafkaError(
            ErrorCode.INVALID_RECORD,
            f"a transaction marker needs a producer id and epoch, not {producer_id}/{producer_epoch}",
        )
