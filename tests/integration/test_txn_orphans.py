"""A transaction that a partition holds open but the coordinator does not know (what a power
cut can leave: AddPartitionsToTxn answers before its state record is durable, the
transaction's records reached the disk, the state record did not) is aborted when the broker
starts, so it cannot hold back the last stable offset, and read_committed consumers with it,
for ever. A transaction the coordinator does know is left to it."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from riverbed.protocol.records.records import build_batch
from riverbed.testing import EmbeddedBroker

ORPHAN_PID = 4242


def _lso_and_hw(eb: EmbeddedBroker, topic: str) -> tuple[int, int]:
    def read() -> tuple[int, int]:
        plog = eb.broker.partition(topic, 0)
        return plog.last_stable_offset, plog.high_watermark

    return eb.call(read)  # type: ignore[no-any-return]


def _read_committed(bootstrap: str, topic: str, want: int) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    c.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < want and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                got.append(msg.value())
    finally:
        c.close()
    return got


def test_a_transaction_unknown_to_the_coordinator_is_aborted_at_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    topic = "orphans"
    with EmbeddedBroker(data) as eb:
        admin = AdminClient({"bootstrap.servers": eb.bootstrap})
        admin.create_topics([NewTopic(topic, 1)])[topic].result(30)
        # a transaction the coordinator knows, open while the orphan is written
        known = Producer({"bootstrap.servers": eb.bootstrap, "transactional.id": "known", "linger.ms": 0})
        known.init_transactions(30)
        known.begin_transaction()
        known.produce(topic, b"known-open")
        known.flush(30)

        def orphan() -> None:
            batch = build_batch([(None, b"orphan", [], 1_000)] * 3, producer_id=ORPHAN_PID, producer_epoch=0, base_sequence=0, transactional=True)
            eb.broker.partition(topic, 0).append(batch, now_ms=1_000)
            eb.broker.notify()

        eb.call(orphan)
        plain = Producer({"bootstrap.servers": eb.bootstrap})
        plain.produce(topic, b"after")
        plain.flush(30)
        lso, hw = _lso_and_hw(eb, topic)
        assert lso < hw  # held back by the open transactions
        known.abort_transaction(30)
        lso, hw = _lso_and_hw(eb, topic)
        assert lso < hw  # the orphan still holds it back: nothing would ever end it
        del known, plain
    with EmbeddedBroker(data) as eb:
        deadline = time.monotonic() + 60
        while True:
            lso, hw = _lso_and_hw(eb, topic)
            if lso == hw or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert lso == hw, (lso, hw)
        values = _read_committed(eb.bootstrap, topic, 1)
        assert values == [b"after"]
        states = eb.call(lambda: {v.producer_id: v.current_txn_start_offset for v in eb.broker.partition(topic, 0).producer_states()})
        assert states[ORPHAN_PID] == -1
