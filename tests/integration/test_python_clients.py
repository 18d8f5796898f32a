"""kafka-python and aiokafka against a real riverbed broker, and across clients."""

from __future__ import annotations

import asyncio
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from riverbed.testing import EmbeddedBroker

from .helpers import create_topics

pytestmark = pytest.mark.integration

def test_kafka_python_round_trip(broker: EmbeddedBroker, topic_name: str) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic as KPNewTopic

    adm = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        adm.create_topics([KPNewTopic(topic_name, num_partitions=3, replication_factor=1)])
        assert topic_name in adm.list_topics()
    finally:
        adm.close()
    prod = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)  # default: idempotent, acks=all
    sent = {}
    for i in range(60):
        key = f"k{i % 5}".encode()
        md = prod.send(topic_name, key=key, value=f"v{i}".encode(), headers=[("h", f"{i}".encode())]).get(timeout=10)
        sent.setdefault(key, set()).add(md.partition)
    prod.close()
    assert all(len(p) == 1 for p in sent.values())
    cons = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False, consumer_timeout_ms=3000)
    try:
        parts = [TopicPartition(topic_name, p) for p in range(3)]
        cons.assign(parts)
        cons.seek_to_beginning(*parts)
        got = []
        deadline = time.monotonic() + 15
        while len(got) < 60 and time.monotonic() < deadline:
            for batch in cons.poll(timeout_ms=500).values():
                got.extend(batch)
    finally:
        cons.close()
    assert len(got) == 60
    for m in got:
        i = int(m.value[1:])
        assert m.key == f"k{i % 5}".encode()
        assert m.headers == [("h", f"{i}".encode())]
        assert m.timestamp > 0


def test_aiokafka_round_trip(broker: EmbeddedBroker, topic_name: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    create_topics(broker.bootstrap, NewTopic(topic_name, 3, 1))

    async def main() -> list[object]:
        prod = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
        await prod.start()
        try:
            for i in range(60):
                await prod.send_and_wait(topic_name, key=f"k{i % 4}".encode(), value=f"v{i}".encode(), headers=[("h", b"x")])
        finally:
            await prod.stop()
        cons = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
        await cons.start()
        try:
            parts = [TopicPartition(topic_name, p) for p in range(3)]
            cons.assign(parts)
            await cons.seek_to_beginning(*parts)
            got: list[object] = []
            async with asyncio.timeout(15):
                while len(got) < 60:
                    for batch in (await cons.getmany(timeout_ms=500)).values():
                        got.extend(batch)
            return got
        finally:
            await cons.stop()

    got = asyncio.run(main())
    assert len(got) == 60
    per_key: dict[bytes, set[int]] = {}
    for m in got:
        per_key.setdefault(m.key, set()).add(m.partition)  # type: ignore[attr-defined]
        assert m.headers == (("h", b"x"),)  # type: ignore[attr-defined]
    assert all(len(p) == 1 for p in per_key.values())


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_codecs_across_clients(broker: EmbeddedBroker, topic_name: str, codec: str) -> None:
    """Written by librdkafka, read by kafka-python and aiokafka."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as ATP
    from kafka import KafkaConsumer, TopicPartition

    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec, "linger.ms": 20})
    values = [f"{codec} record {i} ".encode() * 10 for i in range(100)]
    for v in values:
        p.produce(topic_name, value=v)
    assert p.flush(10) == 0

    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic_name, 0)
        kc.assign([tp])
        kc.seek_to_beginning(tp)
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 100 and time.monotonic() < deadline:
            for batch in kc.poll(timeout_ms=500).values():
                got.extend(m.value for m in batch)
        assert got == values
    finally:
        kc.close()

    async def aio() -> list[bytes]:
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
        await c.start()
        try:
            tp = ATP(topic_name, 0)
            c.assign([tp])
            await c.seek_to_beginning(tp)
            out: list[bytes] = []
            async with asyncio.timeout(10):
                while len(out) < 100:
                    for batch in (await c.getmany(timeout_ms=500)).values():
                        out.extend(m.value for m in batch)
            return out
        finally:
            await c.stop()

    assert asyncio.run(aio()) == values


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_codecs_written_by_python_clients(broker: EmbeddedBroker, topic_name: str, codec: str) -> None:
    """Written by kafka-python (xerial snappy framing, lz4 frame, ...), read by librdkafka."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from kafka import KafkaProducer

    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=codec, linger_ms=20)
    values = [f"kp {codec} {i} ".encode() * 8 for i in range(50)]
    for v in values:
        kp.send(topic_name, value=v)
    kp.flush(10)
    kp.close()
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "x", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic_name, 0, OFFSET_BEGINNING)])
        got: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(got) < 50 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.value())
        assert got == values
    finally:
        c.close()


def test_aiokafka_transactions(broker: EmbeddedBroker, topic_name: str) -> None:
    """aiokafka's transactional producer: a committed and an aborted transaction, with
    send_offsets_to_transaction; its read_committed consumer sees only the committed ones."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    create_topics(broker.bootstrap, NewTopic(topic_name, 2, 1))

    async def run() -> tuple[list[bytes], list[bytes], int | None]:
        prod = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=f"aio-{topic_name}")
        await prod.start()
        try:
            async with prod.transaction():
                for i in range(5):
                    await prod.send(topic_name, key=b"k", value=f"committed-{i}".encode())
                await prod.send_offsets_to_transaction({TopicPartition(topic_name, 0): 5}, "aio-txn-group")
            await prod.begin_transaction()
            for i in range(5):
                await prod.send(topic_name, key=b"k", value=f"aborted-{i}".encode())
            await prod.abort_transaction()
        finally:
            await prod.stop()

        async def read(isolation: str, expected: int) -> list[bytes]:
            c = AIOKafkaConsumer(topic_name, bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="earliest", isolation_level=isolation, enable_auto_commit=False)
            await c.start()
            got: list[bytes] = []
            try:
                deadline = time.monotonic() + 15
                while len(got) < expected and time.monotonic() < deadline:
                    batch = await c.getmany(timeout_ms=300)
                    for msgs in batch.values():
                        got += [m.value for m in msgs]
                # a little longer: anything beyond ``expected`` would be a failure
                for msgs in (await c.getmany(timeout_ms=500)).values():
                    got += [m.value for m in msgs]
            finally:
                await c.stop()
            return got

        committed = await read("read_committed", 5)
        everything = await read("read_uncommitted", 10)
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="aio-txn-group", enable_auto_commit=False)
        await c.start()
        try:
            offset = await c.committed(TopicPartition(topic_name, 0))
        finally:
            await c.stop()
        return committed, everything, offset

    committed, everything, offset = asyncio.run(run())
    assert sorted(committed) == [f"committed-{i}".encode() for i in range(5)]
    assert sorted(everything) == sorted([f"committed-{i}".encode() for i in range(5)] + [f"aborted-{i}".encode() for i in range(5)])
    assert offset == 5


def test_kafka_python_describe_log_dirs(broker: EmbeddedBroker, topic_name: str) -> None:
    from kafka import KafkaAdminClient

    create_topics(broker.bootstrap, NewTopic(topic_name, 2, 1))
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        p.produce(topic_name, value=b"x" * 100, partition=i % 2)
    assert p.flush(10) == 0
    adm = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        resp = adm.describe_log_dirs()
    finally:
        adm.close()
    data_dir = broker.config.data_dir.resolve()
    (only,) = resp
    assert only["broker"] == 1
    (log_dir,) = only["log_dirs"]
    assert (log_dir["error_code"], log_dir["log_dir"]) == (0, str(data_dir))
    assert log_dir["total_bytes"] >= log_dir["usable_bytes"] > 0
    (topic,) = [t for t in log_dir["topics"] if t["name"] == topic_name]
    # each partition's size is what its segment files hold on disk
    on_disk = {p: sum(f.stat().st_size for f in (data_dir / f"{topic_name}-{p}").glob("*.log")) for p in range(2)}
    assert all(size > 5 * 100 for size in on_disk.values())
    assert {p["partition_index"]: (p["partition_size"], p["offset_lag"], p["is_future_key"]) for p in topic["partitions"]} == {
        p: (on_disk[p], 0, False) for p in range(2)
    }
