"""KIP-227 fetch sessions and Fetch v12-v17 on the wire, and with real clients."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.fetch import FetchRequest, FetchResponse
from riverbed.protocol.messages.metadata import MetadataRequest, MetadataResponse
from riverbed.protocol.records.records import build_batch
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics
from .test_wire import make_topic, produce_req
from .wire import Wire

pytestmark = pytest.mark.integration

Req = FetchRequest


def fetch_req(topic: str, parts: dict[int, int], session_id: int, epoch: int, topic_id: uuid.UUID | None = None, forget: list[int] | None = None, max_wait_ms: int = 0) -> FetchRequest:
    topics = []
    if parts:
        fps = [Req.FetchPartition(partition=p, fetch_offset=o, partition_max_bytes=1 << 20) for p, o in parts.items()]
        topics.append(Req.FetchTopic(topic=topic, topic_id=topic_id or uuid.UUID(int=0), partitions=fps))
    forgotten = [Req.ForgottenTopic(topic=topic, topic_id=topic_id or uuid.UUID(int=0), partitions=forget)] if forget else []
    return FetchRequest(max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=1 << 20, session_id=session_id, session_epoch=epoch, topics=topics, forgotten_topics_data=forgotten)


def sent(resp: FetchResponse) -> dict[int, tuple[int, int, int]]:
    """partition -> (error, high watermark, bytes of records) for every partition sent."""
    return {pd.partition_index: (pd.error_code, pd.high_watermark, len(pd.records or b"")) for tr in resp.responses for pd in tr.partitions}  # type: ignore[arg-type]


def topic_id(w: Wire, name: str) -> uuid.UUID:
    resp = w.request(MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=name)]), 12)
    assert isinstance(resp, MetadataResponse)
    return resp.topics[0].topic_id


@pytest.mark.parametrize("version", [12, 13, 16, 17])
def test_incremental_fetch_sends_only_changes(broker: EmbeddedBroker, topic_name: str, version: int) -> None:
    with Wire(broker.bootstrap) as w:
        make_topic(w, topic_name, partitions=3)
        tid = topic_id(w, topic_name) if version >= 13 else None
        name = topic_name if version < 13 else ""
        for p in range(3):
            w.request(produce_req(topic_name, build_batch([(b"k", b"v")]), partition=p), 8)
        full = w.request(fetch_req(name, {0: 0, 1: 0, 2: 0}, 0, 0, tid), version)
        assert isinstance(full, FetchResponse)
        assert full.error_code == 0 and full.session_id != 0
        assert {p: (e, hw) for p, (e, hw, _) in sent(full).items()} == {0: (0, 1), 1: (0, 1), 2: (0, 1)}
        if version >= 13:
            assert all(tr.topic_id == tid for tr in full.responses)
        sid = full.session_id
        # the client moves its offsets past the data; nothing new: an empty incremental answer
        inc = w.request(fetch_req(name, {0: 1, 1: 1, 2: 1}, sid, 1, tid), version)
        assert isinstance(inc, FetchResponse)
        assert (inc.error_code, inc.session_id, inc.responses) == (0, sid, [])
        # new data on partition 1 only: only partition 1 is sent, without listing any partition
        w.request(produce_req(topic_name, build_batch([(b"k", b"v2")]), partition=1), 8)
        inc = w.request(fetch_req(name, {}, sid, 2, tid), version)
        assert isinstance(inc, FetchResponse)
        assert sent(inc).keys() == {1} and sent(inc)[1][:2] == (0, 2) and sent(inc)[1][2] > 0
        # forget partition 1, and nothing changed for 0 and 2
        w.request(produce_req(topic_name, build_batch([(b"k", b"v3")]), partition=1), 8)
        inc = w.request(fetch_req(name, {}, sid, 3, tid, forget=[1]), version)
        assert isinstance(inc, FetchResponse)
        assert inc.responses == []
        # replayed or skipped epoch, unknown session
        for bad_sid, epoch, code in [(sid, 3, ErrorCode.INVALID_FETCH_SESSION_EPOCH), (sid, 9, ErrorCode.INVALID_FETCH_SESSION_EPOCH), (sid + 1, 1, ErrorCode.FETCH_SESSION_ID_NOT_FOUND)]:
            err = w.request(fetch_req(name, {}, bad_sid, epoch, tid), version)
            assert isinstance(err, FetchResponse)
            assert (err.error_code, err.session_id, err.responses) == (code, 0, [])
        # epoch -1 closes the session: a sessionless full answer, then the session is gone
        closing = w.request(fetch_req(name, {0: 0}, sid, -1, tid), version)
        assert isinstance(closing, FetchResponse)
        assert closing.session_id == 0 and sent(closing).keys() == {0}
        err = w.request(fetch_req(name, {}, sid, 4, tid), version)
        assert isinstance(err, FetchResponse)
        assert err.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND


def test_incremental_fetch_long_polls_on_session_partitions(broker: EmbeddedBroker, topic_name: str) -> None:
    """An incremental request that lists no partition still waits for data on the session's
    partitions, and wakes when one of them gets data."""
    with Wire(broker.bootstrap) as w, Wire(broker.bootstrap) as producer:
        make_topic(w, topic_name, partitions=2)
        full = w.request(fetch_req(topic_name, {0: 0, 1: 0}, 0, 0), 12)
        assert isinstance(full, FetchResponse) and full.session_id != 0
        w.send(fetch_req(topic_name, {}, full.session_id, 1, max_wait_ms=60_000), 12)
        producer.request(produce_req(topic_name, build_batch([(b"k", b"v")]), partition=1), 8)
        _, inc = w.recv(1, 12)
        assert isinstance(inc, FetchResponse)
        assert sent(inc).keys() == {1} and sent(inc)[1][1] == 1


def test_unknown_topic_id_in_session(broker: EmbeddedBroker) -> None:
    with Wire(broker.bootstrap) as w:
        ghost = uuid.uuid4()
        resp = w.request(fetch_req("", {0: 0}, 0, 0, ghost), 13)
        assert isinstance(resp, FetchResponse)
        assert [(tr.topic_id, sent(resp)) for tr in resp.responses] == [(ghost, {0: (ErrorCode.UNKNOWN_TOPIC_ID, -1, 0)})]
        if resp.session_id:  # the error is sent again in every incremental answer
            again = w.request(fetch_req("", {}, resp.session_id, 1, ghost), 13)
            assert isinstance(again, FetchResponse)
            assert sent(again) == {0: (ErrorCode.UNKNOWN_TOPIC_ID, -1, 0)}


def test_session_by_names_refuses_topic_ids(broker: EmbeddedBroker, topic_name: str) -> None:
    with Wire(broker.bootstrap) as w:
        make_topic(w, topic_name)
        tid = topic_id(w, topic_name)
        full = w.request(fetch_req(topic_name, {0: 0}, 0, 0), 12)
        assert isinstance(full, FetchResponse) and full.session_id != 0
        err = w.request(fetch_req("", {}, full.session_id, 1, tid), 13)
        assert isinstance(err, FetchResponse)
        assert err.error_code == ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR


def test_kafka_python_consumes_many_partitions_through_a_session(broker: EmbeddedBroker, topic_name: str) -> None:
    """kafka-python (3.x) uses incremental fetch sessions (Fetch v12): every record arrives once."""
    from kafka import KafkaConsumer, TopicPartition

    partitions = 40
    create_topics(broker.bootstrap, NewTopic(topic_name, num_partitions=partitions, replication_factor=1))
    p = Producer({"bootstrap.servers": broker.bootstrap})
    expected = set()
    for i in range(200):
        p.produce(topic_name, f"v{i}".encode(), partition=i % partitions)
        expected.add(f"v{i}")
    p.flush(30)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    try:
        consumer.assign([TopicPartition(topic_name, i) for i in range(partitions)])
        consumer.seek_to_beginning()
        got: list[str] = []
        deadline = time.monotonic() + 60
        while len(got) < len(expected) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(r.value.decode() for r in records)
        # light traffic after the first round: the session's incremental fetches carry it
        for i in range(200, 260):
            p.produce(topic_name, f"v{i}".encode(), partition=i % partitions)
            expected.add(f"v{i}")
        p.flush(30)
        deadline = time.monotonic() + 60
        while len(got) < len(expected) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(r.value.decode() for r in records)
        assert sorted(got) == sorted(expected)
        sessions = broker.call(lambda: [len(s.partitions) for s in broker.broker.fetch_sessions._sessions.values()])
        assert partitions in sessions
    finally:
        consumer.close()


def test_librdkafka_fetches_with_the_newest_version(broker: EmbeddedBroker, topic_name: str) -> None:
    """librdkafka 2.x negotiates Fetch v16+ (topic ids) and consumes."""
    create_topics(broker.bootstrap, NewTopic(topic_name, num_partitions=2, replication_factor=1))
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(20):
        p.produce(topic_name, f"v{i}".encode(), partition=i % 2)
    p.flush(30)
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger(f"rdkafka-{topic_name}")
    logger.addHandler(Capture())
    logger.setLevel(logging.DEBUG)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": topic_name, "auto.offset.reset": "earliest", "debug": "fetch,protocol", "logger": logger})
    try:
        c.subscribe([topic_name])
        got = []
        deadline = time.monotonic() + 60
        while len(got) < 20 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.value())
        assert sorted(got) == sorted(f"v{i}".encode() for i in range(20))
    finally:
        c.close()
    versions = {int(line.split("FetchRequest (v", 1)[1].split(",", 1)[0]) for line in lines if "Sent FetchRequest (v" in line}
    assert versions and min(versions) >= 16, versions


def test_incremental_fetch_reports_a_moved_log_start(broker: EmbeddedBroker, topic_name: str) -> None:
    """A partition with no new records is still sent when its log start offset moved
    (DeleteRecords), with the new log start; then it is quiet again."""
    from riverbed.protocol.messages.delete_records import DeleteRecordsRequest

    with Wire(broker.bootstrap) as w:
        make_topic(w, topic_name, partitions=2)
        for _ in range(3):
            w.request(produce_req(topic_name, build_batch([(b"k", b"v")]), partition=0), 8)
        full = w.request(fetch_req(topic_name, {0: 3, 1: 0}, 0, 0), 12)
        assert isinstance(full, FetchResponse) and full.session_id != 0
        sid = full.session_id
        inc = w.request(fetch_req(topic_name, {}, sid, 1), 12)
        assert isinstance(inc, FetchResponse) and inc.responses == []
        drop = DeleteRecordsRequest(topics=[DeleteRecordsRequest.DeleteRecordsTopic(name=topic_name, partitions=[DeleteRecordsRequest.DeleteRecordsPartition(partition_index=0, offset=2)])], timeout_ms=5000)
        w.request(drop, 2)
        inc = w.request(fetch_req(topic_name, {}, sid, 2), 12)
        assert isinstance(inc, FetchResponse)
        assert [(pd.partition_index, pd.log_start_offset, pd.high_watermark) for tr in inc.responses for pd in tr.partitions] == [(0, 2, 3)]
        inc = w.request(fetch_req(topic_name, {}, sid, 3), 12)
        assert isinstance(inc, FetchResponse) and inc.responses == []


@pytest.mark.parametrize("version", [11, 15, 16, 17])
def test_follower_fetch_is_refused_as_a_single_node(broker: EmbeddedBroker, topic_name: str, version: int) -> None:
    """A fetch from a replica id (a follower) gets NOT_LEADER_OR_FOLLOWER: one node has no
    followers. From v12 the partition names the leader (this node), from v16 the response
    carries its endpoint (KIP-951)."""
    with Wire(broker.bootstrap) as w:
        make_topic(w, topic_name)
        w.request(produce_req(topic_name, build_batch([(b"k", b"v")])), 8)
        tid = topic_id(w, topic_name) if version >= 13 else None
        req = fetch_req(topic_name if version < 13 else "", {0: 0}, 0, -1, tid)
        if version >= 15:
            req.replica_state = Req.ReplicaState(replica_id=2, replica_epoch=5)
        else:
            req.replica_id = 2
        resp = w.request(req, version)
        assert isinstance(resp, FetchResponse)
        pd = resp.responses[0].partitions[0]
        assert (pd.error_code, len(pd.records or b"")) == (ErrorCode.NOT_LEADER_OR_FOLLOWER, 0)  # type: ignore[arg-type]
        if version >= 12:
            assert pd.current_leader.leader_id == broker.config.node_id
        host, port = broker.bootstrap.rsplit(":", 1)
        expected = [(broker.config.node_id, host, int(port))] if version >= 16 else []
        assert [(n.node_id, n.host, n.port) for n in resp.node_endpoints] == expected


def test_read_committed_session_sees_the_last_stable_offset_move(broker: EmbeddedBroker, topic_name: str) -> None:
    """read_committed through a session: an open transaction holds the last stable offset;
    its records and then its commit are each reported, and nothing in between."""
    create_topics(broker.bootstrap, NewTopic(topic_name, num_partitions=2, replication_factor=1))
    with Wire(broker.bootstrap) as w:

        def fetch(parts: dict[int, int], sid: int, epoch: int) -> FetchResponse:
            req = fetch_req(topic_name, parts, sid, epoch)
            req.isolation_level = 1
            resp = w.request(req, 12)
            assert isinstance(resp, FetchResponse) and resp.error_code == 0
            return resp

        def state(resp: FetchResponse) -> dict[int, tuple[int, int, int]]:
            return {pd.partition_index: (pd.high_watermark, pd.last_stable_offset, len(pd.records or b"")) for tr in resp.responses for pd in tr.partitions}  # type: ignore[arg-type]

        full = fetch({0: 0, 1: 0}, 0, 0)
        sid = full.session_id
        assert sid != 0 and state(full) == {0: (0, 0, 0), 1: (0, 0, 0)}
        assert state(fetch({}, sid, 1)) == {}
        p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": f"tx-{topic_name}"})
        p.init_transactions(30)
        p.begin_transaction()
        for i in range(3):
            p.produce(topic_name, f"v{i}".encode(), partition=0)
        p.flush(30)
        # the open transaction's records: the high watermark moves, the last stable offset not
        seen = state(fetch({}, sid, 2))
        assert seen == {0: (3, 0, 0)}
        assert state(fetch({}, sid, 3)) == {}
        p.commit_transaction(30)
        deadline = time.monotonic() + 30
        epoch = 4
        while True:  # the commit marker, then the high watermark past it
            seen = state(fetch({}, sid, epoch))
            epoch += 1
            if seen.get(0, (0, 0, 0))[1] == 4:
                break
            assert time.monotonic() < deadline, seen
        assert seen == {0: (4, 4, seen[0][2])} and seen[0][2] > 0  # committed records now readable
        assert state(fetch({0: 4}, sid, epoch)) == {}
