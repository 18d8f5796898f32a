"""confluent-kafka (librdkafka) against a real riverbed broker over TCP."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from riverbed.testing import EmbeddedBroker

pytestmark = pytest.mark.integration


def admin(b: EmbeddedBroker) -> AdminClient:
    return AdminClient({"bootstrap.servers": b.bootstrap})


def create(b: EmbeddedBroker, name: str, partitions: int = 3, config: dict[str, str] | None = None) -> None:
    a = admin(b)
    futs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})])
    futs[name].result(timeout=10)


def produce(b: EmbeddedBroker, topic: str, records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]], **conf: object) -> list[tuple[int, int]]:
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5, **conf})
    out: list[tuple[int, int]] = []
    errors: list[KafkaError] = []

    def cb(err: KafkaError | None, msg: object) -> None:
        if err is not None:
            errors.append(err)
        else:
            out.append((msg.partition(), msg.offset()))  # type: ignore[attr-defined]

    for key, value, headers in records:
        p.produce(topic, key=key, value=value, headers=headers or None, on_delivery=cb)
    assert p.flush(20) == 0
    assert not errors, errors
    return out


def consume_all(b: EmbeddedBroker, topic: str, partitions: int, expected: int, timeout: float = 15.0) -> list[object]:
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "t", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        got: list[object] = []
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            got.append(m)
        return got
    finally:
        c.close()


def test_metadata_and_create_topic(broker: EmbeddedBroker, topic_name: str) -> None:
    a = admin(broker)
    md = a.list_topics(timeout=10)
    assert md.cluster_id
    assert len(md.brokers) == 1
    create(broker, topic_name, 3)
    md = a.list_topics(topic_name, timeout=10)
    assert len(md.topics[topic_name].partitions) == 3
    # creating it again is refused with TOPIC_ALREADY_EXISTS
    with pytest.raises(KafkaException) as exc:
        a.create_topics([NewTopic(topic_name, 3, 1)])[topic_name].result(timeout=10)
    assert exc.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS


def test_keyed_records_with_headers_round_trip(broker: EmbeddedBroker, topic_name: str) -> None:
    create(broker, topic_name, 3)
    records = [(f"user-{i % 7}".encode(), f"value-{i}".encode(), [("trace", f"t{i}".encode()), ("n", str(i).encode())]) for i in range(300)]
    before = int(time.time() * 1000)
    delivered = produce(broker, topic_name, records)
    assert len(delivered) == 300
    got = consume_all(broker, topic_name, 3, 300)
    assert len(got) == 300
    by_key: dict[bytes, set[int]] = {}
    last_offset: dict[int, int] = {}
    values = set()
    for m in got:
        by_key.setdefault(m.key(), set()).add(m.partition())  # type: ignore[attr-defined]
        # order within a partition: offsets increase and values of one key keep their order
        assert m.offset() > last_offset.get(m.partition(), -1)  # type: ignore[attr-defined]
        last_offset[m.partition()] = m.offset()  # type: ignore[attr-defined]
        i = int(m.value().decode().split("-")[1])  # type: ignore[attr-defined]
        assert m.key() == f"user-{i % 7}".encode()  # type: ignore[attr-defined]
        assert m.headers() == [("trace", f"t{i}".encode()), ("n", str(i).encode())]  # type: ignore[attr-defined]
        _ts_type, ts = m.timestamp()  # type: ignore[attr-defined]
        assert ts >= before - 1000
        values.add(i)
    assert values == set(range(300))
    assert all(len(p) == 1 for p in by_key.values()), by_key


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches(broker: EmbeddedBroker, topic_name: str, codec: str) -> None:
    create(broker, topic_name, 1)
    records = [(None, (f"{codec}-{i}-" * 20).encode(), []) for i in range(200)]
    produce(broker, topic_name, records, **{"compression.type": codec})
    got = consume_all(broker, topic_name, 1, 200)
    assert [m.value() for m in got] == [r[1] for r in records]  # type: ignore[attr-defined]


def test_null_key_and_value(broker: EmbeddedBroker, topic_name: str) -> None:
    create(broker, topic_name, 1)
    produce(broker, topic_name, [(None, None, []), (b"k", None, []), (None, b"v", [])])
    got = consume_all(broker, topic_name, 1, 3)
    assert [(m.key(), m.value()) for m in got] == [(None, None), (b"k", None), (None, b"v")]  # type: ignore[attr-defined]


def test_message_size_limits(broker: EmbeddedBroker, topic_name: str) -> None:
    create(broker, topic_name, 1)
    near = b"x" * (1024 * 1024 - 200)
    produce(broker, topic_name, [(None, near, [])], **{"message.max.bytes": 4_000_000})
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 4_000_000, "acks": "all"})
    errs: list[KafkaError] = []
    p.produce(topic_name, value=b"y" * (2 * 1024 * 1024), on_delivery=lambda e, m: errs.append(e))
    assert p.flush(20) == 0
    assert errs and errs[0] is not None and errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    got = consume_all(broker, topic_name, 1, 1)
    assert got[0].value() == near  # type: ignore[attr-defined]


def test_per_topic_max_message_bytes(broker: EmbeddedBroker, topic_name: str) -> None:
    create(broker, topic_name, 1, {"max.message.bytes": "2000"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    errs: list[KafkaError | None] = []
    p.produce(topic_name, value=b"z" * 5000, on_delivery=lambda e, m: errs.append(e))
    p.flush(20)
    assert errs[0] is not None and errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_offsets_for_times_and_watermarks(broker: EmbeddedBroker, topic_name: str) -> None:
    create(broker, topic_name, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    base = int(time.time() * 1000) - 100_000
    for i in range(10):
        p.produce(topic_name, value=str(i).encode(), timestamp=base + i * 1000)
        p.flush(10)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "t"})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10) == (0, 10)
        res = c.offsets_for_times([TopicPartition(topic_name, 0, base + 4500)], timeout=10)
        assert res[0].offset == 5
        res = c.offsets_for_times([TopicPartition(topic_name, 0, base + 999_999)], timeout=10)
        assert res[0].offset == -1  # nothing at or after that time: the end (Kafka answers -1)
    finally:
        c.close()


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_admin_configs_partitions_and_delete(broker: EmbeddedBroker, topic_name: str) -> None:
    create(broker, topic_name, 1, {"retention.ms": "3600000"})
    a = admin(broker)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    configs = a.describe_configs([res])[res].result(timeout=10)
    assert configs["retention.ms"].value == "3600000"
    assert not configs["retention.ms"].is_default
    assert configs["cleanup.policy"].value == "delete"
    assert configs["cleanup.policy"].is_default
    assert "segment.bytes" in configs and "max.message.bytes" in configs
    a.create_partitions([NewPartitions(topic_name, 4)])[topic_name].result(timeout=10)
    assert len(a.list_topics(topic_name, timeout=10).topics[topic_name].partitions) == 4
    with pytest.raises(KafkaException):
        a.create_partitions([NewPartitions(topic_name, 2)])[topic_name].result(timeout=10)
    bad = ConfigResource(ConfigResource.Type.TOPIC, topic_name, set_config={"retention.ms": "not-a-number"})
    with pytest.raises(KafkaException) as exc:
        a.alter_configs([bad])[bad].result(timeout=10)
    assert exc.value.args[0].code() == KafkaError.INVALID_CONFIG
    a.delete_topics([topic_name])[topic_name].result(timeout=10)
    assert topic_name not in a.list_topics(timeout=10).topics


def test_delete_records_moves_log_start(broker: EmbeddedBroker, topic_name: str) -> None:
    create(broker, topic_name, 1)
    produce(broker, topic_name, [(None, str(i).encode(), []) for i in range(20)])
    a = admin(broker)
    res = a.delete_records([TopicPartition(topic_name, 0, 7)])
    out = next(iter(res.values())).result(timeout=10)
    assert out.low_watermark == 7
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "t"})
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
        assert (lo, hi) == (7, 20)
    finally:
        c.close()


def test_auto_create_via_metadata(broker: EmbeddedBroker, topic_name: str) -> None:
    produce(broker, topic_name, [(b"k", b"v", [])])
    got = consume_all(broker, topic_name, 1, 1)
    assert got[0].value() == b"v"  # type: ignore[attr-defined]


def test_invalid_topic_name(broker: EmbeddedBroker) -> None:
    a = admin(broker)
    with pytest.raises(KafkaException) as exc:
        a.create_topics([NewTopic("bad/name", 1, 1)])["bad/name"].result(timeout=10)
    assert exc.value.args[0].code() == KafkaError.TOPIC_EXCEPTION


def test_long_poll_returns_when_data_arrives(broker: EmbeddedBroker, topic_name: str) -> None:
    create(broker, topic_name, 1)
    # a 280 s max wait (librdkafka allows up to 300 s): a record that arrives within the 120 s deadline
    # below came from a fetch woken by the append (no speed bound: a hang detector)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "t", "fetch.wait.max.ms": 280000, "socket.timeout.ms": 300000})
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    try:
        # warm up both clients (connections, metadata, the consumer's position)
        p.produce(topic_name, value=b"warm-up")
        assert p.flush(10) == 0
        c.assign([TopicPartition(topic_name, 0, OFFSET_BEGINNING)])
        m = None
        deadline = time.monotonic() + 15
        while m is None and time.monotonic() < deadline:
            m = c.poll(0.2)
        assert m is not None and m.value() == b"warm-up"
        c.poll(0.5)  # the next fetch is now parked at the broker
        t0 = time.monotonic()
        p.produce(topic_name, value=b"now")
        assert p.flush(10) == 0
        m = None
        while m is None and time.monotonic() - t0 < 120:
            m = c.poll(0.1)
        assert m is not None, "fetch waited for max_wait_ms instead of returning on append"
        assert m.value() == b"now"
    finally:
        c.close()


def test_idempotent_producer(broker: EmbeddedBroker, topic_name: str) -> None:
    create(broker, topic_name, 3)
    records = [(f"k{i % 6}".encode(), f"v{i}".encode(), []) for i in range(500)]
    produce(broker, topic_name, records, **{"enable.idempotence": True})
    got = consume_all(broker, topic_name, 3, 500)
    assert sorted(m.value() for m in got) == sorted(r[1] for r in records)  # type: ignore[attr-defined]
    for p in range(3):
        assert broker.broker.partition(topic_name, p).producers.producers, "no producer state recorded"
