"""What a transaction costs the flusher: the Ongoing state record is fsynced together with the
transaction's first batches, the Complete record with the next transaction's state record (or
by a timer within 0.1 s), so a transaction of one partition takes about three flush
cycles (Ongoing + batches, Prepare, markers) instead of five."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from riverbed.coordinator.txn_log import TRANSACTION_STATE_TOPIC, partition_for
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics
from .test_transactions import read_all

pytestmark = pytest.mark.integration

TXNS = 40


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path / "data", group_initial_rebalance_delay_ms=0) as b:
        yield b


def test_a_committed_transaction_takes_fewer_flush_cycles(broker: EmbeddedBroker) -> None:
    create_topics(broker.bootstrap, NewTopic("cycles", 1, 1))
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "cycles", "linger.ms": 5, "acks": "all"})
    p.init_transactions(20)
    for _ in range(3):  # warm-up: metadata, the first AddPartitionsToTxn
        p.begin_transaction()
        p.produce("cycles", b"w")
        p.commit_transaction(20)
    logs = broker.broker.logs
    before = logs.flush_cycles
    for i in range(TXNS):
        p.begin_transaction()
        for j in range(20):
            p.produce("cycles", f"{i}-{j}".encode())
        p.commit_transaction(20)
    per_txn = (logs.flush_cycles - before) / TXNS
    # five before (Ongoing, batches, Prepare, markers, Complete: one fsync round each); three
    # when the Ongoing record and the batches share one, a little more when the flusher
    # starts a cycle between the two requests
    assert per_txn <= 4.2, per_txn
    values = read_all(broker.bootstrap, "cycles", 1, "read_committed", expected=3 + TXNS * 20)
    assert len(values) == 3 + TXNS * 20


def test_the_complete_record_becomes_durable_without_another_transaction(broker: EmbeddedBroker) -> None:
    create_topics(broker.bootstrap, NewTopic("alone", 1, 1))
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "alone", "linger.ms": 0})
    p.init_transactions(20)
    p.begin_transaction()
    p.produce("alone", b"only")
    p.commit_transaction(20)
    txns = broker.broker.txns
    plog = broker.broker.partition(TRANSACTION_STATE_TOPIC, partition_for("alone", txns.partitions))
    assert plog is not None
    # Ongoing, PrepareCommit, CompleteCommit after InitProducerId's Empty record: the
    # Complete one is the last, appended once the markers were durable, fsynced by the
    # coordinator's timer since nothing else asks for it
    deadline = time.monotonic() + 10
    while plog.high_watermark < plog.log_end_offset and time.monotonic() < deadline:
        time.sleep(0.02)
    assert plog.high_watermark == plog.log_end_offset == 4
    snap = txns.coordinator.snapshot("alone")
    assert snap is not None and snap.state.display == "CompleteCommit"
