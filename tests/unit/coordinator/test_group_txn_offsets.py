"""TxnOffsetCommit on the classic coordinator: checks, pending offsets, markers, and
OffsetFetch with require_stable (KIP-447)."""

from __future__ import annotations

from group_helpers import START, Harness

from riverbed.coordinator.group import OffsetAndMetadata
from riverbed.protocol.errors import ErrorCode

PID = 4000


def om(offset: int) -> OffsetAndMetadata:
    return OffsetAndMetadata(offset, -1, "", START)


def test_txn_commit_checks_follow_kafka() -> None:
    h = Harness()
    a, _b = h.stable_group(2)
    check = h.coord.txn_commit_error
    # a producer without group metadata may commit to a group with members (pre-KIP-447)
    assert check("g", "", None, -1) == ErrorCode.NONE
    assert check("g", a.member_id, None, a.generation_id) == ErrorCode.NONE
    assert check("g", a.member_id, None, a.generation_id + 1) == ErrorCode.ILLEGAL_GENERATION
    assert check("g", "ghost", None, a.generation_id) == ErrorCode.UNKNOWN_MEMBER_ID
    # a group that does not exist: only without group metadata
    assert check("other", "", None, -1) == ErrorCode.NONE
    assert check("other", "m", None, 3) == ErrorCode.UNKNOWN_MEMBER_ID
    assert check("other", "", None, 3) == ErrorCode.ILLEGAL_GENERATION


def test_pending_offsets_become_visible_only_on_commit() -> None:
    h = Harness()
    h.coord.commit_offsets("g", "", None, -1, [("t", 0, 5, -1, "")])
    h.coord.add_pending_txn_offsets("g", PID, [("t", 0, om(10)), ("t", 1, om(20))])
    h.coord.add_pending_txn_offsets("g", PID + 1, [("t", 2, om(30))])
    # without require_stable the last committed offsets are answered
    _, rows = h.coord.fetch_offsets("g", [("t", 0), ("t", 1)])
    assert [r[2] for r in rows] == [5, -1]
    _, rows = h.coord.fetch_offsets("g", [("t", 0), ("t", 1), ("t", 3)], require_stable=True)
    assert [r[5] for r in rows] == [ErrorCode.UNSTABLE_OFFSET_COMMIT, ErrorCode.UNSTABLE_OFFSET_COMMIT, ErrorCode.NONE]
    assert h.coord.has_pending_txn("g", "t", 2)
    assert h.coord.complete_txn("g", PID, commit=True)
    assert not h.coord.complete_txn("g", PID, commit=True)  # nothing left for that producer
    assert h.coord.complete_txn("g", PID + 1, commit=False)
    _, rows = h.coord.fetch_offsets("g", [("t", 0), ("t", 1), ("t", 2)], require_stable=True)
    assert [(r[2], r[5]) for r in rows] == [(10, 0), (20, 0), (-1, 0)]
    assert not h.coord.has_pending_txn("g", "t", 2)


def test_a_group_with_pending_offsets_is_not_deleted_as_empty() -> None:
    h = Harness()
    h.coord.add_pending_txn_offsets("g", PID, [("t", 0, om(1))])
    h.advance(10 * 24 * 3600 * 1000)
    assert not any(type(e).__name__ == "GroupDeleted" for e in h.events)
    assert h.coord.complete_txn("g", PID, commit=True)
    _, rows = h.coord.fetch_offsets("g", [("t", 0)])
    assert rows[0][2] == 1


def test_a_plain_commit_written_after_the_transaction_wins() -> None:
    """Kafka's completePendingTxnOffsetCommit: the transaction's offset replaces the committed
    one only if it was written after it."""
    h = Harness()
    h.coord.add_pending_txn_offsets("g", PID, [("t", 0, om(10)), ("t", 1, om(11))])
    h.coord.commit_offsets("g", "", None, -1, [("t", 0, 99, -1, "")])  # after the txn's write
    assert h.coord.complete_txn("g", PID, commit=True)
    _, rows = h.coord.fetch_offsets("g", [("t", 0), ("t", 1)])
    assert [r[2] for r in rows] == [99, 11]


def test_pending_offsets_survive_a_group_metadata_record_on_replay() -> None:
    """A rebalance during a transaction writes a GroupMetadata record between the
    transactional offsets and their marker; replaying it must not drop them."""
    h = Harness()
    _a, _b = h.stable_group(2)
    snapshot = h.coord.group_snapshot("g")
    h.coord.add_pending_txn_offsets("g", PID, [("t", 0, om(7))])
    h.coord.load_group("g", snapshot)
    _, rows = h.coord.fetch_offsets("g", [("t", 0)], require_stable=True)
    assert rows[0][5] == ErrorCode.UNSTABLE_OFFSET_COMMIT
    assert h.coord.complete_txn("g", PID, commit=True)
    _, rows = h.coord.fetch_offsets("g", [("t", 0)])
    assert rows[0][2] == 7
