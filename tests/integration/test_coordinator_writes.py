"""Coordinator writes refused by a full disk, over the wire against an in-process broker:
the data directory is put in the full state as a failed write would (``DiskSpace.report``,
with the free space the test sets; see tests/unit/storage/test_disk_full.py). Each request
gets Kafka's mapped error in a normal response on a connection that stays open, the
coordinator's state is unchanged, a WARNING names the group or transactional id, and the
same request succeeds once space returns."""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.add_offsets_to_txn import (
    AddOffsetsToTxnRequest,
    AddOffsetsToTxnResponse,
)
from riverbed.protocol.messages.consumer_group_heartbeat import (
    ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
)
from riverbed.protocol.messages.delete_groups import DeleteGroupsRequest, DeleteGroupsResponse
from riverbed.protocol.messages.delete_topics import DeleteTopicsRequest, DeleteTopicsResponse
from riverbed.protocol.messages.join_group import JoinGroupRequest, JoinGroupResponse
from riverbed.protocol.messages.offset_commit import OffsetCommitRequest, OffsetCommitResponse
from riverbed.protocol.messages.offset_fetch import OffsetFetchRequest, OffsetFetchResponse
from riverbed.protocol.messages.sync_group import SyncGroupRequest, SyncGroupResponse
from riverbed.protocol.messages.txn_offset_commit import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
)
from riverbed.storage import space
from riverbed.testing import EmbeddedBroker

from .test_txn_wire import add_partitions, init
from .test_wire import make_topic
from .wire import Wire

pytestmark = pytest.mark.integration

BIG = 1 << 40
NOT_COORDINATOR = ErrorCode.NOT_COORDINATOR


class Disk:
    def __init__(self, broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch) -> None:
        self.broker = broker
        self.free = BIG
        monkeypatch.setattr(space, "free_bytes", lambda _path: (self.free, BIG))

    def fill(self) -> None:
        self.free = 0
        disk_space = self.broker.broker.logs.space
        self.broker.call(disk_space.report, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        assert disk_space.error is not None

    def free_up(self) -> None:
        self.free = BIG


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EmbeddedBroker, Wire, Disk]]:
    with EmbeddedBroker(tmp_path / "data") as broker, Wire(broker.bootstrap) as wire:
        yield broker, wire, Disk(broker, monkeypatch)


def commit(w: Wire, group: str, topic: str, offset: int) -> int:
    req = OffsetCommitRequest(
        group_id=group,
        generation_id_or_member_epoch=-1,
        topics=[OffsetCommitRequest.OffsetCommitRequestTopic(name=topic, partitions=[OffsetCommitRequest.OffsetCommitRequestPartition(partition_index=0, committed_offset=offset)])],
    )
    resp = w.request(req, 8)
    assert isinstance(resp, OffsetCommitResponse)
    return resp.topics[0].partitions[0].error_code


def fetch(w: Wire, group: str, topic: str) -> int:
    req = OffsetFetchRequest(groups=[OffsetFetchRequest.OffsetFetchRequestGroup(group_id=group, topics=[OffsetFetchRequest.OffsetFetchRequestTopics(name=topic, partition_indexes=[0])])])
    resp = w.request(req, 8)
    assert isinstance(resp, OffsetFetchResponse)
    part = resp.groups[0].topics[0].partitions[0]
    assert part.error_code == 0
    return part.committed_offset


def eventually(what: Callable[[], int], expected: int = 0, timeout_s: float = 120.0) -> None:
    """Repeat ``what`` until it answers ``expected`` (space is probed at most every 0.2 s)."""
    deadline = time.monotonic() + timeout_s
    while (got := what()) != expected:
        assert time.monotonic() < deadline, f"still {got}"
        time.sleep(0.05)


def warned(caplog: pytest.LogCaptureFixture, name: str) -> bool:
    return any(r.levelno >= logging.WARNING and repr(name) in r.getMessage() for r in caplog.records)


def test_offset_commit_on_a_full_disk(setup: tuple[EmbeddedBroker, Wire, Disk], caplog: pytest.LogCaptureFixture) -> None:
    _broker, w, disk = setup
    make_topic(w, "t")
    assert commit(w, "g1", "t", 5) == 0
    disk.fill()
    assert commit(w, "g1", "t", 9) == NOT_COORDINATOR
    assert fetch(w, "g1", "t") == 5  # same connection: still open; the refused offset invisible
    assert warned(caplog, "g1")
    disk.free_up()
    eventually(lambda: commit(w, "g1", "t", 9))
    assert fetch(w, "g1", "t") == 9


def test_sync_group_on_a_full_disk(setup: tuple[EmbeddedBroker, Wire, Disk]) -> None:
    """The leader's assignment cannot be written: SyncGroup answers NOT_COORDINATOR, the group
    rebalances again; once space returns the member rejoins and gets its assignment."""
    broker, w, disk = setup
    make_topic(w, "t")
    assert commit(w, "other", "t", 1) == 0  # __consumer_offsets exists

    def join(member_id: str) -> JoinGroupResponse:
        proto = JoinGroupRequest.JoinGroupRequestProtocol(name="range", metadata=b"m")
        req = JoinGroupRequest(group_id="g6", session_timeout_ms=30000, rebalance_timeout_ms=30000, member_id=member_id, protocol_type="consumer", protocols=[proto])
        resp = w.request(req, 3)  # v3: no MEMBER_ID_REQUIRED round trip
        assert isinstance(resp, JoinGroupResponse) and resp.error_code == 0, resp
        return resp

    def sync(joined: JoinGroupResponse) -> SyncGroupResponse:
        assignment = SyncGroupRequest.SyncGroupRequestAssignment(member_id=joined.member_id, assignment=b"A")
        resp = w.request(SyncGroupRequest(group_id="g6", generation_id=joined.generation_id, member_id=joined.member_id, assignments=[assignment]), 3)
        assert isinstance(resp, SyncGroupResponse)
        return resp

    first = join("")
    disk.fill()
    assert sync(first).error_code == NOT_COORDINATOR
    (described,) = [g for g in broker.call(broker.broker.groups.coordinator.list_groups, None) if g[0] == "g6"]
    assert described[2] == "PreparingRebalance"
    disk.free_up()
    deadline = time.monotonic() + 120
    while True:
        again = join(first.member_id)
        answer = sync(again)
        if answer.error_code == 0:
            break
        assert answer.error_code == NOT_COORDINATOR and time.monotonic() < deadline
        time.sleep(0.05)
    assert answer.assignment == b"A" and again.generation_id > first.generation_id


def test_delete_groups_on_a_full_disk(setup: tuple[EmbeddedBroker, Wire, Disk]) -> None:
    _broker, w, disk = setup
    make_topic(w, "t")
    assert commit(w, "g2", "t", 5) == 0
    disk.fill()

    def delete() -> int:
        resp = w.request(DeleteGroupsRequest(groups_names=["g2"]), 2)
        assert isinstance(resp, DeleteGroupsResponse)
        return resp.results[0].error_code

    assert delete() == NOT_COORDINATOR
    assert fetch(w, "g2", "t") == 5
    disk.free_up()
    eventually(delete)
    assert fetch(w, "g2", "t") == -1


def test_consumer_group_heartbeat_on_a_full_disk(setup: tuple[EmbeddedBroker, Wire, Disk]) -> None:
    broker, w, disk = setup
    make_topic(w, "t")
    assert commit(w, "other", "t", 1) == 0  # __consumer_offsets exists
    disk.fill()

    def join() -> int:
        req = ConsumerGroupHeartbeatRequest(group_id="g3", member_id="m" * 22, member_epoch=0, rebalance_timeout_ms=30000, subscribed_topic_names=["t"], topic_partitions=[])
        resp = w.request(req, 0)
        assert isinstance(resp, ConsumerGroupHeartbeatResponse)
        return resp.error_code

    assert join() == NOT_COORDINATOR
    assert not broker.call(broker.broker.groups.consumer.has_group, "g3")
    disk.free_up()
    eventually(join)
    assert broker.call(broker.broker.groups.consumer.has_group, "g3")


def test_deleting_a_topic_of_a_consumer_group_on_a_full_disk(setup: tuple[EmbeddedBroker, Wire, Disk]) -> None:
    """The topic change gives a KIP-848 group a new assignment whose write is refused: the
    DeleteTopics answer is not affected (the refusal is only logged)."""
    _broker, w, disk = setup
    make_topic(w, "t")
    make_topic(w, "u")
    req = ConsumerGroupHeartbeatRequest(group_id="g5", member_id="m" * 22, member_epoch=0, rebalance_timeout_ms=30000, subscribed_topic_names=["t", "u"], topic_partitions=[])
    resp = w.request(req, 0)
    assert isinstance(resp, ConsumerGroupHeartbeatResponse) and resp.error_code == 0
    disk.fill()
    deleted = w.request(DeleteTopicsRequest(topic_names=["u"], timeout_ms=5000), 4)
    assert isinstance(deleted, DeleteTopicsResponse) and deleted.responses[0].error_code == 0
    assert fetch(w, "g5", "t") == -1  # the connection is still open


def test_transactions_on_a_full_disk(setup: tuple[EmbeddedBroker, Wire, Disk], caplog: pytest.LogCaptureFixture) -> None:
    """A state record of __transaction_state refused: NOT_COORDINATOR (Kafka's mapping of
    KAFKA_STORAGE_ERROR), the id's state as before; TxnOffsetCommit refused likewise."""
    broker, w, disk = setup
    make_topic(w, "t")
    _, pid, epoch = init(w, "tx")
    resp = w.request(AddOffsetsToTxnRequest(transactional_id="tx", producer_id=pid, producer_epoch=epoch, group_id="g4"), 3)
    assert isinstance(resp, AddOffsetsToTxnResponse) and resp.error_code == 0
    disk.fill()

    def txn_commit() -> int:
        req = TxnOffsetCommitRequest(
            transactional_id="tx",
            group_id="g4",
            producer_id=pid,
            producer_epoch=epoch,
            topics=[TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic(name="t", partitions=[TxnOffsetCommitRequest.TxnOffsetCommitRequestPartition(partition_index=0, committed_offset=7)])],
        )
        r = w.request(req, 3)
        assert isinstance(r, TxnOffsetCommitResponse)
        return r.topics[0].partitions[0].error_code

    assert txn_commit() == NOT_COORDINATOR
    assert add_partitions(w, "tx", pid, epoch, "t", [0]) == {0: NOT_COORDINATOR}
    (desc,) = broker.call(broker.broker.txns.coordinator.describe, ["tx"])
    assert [p for p in desc.partitions if p[0] == "t"] == []
    assert warned(caplog, "tx") and warned(caplog, "g4")
    disk.free_up()
    eventually(lambda: add_partitions(w, "tx", pid, epoch, "t", [0])[0])
    (desc,) = broker.call(broker.broker.txns.coordinator.describe, ["tx"])
    assert ("t", 0) in [tuple(p) for p in desc.partitions]
    assert txn_commit() == 0
