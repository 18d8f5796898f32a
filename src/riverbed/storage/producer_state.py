"""Idempotent-producer state of one partition: for each producer id, its epoch and the
last five batches it wrote (sequence ranges and offsets).

Checks on append (Kafka's rules, ``ProducerStateManager`` / ``ProducerAppendInfo``):

* no state for the producer id: any sequence is accepted (state may have expired);
* a lower epoch than the known one: INVALID_PRODUCER_EPOCH;
* a higher epoch: the sequence must restart at 0, else OUT_OF_ORDER_SEQUENCE_NUMBER;
* the same epoch and a (first, last) sequence range equal to one of the five cached
  batches: a duplicate (a retry whose response was lost) — the append is skipped and the
  original offsets are returned;
* otherwise the first sequence must follow the last one (wrapping at 2^31 - 1 -> 0),
  else OUT_OF_ORDER_SEQUENCE_NUMBER.

The table is rebuilt at start-up from a snapshot written at clean shutdown plus the batch
headers appended after it (see ``storage-format.md``). Entries expire after
``producer.id.expiration.ms`` without a write.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.protocol.records.batch import BatchHeader

BATCHES_TO_RETAIN = 5
SEQ_MODULUS = 1 << 31


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

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1


class Duplicate(Exception):
    """The batch was already appended; ``batch`` holds its original offsets."""

    def __init__(self, batch: BatchMeta) -> None:
        super().__init__("duplicate batch")
        self.batch = batch


class ProducerStateTable:
    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}

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
        expected = (entry.last_seq + 1) % SEQ_MODULUS if entry.batches else first_seq
        if first_seq != expected:
            raise KafkaError(
                ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                f"Out of order sequence number for producer {producer_id} at epoch {epoch}: {first_seq} (expected {expected})",
            )

    def check_header(self, header: BatchHeader) -> BatchMeta | None:
        """Check a batch about to be appended: None to go ahead, or the original batch when
        it is a duplicate. Raises KafkaError for a fenced epoch or a sequence gap."""
        if header.producer_id < 0:
            return None
        try:
            self.check(int(header.producer_id), int(header.producer_epoch), int(header.base_sequence), header.last_sequence)
        except Duplicate as dup:
            return dup.batch
        return None

    def record_header(self, header: BatchHeader, base_offset: int, last_offset: int) -> None:
        """Remember an appended batch (``header`` may still hold the client's base offset)."""
        if header.producer_id < 0 or header.is_control:
            return
        meta = BatchMeta(int(header.base_sequence), header.last_sequence, base_offset, last_offset, int(header.max_timestamp))
        self.record(int(header.producer_id), int(header.producer_epoch), meta)

    def record(self, producer_id: int, epoch: int, meta: BatchMeta) -> None:
        """Remember an appended batch (after :meth:`check` passed, or during recovery)."""
        entry = self.producers.get(producer_id)
        if entry is None or epoch != entry.epoch:
            entry = ProducerEntry(epoch)
            self.producers[producer_id] = entry
        entry.batches.append(meta)
        entry.last_timestamp = max(entry.last_timestamp, meta.timestamp)

    def truncate(self, offset: int) -> None:
        """Forget batches at or after ``offset`` (the log was truncated there)."""
        for pid in list(self.producers):
            entry = self.producers[pid]
            kept = [b for b in entry.batches if b.last_offset < offset]
            if kept:
                entry.batches = deque(kept, maxlen=BATCHES_TO_RETAIN)
            else:
                del self.producers[pid]

    def expire(self, now_ms: int, expiration_ms: int) -> int:
        """Drop producers idle for longer than ``expiration_ms``; return how many."""
        dead = [pid for pid, e in self.producers.items() if now_ms - e.last_timestamp > expiration_ms]
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
            }
            for pid, e in self.producers.items()
        }
        return json.dumps({"version": 1, "offset": offset, "producers": doc}, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> tuple[int, ProducerStateTable]:
        """(offset covered, table) from a snapshot; raises ValueError when unreadable."""
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"unreadable producer snapshot: {exc}") from exc
        if doc.get("version") != 1:
            raise ValueError("unknown producer snapshot version")
        table = cls()
        for pid, e in doc["producers"].items():
            entry = ProducerEntry(int(e["epoch"]), last_timestamp=int(e["ts"]))
            for fs, ls, fo, lo, ts in e["batches"]:
                entry.batches.append(BatchMeta(int(fs), int(ls), int(fo), int(lo), int(ts)))
            table.producers[int(pid)] = entry
        return int(doc["offset"]), table
