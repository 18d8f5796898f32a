"""Value types of the transaction coordinator: states, configuration, the persisted snapshot
of one transactional id, the events the broker acts on, and the results of describe/list.
Plain data, no behaviour (see txn_model.py for the transitions, txn.py for the machine)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

#: RecordBatch.NO_PRODUCER_ID / NO_PRODUCER_EPOCH
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
#: Short.MAX_VALUE: the coordinator keeps the last epoch for itself, to fence with.
MAX_PRODUCER_EPOCH = 32767

TopicPartition = tuple[str, int]


class TxnState(IntEnum):
    """Kafka's TransactionState; the value is the id written in
    TransactionLogValue.transaction_status."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def display(self) -> str:
        """The name DescribeTransactions / ListTransactions use (Kafka's TransactionState.name)."""
        return _DISPLAY[self]

    @classmethod
    def from_display(cls, name: str) -> TxnState | None:
        return _BY_DISPLAY.get(name)


_DISPLAY = {
    TxnState.EMPTY: "Empty",
    TxnState.ONGOING: "Ongoing",
    TxnState.PREPARE_COMMIT: "PrepareCommit",
    TxnState.PREPARE_ABORT: "PrepareAbort",
    TxnState.COMPLETE_COMMIT: "CompleteCommit",
    TxnState.COMPLETE_ABORT: "CompleteAbort",
    TxnState.DEAD: "Dead",
    TxnState.PREPARE_EPOCH_FENCE: "PrepareEpochFence",
}
_BY_DISPLAY = {name: state for state, name in _DISPLAY.items()}

#: States in which a transactional id may expire (Kafka's isExpirationAllowed).
EXPIRABLE = frozenset({TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT})
PREPARING = frozenset({TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT})
COMPLETE = frozenset({TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT})


@dataclass(frozen=True)
class TxnConfig:
    """Coordinator settings; each maps to a Kafka broker config (name in the comment)."""

    # transaction.max.timeout.ms -> INVALID_TRANSACTION_TIMEOUT above it
    transaction_max_timeout_ms: int = 900_000
    # transactional.id.expiration.ms: an id idle this long in Empty/Complete* is forgotten
    transactional_id_expiration_ms: int = 604_800_000
    # transaction.abort.timed.out.transaction.cleanup.interval.ms: how often timed-out
    # transactions are looked for (and aborted)
    abort_timed_out_interval_ms: int = 10_000
    # transaction.remove.expired.transaction.cleanup.interval.ms: how often expired ids are
    # looked for (and tombstoned)
    remove_expired_interval_ms: int = 3_600_000


@dataclass(frozen=True, slots=True)
class TxnSnapshot:
    """One transactional id as the coordinator holds it; fields mirror Kafka's
    TransactionMetadata. Only `last_producer_epoch` is never persisted (Kafka reads it back as
    -1), and previous/next producer ids and the client transaction version only with
    TransactionLogValue version 1 (see txn_log.py)."""

    transactional_id: str
    producer_id: int
    previous_producer_id: int  # the producer id before the latest transition
    next_producer_id: int  # transactions version 2 only; -1 here
    producer_epoch: int
    last_producer_epoch: int  # the epoch before the latest KIP-360 bump; -1 when none
    timeout_ms: int
    state: TxnState
    partitions: frozenset[TopicPartition]
    start_ms: int  # when the current/last transaction started; -1 when none
    last_update_ms: int
    client_transaction_version: int = 0


@dataclass(frozen=True, slots=True)
class TxnLogWrite:
    """Append one record for `transactional_id` to __transaction_state (see txn_log.py) and
    make it durable before sending the answer of the call that produced it. A None snapshot
    is a tombstone: the id expired and was forgotten."""

    transactional_id: str
    snapshot: TxnSnapshot | None


@dataclass(frozen=True, slots=True)
class WriteMarkers:
    """Append a COMMIT (or ABORT) control marker for (producer_id, producer_epoch) to each
    partition (``__consumer_offsets`` partitions included), then call
    ``coordinator.markers_written(transactional_id, producer_id, producer_epoch)``."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    commit: bool
    partitions: tuple[TopicPartition, ...]


TxnEvent = TxnLogWrite | WriteMarkers


@dataclass(frozen=True, slots=True)
class InitResult:
    """InitProducerId's answer (producer id and epoch are -1 on error)."""

    error_code: int
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH


@dataclass(frozen=True, slots=True)
class TxnDescription:
    """One entry of DescribeTransactions."""

    transactional_id: str
    error_code: int
    state: str = ""
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH
    timeout_ms: int = 0
    start_ms: int = -1
    partitions: tuple[TopicPartition, ...] = ()  # sorted

    @property
    def topics(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """The partitions grouped by topic, as DescribeTransactions answers them (sorted)."""
        by_topic: dict[str, list[int]] = {}
        for topic, partition in self.partitions:
            by_topic.setdefault(topic, []).append(partition)
        return tuple((t, tuple(ps)) for t, ps in by_topic.items())


@dataclass(frozen=True, slots=True)
class TxnListing:
    """One entry of ListTransactions."""

    transactional_id: str
    producer_id: int
    state: str
