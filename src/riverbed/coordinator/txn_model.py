"""The transitions of one transactional id, as pure functions from a TxnSnapshot (and the
request) to the next TxnSnapshot or an error code. No registry, clock, timers or events:
txn.py applies these and turns each new snapshot into a __transaction_state write.

The rules follow Kafka's TransactionCoordinator / TransactionMetadata for clients of
transactions version 1 (no epoch bump per transaction, KIP-890 part 2 is not implemented).
"""

from __future__ import annotations

from dataclasses import replace

from riverbed.coordinator.txn_types import (
    MAX_PRODUCER_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    TopicPartition,
    TxnSnapshot,
    TxnState,
)
from riverbed.protocol.errors import ErrorCode

S = TxnState

#: Kafka's TransactionState.validPreviousStates: target -> the states it may be entered from.
#: PrepareEpochFence and Dead are transient here: a fence is written as PrepareAbort in the
#: same call, and an expired id is tombstoned and dropped.
VALID_PREVIOUS: dict[TxnState, frozenset[TxnState]] = {
    S.EMPTY: frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.ONGOING: frozenset({S.ONGOING, S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.PREPARE_COMMIT: frozenset({S.ONGOING}),
    S.PREPARE_ABORT: frozenset({S.ONGOING, S.PREPARE_EPOCH_FENCE}),
    S.COMPLETE_COMMIT: frozenset({S.PREPARE_COMMIT}),
    S.COMPLETE_ABORT: frozenset({S.PREPARE_ABORT}),
    S.DEAD: frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.PREPARE_EPOCH_FENCE: frozenset({S.ONGOING}),
}


def epoch_exhausted(epoch: int) -> bool:
    """Kafka's isEpochExhausted: clients may use epochs up to Short.MAX_VALUE - 1; the last one
    is kept so that the coordinator can always fence."""
    return epoch >= MAX_PRODUCER_EPOCH - 1


def _transit(cur: TxnSnapshot, state: TxnState, **changes: object) -> TxnSnapshot:
    if cur.state not in VALID_PREVIOUS[state]:
        raise AssertionError(
            f"{cur.transactional_id}: illegal transition {cur.state!r} -> {state!r}"
        )
    # Kafka's prepareTransitionTo: the previous producer id is the one before this transition.
    return replace(cur, state=state, previous_producer_id=cur.producer_id, **changes)  # type: ignore[arg-type]


def new_transactional_id(
    transactional_id: str, producer_id: int, timeout_ms: int, now: int
) -> TxnSnapshot:
    """A first InitProducerId: a new producer id at epoch 0, state Empty (Kafka creates the
    metadata at epoch -1 and bumps it in the same call)."""
    return TxnSnapshot(
        transactional_id=transactional_id,
        producer_id=producer_id,
        previous_producer_id=producer_id,
        next_producer_id=NO_PRODUCER_ID,
        producer_epoch=0,
        last_producer_epoch=NO_PRODUCER_EPOCH,
        timeout_ms=timeout_ms,
        state=S.EMPTY,
        partitions=frozenset(),
        start_ms=-1,
        last_update_ms=now,
    )


def expected_producer_valid(cur: TxnSnapshot, producer_id: int, producer_epoch: int) -> bool:
    """KIP-360: may a producer that says it is (producer_id, producer_epoch) re-initialise?
    Yes if it names the current producer id (the epoch is checked by the bump), or the
    previous one with an exhausted epoch (a retry of a producer id rotation)."""
    return (
        cur.producer_epoch == NO_PRODUCER_EPOCH
        or producer_id == cur.producer_id
        or (producer_id == cur.previous_producer_id and epoch_exhausted(producer_epoch))
    )


def reinitialise(
    cur: TxnSnapshot,
    timeout_ms: int,
    expected_epoch: int | None,
    now: int,
    new_producer_id: int | None,
) -> TxnSnapshot | ErrorCode:
    """InitProducerId on an id in Empty / CompleteCommit / CompleteAbort.

    `new_producer_id` is used (and must be given) when `needs_rotation` says so: the epoch is
    exhausted, so the id moves to a new producer id at epoch 0 (Kafka's
    prepareProducerIdRotation, recording the old epoch as the last one when the client gave
    its own). Otherwise the epoch is bumped (prepareIncrementProducerEpoch):
    no expected epoch -> bump, last epoch -1; expected == current -> bump, last = current;
    expected == last epoch -> a retry of a bump whose answer was lost: same epoch again;
    anything else -> PRODUCER_FENCED.
    """
    common: dict[str, object] = dict(
        timeout_ms=timeout_ms, partitions=frozenset(), start_ms=-1, last_update_ms=now
    )
    if needs_rotation(cur, expected_epoch):
        assert new_producer_id is not None
        last = cur.producer_epoch if expected_epoch is not None else NO_PRODUCER_EPOCH
        return _transit(
            cur,
            S.EMPTY,
            producer_id=new_producer_id,
            producer_epoch=0,
            last_producer_epoch=last,
            **common,
        )
    if expected_epoch is None:
        epoch, last = cur.producer_epoch + 1, NO_PRODUCER_EPOCH
    elif expected_epoch == cur.producer_epoch:
        epoch, last = cur.producer_epoch + 1, cur.producer_epoch
    elif expected_epoch == cur.last_producer_epoch:
        epoch, last = cur.producer_epoch, cur.last_producer_epoch
    else:
        return ErrorCode.PRODUCER_FENCED
    if epoch > MAX_PRODUCER_EPOCH - 1:
        # Exhausted, but the client named an older epoch: Kafka throws IllegalStateException
        # here; the client's epoch is not the current one, so it is fenced.
        return ErrorCode.PRODUCER_FENCED
    return _transit(cur, S.EMPTY, producer_epoch=epoch, last_producer_epoch=last, **common)


def needs_rotation(cur: TxnSnapshot, expected_epoch: int | None) -> bool:
    """Kafka rotates the producer id when the epoch is exhausted and the client (if it says)
    holds the current epoch."""
    return epoch_exhausted(cur.producer_epoch) and (
        expected_epoch is None or expected_epoch == cur.producer_epoch
    )


def fence(cur: TxnSnapshot, now: int) -> TxnSnapshot:
    """Abort an Ongoing transaction on the coordinator's own initiative (InitProducerId from a
    new producer, or the transaction timed out): bump the epoch so that the current producer
    is fenced (Kafka's PrepareEpochFence, never written), then go PrepareAbort with it."""
    bumped = (
        cur.producer_epoch if cur.producer_epoch >= MAX_PRODUCER_EPOCH else cur.producer_epoch + 1
    )
    fenced = _transit(
        cur, S.PREPARE_EPOCH_FENCE, producer_epoch=bumped, last_producer_epoch=NO_PRODUCER_EPOCH
    )
    return _transit(fenced, S.PREPARE_ABORT, last_update_ms=now)


def add_partitions(
    cur: TxnSnapshot, partitions: frozenset[TopicPartition], now: int
) -> TxnSnapshot:
    """Empty / Complete* / Ongoing -> Ongoing with these partitions added; a transaction
    starts (start_ms) at its first add."""
    starting = cur.state is not S.ONGOING
    return _transit(
        cur,
        S.ONGOING,
        partitions=cur.partitions | partitions,
        start_ms=now if starting else cur.start_ms,
        last_update_ms=now,
    )


def prepare(cur: TxnSnapshot, commit: bool, now: int) -> TxnSnapshot:
    """Ongoing -> PrepareCommit / PrepareAbort (EndTxn)."""
    return _transit(cur, S.PREPARE_COMMIT if commit else S.PREPARE_ABORT, last_update_ms=now)


def complete(cur: TxnSnapshot, now: int) -> TxnSnapshot:
    """Prepare* -> Complete*: every marker is written; the partitions are cleared."""
    state = S.COMPLETE_COMMIT if cur.state is S.PREPARE_COMMIT else S.COMPLETE_ABORT
    return _transit(
        cur, state, partitions=frozenset(), next_producer_id=NO_PRODUCER_ID, last_update_ms=now
    )


def check_producer(cur: TxnSnapshot | None, producer_id: int, producer_epoch: int) -> ErrorCode:
    """The checks AddPartitionsToTxn / AddOffsetsToTxn / EndTxn share, in Kafka's order:
    unknown id or other producer id -> INVALID_PRODUCER_ID_MAPPING; other epoch (including an
    epoch the coordinator bumped to abort a timed-out or fenced transaction) ->
    PRODUCER_FENCED (the broker answers INVALID_PRODUCER_EPOCH to old request versions)."""
    if cur is None or cur.producer_id != producer_id:
        return ErrorCode.INVALID_PRODUCER_ID_MAPPING
    if cur.producer_epoch != producer_epoch:
        return ErrorCode.PRODUCER_FENCED
    return ErrorCode.NONE


def end_txn_error(state: TxnState, commit: bool) -> ErrorCode | None:
    """EndTxn's answer for an id not Ongoing (None when Ongoing: the transaction ends).
    A retry of a completed result -> NONE; a retry while its markers are being written ->
    CONCURRENT_TRANSACTIONS; the opposite result, or no transaction -> INVALID_TXN_STATE."""
    if state is S.ONGOING:
        return None
    done = S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT
    pending = S.PREPARE_COMMIT if commit else S.PREPARE_ABORT
    if state is done:
        return ErrorCode.NONE
    if state is pending:
        return ErrorCode.CONCURRENT_TRANSACTIONS
    return ErrorCode.INVALID_TXN_STATE
