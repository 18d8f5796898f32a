"""KIP-890 part 1: the broker accepts a transactional batch only for a partition that its
producer added to the ongoing transaction (AddPartitionsToTxn); otherwise the batch is
refused with INVALID_TXN_STATE and nothing is written, so no transaction can hang on a
partition the coordinator does not know about (which would block read_committed readers
at the last stable offset until the broker restarts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.produce import ProduceResponse
from riverbed.testing import EmbeddedBroker

from .test_txn_wire import add_partitions, end, init, lso_and_hw, txn_batch
from .test_wire import make_topic, produce_req
from .wire import Wire

pytestmark = pytest.mark.integration


@pytest.fixture
def w(tmp_path: Path) -> Iterator[Wire]:
    with EmbeddedBroker(tmp_path / "data") as broker, Wire(broker.bootstrap) as wire:
        yield wire


def produce(w: Wire, topic: str, records: bytes | bytearray, txn_id: str | None, partition: int = 0, version: int = 8) -> ProduceResponse.PartitionProduceResponse:
    req = produce_req(topic, records, partition=partition)
    req.transactional_id = txn_id
    resp = w.request(req, version)
    assert isinstance(resp, ProduceResponse)
    return resp.responses[0].partition_responses[0]


@pytest.mark.parametrize("version", [3, 8])
def test_batch_for_a_partition_never_added_is_refused(w: Wire, topic_name: str, version: int) -> None:
    make_topic(w, topic_name, partitions=2)
    _, pid, epoch = init(w, "t")
    assert add_partitions(w, "t", pid, epoch, topic_name, [0]) == {0: 0}
    # partition 1 was never added: refused, nothing written, no open transaction there
    part = produce(w, topic_name, txn_batch(pid, epoch, 0), "t", partition=1, version=version)
    assert part.error_code == ErrorCode.INVALID_TXN_STATE
    assert part.base_offset == -1
    # partition 0 was added: accepted
    assert produce(w, topic_name, txn_batch(pid, epoch, 0), "t", version=version).error_code == 0
    assert end(w, "t", pid, epoch, commit=True) == 0
    assert lso_and_hw(w, topic_name) == (3, 3)  # partition 0: two records and the marker


def test_batch_without_an_ongoing_transaction_is_refused(w: Wire, topic_name: str) -> None:
    make_topic(w, topic_name)
    _, pid, epoch = init(w, "t")
    # InitProducerId only: no transaction at all
    assert produce(w, topic_name, txn_batch(pid, epoch, 0), "t").error_code == ErrorCode.INVALID_TXN_STATE
    # a transaction that was committed: the partition is no longer in an ongoing one
    assert add_partitions(w, "t", pid, epoch, topic_name, [0]) == {0: 0}
    assert produce(w, topic_name, txn_batch(pid, epoch, 0), "t").error_code == 0
    assert end(w, "t", pid, epoch, commit=True) == 0
    assert produce(w, topic_name, txn_batch(pid, epoch, 2), "t").error_code == ErrorCode.INVALID_TXN_STATE
    # another transactional id's transaction does not cover this producer
    _, other_pid, other_epoch = init(w, "u")
    assert add_partitions(w, "u", other_pid, other_epoch, topic_name, [0]) == {0: 0}
    assert produce(w, topic_name, txn_batch(pid, epoch, 2), "u").error_code == ErrorCode.INVALID_TXN_STATE
    # nothing hangs: the LSO is the high watermark (the only open transaction is u's, empty)
    lso, hw = lso_and_hw(w, topic_name)
    assert lso == hw == 3


def test_transactional_records_need_a_transactional_id(w: Wire, topic_name: str) -> None:
    make_topic(w, topic_name)
    _, pid, epoch = init(w, "t")
    assert add_partitions(w, "t", pid, epoch, topic_name, [0]) == {0: 0}
    part = produce(w, topic_name, txn_batch(pid, epoch, 0), None)
    assert part.error_code == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert produce(w, topic_name, txn_batch(pid, epoch, 0), "t").error_code == 0
