"""The transaction coordinator: a pure state machine over transactional ids (KIP-98).

It is told the time (an injected clock, read once per public call), allocates producer ids
through an injected function, and reports what the broker must do as events delivered after
each call returns (see `delivers`):

* TxnLogWrite: append this id's new state to ``__transaction_state`` (txn_log.py) and make it
  durable before sending the call's answer;
* WriteMarkers: append COMMIT/ABORT control markers to the transaction's partitions, then
  call `markers_written`.

The in-memory state moves on as soon as the call decides (there is no "pending transition"
as in Kafka, whose appends are asynchronous): a broker that fails to persist a TxnLogWrite
must not answer the request with success, and should reload this coordinator from the log.

Timed-out transactions and expired ids are found by periodic sweeps, as Kafka does: every
`abort_timed_out_interval_ms` while some transaction is Ongoing, and every
`remove_expired_interval_ms` while the coordinator knows any id. `next_deadline()` is None
when neither sweep is due, so an idle broker does not wake up.
"""

from __future__ import annotations

import builtins
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from riverbed.coordinator import txn_model as model
from riverbed.coordinator.delivers import delivers
from riverbed.coordinator.group_timers import TimerQueue
from riverbed.coordinator.txn_types import (
    EXPIRABLE,
    PREPARING,
    InitResult,
    TopicPartition,
    TxnConfig,
    TxnDescription,
    TxnEvent,
    TxnListing,
    TxnLogWrite,
    TxnSnapshot,
    TxnState,
    WriteMarkers,
)
from riverbed.protocol.errors import ErrorCode

S = TxnState
ABORT_SWEEP = "abort-timed-out"
EXPIRE_SWEEP = "remove-expired"



class TransactionCoordinator:
    def __init__(
        self,
        clock: Callable[[], int],
        config: TxnConfig,
        allocate_producer_id: Callable[[], int],
        on_event: Callable[[TxnEvent], None],
    ) -> None:
        self._clock = clock
        self.config = config
        self._allocate = allocate_producer_id
        self._on_event = on_event
        #: Kafka's coordinator epoch (the __transaction_state partition leader epoch); a
        #: single-node broker keeps it at 0.
        self.coordinator_epoch = 0
        self._txns: dict[str, TxnSnapshot] = {}
        self._ongoing: set[str] = set()
        self._timers = TimerQueue()
        self._outbox: deque[TxnEvent] = deque()
        self._flushing = False
        self._now = clock()

    # -- queries ----------------------------------------------------------------------------

    def snapshot(self, transactional_id: str) -> TxnSnapshot | None:
        """The id's state (as last written to the log), or None when unknown."""
        return self._txns.get(transactional_id)

    def transactional_ids(self) -> builtins.list[str]:
        return sorted(self._txns)

    def next_deadline(self) -> int | None:
        """The earliest time (clock ms) at which `tick()` has work, or None."""
        return self._timers.next_deadline()

    def describe(self, transactional_ids: Sequence[str]) -> builtins.list[TxnDescription]:
        """DescribeTransactions: one entry per id, in the order asked. An empty id ->
        INVALID_REQUEST; an unknown one -> TRANSACTIONAL_ID_NOT_FOUND. The start time is the
        current or last transaction's (-1 for an id that never had one), as Kafka answers."""
        out = []
        for tid in transactional_ids:
            cur = self._txns.get(tid)
            if not tid:
                out.append(TxnDescription(tid, ErrorCode.INVALID_REQUEST))
            elif cur is None:
                out.append(TxnDescription(tid, ErrorCode.TRANSACTIONAL_ID_NOT_FOUND))
            else:
                out.append(
                    TxnDescription(
                        transactional_id=tid,
                        error_code=ErrorCode.NONE,
                        state=cur.state.display,
                        producer_id=cur.producer_id,
                        producer_epoch=cur.producer_epoch,
                        timeout_ms=cur.timeout_ms,
                        start_ms=cur.start_ms,
                        partitions=tuple(sorted(cur.partitions)),
                    )
                )
        return out

    # -- producer requests ------------------------------------------------------------------

    @delivers
    def init_producer_id(
        self,
        transactional_id: str,
        timeout_ms: int,
        producer_id: int = -1,
        producer_epoch: int = -1,
    ) -> InitResult:
        """InitProducerId with a transactional id (the broker answers a null id itself).
        `producer_id`/`producer_epoch` are the KIP-360 expected values (-1/-1: none)."""
        if not transactional_id or (producer_id == -1) != (producer_epoch == -1):
            return InitResult(ErrorCode.INVALID_REQUEST)
        if not 0 < timeout_ms <= self.config.transaction_max_timeout_ms:
            return InitResult(ErrorCode.INVALID_TRANSACTION_TIMEOUT)
        expected_epoch = None if producer_id == -1 else producer_epoch
        cur = self._txns.get(transactional_id)
        if cur is None:
            new = model.new_transactional_id(
                transactional_id, self._allocate(), timeout_ms, self._now
            )
            self._write(new)
            return InitResult(ErrorCode.NONE, new.producer_id, new.producer_epoch)
        if expected_epoch is not None and not model.expected_producer_valid(
            cur, producer_id, producer_epoch
        ):
            return InitResult(ErrorCode.PRODUCER_FENCED)
        if cur.state in PREPARING:
            return InitResult(ErrorCode.CONCURRENT_TRANSACTIONS)
        if cur.state is S.ONGOING:
            # Fence the producer and abort its transaction; the client retries, and gets the
            # next epoch once the abort is complete.
            self._end(model.fence(cur, self._now))
            return InitResult(ErrorCode.CONCURRENT_TRANSACTIONS)
        rotate = model.needs_rotation(cur, expected_epoch)
        result = model.reinitialise(
            cur, timeout_ms, expected_epoch, self._now, self._allocate() if rotate else None
        )
        if isinstance(result, ErrorCode):
            return InitResult(result)
        self._write(result)
        return InitResult(ErrorCode.NONE, result.producer_id, result.producer_epoch)

    @delivers
    def add_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> int:
        """AddPartitionsToTxn (one error code for all partitions)."""
        return self._add(transactional_id, producer_id, producer_epoch, frozenset(partitions))

    @delivers
    def add_offsets(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        group_partition: TopicPartition,
    ) -> int:
        """AddOffsetsToTxn: the broker passes ("__consumer_offsets", partition of the group)."""
        return self._add(
            transactional_id, producer_id, producer_epoch, frozenset([group_partition])
        )

    @delivers
    def end_txn(
        self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool
    ) -> int:
        """EndTxn: Ongoing -> PrepareCommit/PrepareAbort, markers, then Complete*."""
        if not transactional_id:
            return ErrorCode.INVALID_REQUEST
        cur = self._txns.get(transactional_id)
        error = model.check_producer(cur, producer_id, producer_epoch)
        if error or cur is None:
            return error
        answer = model.end_txn_error(cur.state, commit)
        if answer is not None:
            return answer
        self._end(model.prepare(cur, commit, self._now))
        return ErrorCode.NONE

    @delivers
    def markers_written(self, transactional_id: str, producer_id: int, producer_epoch: int) -> None:
        """Every marker of a WriteMarkers event is durable: Prepare* -> Complete*. Ignored when
        the id is no longer preparing that producer's transaction (a stale or repeated call)."""
        cur = self._txns.get(transactional_id)
        if (
            cur is not None
            and cur.state in PREPARING
            and cur.producer_id == producer_id
            and cur.producer_epoch == producer_epoch
        ):
            self._write(model.complete(cur, self._now))

    # -- start-up ---------------------------------------------------------------------------

    def load(self, transactional_id: str, snapshot: TxnSnapshot | None) -> None:
        """Replay one __transaction_state record (in log order; no events). A later record of
        the same id replaces the earlier one; None (a tombstone) forgets the id."""
        if snapshot is not None and snapshot.state is S.PREPARE_EPOCH_FENCE:
            snapshot = _as_prepare_abort(snapshot)
        if snapshot is None or snapshot.state is S.DEAD:
            self._txns.pop(transactional_id, None)
            self._ongoing.discard(transactional_id)
        else:
            self._put(snapshot)

    @delivers
    def finish_load(self) -> None:
        """The log is replayed: resume the transactions that were between prepare and complete
        (WriteMarkers again; markers are idempotent for the reader) and arm the sweeps."""
        for tid in sorted(self._txns):
            cur = self._txns[tid]
            if cur.state in PREPARING:
                self._markers_or_complete(cur)
        self._arm()

    # -- timers -----------------------------------------------------------------------------

    @delivers
    def tick(self) -> None:
        """Run the sweeps that are due."""
        while (key := self._timers.pop_due(self._now)) is not None:
            if key == ABORT_SWEEP:
                self._abort_timed_out()
            elif key == EXPIRE_SWEEP:
                self._remove_expired()
        self._arm()

    def _abort_timed_out(self) -> None:
        """Kafka's abortTimedOutTransactions: Ongoing past start + timeout (strictly)."""
        for tid in sorted(self._ongoing):
            cur = self._txns[tid]
            if cur.start_ms + cur.timeout_ms < self._now:
                self._end(model.fence(cur, self._now))

    def _remove_expired(self) -> None:
        """Kafka's removeExpiredTransactionalIds: idle ids in Empty/Complete* are tombstoned."""
        horizon = self._now - self.config.transactional_id_expiration_ms
        for tid in sorted(self._txns):
            cur = self._txns[tid]
            if cur.state in EXPIRABLE and cur.last_update_ms <= horizon:
                del self._txns[tid]
                self._outbox.append(TxnLogWrite(tid, None))

    def _arm(self) -> None:
        if self._ongoing and self._timers.get(ABORT_SWEEP) is None:
            self._timers.set(
                ABORT_SWEEP, self._now + max(self.config.abort_timed_out_interval_ms, 1)
            )
        if self._txns and self._timers.get(EXPIRE_SWEEP) is None:
            self._timers.set(
                EXPIRE_SWEEP, self._now + max(self.config.remove_expired_interval_ms, 1)
            )

    # -- internals --------------------------------------------------------------------------

    def _add(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: frozenset[TopicPartition],
    ) -> int:
        if not transactional_id:
            return ErrorCode.INVALID_REQUEST
        cur = self._txns.get(transactional_id)
        error = model.check_producer(cur, producer_id, producer_epoch)
        if error or cur is None:
            return error
        if cur.state in PREPARING:
            return ErrorCode.CONCURRENT_TRANSACTIONS
        if partitions <= cur.partitions or not partitions:
            # Nothing new (Kafka's shortcut for Ongoing; an empty list starts nothing here).
            return ErrorCode.NONE
        self._write(model.add_partitions(cur, partitions, self._now))
        return ErrorCode.NONE

    def _end(self, prepared: TxnSnapshot) -> None:
        """Write a Prepare* state, then ask for its markers (or complete at once: no partition)."""
        self._write(prepared)
        self._markers_or_complete(prepared)

    def _markers_or_complete(self, prepared: TxnSnapshot) -> None:
        if prepared.partitions:
            self._outbox.append(
                WriteMarkers(
                    prepared.transactional_id,
                    prepared.producer_id,
                    prepared.producer_epoch,
                    prepared.state is S.PREPARE_COMMIT,
                    tuple(sorted(prepared.partitions)),
                )
            )
        else:
            self._write(model.complete(prepared, self._now))

    def _write(self, snapshot: TxnSnapshot) -> None:
        self._put(snapshot)
        self._outbox.append(TxnLogWrite(snapshot.transactional_id, snapshot))
        self._arm()

    def _put(self, snapshot: TxnSnapshot) -> None:
        tid = snapshot.transactional_id
        self._txns[tid] = snapshot
        if snapshot.state is S.ONGOING:
            self._ongoing.add(tid)
        else:
            self._ongoing.discard(tid)

    def _flush(self) -> None:
        """Deliver queued events in order. A call made from inside `on_event` queues its own
        events and leaves their delivery to the outermost flush. A failing sink does not
        strand the other events; its exception is raised once everything is delivered."""
        if self._flushing:
            return
        self._flushing = True
        failure: Exception | None = None
        try:
            while self._outbox:
                event = self._outbox.popleft()
                try:
                    self._on_event(event)
                except Exception as exc:
                    if failure is None:
                        failure = exc
        finally:
            self._flushing = False
        if failure is not None:
            raise failure

    # `list` last: inside the class body the name shadows the builtin for what follows.
    @delivers
    def list(
        self,
        states: Sequence[str] = (),
        producer_ids: Sequence[int] = (),
        duration_filter_ms: int = -1,
    ) -> tuple[builtins.list[str], builtins.list[TxnListing]]:
        """ListTransactions: (unknown state filters, matching entries sorted by id).
        Empty filters match everything; `duration_filter_ms` >= 0 (v1) keeps only the
        transactions that started more than that long ago."""
        wanted: set[TxnState] = set()
        unknown: builtins.list[str] = []
        for name in states:
            state = TxnState.from_display(name)
            if state is None:
                unknown.append(name)
            else:
                wanted.add(state)
        pids = set(producer_ids)
        entries = []
        for tid in sorted(self._txns):
            cur = self._txns[tid]
            if states and cur.state not in wanted:
                continue
            if pids and cur.producer_id not in pids:
                continue
            if duration_filter_ms >= 0 and self._now - cur.start_ms <= duration_filter_ms:
                continue
            entries.append(TxnListing(tid, cur.producer_id, cur.state.display))
        return unknown, entries


def _as_prepare_abort(snapshot: TxnSnapshot) -> TxnSnapshot:
    return replace(snapshot, state=S.PREPARE_ABORT)
