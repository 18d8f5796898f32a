"""What a client is told when a coordinator's write to its internal topic fails.

The coordinators' state lives in ``__consumer_offsets`` / ``__transaction_state``; when an
append there fails (disk full: KAFKA_STORAGE_ERROR), Kafka does not pass the log's error on
but maps it to a coordinator error the client knows how to handle (find the coordinator
again, or retry), and leaves the in-memory state as it was. The mappings follow Kafka 4's
group coordinator (its common operation-exception handling), the classic offset commit path
(INVALID_COMMIT_OFFSET_SIZE for a batch the log finds too large) and the transaction state
manager's append callback.
"""

from __future__ import annotations

from riverbed.protocol.errors import ErrorCode

_UNAVAILABLE = frozenset(
    {
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ErrorCode.REQUEST_TIMED_OUT,
    }
)
_MOVED = frozenset({ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR})
_TOO_LARGE = frozenset({ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE, ErrorCode.INVALID_FETCH_SIZE})


def group_write_error(code: int) -> ErrorCode:
    """A failed write of group state (JoinGroup/SyncGroup metadata, LeaveGroup, OffsetDelete,
    DeleteGroups, ConsumerGroupHeartbeat)."""
    if code in _UNAVAILABLE:
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if code in _MOVED:
        return ErrorCode.NOT_COORDINATOR
    if code in _TOO_LARGE:
        return ErrorCode.UNKNOWN_SERVER_ERROR
    return _known(code)


def offset_commit_write_error(code: int) -> ErrorCode:
    """A failed write of committed offsets (OffsetCommit, TxnOffsetCommit)."""
    if code in _TOO_LARGE:
        return ErrorCode.INVALID_COMMIT_OFFSET_SIZE
    return group_write_error(code)


def txn_write_error(code: int) -> ErrorCode:
    """A failed write of a transactional id's state to ``__transaction_state``."""
    if code in _UNAVAILABLE:
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if code in _MOVED:
        return ErrorCode.NOT_COORDINATOR
    if code in _TOO_LARGE:
        return ErrorCode.UNKNOWN_SERVER_ERROR
    return _known(code)


def _known(code: int) -> ErrorCode:
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.UNKNOWN_SERVER_ERROR
