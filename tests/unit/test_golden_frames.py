"""Request frames captured from real clients, decoded by riverbed's generated codec.

The bytes in tests/data/golden/client_frames.json were sent by librdkafka (confluent-kafka),
kafka-python and kafkajs to a riverbed broker through a recording proxy
(tests/data/golden/capture.py says how); each client was told to produce one known record
under a known client.id, then read it back in its own consumer group and commit. So the
expected values below come from what the clients were told, and the bytes from the clients'
own encoders: a codec bug that encode and decode share (which a round trip cannot see) makes
these fail.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from riverbed.protocol.messages import request_class
from riverbed.protocol.messages.api_versions import ApiVersionsRequest
from riverbed.protocol.messages.fetch import FetchRequest
from riverbed.protocol.messages.find_coordinator import FindCoordinatorRequest
from riverbed.protocol.messages.init_producer_id import InitProducerIdRequest
from riverbed.protocol.messages.join_group import JoinGroupRequest
from riverbed.protocol.messages.leave_group import LeaveGroupRequest
from riverbed.protocol.messages.metadata import MetadataRequest
from riverbed.protocol.messages.offset_commit import OffsetCommitRequest
from riverbed.protocol.messages.produce import ProduceRequest
from riverbed.protocol.messages.sync_group import SyncGroupRequest
from riverbed.protocol.primitives import Message, Reader, Writer
from riverbed.protocol.records.batch import iter_batches
from riverbed.protocol.records.records import decode_records

DATA = json.loads((Path(__file__).resolve().parent.parent / "data" / "golden" / "client_frames.json").read_text())
CLIENT_IDS = {"librdkafka": "golden-librdkafka", "kafka-python": "golden-kafka-python", "kafkajs": "golden-kafkajs"}
# what each consumer was told to commit (capture.py): librdkafka the message it read (offset 0,
# so 1); kafka-python its position after reading everything there (its own record and
# librdkafka's: 2); kafkajs the first message's offset + 1 (1)
COMMITTED = {"librdkafka": 1, "kafka-python": 2, "kafkajs": 1}
FRAMES = [(client, i, f) for client, frames in DATA["frames"].items() for i, f in enumerate(frames)]


def parse(frame: bytes) -> tuple[int, int, int, str | None, Message, int]:
    """(api key, version, correlation id, client id, request, body offset) of a whole frame."""
    r = Reader(frame)
    assert r.int32() == len(frame) - 4
    key, version, corr = r.int16(), r.int16(), r.int32()
    client_id = r.nullable_string(False)
    cls = request_class(key)
    if version >= cls.FLEXIBLE_VERSION:
        r.skip_tags()
    body = r.pos
    msg = cls.read(r, version)
    assert r.remaining() == 0, f"{r.remaining()} bytes left undecoded"
    return key, version, corr, client_id, msg, body


@pytest.mark.parametrize(("client", "index", "entry"), FRAMES, ids=[f"{c}-{i}-key{f['api_key']}v{f['api_version']}" for c, i, f in FRAMES])
def test_frame_decodes_and_re_encodes_to_the_same_bytes(client: str, index: int, entry: dict[str, Any]) -> None:
    frame = bytes.fromhex(entry["frame"])
    key, version, _, client_id, msg, body = parse(frame)
    assert (key, version) == (entry["api_key"], entry["api_version"])
    assert client_id == CLIENT_IDS[client]
    assert msg.encode(version) == frame[body:]
    # the header too: v1, or v2 with an empty tag section
    w = Writer()
    w.int16(key)
    w.int16(version)
    w.int32(struct_corr(frame))
    w.nullable_string(client_id, False)
    if version >= request_class(key).FLEXIBLE_VERSION:
        w.uvarint(0)
    assert w.getvalue() == frame[4:body]


def struct_corr(frame: bytes) -> int:
    return int.from_bytes(frame[8:12], "big", signed=True)


def requests(client: str, cls: type[Message]) -> list[Any]:
    out = []
    for entry in DATA["frames"][client]:
        frame = bytes.fromhex(entry["frame"])
        if entry["api_key"] == cls.API_KEY:  # type: ignore[attr-defined]
            out.append(parse(frame)[4])
    assert out, f"{client} sent no {cls.__name__}"
    return out


@pytest.mark.parametrize("client", sorted(CLIENT_IDS))
def test_produce_carries_the_record_the_client_was_given(client: str) -> None:
    (produce,) = requests(client, ProduceRequest)
    assert produce.acks == -1  # acks=all
    assert produce.transactional_id is None
    (topic,) = produce.topic_data
    (part,) = topic.partition_data
    assert (topic.name, part.index) == ("golden", 0)
    raw = bytes(part.records)
    (batch,) = list(iter_batches(raw, check_crc=True))
    (record,) = decode_records(raw, batch.position)
    assert (record.key, record.value, record.headers) == (b"golden-key", b"golden-value", [("h", b"golden-header")])


def test_api_versions_name_the_client_software() -> None:
    versions = DATA["captured"]["clients"]
    for req in requests("librdkafka", ApiVersionsRequest):
        assert req.client_software_name == "confluent-kafka-python"
        assert req.client_software_version == f"{versions['confluent-kafka']}-rdkafka-{versions['librdkafka']}"
    for req in requests("kafka-python", ApiVersionsRequest):
        assert (req.client_software_name, req.client_software_version) == ("kafka-python", versions["kafka-python"])


@pytest.mark.parametrize("client", sorted(CLIENT_IDS))
def test_metadata_asks_for_the_topic(client: str) -> None:
    asked = [[t.name for t in m.topics] for m in requests(client, MetadataRequest) if m.topics]
    assert ["golden"] in asked


def test_kafka_python_asks_for_an_idempotent_producer_id() -> None:
    (req,) = requests("kafka-python", InitProducerIdRequest)
    assert (req.transactional_id, req.producer_id, req.producer_epoch) == (None, -1, -1)


@pytest.mark.parametrize("client", sorted(CLIENT_IDS))
def test_consumer_group_requests_carry_what_the_consumer_was_told(client: str) -> None:
    group = f"golden-group-{client}"
    finds = requests(client, FindCoordinatorRequest)
    assert all(group in ([f.key] if f.key else f.coordinator_keys) and f.key_type == 0 for f in finds)
    joins = requests(client, JoinGroupRequest)
    assert joins[0].member_id == ""  # the first join has no member id (KIP-394: the broker gives one)
    member_id = joins[-1].member_id
    assert member_id.startswith(CLIENT_IDS[client] + "-")  # Kafka's member ids: client id + "-" + uuid
    for join in joins:
        assert (join.group_id, join.protocol_type) == (group, "consumer")
        for protocol in join.protocols:
            # ConsumerProtocolSubscription: int16 version, then an int32-counted array of topics
            r = Reader(protocol.metadata)
            r.int16()
            assert r.int32() == 1 and r.string(False) == "golden"
    syncs = requests(client, SyncGroupRequest)
    assert all(s.group_id == group and s.member_id == member_id for s in syncs)
    assert any(a.member_id == member_id for s in syncs for a in s.assignments)  # the leader assigns
    (commit,) = requests(client, OffsetCommitRequest)
    assert (commit.group_id, commit.member_id) == (group, member_id)
    assert [(t.name, [(p.partition_index, p.committed_offset) for p in t.partitions]) for t in commit.topics] == [("golden", [(0, COMMITTED[client])])]
    (leave,) = requests(client, LeaveGroupRequest)
    assert leave.group_id == group
    assert member_id in [leave.member_id] + [m.member_id for m in leave.members]
    fetches = requests(client, FetchRequest)
    assert all([(t.topic, [p.partition for p in t.partitions]) for t in f.topics] == [("golden", [0])] for f in fetches if f.topics)
