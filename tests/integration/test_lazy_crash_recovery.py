"""After kill -9 the broker recovers each partition at its first use (or on the log manager's
loader thread) instead of all of them before it listens: over TCP, with real clients, every
acknowledged record is still there, a torn tail is cut before anything reads the partition,
and a transaction open at the crash is handled as before (one the coordinator does not know
is aborted, one it knows is left to it)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from riverbed.protocol.records.records import build_batch
from riverbed.storage import manager as manager_module
from riverbed.testing import BrokerProcess, EmbeddedBroker

from .helpers import create_topics

pytestmark = pytest.mark.integration

PARTITIONS = 64


def _read(bootstrap: str, topic: str, partitions: int, expected: int, timeout: float = 60) -> list[tuple[int, bytes]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        got: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            m = c.poll(0.3)
            if m is not None and m.error() is None:
                got.append((m.partition(), m.value()))
        return got
    finally:
        c.close()


def test_kill_9_with_many_partitions_recovers_each_lazily_and_keeps_every_acked_record(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = BrokerProcess(data).start()
    try:
        create_topics(proc.bootstrap, NewTopic("many", PARTITIONS, 1))
        p = Producer({"bootstrap.servers": proc.bootstrap, "acks": "all", "linger.ms": 2})
        acked: list[tuple[int, bytes]] = []

        def cb(err: KafkaError | None, msg: object) -> None:
            if err is None:
                acked.append((msg.partition(), msg.value()))  # type: ignore[attr-defined]

        for i in range(PARTITIONS * 20):
            p.produce("many", value=f"r{i}".encode(), partition=i % PARTITIONS, on_delivery=cb)
            p.poll(0)
        assert p.flush(30) == 0
        assert len(acked) == PARTITIONS * 20
        proc.kill()
        torn = max((data / "many-5").glob("*.log"))
        size = torn.stat().st_size
        with open(torn, "ab") as fh:  # a torn write: half a batch header of garbage
            fh.write(b"\x00\x00\x00\x00\x00\x00\x01\xf4\x00\x00\x10\x00\xff\xff\xff\xff\x02\xde\xad")
        logged = proc.log_path.stat().st_size
        proc.start()
        with open(proc.log_path, "rb") as f:
            f.seek(logged)
            start_log = f.read().decode(errors="replace")
        # open() recovered nothing itself: every partition (the internal topics' too) is
        # recovered at its first use or by the loader thread
        assert "partitions to load and recover at first use or in the background" in start_log
        got = _read(proc.bootstrap, "many", PARTITIONS, len(acked))
        assert Counter(got) == Counter(acked)  # every acknowledged record, once
        assert torn.stat().st_size == size, "the torn tail was not truncated"
        # and the partitions keep working
        p = Producer({"bootstrap.servers": proc.bootstrap, "acks": "all"})
        p.produce("many", value=b"after", partition=5)
        assert p.flush(30) == 0
        after = _read(proc.bootstrap, "many", PARTITIONS, len(acked) + 1)
        assert (5, b"after") in after and len(after) == len(acked) + 1
    finally:
        proc.kill()


ORPHAN_PID = 4343


def _state(eb: EmbeddedBroker, topic: str) -> tuple[int, int, dict[int, int]]:
    def read() -> tuple[int, int, dict[int, int]]:
        plog = eb.broker.partition(topic, 0)
        return plog.last_stable_offset, plog.high_watermark, {v.producer_id: v.current_txn_start_offset for v in plog.producer_states()}

    return eb.call(read)  # type: ignore[no-any-return]


def test_open_transactions_at_a_crash_are_handled_when_the_partition_is_recovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "LOADER_DELAY_S", 600.0)  # (recovered at first use only)
    data = tmp_path / "data"
    topic = "txn-crash"
    with EmbeddedBroker(data) as eb:
        admin = AdminClient({"bootstrap.servers": eb.bootstrap})
        admin.create_topics([NewTopic(topic, 1)])[topic].result(30)
        known = Producer({"bootstrap.servers": eb.bootstrap, "transactional.id": "known-at-crash", "transaction.timeout.ms": 15000, "linger.ms": 0})
        known.init_transactions(30)
        known.begin_transaction()
        known.produce(topic, b"known-open")  # left open at the crash: the coordinator knows it
        assert known.flush(30) == 0

        def orphan() -> None:  # what a power cut can leave: records without the state record
            batch = build_batch([(None, b"orphan", [], 1_000)] * 3, producer_id=ORPHAN_PID, producer_epoch=0, base_sequence=0, transactional=True)
            eb.broker.partition(topic, 0).append(batch, now_ms=1_000)
            eb.broker.notify()

        eb.call(orphan)
        plain = Producer({"bootstrap.servers": eb.bootstrap})
        plain.produce(topic, b"after")
        assert plain.flush(30) == 0
        lso, hw, _ = _state(eb, topic)
        assert lso < hw
    del known, plain
    # a crash image: the clean close's files without its marker, so the next start
    # recovers every partition (the same as a kill -9 just after everything was written)
    (data / ".clean-shutdown").unlink()
    (data / "open-transactions-checkpoint").unlink()

    with EmbeddedBroker(data) as eb:
        logs = eb.broker.logs
        assert eb.call(lambda: logs.get_loaded(topic, 0)) is None  # not recovered at start
        lso, hw, states = _state(eb, topic)  # its first use recovers it, and checks it
        assert states[ORPHAN_PID] == -1  # aborted before anything saw it
        known_pid = next(pid for pid, start in states.items() if pid != ORPHAN_PID and start >= 0)
        assert states[known_pid] == 0  # the coordinator's own, still open (it times it out)
        assert eb.call(lambda: logs.recovered_lazily) >= 1
        deadline = time.monotonic() + 60
        while (lso < hw or states[known_pid] >= 0) and time.monotonic() < deadline:
            time.sleep(0.1)
            lso, hw, states = _state(eb, topic)
        assert lso == hw and states[known_pid] == -1  # the coordinator aborted it on timeout
        c = Consumer({"bootstrap.servers": eb.bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
        c.subscribe([topic])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        try:
            while not got and time.monotonic() < deadline:
                msg = c.poll(0.5)
                if msg is not None and not msg.error():
                    got.append(msg.value())
        finally:
            c.close()
        assert got == [b"after"]
