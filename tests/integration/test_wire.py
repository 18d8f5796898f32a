"""Protocol behaviour on the wire that real clients rarely exercise: version negotiation,
pipelining order, acks=0, hostile frames, invalid batches."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from riverbed.broker.versions import SUPPORTED
from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from riverbed.protocol.messages.create_topics import CreateTopicsRequest
from riverbed.protocol.messages.fetch import FetchRequest, FetchResponse
from riverbed.protocol.messages.metadata import MetadataRequest, MetadataResponse
from riverbed.protocol.messages.produce import ProduceRequest, ProduceResponse
from riverbed.protocol.records.batch import iter_batches
from riverbed.protocol.records.records import build_batch, decode_records
from riverbed.testing import EmbeddedBroker

from .wire import Wire

pytestmark = pytest.mark.integration


def make_topic(w: Wire, name: str, partitions: int = 1) -> None:
    req = CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(name=name, num_partitions=partitions, replication_factor=1)], timeout_ms=5000)
    resp = w.request(req, 4)
    assert resp.topics[0].error_code == 0  # type: ignore[attr-defined]


def produce_req(topic: str, records: bytes | bytearray, acks: int = -1, partition: int = 0) -> ProduceRequest:
    return ProduceRequest(
        acks=acks,
        timeout_ms=5000,
        topic_data=[ProduceRequest.TopicProduceData(name=topic, partition_data=[ProduceRequest.PartitionProduceData(index=partition, records=bytes(records))])],
    )


def produce_error(w: Wire, topic: str, records: bytes | bytearray, version: int = 8) -> int:
    resp = w.request(produce_req(topic, records), version)
    assert isinstance(resp, ProduceResponse)
    return resp.responses[0].partition_responses[0].error_code


def test_api_versions_v3_lists_supported_apis(broker: EmbeddedBroker) -> None:
    with Wire(broker.bootstrap) as w:
        resp = w.request(ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3)
        assert isinstance(resp, ApiVersionsResponse)
        keys = {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}
        assert keys[18] == SUPPORTED[18]
        assert keys[0][0] == 0 and keys[1][1] >= 11


def test_unsupported_api_versions_version_gets_v0_error(broker: EmbeddedBroker) -> None:
    with Wire(broker.bootstrap) as w:
        w.send_raw(Wire.frame(18, 99, 7, b""))
        frame = w.recv_frame()
        corr, err, count = struct.unpack_from(">ihi", frame)
        assert (corr, err, count) == (7, ErrorCode.UNSUPPORTED_VERSION, 1)
        assert struct.unpack_from(">hhh", frame, 10) == (18, *SUPPORTED[18])


def test_unknown_api_key_closes_connection_but_broker_serves_others(broker: EmbeddedBroker) -> None:
    with Wire(broker.bootstrap) as w:
        w.send_raw(struct.pack(">ihhih", 10, 999, 0, 1, -1))
        assert w.is_closed()
    with Wire(broker.bootstrap) as w2:
        resp = w2.request(MetadataRequest(topics=[]), 1)
        assert isinstance(resp, MetadataResponse)
        host, port = broker.bootstrap.rsplit(":", 1)
        assert [(b.host, b.port) for b in resp.brokers] == [(host, int(port))]
        assert resp.topics == []


def test_oversized_frame_is_refused_without_buffering(broker: EmbeddedBroker) -> None:
    with Wire(broker.bootstrap) as w:
        w.send_raw(struct.pack(">i", 2**31 - 1) + b"\x00" * 100)
        assert w.is_closed()
    with Wire(broker.bootstrap) as w:
        w.send_raw(struct.pack(">i", -5))
        assert w.is_closed()


def test_truncated_body_closes_connection(broker: EmbeddedBroker) -> None:
    with Wire(broker.bootstrap) as w:
        # Metadata v1 claiming 1000 topics with no bytes behind it
        w.send_raw(Wire.frame(3, 1, 1, struct.pack(">i", 1000)))
        assert w.is_closed()


def test_pipelined_requests_answer_in_order(broker: EmbeddedBroker, topic_name: str) -> None:
    with Wire(broker.bootstrap) as w:
        make_topic(w, topic_name)
        # a fetch that long-polls, then fast requests behind it: responses stay in order
        fetch = FetchRequest(
            max_wait_ms=300,
            min_bytes=1,
            max_bytes=1 << 20,
            topics=[FetchRequest.FetchTopic(topic=topic_name, partitions=[FetchRequest.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])],
        )
        sent = [(w.send(fetch, 11), 1, 11)]
        for _ in range(30):
            sent.append((w.send(ApiVersionsRequest(), 0), 18, 0))
            sent.append((w.send(MetadataRequest(topics=None), 8), 3, 8))
        for corr, key, version in sent:
            got, _ = w.recv(key, version)
            assert got == corr


def test_acks_zero_gets_no_response(broker: EmbeddedBroker, topic_name: str) -> None:
    with Wire(broker.bootstrap) as w:
        make_topic(w, topic_name)
        w.send(produce_req(topic_name, build_batch([(b"k", b"v")]), acks=0), 8)
        corr = w.send(ApiVersionsRequest(), 0)
        got, _ = w.recv(18, 0)
        assert got == corr  # the next frame answers the next request: none came for the produce
        # and the record was written all the same
        assert fetch_all(w, topic_name, expected=1) == [(0, b"k", b"v")]


def fetch_all(w: Wire, topic: str, expected: int) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of partition 0 from offset 0, polled until ``expected`` records
    are there (generous deadline: the machine may be loaded)."""
    fetch = FetchRequest(
        max_wait_ms=500,
        min_bytes=1,
        max_bytes=1 << 20,
        topics=[FetchRequest.FetchTopic(topic=topic, partitions=[FetchRequest.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])],
    )
    got: list[tuple[int, bytes | None, bytes | None]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        resp = w.request(fetch, 11)
        assert isinstance(resp, FetchResponse)
        part = resp.responses[0].partitions[0]
        assert part.error_code == 0
        raw = bytes(part.records or b"")
        got = [(r.offset, r.key, r.value) for h in iter_batches(raw) for r in decode_records(raw, h.position)]
        if len(got) >= expected:
            return got
    return got


def test_acks_zero_that_fails_closes_the_connection(broker: EmbeddedBroker, topic_name: str) -> None:
    """No response can carry the error, so Kafka closes the connection (the client notices
    and refreshes its metadata)."""
    with Wire(broker.bootstrap) as w:
        w.send(produce_req("no-such-topic-" + topic_name, build_batch([(b"k", b"v")]), acks=0), 8)
        assert w.is_closed()


def test_invalid_batches_get_kafka_error_codes(broker: EmbeddedBroker, topic_name: str) -> None:
    with Wire(broker.bootstrap) as w:
        make_topic(w, topic_name)
        good = build_batch([(b"k", b"v"), (b"k2", b"v2")])
        assert produce_error(w, topic_name, good) == 0
        bad_crc = bytearray(good)
        bad_crc[-1] ^= 0xFF
        assert produce_error(w, topic_name, bad_crc) == ErrorCode.CORRUPT_MESSAGE
        bad_magic = bytearray(good)
        bad_magic[16] = 7
        assert produce_error(w, topic_name, bad_magic) == ErrorCode.CORRUPT_MESSAGE
        count = bytearray(good)
        struct.pack_into(">i", count, 57, 5)  # header says 5 records (CRC fixed below)
        from riverbed.protocol.records.batch import compute_crc

        struct.pack_into(">I", count, 17, compute_crc(count))
        assert produce_error(w, topic_name, count) in (ErrorCode.INVALID_RECORD, ErrorCode.CORRUPT_MESSAGE)
        assert produce_error(w, topic_name, b"\x00" * 10) in (ErrorCode.INVALID_RECORD, ErrorCode.CORRUPT_MESSAGE)
        assert produce_error(w, "no-such-topic-xyz", good) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        resp = w.request(produce_req(topic_name, good, partition=9), 8)
        assert resp.responses[0].partition_responses[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION  # type: ignore[attr-defined]
        assert produce_error(w, topic_name, good, version=2) == ErrorCode.UNSUPPORTED_VERSION
        bad_acks = produce_req(topic_name, good, acks=5)
        resp = w.request(bad_acks, 8)
        assert resp.responses[0].partition_responses[0].error_code == ErrorCode.INVALID_REQUIRED_ACKS  # type: ignore[attr-defined]
        # the log is intact: only the good batch (2 records) went in
        assert broker.broker.partition(topic_name, 0).log_end_offset == 2


def test_fetch_out_of_range(broker: EmbeddedBroker, topic_name: str) -> None:
    with Wire(broker.bootstrap) as w:
        make_topic(w, topic_name)
        fetch = FetchRequest(
            max_wait_ms=0,
            min_bytes=1,
            max_bytes=1 << 20,
            topics=[FetchRequest.FetchTopic(topic=topic_name, partitions=[FetchRequest.FetchPartition(partition=0, fetch_offset=42, partition_max_bytes=1 << 20)])],
        )
        resp = w.request(fetch, 11)
        assert resp.responses[0].partitions[0].error_code == ErrorCode.OFFSET_OUT_OF_RANGE  # type: ignore[attr-defined]


def test_timed_out_long_polls_leave_no_waiters(broker: EmbeddedBroker, topic_name: str) -> None:
    with Wire(broker.bootstrap) as w:
        make_topic(w, topic_name)
        fetch = FetchRequest(
            max_wait_ms=20,
            min_bytes=1,
            max_bytes=1 << 20,
            topics=[FetchRequest.FetchTopic(topic=topic_name, partitions=[FetchRequest.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])],
        )
        for _ in range(20):  # an idle topic: every fetch waits its max_wait_ms and times out
            w.request(fetch, 11)
    assert broker.call(lambda: len(broker.broker._waiters)) == 0


def test_idle_connections_are_closed(tmp_path: Path) -> None:
    """connections.max.idle.ms: a client that says nothing is disconnected; the setting is
    reported by DescribeConfigs for the broker."""
    with EmbeddedBroker(tmp_path / "data", connections_max_idle_ms=300) as b:
        with Wire(b.bootstrap) as w:
            # taken before the request: the broker's last activity on the connection comes
            # after it, so a close that honours the timeout is at least 0.3 s later (a lower
            # bound, which a slow machine can only make longer)
            t0 = time.monotonic()
            w.request(ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3)
            w.sock.settimeout(60)
            assert w.sock.recv(1) == b""  # EOF from the broker
            assert time.monotonic() - t0 >= 0.3
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        res = ConfigResource(ConfigResource.Type.BROKER, "1")
        configs = admin.describe_configs([res])[res].result(10)
        assert configs["connections.max.idle.ms"].value == "300"


def test_fetch_of_no_partitions_is_answered_at_once(broker: EmbeddedBroker) -> None:
    """Kafka answers a Fetch with no partitions without waiting for max_wait_ms."""
    # max_wait_ms of about 24 days: a broker that waited would trip the socket timeout (a
    # hang detector, not a speed bound)
    with Wire(broker.bootstrap, timeout=120) as w:
        req = FetchRequest(replica_id=-1, max_wait_ms=2**31 - 1, min_bytes=1, max_bytes=1 << 20, topics=[])
        resp = w.request(req, 11)
        assert resp.error_code == 0 and resp.responses == []  # type: ignore[attr-defined]
