"""The state of one share-partition (KIP-932): which records of a topic partition a share
group has delivered, to whom, how often, and which are done. Pure: no I/O, the clock is
passed in (``now`` in ms).

Offsets below ``start_offset`` are done. Offsets in ``[start_offset, end_offset)`` are in
flight, each Available, Acquired (by one member, until its lock deadline), Acknowledged or
Archived; an offset in that window with no entry held no record (a compacted gap or a
control batch) and counts as done. Offsets from ``end_offset`` on have never been acquired.

* acquiring a record adds one to its delivery count and locks it for ``lock_ms``;
* a record that is released (by the member, its lock expiring, the member leaving) goes
  back to Available, unless its delivery count has reached ``delivery_limit``: then it is
  archived, as is a record the member rejects. Each archived-undelivered record is reported
  once through ``drain_dead()`` (the broker writes it to the dead-letter topic);
* the start offset moves past every leading record that is Acknowledged or Archived.

Errors are Kafka's: an acknowledgement for a record that is not Acquired by that member is
INVALID_RECORD_STATE, and nothing of the batch is applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum

from riverbed.protocol.errors import ErrorCode


class RecordState(IntEnum):
    """As ShareSnapshotValue's DeliveryState (0 Available, 2 Acked, 4 Archived); Acquired
    (1) lives only in memory: it is written as Available."""

    AVAILABLE = 0
    ACQUIRED = 1
    ACKNOWLEDGED = 2
    ARCHIVED = 4


class AckType(IntEnum):
    GAP = 0
    ACCEPT = 1
    RELEASE = 2
    REJECT = 3
    RENEW = 4


REASON_REJECTED = "rejected"
REASON_DELIVERY_LIMIT = "delivery count limit reached"


@dataclass(slots=True)
class InFlight:
    state: RecordState
    delivery_count: int = 0
    member: str | None = None
    deadline: int | None = None


@dataclass(frozen=True, slots=True)
class DeadRecord:
    """A record archived without being accepted: rejected, or over the delivery limit."""

    offset: int
    delivery_count: int
    reason: str


@dataclass(frozen=True, slots=True)
class StateBatch:
    first_offset: int
    last_offset: int
    state: RecordState
    delivery_count: int


@dataclass(slots=True)
class SharePartition:
    start_offset: int
    delivery_limit: int = 5
    lock_ms: int = 30_000
    max_in_flight: int = 2000
    end_offset: int = -1
    records: dict[int, InFlight] = field(default_factory=dict)
    _dead: list[DeadRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.end_offset < self.start_offset:
            self.end_offset = self.start_offset

    # ------------------------------------------------------------------ queries
    def next_deadline(self) -> int | None:
        deadlines = [
            r.deadline
            for r in self.records.values()
            if r.state is RecordState.ACQUIRED and r.deadline is not None
        ]
        return min(deadlines) if deadlines else None

    def count(self, state: RecordState) -> int:
        return sum(1 for r in self.records.values() if r.state is state)

    def acquired_by(self, member: str) -> list[int]:
        return sorted(
            o
            for o, r in self.records.items()
            if r.state is RecordState.ACQUIRED and r.member == member
        )

    def first_wanted(self) -> int | None:
        """The lowest offset a fetch may acquire: the first Available in-flight record, else
        ``end_offset``; None when the in-flight window is full and none is Available."""
        avail = [o for o, r in self.records.items() if r.state is RecordState.AVAILABLE]
        if avail:
            return min(avail)
        if self.end_offset - self.start_offset >= self.max_in_flight:
            return None
        return self.end_offset

    def has_available(self, high_watermark: int) -> bool:
        if any(r.state is RecordState.AVAILABLE for r in self.records.values()):
            return True
        return (
            self.end_offset < high_watermark
            and self.end_offset - self.start_offset < self.max_in_flight
        )

    def drain_dead(self) -> list[DeadRecord]:
        dead, self._dead = self._dead, []
        return dead

    # ------------------------------------------------------------------ acquiring
    def skip(self, first: int, last: int) -> None:
        """Offsets that hold no deliverable record (a control batch, aborted data): past them.
        Only a range that starts at or before ``end_offset`` moves it (the caller reads the
        log in order from there, so anything between was seen)."""
        if last >= self.end_offset and first <= self.end_offset:  # contiguous with what was read
            for o in range(max(first, self.end_offset), last + 1):
                self.records.pop(o, None)
            self.end_offset = last + 1
            self._advance()

    def acquire(self, member: str, first: int, last: int, limit: int, now: int) -> list[StateBatch]:
        """Acquire for ``member`` up to ``limit`` records among the offsets ``first..last`` (one
        record batch of the log): those Available, and those never acquired. Returns the
        acquired ranges (with their delivery counts), offsets ascending."""
        out: list[StateBatch] = []
        if limit <= 0 or last < self.start_offset:
            return out
        taken = 0
        if first > self.end_offset:  # nothing was between (compaction, deleted records)
            if self.end_offset - self.start_offset >= self.max_in_flight:
                return out  # the window is full: nothing moves until records complete
            self.end_offset = first
            self._advance()
        deadline = now + self.lock_ms
        for o in range(max(first, self.start_offset), last + 1):
            if taken >= limit:
                break
            rec = self.records.get(o)
            if o >= self.end_offset:
                if self.end_offset - self.start_offset >= self.max_in_flight:
                    break
                rec = InFlight(RecordState.AVAILABLE)
                self.records[o] = rec
                self.end_offset = o + 1
            if rec is None or rec.state is not RecordState.AVAILABLE:
                continue
            if rec.delivery_count >= self.delivery_limit:  # delivered as often as allowed
                self._release(o, rec)
                continue
            rec.state = RecordState.ACQUIRED
            rec.delivery_count += 1
            rec.member = member
            rec.deadline = deadline
            taken += 1
            if (
                out
                and out[-1].last_offset == o - 1
                and out[-1].delivery_count == rec.delivery_count
            ):
                prev = out[-1]
                out[-1] = StateBatch(
                    prev.first_offset, o, RecordState.ACQUIRED, prev.delivery_count
                )
            else:
                out.append(StateBatch(o, o, RecordState.ACQUIRED, rec.delivery_count))
        return out

    # ------------------------------------------------------------------ acknowledging
    def acknowledge(
        self, member: str, first: int, last: int, types: list[int], now: int
    ) -> ErrorCode:
        """Apply one acknowledgement batch: ``types`` has one entry for the whole range, or one
        per offset. All or nothing."""
        if last < first or not types or (len(types) != 1 and len(types) != last - first + 1):
            return ErrorCode.INVALID_REQUEST
        if any(t not in AckType._value2member_map_ for t in types):
            return ErrorCode.INVALID_REQUEST
        plan: list[tuple[int, AckType]] = []
        for i, o in enumerate(range(first, last + 1)):
            kind = AckType(types[0] if len(types) == 1 else types[i])
            rec = self.records.get(o)
            if rec is None or o < self.start_offset or o >= self.end_offset:
                if kind is AckType.GAP:
                    continue  # nothing there: a gap is fine
                return ErrorCode.INVALID_RECORD_STATE
            if rec.state is not RecordState.ACQUIRED or rec.member != member:
                return ErrorCode.INVALID_RECORD_STATE
            plan.append((o, kind))
        for o, kind in plan:
            rec = self.records[o]
            if kind is AckType.ACCEPT:
                self._finish(rec, RecordState.ACKNOWLEDGED)
            elif kind is AckType.GAP:
                self._finish(rec, RecordState.ARCHIVED)
            elif kind is AckType.REJECT:
                self._finish(rec, RecordState.ARCHIVED)
                self._dead.append(DeadRecord(o, rec.delivery_count, REASON_REJECTED))
            elif kind is AckType.RELEASE:
                self._release(o, rec)
            else:  # RENEW: a new lock
                rec.deadline = now + self.lock_ms
        self._advance()
        return ErrorCode.NONE

    def release_member(self, member: str) -> int:
        """Everything ``member`` holds goes back (it left, timed out, closed its session)."""
        n = 0
        for o, rec in list(self.records.items()):
            if rec.state is RecordState.ACQUIRED and rec.member == member:
                self._release(o, rec)
                n += 1
        self._advance()
        return n

    def expire(self, now: int) -> int:
        """Release the records whose acquisition lock has run out."""
        n = 0
        for o, rec in list(self.records.items()):
            if (
                rec.state is RecordState.ACQUIRED
                and rec.deadline is not None
                and rec.deadline <= now
            ):
                self._release(o, rec)
                n += 1
        self._advance()
        return n

    def reset(self, offset: int) -> None:
        """AlterShareGroupOffsets / a start offset below the log start: begin again at ``offset``."""
        self.records.clear()
        self.start_offset = self.end_offset = offset

    def truncate_below(self, log_start: int) -> None:
        """Records deleted from the log (retention, DeleteRecords) are gone for the group too."""
        if log_start <= self.start_offset:
            return
        for o in [o for o in self.records if o < log_start]:
            del self.records[o]
        self.start_offset = log_start
        self.end_offset = max(self.end_offset, log_start)
        self._advance()

    # ------------------------------------------------------------------ persistence
    def state_batches(self) -> list[StateBatch]:
        """The in-flight window as runs of equal (state, delivery count); Acquired is written as
        Available (after a restart an acquired record is delivered again)."""
        out: list[StateBatch] = []
        for o in sorted(self.records):
            rec = self.records[o]
            state = RecordState.AVAILABLE if rec.state is RecordState.ACQUIRED else rec.state
            if (
                out
                and out[-1].last_offset == o - 1
                and out[-1].state is state
                and out[-1].delivery_count == rec.delivery_count
            ):
                prev = out[-1]
                out[-1] = StateBatch(prev.first_offset, o, state, prev.delivery_count)
            else:
                out.append(StateBatch(o, o, state, rec.delivery_count))
        return out

    @classmethod
    def restore(
        cls,
        start_offset: int,
        batches: Iterable[StateBatch],
        delivery_limit: int,
        lock_ms: int,
        max_in_flight: int = 2000,
    ) -> SharePartition:
        sp = cls(
            start_offset=start_offset,
            delivery_limit=delivery_limit,
            lock_ms=lock_ms,
            max_in_flight=max_in_flight,
        )
        for b in batches:
            state = RecordState.AVAILABLE if b.state is RecordState.ACQUIRED else b.state
            for o in range(max(b.first_offset, start_offset), b.last_offset + 1):
                sp.records[o] = InFlight(state, b.delivery_count)
                sp.end_offset = max(sp.end_offset, o + 1)
                if state is RecordState.AVAILABLE and b.delivery_count >= delivery_limit:
                    sp._release(o, sp.records[o])  # held at the limit when the broker stopped
        sp._advance()
        return sp

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _finish(rec: InFlight, state: RecordState) -> None:
        rec.state = state
        rec.member = None
        rec.deadline = None

    def _release(self, offset: int, rec: InFlight) -> None:
        if rec.delivery_count >= self.delivery_limit:
            self._finish(rec, RecordState.ARCHIVED)
            self._dead.append(DeadRecord(offset, rec.delivery_count, REASON_DELIVERY_LIMIT))
        else:
            self._finish(rec, RecordState.AVAILABLE)

    def _advance(self) -> None:
        while self.start_offset < self.end_offset:
            rec = self.records.get(self.start_offset)
            if rec is not None and rec.state not in (
                RecordState.ACKNOWLEDGED,
                RecordState.ARCHIVED,
            ):
                break
            self.records.pop(self.start_offset, None)
            self.start_offset += 1
