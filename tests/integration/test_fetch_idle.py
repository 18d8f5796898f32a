"""Fetch with nothing new (issue 9): partitions at their end are answered without a log read
(shared per-value answers encoded once), a long poll that ends with nothing changed returns
the answer read at its start, and a connection that repeats its last request's bytes reuses
its decoding. Every answer must still be what a full read gives."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from riverbed.broker.apis.fetch import _Quiet, decode_request
from riverbed.protocol.messages.delete_records import DeleteRecordsRequest
from riverbed.protocol.messages.fetch import FetchRequest, FetchResponse
from riverbed.protocol.primitives import Reader, Writer
from riverbed.protocol.records.records import build_batch
from riverbed.server.handler import ConnectionInfo
from riverbed.testing import EmbeddedBroker

from .test_wire import make_topic, produce_req
from .wire import Wire

pytestmark = pytest.mark.integration

Req = FetchRequest
Resp = FetchResponse


def fetch(topic: str, offsets: dict[int, int], max_wait_ms: int = 0, isolation: int = 0) -> FetchRequest:
    parts = [Req.FetchPartition(partition=p, fetch_offset=o, partition_max_bytes=1 << 20) for p, o in offsets.items()]
    return FetchRequest(replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=1 << 20, isolation_level=isolation, topics=[Req.FetchTopic(topic=topic, partitions=parts)])


def fields(resp: Resp) -> dict[int, tuple[int, int, int, int, int]]:
    """partition -> (error, high watermark, last stable offset, log start, bytes of records)."""
    out = {}
    for tr in resp.responses:
        for pd in tr.partitions:
            out[pd.partition_index] = (pd.error_code, pd.high_watermark, pd.last_stable_offset, pd.log_start_offset, len(pd.records or b""))  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("version", [0, 4, 5, 11, 12, 13, 16, 17])
@pytest.mark.parametrize("read_committed", [False, True])
def test_quiet_answer_encodes_as_the_generic_one(version: int, read_committed: bool) -> None:
    quiet = _Quiet(7, 42, 40, 3, read_committed)
    plain = Resp.PartitionData(
        partition_index=7,
        error_code=0,
        high_watermark=42,
        last_stable_offset=40,
        log_start_offset=3,
        aborted_transactions=[] if read_committed else None,
        preferred_read_replica=-1,
        records=b"",
    )
    for _ in range(2):  # encoded once, then from its cache
        a, b = Writer(), Writer()
        quiet.write(a, version)
        plain.write(b, version)
        assert a.getvalue() == b.getvalue()
    back = Resp.PartitionData.read(Reader(bytearray(Writer().getvalue()) + a.getvalue()), version)
    assert back.high_watermark == 42


def test_idle_partitions_answer_what_a_read_gives(broker: EmbeddedBroker, topic_name: str) -> None:
    with Wire(broker.bootstrap) as w:
        make_topic(w, topic_name, partitions=3)
        for _ in range(3):
            w.request(produce_req(topic_name, build_batch([(b"k", b"v")]), partition=0), 8)
        w.request(produce_req(topic_name, build_batch([(b"k", b"v")]), partition=1), 8)
        # log start of partition 1 moved to its end: a fetch at it has nothing new either
        w.request(DeleteRecordsRequest(topics=[DeleteRecordsRequest.DeleteRecordsTopic(name=topic_name, partitions=[DeleteRecordsRequest.DeleteRecordsPartition(partition_index=1, offset=1)])], timeout_ms=5000), 2)
        for version in (5, 11, 12):
            quiet = w.request(fetch(topic_name, {0: 3, 1: 1, 2: 0}), version)
            assert isinstance(quiet, Resp)
            assert fields(quiet) == {0: (0, 3, 3, 0, 0), 1: (0, 1, 1, 1, 0), 2: (0, 0, 0, 0, 0)}
        # the same partitions with data to read are still read
        data = w.request(fetch(topic_name, {0: 1, 1: 1, 2: 0}), 11)
        assert isinstance(data, Resp)
        got = fields(data)
        assert got[0][:4] == (0, 3, 3, 0) and got[0][4] > 0
        # below the log start: still the out-of-range error, not a quiet answer
        low = w.request(fetch(topic_name, {1: 0}), 11)
        assert isinstance(low, Resp)
        assert fields(low)[1][0] != 0


def test_repeated_request_bytes_still_see_new_data(broker: EmbeddedBroker, topic_name: str) -> None:
    """The decoding is reused for identical bytes; the answer is read afresh every time."""
    with Wire(broker.bootstrap) as w:
        make_topic(w, topic_name)
        req = fetch(topic_name, {0: 0})
        first = w.request(req, 11)
        assert isinstance(first, Resp) and fields(first)[0] == (0, 0, 0, 0, 0)
        w.request(produce_req(topic_name, build_batch([(b"k", b"v")])), 8)
        again = w.request(req, 11)  # the same bytes (but for the correlation id)
        assert isinstance(again, Resp)
        assert fields(again)[0][:2] == (0, 1) and fields(again)[0][4] > 0


def test_decode_request_reuses_only_identical_bytes() -> None:
    conn = ConnectionInfo(peer="t", listener="PLAINTEXT", connection_id=1)
    w = Writer()
    fetch("t", {0: 5}).write(w, 11)
    body = bytearray(b"HDR" + w.getvalue())
    a = decode_request(conn, body, 3, 11)
    assert decode_request(conn, bytearray(body), 3, 11) is a
    assert decode_request(conn, body, 3, 10) is not a  # another version: decoded again
    w = Writer()
    fetch("t", {0: 6}).write(w, 11)
    c = decode_request(conn, bytearray(b"HDR" + w.getvalue()), 3, 11)
    assert c.topics[0].partitions[0].fetch_offset == 6


def test_long_poll_sees_data_appended_while_it_waits(broker: EmbeddedBroker, topic_name: str) -> None:
    with Wire(broker.bootstrap, timeout=60) as w, Wire(broker.bootstrap) as p:
        make_topic(w, topic_name, partitions=2)
        other = topic_name + "-other"
        make_topic(w, other)

        def produce_later() -> None:
            time.sleep(0.3)
            p.request(produce_req(other, build_batch([(b"k", b"v")])), 8)  # another topic: wakes, not ready
            time.sleep(0.2)
            p.request(produce_req(topic_name, build_batch([(b"k", b"v")]), partition=1), 8)

        t = threading.Thread(target=produce_later)
        t.start()
        resp = w.request(fetch(topic_name, {0: 0, 1: 0}, max_wait_ms=20_000), 11)
        t.join()
        assert isinstance(resp, Resp)
        got = fields(resp)
        assert got[0] == (0, 0, 0, 0, 0)
        assert got[1][:2] == (0, 1) and got[1][4] > 0


def test_long_poll_that_times_out_reports_a_moved_log_start(broker: EmbeddedBroker, topic_name: str) -> None:
    """Nothing to read at the deadline, but the log start moved during the wait: the answer
    is read again and shows it (not the answer built when the request came)."""
    with Wire(broker.bootstrap, timeout=60) as w, Wire(broker.bootstrap) as p:
        make_topic(w, topic_name)
        for _ in range(2):
            p.request(produce_req(topic_name, build_batch([(b"k", b"v")])), 8)
        started = threading.Event()

        def delete_later() -> None:
            started.wait(10)
            time.sleep(0.2)
            p.request(DeleteRecordsRequest(topics=[DeleteRecordsRequest.DeleteRecordsTopic(name=topic_name, partitions=[DeleteRecordsRequest.DeleteRecordsPartition(partition_index=0, offset=1)])], timeout_ms=5000), 2)

        t = threading.Thread(target=delete_later)
        t.start()
        started.set()
        resp = w.request(fetch(topic_name, {0: 2}, max_wait_ms=1500), 11)
        t.join()
        assert isinstance(resp, Resp)
        assert fields(resp)[0] == (0, 2, 2, 1, 0)


def test_long_poll_of_a_deleted_topic_answers_its_error(broker: EmbeddedBroker, topic_name: str) -> None:
    with Wire(broker.bootstrap, timeout=60) as w:
        make_topic(w, topic_name)
        done: list[Resp] = []

        def poll() -> None:
            with Wire(broker.bootstrap, timeout=60) as f:
                r = f.request(fetch(topic_name, {0: 0}, max_wait_ms=1500), 11)
                assert isinstance(r, Resp)
                done.append(r)

        t = threading.Thread(target=poll)
        t.start()
        deadline = time.monotonic() + 10
        while broker.call(lambda: len(broker.broker._waiters)) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        broker.call(lambda: broker.broker.delete_topic(topic_name))
        t.join()
        assert done and fields(done[0])[0][0] != 0


def test_idle_connection_gets_the_same_answer_until_something_changes(broker: EmbeddedBroker, topic_name: str) -> None:
    """A connection repeating a sessionless fetch with nothing new gets the whole answer it got
    last time (not read again) while the broker's change count stays; an append, a DeleteRecords
    or another version of the request is read afresh."""
    b = broker.broker
    with Wire(broker.bootstrap) as w:
        make_topic(w, topic_name, partitions=2)
        w.request(produce_req(topic_name, build_batch([(b"k", b"v")]), partition=0), 8)
    conn = ConnectionInfo(peer="t", listener="PLAINTEXT", connection_id=991)

    def ask(offsets: dict[int, int], version: int = 11) -> tuple[Resp, object]:
        body = Writer()
        body.int16(FetchRequest.API_KEY)
        body.int16(version)
        body.int32(1)
        body.nullable_string("t", False)
        fetch(topic_name, offsets).write(body, version)

        def run() -> tuple[Resp, object]:
            chunks = b.handle(conn, bytearray(body.getvalue()))
            assert isinstance(chunks, list)
            raw = bytearray(b"".join(bytes(c) for c in chunks))
            resp = Resp.read(Reader(raw, 8), version)  # after the size and the correlation id
            return resp, conn.state.get("quiet_fetch", (None,) * 4)[3]

        return broker.call(run)

    first, kept = ask({0: 1, 1: 0})
    assert fields(first) == {0: (0, 1, 1, 0, 0), 1: (0, 0, 0, 0, 0)} and kept is not None
    again, kept_again = ask({0: 1, 1: 0})
    assert kept_again is kept and fields(again) == fields(first)  # answered from what was kept
    with Wire(broker.bootstrap) as w:
        w.request(produce_req(topic_name, build_batch([(b"k", b"v")]), partition=1), 8)
    after, _ = ask({0: 1, 1: 0})
    assert fields(after)[1][:2] == (0, 1) and fields(after)[1][4] > 0  # read again: partition 1 has data
    quiet, kept = ask({0: 1, 1: 1})
    assert fields(quiet) == {0: (0, 1, 1, 0, 0), 1: (0, 1, 1, 0, 0)}
    with Wire(broker.bootstrap) as w:
        w.request(DeleteRecordsRequest(topics=[DeleteRecordsRequest.DeleteRecordsTopic(name=topic_name, partitions=[DeleteRecordsRequest.DeleteRecordsPartition(partition_index=0, offset=1)])], timeout_ms=5000), 2)
    moved, kept_moved = ask({0: 1, 1: 1})
    assert kept_moved is not kept and fields(moved)[0] == (0, 1, 1, 1, 0)  # the new log start
    other_version, _ = ask({0: 1, 1: 1}, version=5)
    assert fields(other_version) == fields(moved)


def _v16(order: list[tuple[uuid.UUID, list[tuple[int, int]]]], max_wait_ms: int = 500) -> bytes:
    req = FetchRequest(max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=1 << 20, isolation_level=0, session_id=0, session_epoch=-1,
                       topics=[Req.FetchTopic(topic_id=tid, partitions=[Req.FetchPartition(partition=p, fetch_offset=o, partition_max_bytes=1 << 20)
                                                                        for p, o in parts]) for tid, parts in order], rack_id="")
    w = Writer()
    req.write(w, 16)
    return bytes(w.getvalue())


def test_a_reordered_request_is_the_same_request() -> None:
    """librdkafka rotates its full fetch list by one partition each time: from v13 a request
    that only differs by the order of its partitions gets the request decoded before (so the
    connection's kept idle answer applies); any other difference is decoded afresh."""
    a, b = uuid.uuid4(), uuid.uuid4()
    conn = ConnectionInfo(peer="t", listener="PLAINTEXT", connection_id=2)

    def decode(body: bytes) -> FetchRequest:
        return decode_request(conn, bytearray(b"HDR" + body), 3, 16)

    ref = decode(_v16([(a, [(3, 5), (2, 5), (1, 5), (0, 5)]), (b, [(1, 0), (0, 7)])]))
    rotations = [
        [(a, [(2, 5), (1, 5), (0, 5)]), (b, [(1, 0), (0, 7)]), (a, [(3, 5)])],
        [(a, [(1, 5), (0, 5)]), (b, [(1, 0), (0, 7)]), (a, [(3, 5), (2, 5)])],
        [(b, [(1, 0), (0, 7)]), (a, [(3, 5), (2, 5), (1, 5), (0, 5)])],
        [(b, [(0, 7)]), (a, [(3, 5), (2, 5), (1, 5), (0, 5)]), (b, [(1, 0)])],
        [(a, [(3, 5), (1, 5)]), (b, [(1, 0)]), (a, [(2, 5), (0, 5)]), (b, [(0, 7)])],  # interleaved, another order
    ]
    for order in rotations:
        assert decode(_v16(order)) is ref, order
    others = [
        [(a, [(2, 5), (1, 5), (0, 5)]), (b, [(1, 0), (0, 8)]), (a, [(3, 5)])],  # an offset moved
        [(a, [(2, 5), (1, 5), (0, 5)]), (b, [(1, 0), (0, 7)]), (a, [(2, 5)])],  # 2 twice, 3 missing
        [(a, [(3, 5), (2, 5), (1, 5)]), (b, [(1, 0), (0, 7)])],  # one partition fewer
    ]
    for order in others:
        got = decode(_v16(order))
        assert got is not ref
        assert [(t.topic_id, [(p.partition, p.fetch_offset) for p in t.partitions]) for t in got.topics] == order
        ref = decode(_v16([(a, [(3, 5), (2, 5), (1, 5), (0, 5)]), (b, [(1, 0), (0, 7)])]))  # the reference again
    assert decode(_v16([(b, [(1, 0), (0, 7)]), (a, [(3, 5), (2, 5), (1, 5), (0, 5)])], max_wait_ms=100)) is not ref


def test_idle_librdkafka_member_is_answered_without_reading(broker: EmbeddedBroker, topic_name: str) -> None:
    """A caught-up confluent-kafka member repeats a rotated full fetch every fetch.wait.max.ms:
    after the first, the broker answers from what the connection kept (no partition read)
    until something changes; a record produced then still reaches the member at once."""
    from confluent_kafka import Consumer, Producer

    import riverbed.broker.apis.fetch as fetch_api

    with Wire(broker.bootstrap) as w:
        for i in range(3):
            make_topic(w, f"{topic_name}-{i}", partitions=4)
    reads, fetches = [0], [0]
    real_read, real_decode = fetch_api._read_all, broker.broker._decode_fetch

    def counting_read(*args: object, **kw: object) -> object:
        reads[0] += 1
        return real_read(*args, **kw)  # type: ignore[arg-type]

    def counting_decode(*args: object) -> object:
        fetches[0] += 1
        return real_decode(*args)  # type: ignore[arg-type]

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": topic_name, "auto.offset.reset": "latest",
                  "fetch.wait.max.ms": 100})
    assigned: list[int] = []
    c.subscribe([f"^{topic_name}-.*"], on_assign=lambda _c, parts: assigned.append(len(parts)))
    try:
        deadline = time.monotonic() + 60
        while sum(assigned) < 12 and time.monotonic() < deadline:
            c.poll(0.1)
        assert sum(assigned) == 12
        # caught up: the member's fetches are full fetches at the end of every partition
        broker.call(lambda: setattr(fetch_api, "_read_all", counting_read))
        broker.call(lambda: setattr(broker.broker, "_decode_fetch", counting_decode))
        deadline = time.monotonic() + 60
        while fetches[0] < 12 and time.monotonic() < deadline:
            assert c.poll(0.1) is None
        assert fetches[0] >= 12
        assert reads[0] <= 2, f"{reads[0]} reads for {fetches[0]} fetches"  # (the first, and one more at most)
        p = Producer({"bootstrap.servers": broker.bootstrap})
        p.produce(f"{topic_name}-1", b"v", b"k")
        assert p.flush(10) == 0
        deadline = time.monotonic() + 30
        got = None
        while got is None and time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                got = m
        assert got is not None and got.value() == b"v"
        assert reads[0] > 2
    finally:
        broker.call(lambda: setattr(fetch_api, "_read_all", real_read))
        broker.call(lambda: setattr(broker.broker, "_decode_fetch", real_decode))
        c.close()


def test_successive_rotations_stay_the_same_request() -> None:
    """An idle librdkafka member rotates by one partition per fetch, for ever: every step is
    matched (each compared with the order of the one before), however far the list has turned."""
    topics = [uuid.uuid4() for _ in range(6)]
    entries = [(topics[i % 6], p, 10 + p) for p in range(4) for i in range(6)]  # small interleaved blocks
    conn = ConnectionInfo(peer="t", listener="PLAINTEXT", connection_id=3)

    def as_blocks(seq: list[tuple[uuid.UUID, int, int]]) -> list[tuple[uuid.UUID, list[tuple[int, int]]]]:
        out: list[tuple[uuid.UUID, list[tuple[int, int]]]] = []
        for tid, p, o in seq:
            if out and out[-1][0] == tid:
                out[-1][1].append((p, o))
            else:
                out.append((tid, [(p, o)]))
        return out

    ref = decode_request(conn, bytearray(_v16(as_blocks(entries))), 0, 16)
    for step in range(1, 3 * len(entries)):
        turned = entries[step % len(entries):] + entries[:step % len(entries)]
        assert decode_request(conn, bytearray(_v16(as_blocks(turned))), 0, 16) is ref, step
    moved = [*entries[1:], (entries[0][0], entries[0][1], 99)]  # and an offset that moved is seen
    assert decode_request(conn, bytearray(_v16(as_blocks(moved))), 0, 16) is not ref
