"""Transactional requests that real clients do not send, over the wire: Kafka's error codes,
and the log and the coordinator stay consistent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from riverbed.coordinator.offsets_log import partition_for
from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.add_offsets_to_txn import (
    AddOffsetsToTxnRequest,
    AddOffsetsToTxnResponse,
)
from riverbed.protocol.messages.add_partitions_to_txn import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse,
)
from riverbed.protocol.messages.end_txn import EndTxnRequest, EndTxnResponse
from riverbed.protocol.messages.fetch import FetchRequest, FetchResponse
from riverbed.protocol.messages.find_coordinator import (
    FindCoordinatorRequest,
    FindCoordinatorResponse,
)
from riverbed.protocol.messages.init_producer_id import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from riverbed.protocol.messages.list_offsets import ListOffsetsRequest, ListOffsetsResponse
from riverbed.protocol.messages.offset_fetch import OffsetFetchRequest, OffsetFetchResponse
from riverbed.protocol.messages.produce import ProduceResponse
from riverbed.protocol.messages.txn_offset_commit import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
)
from riverbed.protocol.records.records import build_batch, build_control_batch
from riverbed.testing import EmbeddedBroker

from .test_wire import make_topic, produce_req
from .wire import Wire

pytestmark = pytest.mark.integration


@pytest.fixture
def w(tmp_path: Path) -> Iterator[Wire]:
    with EmbeddedBroker(tmp_path / "data") as broker, Wire(broker.bootstrap) as wire:
        yield wire


def init(w: Wire, txn_id: str, timeout_ms: int = 60000, version: int = 4) -> tuple[int, int, int]:
    resp = w.request(InitProducerIdRequest(transactional_id=txn_id, transaction_timeout_ms=timeout_ms), version)
    assert isinstance(resp, InitProducerIdResponse)
    return resp.error_code, resp.producer_id, resp.producer_epoch


def add_partitions(w: Wire, txn_id: str, pid: int, epoch: int, topic: str, partitions: list[int], version: int = 3) -> dict[int, int]:
    req = AddPartitionsToTxnRequest(
        v3_and_below_transactional_id=txn_id,
        v3_and_below_producer_id=pid,
        v3_and_below_producer_epoch=epoch,
        v3_and_below_topics=[AddPartitionsToTxnRequest.AddPartitionsToTxnTopic(name=topic, partitions=partitions)],
    )
    resp = w.request(req, version)
    assert isinstance(resp, AddPartitionsToTxnResponse)
    return {r.partition_index: r.partition_error_code for t in resp.results_by_topic_v3_and_below for r in t.results_by_partition}


def end(w: Wire, txn_id: str, pid: int, epoch: int, commit: bool, version: int = 3) -> int:
    resp = w.request(EndTxnRequest(transactional_id=txn_id, producer_id=pid, producer_epoch=epoch, committed=commit), version)
    assert isinstance(resp, EndTxnResponse)
    return resp.error_code


def txn_batch(pid: int, epoch: int, seq: int, n: int = 2, transactional: bool = True) -> bytearray:
    return build_batch([(f"k{i}".encode(), f"v{i}".encode()) for i in range(n)], producer_id=pid, producer_epoch=epoch, base_sequence=seq, transactional=transactional)


def txn_produce_error(w: Wire, topic: str, records: bytes | bytearray, txn_id: str = "t") -> int:
    """Produce v8 carrying the transactional id (Kafka refuses transactional records
    without one: TRANSACTIONAL_ID_AUTHORIZATION_FAILED)."""
    req = produce_req(topic, records)
    req.transactional_id = txn_id
    resp = w.request(req, 8)
    assert isinstance(resp, ProduceResponse)
    return resp.responses[0].partition_responses[0].error_code


def lso_and_hw(w: Wire, topic: str) -> tuple[int, int]:
    out = []
    for isolation in (1, 0):
        req = ListOffsetsRequest(
            replica_id=-1,
            isolation_level=isolation,
            topics=[ListOffsetsRequest.ListOffsetsTopic(name=topic, partitions=[ListOffsetsRequest.ListOffsetsPartition(partition_index=0, timestamp=-1)])],
        )
        resp = w.request(req, 5)
        assert isinstance(resp, ListOffsetsResponse)
        out.append(resp.topics[0].partitions[0].offset)
    return out[0], out[1]


def test_find_coordinator_for_transactions(w: Wire) -> None:
    resp = w.request(FindCoordinatorRequest(key="tx", key_type=1), 3)
    assert isinstance(resp, FindCoordinatorResponse) and resp.error_code == 0 and resp.node_id >= 0
    resp = w.request(FindCoordinatorRequest(key_type=1, coordinator_keys=["a", ""]), 4)
    assert isinstance(resp, FindCoordinatorResponse)
    assert [c.error_code for c in resp.coordinators] == [0, ErrorCode.INVALID_REQUEST]


def test_init_producer_id_checks(w: Wire) -> None:
    assert init(w, "t", timeout_ms=900_001)[0] == ErrorCode.INVALID_TRANSACTION_TIMEOUT
    assert init(w, "t", timeout_ms=0)[0] == ErrorCode.INVALID_TRANSACTION_TIMEOUT
    assert init(w, "")[0] == ErrorCode.INVALID_REQUEST
    err, pid, epoch = init(w, "t")
    assert (err, epoch) == (0, 0) and pid >= 0
    assert init(w, "t")[1:] == (pid, 1)  # a new instance bumps the epoch


def test_transactional_requests_with_wrong_ids_or_epochs(w: Wire, topic_name: str) -> None:
    make_topic(w, topic_name)
    _, pid, epoch = init(w, "t")
    assert add_partitions(w, "t", pid + 1, epoch, topic_name, [0]) == {0: ErrorCode.INVALID_PRODUCER_ID_MAPPING}
    assert add_partitions(w, "unknown", pid, epoch, topic_name, [0]) == {0: ErrorCode.INVALID_PRODUCER_ID_MAPPING}
    assert add_partitions(w, "t", pid, epoch - 1 if epoch else 5, topic_name, [0]) == {0: ErrorCode.PRODUCER_FENCED}
    # KIP-588: before AddPartitionsToTxn v2 the same thing is INVALID_PRODUCER_EPOCH
    assert add_partitions(w, "t", pid, 5, topic_name, [0], version=1) == {0: ErrorCode.INVALID_PRODUCER_EPOCH}
    # an unknown partition: nothing is added, the others are not attempted
    assert add_partitions(w, "t", pid, epoch, topic_name, [0, 7]) == {0: ErrorCode.OPERATION_NOT_ATTEMPTED, 7: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}
    assert end(w, "t", pid, epoch, commit=True) == ErrorCode.INVALID_TXN_STATE  # no transaction
    assert end(w, "nobody", pid, epoch, commit=True) == ErrorCode.INVALID_PRODUCER_ID_MAPPING
    resp = w.request(AddOffsetsToTxnRequest(transactional_id="t", producer_id=pid, producer_epoch=epoch + 3, group_id="g"), 3)
    assert isinstance(resp, AddOffsetsToTxnResponse) and resp.error_code == ErrorCode.PRODUCER_FENCED


def test_commit_then_abort_and_retries(w: Wire, topic_name: str) -> None:
    make_topic(w, topic_name)
    _, pid, epoch = init(w, "t")
    assert add_partitions(w, "t", pid, epoch, topic_name, [0]) == {0: 0}
    assert txn_produce_error(w, topic_name, txn_batch(pid, epoch, 0)) == 0
    assert lso_and_hw(w, topic_name) == (0, 2)
    # a non-transactional write from the same producer while its transaction is open
    assert txn_produce_error(w, topic_name, txn_batch(pid, epoch, 2, transactional=False)) == ErrorCode.INVALID_TXN_STATE
    # clients may not write control batches
    assert txn_produce_error(w, topic_name, build_control_batch(pid, epoch, True, 0, 0, 0)) == ErrorCode.INVALID_RECORD
    assert end(w, "t", pid, epoch, commit=True) == 0
    assert lso_and_hw(w, topic_name) == (3, 3)  # two records and the COMMIT marker
    assert end(w, "t", pid, epoch, commit=True) == 0  # a retried commit
    assert end(w, "t", pid, epoch, commit=False) == ErrorCode.INVALID_TXN_STATE  # abort after commit
    # the next transaction, aborted: read_committed fetches learn where it starts
    assert add_partitions(w, "t", pid, epoch, topic_name, [0]) == {0: 0}
    assert txn_produce_error(w, topic_name, txn_batch(pid, epoch, 2)) == 0
    assert end(w, "t", pid, epoch, commit=False) == 0
    req = FetchRequest(
        replica_id=-1,
        max_wait_ms=0,
        min_bytes=1,
        max_bytes=1 << 20,
        isolation_level=1,
        topics=[FetchRequest.FetchTopic(topic=topic_name, partitions=[FetchRequest.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])],
    )
    resp = w.request(req, 11)
    assert isinstance(resp, FetchResponse)
    part = resp.responses[0].partitions[0]
    assert (part.high_watermark, part.last_stable_offset) == (6, 6)
    assert [(a.producer_id, a.first_offset) for a in part.aborted_transactions or []] == [(pid, 3)]


def test_txn_offset_commit_from_a_fenced_producer(w: Wire, topic_name: str) -> None:
    make_topic(w, topic_name)
    _, pid, epoch = init(w, "t")
    resp = w.request(AddOffsetsToTxnRequest(transactional_id="t", producer_id=pid, producer_epoch=epoch, group_id="g"), 3)
    assert isinstance(resp, AddOffsetsToTxnResponse) and resp.error_code == 0

    def commit(epoch: int, version: int = 3) -> int:
        req = TxnOffsetCommitRequest(
            transactional_id="t",
            group_id="g",
            producer_id=pid,
            producer_epoch=epoch,
            topics=[TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic(name=topic_name, partitions=[TxnOffsetCommitRequest.TxnOffsetCommitRequestPartition(partition_index=0, committed_offset=5)])],
        )
        r = w.request(req, version)
        assert isinstance(r, TxnOffsetCommitResponse)
        return r.topics[0].partitions[0].error_code

    def fetch(require_stable: bool) -> tuple[int, int]:
        req = OffsetFetchRequest(group_id="g", topics=[OffsetFetchRequest.OffsetFetchRequestTopic(name=topic_name, partition_indexes=[0])], require_stable=require_stable)
        r = w.request(req, 7)
        assert isinstance(r, OffsetFetchResponse)
        part = r.topics[0].partitions[0]
        return part.committed_offset, part.error_code

    assert commit(epoch) == 0
    # pending until the marker: read_committed consumers (require_stable) are told to retry
    assert fetch(require_stable=False) == (-1, 0)
    assert fetch(require_stable=True) == (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT)
    # a new instance fences the first one: its open transaction is aborted first
    # (CONCURRENT_TRANSACTIONS), then the retry gets the new epoch
    err, _, _ = init(w, "t")
    assert err == ErrorCode.CONCURRENT_TRANSACTIONS
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # clients retry until the abort is complete
        err, _, new_epoch = init(w, "t")
        if err != ErrorCode.CONCURRENT_TRANSACTIONS:
            break
        time.sleep(0.02)
    assert err == 0 and new_epoch > epoch
    assert commit(epoch) == ErrorCode.PRODUCER_FENCED
    assert commit(epoch, version=2) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert fetch(require_stable=True) == (-1, 0)  # aborted: nothing pending, nothing committed


def test_txn_offset_commit_is_verified_with_the_coordinator(w: Wire, topic_name: str) -> None:
    make_topic(w, topic_name)
    _, pid, epoch = init(w, "t")

    def commit(producer_id: int, group: str = "g") -> int:
        req = TxnOffsetCommitRequest(
            transactional_id="t",
            group_id=group,
            producer_id=producer_id,
            producer_epoch=epoch,
            topics=[TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic(name=topic_name, partitions=[TxnOffsetCommitRequest.TxnOffsetCommitRequestPartition(partition_index=0, committed_offset=5)])],
        )
        r = w.request(req, 3)
        assert isinstance(r, TxnOffsetCommitResponse)
        return r.topics[0].partitions[0].error_code

    assert commit(pid) == ErrorCode.INVALID_TXN_STATE  # no AddOffsetsToTxn for the group
    assert commit(pid + 1) == ErrorCode.INVALID_PRODUCER_ID_MAPPING
    resp = w.request(AddOffsetsToTxnRequest(transactional_id="t", producer_id=pid, producer_epoch=epoch, group_id="g"), 3)
    assert isinstance(resp, AddOffsetsToTxnResponse) and resp.error_code == 0
    assert commit(pid) == 0
    other = next(g for g in (f"other-{i}" for i in range(1000)) if partition_for(g, 50) != partition_for("g", 50))
    assert commit(pid, other) == ErrorCode.INVALID_TXN_STATE  # that group's partition is not in it


def test_delete_records_on_internal_topics_is_refused(w: Wire) -> None:
    from riverbed.protocol.messages.delete_records import (
        DeleteRecordsRequest,
        DeleteRecordsResponse,
    )

    _, pid, _ = init(w, "t")  # creates __transaction_state
    req = DeleteRecordsRequest(
        topics=[DeleteRecordsRequest.DeleteRecordsTopic(name="__transaction_state", partitions=[DeleteRecordsRequest.DeleteRecordsPartition(partition_index=partition_for("t", 50), offset=-1)])],
        timeout_ms=5000,
    )
    resp = w.request(req, 2)
    assert isinstance(resp, DeleteRecordsResponse)
    assert resp.topics[0].partitions[0].error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
    assert init(w, "t")[1] == pid  # the id's state is intact


def test_a_state_record_that_cannot_be_written_is_not_acknowledged(tmp_path: Path, topic_name: str) -> None:
    """The __transaction_state log fails (closed here; a full disk in real life): the request
    gets NOT_COORDINATOR (Kafka's mapping of KAFKA_STORAGE_ERROR) and the coordinator keeps
    the state that is on disk."""
    with EmbeddedBroker(tmp_path / "data") as broker, Wire(broker.bootstrap) as w:
        make_topic(w, topic_name)
        _, pid, epoch = init(w, "t")
        plog = broker.broker.partition("__transaction_state", partition_for("t", 50))
        broker.call(plog.close)
        assert add_partitions(w, "t", pid, epoch, topic_name, [0]) == {0: ErrorCode.NOT_COORDINATOR}
        (desc,) = broker.call(broker.broker.txns.coordinator.describe, ["t"])
        assert desc.state == "Empty" and desc.partitions == ()
        assert init(w, "t")[0] == ErrorCode.NOT_COORDINATOR
        assert broker.call(broker.broker.txns.coordinator.snapshot, "t").producer_epoch == epoch
