"""The versions Kafka 4.x brokers advertise, used on the wire and by real clients
(kafka-python 3.x and librdkafka 2.x negotiate them)."""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from riverbed.protocol.messages.delete_records import DeleteRecordsRequest
from riverbed.protocol.messages.describe_groups import DescribeGroupsRequest, DescribeGroupsResponse
from riverbed.protocol.messages.fetch import FetchRequest, FetchResponse
from riverbed.protocol.messages.find_coordinator import (
    FindCoordinatorRequest,
    FindCoordinatorResponse,
)
from riverbed.protocol.messages.init_producer_id import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from riverbed.protocol.messages.list_groups import ListGroupsRequest, ListGroupsResponse
from riverbed.protocol.messages.list_offsets import ListOffsetsRequest, ListOffsetsResponse
from riverbed.protocol.messages.metadata import MetadataRequest, MetadataResponse
from riverbed.protocol.messages.produce import ProduceResponse
from riverbed.protocol.records.records import build_batch
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics
from .test_wire import make_topic, produce_req
from .wire import Wire

pytestmark = pytest.mark.integration

KAFKA_41 = {0: 11, 1: 17, 2: 10, 3: 13, 10: 6, 15: 6, 16: 5, 18: 4, 22: 5, 25: 4, 26: 4, 28: 4}


def test_api_versions_advertises_kafka_4_ranges(broker: EmbeddedBroker) -> None:
    with Wire(broker.bootstrap) as w:
        resp = w.request(ApiVersionsRequest(client_software_name="wire", client_software_version="1"), 4)
        assert isinstance(resp, ApiVersionsResponse) and resp.error_code == 0
        table = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
        assert {k: table[k][1] for k in KAFKA_41} == KAFKA_41
        # KIP-890 part 2 (transaction.version 2) is not implemented: not advertised
        assert table[26][1] < 5 and table[0][1] < 12


@pytest.mark.parametrize("version", [9, 10, 11])
def test_produce_flexible_versions(broker: EmbeddedBroker, topic_name: str, version: int) -> None:
    with Wire(broker.bootstrap) as w:
        make_topic(w, topic_name)
        resp = w.request(produce_req(topic_name, build_batch([(b"k", b"v"), (b"k2", b"v2")])), version)
        assert isinstance(resp, ProduceResponse)
        pr = resp.responses[0].partition_responses[0]
        assert (pr.error_code, pr.base_offset) == (0, 0)
        missing = w.request(produce_req("no-such-" + topic_name, build_batch([(b"k", b"v")])), version)
        assert isinstance(missing, ProduceResponse)
        assert missing.responses[0].partition_responses[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        fetched = w.request(
            FetchRequest(max_wait_ms=0, min_bytes=1, max_bytes=1 << 20, topics=[FetchRequest.FetchTopic(topic=topic_name, partitions=[FetchRequest.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])]),
            12,
        )
        assert isinstance(fetched, FetchResponse)
        assert fetched.responses[0].partitions[0].high_watermark == 2


def test_metadata_v13(broker: EmbeddedBroker, topic_name: str) -> None:
    with Wire(broker.bootstrap) as w:
        make_topic(w, topic_name, partitions=2)
        resp = w.request(MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=topic_name)]), 13)
        assert isinstance(resp, MetadataResponse)
        assert resp.error_code == 0
        assert [(t.name, t.error_code, len(t.partitions)) for t in resp.topics] == [(topic_name, 0, 2)]


def list_offsets(w: Wire, topic: str, ts: int, version: int, timeout_ms: int = 30_000) -> tuple[int, int]:
    req = ListOffsetsRequest(replica_id=-1, topics=[ListOffsetsRequest.ListOffsetsTopic(name=topic, partitions=[ListOffsetsRequest.ListOffsetsPartition(partition_index=0, timestamp=ts)])], timeout_ms=timeout_ms)
    resp = w.request(req, version)
    assert isinstance(resp, ListOffsetsResponse)
    p = resp.topics[0].partitions[0]
    return p.error_code, p.offset


def test_list_offsets_earliest_local_and_latest_tiered_without_tiering(broker: EmbeddedBroker, topic_name: str) -> None:
    with Wire(broker.bootstrap) as w:
        make_topic(w, topic_name)
        for _ in range(5):
            w.request(produce_req(topic_name, build_batch([(b"k", b"v")])), 8)
        w.request(DeleteRecordsRequest(topics=[DeleteRecordsRequest.DeleteRecordsTopic(name=topic_name, partitions=[DeleteRecordsRequest.DeleteRecordsPartition(partition_index=0, offset=3)])], timeout_ms=5000), 2)
        assert list_offsets(w, topic_name, -4, 8) == (0, 3)  # no tier: the local log start is the log start
        assert list_offsets(w, topic_name, -5, 9) == (0, -1)  # nothing tiered
        assert list_offsets(w, topic_name, -2, 10) == (0, 3)
        assert list_offsets(w, topic_name, -1, 10) == (0, 5)
        # before the version that defines them, as Kafka: UNSUPPORTED_VERSION
        assert list_offsets(w, topic_name, -4, 7)[0] == ErrorCode.UNSUPPORTED_VERSION
        assert list_offsets(w, topic_name, -5, 8)[0] == ErrorCode.UNSUPPORTED_VERSION


def test_find_coordinator_v6_refuses_share_keys(broker: EmbeddedBroker) -> None:
    with Wire(broker.bootstrap) as w:
        resp = w.request(FindCoordinatorRequest(key_type=2, coordinator_keys=["g:AAAAAAAAAAAAAAAAAAAAAA:0"]), 6)
        assert isinstance(resp, FindCoordinatorResponse)
        c = resp.coordinators[0]
        assert (c.error_code, c.node_id) == (ErrorCode.INVALID_REQUEST, -1)
        assert c.error_message is not None and "share" in c.error_message
        resp = w.request(FindCoordinatorRequest(key_type=0, coordinator_keys=["some-group"]), 6)
        assert isinstance(resp, FindCoordinatorResponse)
        assert (resp.coordinators[0].error_code, resp.coordinators[0].node_id) == (0, broker.config.node_id)


def test_describe_groups_v6_unknown_group(broker: EmbeddedBroker) -> None:
    with Wire(broker.bootstrap) as w:
        old = w.request(DescribeGroupsRequest(groups=["nope"]), 5)
        assert isinstance(old, DescribeGroupsResponse)
        assert (old.groups[0].error_code, old.groups[0].group_state) == (0, "Dead")
        new = w.request(DescribeGroupsRequest(groups=["nope"]), 6)
        assert isinstance(new, DescribeGroupsResponse)
        g = new.groups[0]
        assert (g.error_code, g.group_state, g.error_message) == (ErrorCode.GROUP_ID_NOT_FOUND, "Dead", "Group nope not found.")


def test_init_producer_id_v5_idempotent(broker: EmbeddedBroker) -> None:
    with Wire(broker.bootstrap) as w:
        resp = w.request(InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000), 5)
        assert isinstance(resp, InitProducerIdResponse)
        assert resp.error_code == 0 and resp.producer_id >= 0


@pytest.fixture
def kafka_python_log() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    logger = logging.getLogger("kafka")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield buf
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def used_versions(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, v in re.findall(r"Sending request \d+ (\w+)Request\(version=(\d+)", text):
        out[name] = max(out.get(name, 0), int(v))
    return out


def test_kafka_python_uses_the_new_versions(broker: EmbeddedBroker, topic_name: str, kafka_python_log: io.StringIO) -> None:
    """kafka-python 3.x negotiates ApiVersions v4, Metadata v13, Produce v9, ListOffsets v10,
    FindCoordinator v6, ListGroups v5 and DescribeGroups v6, and everything works."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

    create_topics(broker.bootstrap, NewTopic(topic_name, num_partitions=1, replication_factor=1))
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for i in range(5):
        producer.send(topic_name, f"v{i}".encode()).get(30)
    producer.close()
    group = f"g-{topic_name}"
    consumer = KafkaConsumer(topic_name, bootstrap_servers=broker.bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        got: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(got) < 5 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(r.value for r in records)
        assert got == [f"v{i}".encode() for i in range(5)]
        consumer.commit()
        tp = TopicPartition(topic_name, 0)
        assert consumer.end_offsets([tp]) == {tp: 5}
        assert consumer.offsets_for_times({tp: 0})[tp].offset == 0  # type: ignore[union-attr]
        assert any(g["group_id"] == group for g in admin.list_groups())
        described = admin.describe_groups([group, "nope-" + topic_name])
        assert described[group]["group_state"] == "Stable"
        assert "GroupIdNotFound" in described["nope-" + topic_name]["error"]
    finally:
        consumer.close()
        admin.close()
    used = used_versions(kafka_python_log.getvalue())
    expected = {"ApiVersions": 4, "Metadata": 13, "Produce": 9, "ListOffsets": 10, "FindCoordinator": 6, "ListGroups": 5, "DescribeGroups": 6, "Fetch": 12}
    assert {k: used.get(k) for k in expected} == expected


def test_librdkafka_uses_the_new_versions(broker: EmbeddedBroker, topic_name: str) -> None:
    """librdkafka 2.x: Produce v10, Metadata v13, Fetch v16, with a transactional producer."""
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger(f"rdkafka-{topic_name}")
    logger.addHandler(Capture())
    logger.setLevel(logging.DEBUG)
    conf = {"bootstrap.servers": broker.bootstrap, "debug": "protocol", "logger": logger}
    create_topics(broker.bootstrap, NewTopic(topic_name, num_partitions=1, replication_factor=1))
    p = Producer({**conf, "transactional.id": f"tx-{topic_name}"})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(3):
        p.produce(topic_name, f"v{i}".encode())
    p.commit_transaction(30)
    c = Consumer({**conf, "group.id": topic_name, "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    try:
        c.subscribe([topic_name])
        got: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(got) < 3 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.value())
        assert got == [b"v0", b"v1", b"v2"]
    finally:
        c.close()
    used: dict[str, int] = {}
    for name, v in re.findall(r"Sent (\w+)Request \(v(\d+)", "\n".join(lines)):
        used[name] = max(used.get(name, 0), int(v))
    assert {k: used.get(k) for k in ("Produce", "Metadata", "Fetch")} == {"Produce": 10, "Metadata": 13, "Fetch": 16}


def test_list_groups_v5_types_filter(broker: EmbeddedBroker, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, num_partitions=1, replication_factor=1))
    classic = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"classic-{topic_name}", "enable.auto.commit": False})
    modern = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"consumer-{topic_name}", "group.protocol": "consumer", "enable.auto.commit": False})
    try:
        for c in (classic, modern):
            c.subscribe([topic_name])
        with Wire(broker.bootstrap) as w:

            def listed(types: list[str]) -> set[tuple[str, str]]:
                resp = w.request(ListGroupsRequest(types_filter=types), 5)
                assert isinstance(resp, ListGroupsResponse) and resp.error_code == 0
                return {(g.group_id, g.group_type) for g in resp.groups if g.group_id.endswith(topic_name)}

            deadline = time.monotonic() + 60
            while len(listed([])) < 2 and time.monotonic() < deadline:
                classic.poll(0.2)
                modern.poll(0.2)
            assert listed([]) == {(f"classic-{topic_name}", "classic"), (f"consumer-{topic_name}", "consumer")}
            assert listed(["consumer"]) == {(f"consumer-{topic_name}", "consumer")}
            assert listed(["classic"]) == {(f"classic-{topic_name}", "classic")}
    finally:
        classic.close()
        modern.close()


def test_list_offsets_on_tiered_topic(tmp_path: Path) -> None:
    """EARLIEST_LOCAL (-4) is the first offset still on local disk, LATEST_TIERED (-5) the last
    offset in the object store; a v10 lookup by timestamp that needs the store and cannot be
    answered within the request's timeout gets REQUEST_TIMED_OUT."""
    import json

    store = tmp_path / "remote"
    broker = EmbeddedBroker(tmp_path / "data", remote_storage_path=str(store), remote_task_interval_ms=50, remote_retry_backoff_ms=100, remote_retry_backoff_max_ms=500).start()
    topic = "tiered-list-offsets"
    tiered = {"remote.storage.enable": "true", "segment.bytes": "8192", "local.retention.bytes": "1", "retention.ms": "-1"}
    try:
        create_topics(broker.bootstrap, NewTopic(topic, 1, 1, config=tiered))
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 1, "batch.num.messages": 20})
        for i in range(1000):
            p.produce(topic, b"x" * 100, timestamp=1_700_000_000_000 + i)
        assert p.flush(30) == 0
        meta = broker.data_dir / f"{topic}-0" / "remote-log-metadata.json"

        def copied() -> int:
            if not meta.exists():
                return -1
            segs = [s for s in json.loads(meta.read_text())["segments"] if s["state"] == "COPY_FINISHED"]
            return max((s["last_offset"] for s in segs), default=-1)

        def local_start() -> int:
            return min(int(f.stem) for f in (broker.data_dir / f"{topic}-0").glob("*.log"))

        deadline = time.monotonic() + 60
        while not (copied() > 0 and local_start() > 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        with Wire(broker.bootstrap) as w:
            deadline = time.monotonic() + 60
            while True:  # tiering may still be moving: wait until both answers match the files
                before = (copied(), local_start())
                got = (list_offsets(w, topic, -5, 9), list_offsets(w, topic, -4, 8))
                if got == ((0, before[0]), (0, before[1])) and (copied(), local_start()) == before:
                    break
                assert time.monotonic() < deadline, (got, before)
                time.sleep(0.05)
            assert 0 < before[1] <= before[0] + 1  # below the local log start, everything is in the store
            assert list_offsets(w, topic, -2, 10) == (0, 0)
            # a timestamp only the store can answer, with no time to ask it
            assert list_offsets(w, topic, 1_700_000_000_000 + 5, 10, timeout_ms=0) == (ErrorCode.REQUEST_TIMED_OUT, -1)
            code, offset = list_offsets(w, topic, 1_700_000_000_000 + 5, 10)
            assert code == 0 and 0 <= offset <= 5
    finally:
        broker.stop()
