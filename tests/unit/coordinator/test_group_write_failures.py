"""The classic group coordinator when its write to __consumer_offsets is refused (the log's
directory is full: the broker's sink raises KAFKA_STORAGE_ERROR): the client gets Kafka's
mapped error, nothing changes in memory, and the same call succeeds once writes do."""

from __future__ import annotations

import itertools

import pytest
from group_helpers import CONFIG, FakeClock, Harness, protocols

from riverbed.coordinator.group import GroupCoordinator, GroupEvent
from riverbed.coordinator.write_errors import (
    group_write_error,
    offset_commit_write_error,
    txn_write_error,
)
from riverbed.protocol.errors import ErrorCode, KafkaError

NOT_COORDINATOR = ErrorCode.NOT_COORDINATOR


class FullDisk(Harness):
    """A harness whose sink refuses every write while ``full`` (as GroupService._append
    raises when the log refuses the append); refused events are not recorded."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.events: list[GroupEvent] = []
        self.full = False
        ids = itertools.count(1)
        self.coord = GroupCoordinator(self.clock, CONFIG, on_change=self._write, new_uuid=lambda: f"u{next(ids)}")

    def _write(self, event: GroupEvent) -> None:
        if self.full:
            raise KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, "log dir is full")
        self.events.append(event)


def offsets(h: Harness, group: str = "g") -> list[tuple[str, int, int]]:
    return [(t, p, off) for t, p, off, *_ in h.coord.fetch_offsets(group, None)[1]]


def test_a_refused_offset_commit_answers_not_coordinator_and_changes_nothing() -> None:
    h = FullDisk()
    (a,) = h.stable_group(1)
    commit = lambda off: h.coord.commit_offsets("g", a.member_id, None, a.generation_id, [("t", 0, off, -1, ""), ("t", 1, off, -1, "x" * 5000)])  # noqa: E731
    assert commit(5) == [("t", 0, 0), ("t", 1, ErrorCode.OFFSET_METADATA_TOO_LARGE)]
    h.full = True
    assert commit(9) == [("t", 0, NOT_COORDINATOR), ("t", 1, ErrorCode.OFFSET_METADATA_TOO_LARGE)]
    assert offsets(h) == [("t", 0, 5)]  # the previous offset: the refused one was never visible
    h.full = False
    assert commit(9)[0] == ("t", 0, 0)
    assert offsets(h) == [("t", 0, 9)]


def test_a_refused_standalone_commit_does_not_create_the_group() -> None:
    h = FullDisk()
    h.full = True
    assert h.coord.commit_offsets("solo", "", None, -1, [("t", 0, 3, -1, "")]) == [("t", 0, NOT_COORDINATOR)]
    assert h.coord.group_state("solo") is None
    assert h.coord.next_deadline() is None
    h.full = False
    assert h.coord.commit_offsets("solo", "", None, -1, [("t", 0, 3, -1, "")]) == [("t", 0, 0)]
    assert offsets(h, "solo") == [("t", 0, 3)]


def test_a_refused_offset_delete_fails_whole_and_keeps_the_offsets() -> None:
    h = FullDisk()
    h.coord.commit_offsets("g", "", None, -1, [("t", 0, 3, -1, ""), ("u", 0, 4, -1, "")])
    h.full = True
    assert h.coord.delete_offsets("g", [("t", 0)]) == (NOT_COORDINATOR, [])
    assert offsets(h) == [("t", 0, 3), ("u", 0, 4)]
    h.full = False
    assert h.coord.delete_offsets("g", [("t", 0)]) == (0, [("t", 0, 0)])
    assert offsets(h) == [("u", 0, 4)]


def test_a_refused_group_deletion_keeps_the_group_and_its_offsets() -> None:
    h = FullDisk()
    h.coord.commit_offsets("g", "", None, -1, [("t", 0, 3, -1, "")])
    h.coord.commit_offsets("h", "", None, -1, [("t", 0, 7, -1, "")])
    h.full = True
    assert h.coord.delete_groups(["g", "h", "nope"]) == [("g", NOT_COORDINATOR), ("h", NOT_COORDINATOR), ("nope", ErrorCode.GROUP_ID_NOT_FOUND)]
    assert h.state("g") == "Empty" and offsets(h) == [("t", 0, 3)]
    h.full = False
    assert h.coord.delete_groups(["g"]) == [("g", 0)]
    assert h.state("g") is None and offsets(h) == []
    assert offsets(h, "h") == [("t", 0, 7)]


def test_a_refused_assignment_answers_every_member_and_rebalances() -> None:
    """Kafka's resetAndPropagateAssignmentWithError: the parked SyncGroups get the mapped
    error, the assignment is dropped, the group prepares a new rebalance."""
    h = FullDisk()
    first = h.join(client_id="c0", protos=protocols("t")).value
    follower_box = h.join(client_id="c1", protos=protocols("t"))
    leader_box = h.join(first.member_id, client_id="c0", protos=protocols("t"))
    leader, follower = leader_box.value, follower_box.value
    assert leader.generation_id == follower.generation_id
    parked = h.sync(follower.member_id, follower.generation_id)
    assert not parked.done
    h.full = True
    answer = h.sync(leader.member_id, leader.generation_id, {leader.member_id: b"L", follower.member_id: b"F"})
    assert answer.value.error == NOT_COORDINATOR and parked.value.error == NOT_COORDINATOR
    assert h.state() == "PreparingRebalance"
    assert all(m.assignment == b"" for m in h.coord.describe_group("g").members)
    # writes work again: the members rejoin and the next generation completes
    h.full = False
    j1 = h.join(leader.member_id, client_id="c0", protos=protocols("t"))
    j2 = h.join(follower.member_id, client_id="c1", protos=protocols("t"))
    gen = j1.value.generation_id
    assert gen == leader.generation_id + 1 and j2.value.generation_id == gen
    new_leader = j1.value.leader
    other = follower.member_id if new_leader == leader.member_id else leader.member_id
    s2 = h.sync(other, gen)
    s1 = h.sync(new_leader, gen, {leader.member_id: b"L", follower.member_id: b"F"})
    assert s1.value.error == 0 and s2.value.error == 0
    assert h.state() == "Stable"


@pytest.mark.parametrize(
    ("log_error", "group", "commit", "txn"),
    [
        (ErrorCode.KAFKA_STORAGE_ERROR, NOT_COORDINATOR, NOT_COORDINATOR, NOT_COORDINATOR),
        (ErrorCode.NOT_LEADER_OR_FOLLOWER, NOT_COORDINATOR, NOT_COORDINATOR, NOT_COORDINATOR),
        (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.COORDINATOR_NOT_AVAILABLE),
        (ErrorCode.NOT_ENOUGH_REPLICAS, ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.COORDINATOR_NOT_AVAILABLE),
        (ErrorCode.REQUEST_TIMED_OUT, ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.COORDINATOR_NOT_AVAILABLE),
        (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.UNKNOWN_SERVER_ERROR, ErrorCode.INVALID_COMMIT_OFFSET_SIZE, ErrorCode.UNKNOWN_SERVER_ERROR),
        (ErrorCode.RECORD_LIST_TOO_LARGE, ErrorCode.UNKNOWN_SERVER_ERROR, ErrorCode.INVALID_COMMIT_OFFSET_SIZE, ErrorCode.UNKNOWN_SERVER_ERROR),
        (ErrorCode.PRODUCER_FENCED, ErrorCode.PRODUCER_FENCED, ErrorCode.PRODUCER_FENCED, ErrorCode.PRODUCER_FENCED),
    ],
)
def test_the_mapping_of_log_errors(log_error: ErrorCode, group: ErrorCode, commit: ErrorCode, txn: ErrorCode) -> None:
    assert (group_write_error(log_error), offset_commit_write_error(log_error), txn_write_error(log_error)) == (group, commit, txn)


def test_a_refused_static_member_replacement_is_undone() -> None:
    """A static member restarts (JoinGroup without its member id) into a Stable group: the
    new member id must be written; refused, the join answers the mapped error and the old
    member id stays the valid one (Kafka reverts the replacement)."""
    h = FullDisk()
    a = h.join(instance="i1").value
    assert h.sync(a.member_id, a.generation_id, {a.member_id: b"A"}).value.error == 0
    h.full = True
    again = h.join(instance="i1").value
    assert again.error == NOT_COORDINATOR
    assert h.heartbeat(a.member_id, a.generation_id, instance="i1") == ErrorCode.NONE
    assert [m.member_id for m in h.coord.describe_group("g").members] == [a.member_id]
    h.full = False
    b = h.join(instance="i1").value
    assert b.error == 0 and b.member_id != a.member_id and b.generation_id == a.generation_id
    assert h.heartbeat(a.member_id, a.generation_id, instance="i1") == ErrorCode.FENCED_INSTANCE_ID
    assert h.state() == "Stable"
