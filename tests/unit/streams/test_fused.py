"""The fused stateless path (nodes.fuse, Task.process_messages) gives what the node-by-node path
gives: same outputs, timestamps, headers, errors and stream time."""

from __future__ import annotations

import json
from typing import Any

import pytest

from riverbed.streams import JSON, LONG, STRING, StreamsApp, StreamsError
from riverbed.streams.serdes import JsonSerde, _json_loads
from riverbed.streams.stores import MemoryEngine
from riverbed.streams.task import Task
from riverbed.streams.topology import Topology


class _Msg:
    """What Task.process_messages reads of a confluent-kafka message."""

    def __init__(self, key: bytes | None, value: bytes | None, ts: int, offset: int,
                 headers: list[tuple[str, bytes]] | None = None) -> None:
        self._k, self._v, self._ts, self._off, self._h = key, value, ts, offset, headers

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._h

    def offset(self) -> int:
        return self._off


class _Sent:
    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []

    def send(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
             headers: list[tuple[str, bytes]] | None, partition: int | None) -> None:
        self.records.append((topic, key, value, timestamp, headers, partition))


def _task(topology: Topology, fused: bool) -> tuple[Task, _Sent]:
    sent = _Sent()
    task = Task(topology.subtopologies[0], 0, sent, lambda _s, _t: MemoryEngine(), topology.changelog_topic,
                errors=topology.errors)
    if not fused:
        task._fused = {}
    return task.start(), sent


def _msgs() -> list[_Msg]:
    out = []
    for i in range(40):
        value = json.dumps({"n": i, "tag": "x" if i % 3 else "y"}).encode()
        headers = [("h", str(i).encode())] if i % 4 == 0 else None
        out.append(_Msg(f"k{i % 5}".encode(), value, 1000 + (i * 7) % 23, i, headers))
    out.append(_Msg(b"bad", b"{not json", 5000, 40))  # deserialization error
    out.append(_Msg(b"neg", b'{"n": 1, "tag": "x"}', -1, 41))  # negative timestamp: skipped
    out.append(_Msg(None, b'{"n": 2, "tag": "x"}', 900, 42))  # no key
    return out


def _chain(app: StreamsApp, peeked: list[Any]) -> None:
    s = app.stream("in", STRING, JSON, on_error="skip")
    a = (s.peek(lambda k, v: peeked.append((k, v["n"])))
         .filter(lambda _k, v: v["n"] % 2 == 0)
         .filter_not(lambda _k, v: v["n"] % 10 == 0)
         .map(lambda k, v: (f"{k}-{v['tag']}", v))
         .map_values(lambda v: v["n"] * 3, value_serde=LONG))
    b = s.filter(lambda _k, v: v["tag"] == "y").map_values(lambda v: v["n"], value_serde=LONG)
    a.merge(b).to("out")
    a.to("out-a")
    s.map_values(lambda v: 1 // (v["n"] % 7)).to("div", STRING, LONG)  # raises for n % 7 == 0


@pytest.mark.parametrize("batch", [1, 7, 100])
def test_fused_path_gives_the_node_path_results(batch: int) -> None:
    results = []
    for fused in (True, False):
        peeked: list[Any] = []
        app = StreamsApp("t", on_processing_error="skip")
        _chain(app, peeked)
        task, sent = _task(app.topology(), fused)
        msgs = _msgs()
        if fused:
            for i in range(0, len(msgs), batch):
                task.process_messages("in", msgs[i:i + batch])
        else:
            for m in msgs:
                task.process("in", m.key(), m.value(), m.timestamp()[1], m.headers(), m.offset())
        results.append((sent.records, peeked, task.stream_time, dict(task.metrics)))
    assert results[0] == results[1]
    records, peeked, stream_time, metrics = results[0]
    assert stream_time == 1022
    assert metrics == {"deserialization_errors": 1, "skipped_records": 1, "processing_errors": 6}
    assert ("out", b"k4-x", LONG.serialize(12), 1000 + 28 % 23, [("h", b"4")], None) in records
    assert len(peeked) == 41  # (the bad record never reaches the peek, the negative one is skipped before)


def test_fused_path_applies_the_fail_policy() -> None:
    app = StreamsApp("t")
    app.stream("in", STRING, JSON).map_values(lambda v: v["missing"]).to("out")
    task, _sent = _task(app.topology(), True)
    with pytest.raises(StreamsError, match="processing of in-0@3 failed"):
        task.process_messages("in", [_Msg(b"k", b"{}", 1, 3)])


def test_sink_serialization_error_goes_to_the_production_policy() -> None:
    app = StreamsApp("t", production_error="skip")
    app.stream("in", STRING, JSON).map_values(lambda v: "not a number").to("out", STRING, LONG)
    task, sent = _task(app.topology(), True)
    task.process_messages("in", [_Msg(b"k", b"{}", 1, 0), _Msg(b"k", b"{}", 2, 1)])
    assert sent.records == []
    assert task.metrics == {"production_errors": 2}


def test_chain_into_a_stateful_node_still_gets_records() -> None:
    app = StreamsApp("t")
    (app.stream("in", STRING, JSON).filter(lambda _k, v: v["n"] > 0).group_by_key().count(name="c")
        .to_stream().to("counts", STRING, LONG))
    task, sent = _task(app.topology(), True)
    task.process_messages("in", [_Msg(b"a", b'{"n": 1}', 1, 0), _Msg(b"a", b'{"n": 0}', 2, 1),
                                 _Msg(b"a", b'{"n": 5}', 3, 2)])
    assert [(r[0], r[2]) for r in sent.records if r[0] == "counts"] == [("counts", LONG.serialize(1)),
                                                                       ("counts", LONG.serialize(2))]


@pytest.mark.parametrize("data", [b'{"a":1}', b' {"a": [1, 2.5, null]} ', b'\xef\xbb\xbf{"a":1}',
                                  '{"a":1}'.encode("utf-16"), b"[1,2", b"", b'{"a":1}x', b"\xff", b'"\xc3\xa9"',
                                  bytearray(b"[1]"), "[2]"])
def test_json_loads_matches_the_standard_library(data: Any) -> None:
    def outcome(fn: Any) -> Any:
        try:
            return ("ok", fn(data))
        except Exception as e:
            return ("error", type(e), str(e))

    assert outcome(_json_loads) == outcome(json.loads)


def test_json_serde_output_is_unchanged() -> None:
    value = {"b": [1, 2.5, None, True], "a": "é\n", "c": {"d": float("inf")}}
    assert JsonSerde().serialize(value) == json.dumps(value, separators=(",", ":")).encode()


def _extracting(app: StreamsApp, with_fields: bool) -> None:
    """A source with a timestamp extractor (event time from the value; negative for n == 5,
    raising for n == 7; the value gets the partition and offset, as riverbed.sql's rows do)."""
    def fields(k: Any, v: Any, ts: int, h: Any, partition: int, offset: int, partition_time: int) -> int:
        if v["n"] == 7:
            raise ValueError("no time")
        v["where"] = [partition, offset, partition_time]
        return -1 if v["n"] == 5 else 2000 + v["n"] * 10 - ts % 3

    def extract(rec: Any, partition_time: int) -> int:
        return fields(rec.key, rec.value, rec.timestamp, rec.headers, rec.partition, rec.offset, partition_time)

    if with_fields:
        extract.fields = fields  # type: ignore[attr-defined]
    s = app.stream("in", STRING, JSON, timestamp_extractor=extract, on_error="skip")
    s.filter(lambda _k, v: v["n"] % 2 == 0).map_values(lambda v: {**v, "tag": v["tag"] * 2}).to("out")
    s.group_by_key().count(name="c").to_stream().to("counts", STRING, LONG)


@pytest.mark.parametrize("with_fields", [False, True])
def test_fused_path_with_a_timestamp_extractor_gives_the_node_path_results(with_fields: bool) -> None:
    results = []
    for fused in (True, False):
        app = StreamsApp("t", on_processing_error="skip")
        _extracting(app, with_fields)
        task, sent = _task(app.topology(), fused)
        assert bool(task._fused) == fused
        msgs = _msgs()
        if fused:
            for i in range(0, len(msgs), 7):
                task.process_messages("in", msgs[i:i + 7])
        else:
            for m in msgs:
                task.process("in", m.key(), m.value(), m.timestamp()[1], m.headers(), m.offset())
        results.append((sent.records, task.stream_time, dict(task.metrics)))
    assert results[0] == results[1]
    records, stream_time, metrics = results[0]
    # the extracted time is the records' (out) and the stream time; the record with a negative
    # record timestamp (-1) gets one from the extractor and is processed
    assert stream_time == max(2000 + n * 10 - (1000 + (n * 7) % 23) % 3 for n in range(40) if n not in (5, 7))
    assert metrics == {"deserialization_errors": 1, "skipped_records": 2, "processing_errors": 1}
    out = [json.loads(r[2]) for r in records if r[0] == "out"]
    assert out[0] == {"n": 0, "tag": "yy", "where": [0, 0, -1]}
    counts = [r for r in records if r[0] == "counts"]
    # offsets 0-39 but n = 5 (negative time) and n = 7 (raises), 41 (record timestamp -1: 2000 +
    # 10 - (-1 % 3)); not 40 (does not decode) nor 42 (no key)
    assert len(counts) == 39
    assert (b"neg", 2008) in [(r[1], r[3]) for r in counts]


def test_fused_path_processes_a_negative_record_timestamp_the_extractor_fixes() -> None:
    app = StreamsApp("t")
    app.stream("in", STRING, JSON, timestamp_extractor=lambda r, _pt: r.value["t"]).to("out")
    task, sent = _task(app.topology(), True)
    task.process_messages("in", [_Msg(b"k", b'{"t": 5}', -1, 0), _Msg(b"k", b'{"t": -3}', 10, 1)])
    assert [(r[2], r[3]) for r in sent.records] == [(b'{"t":5}', 5)]
    assert task.metrics == {"skipped_records": 1}
    assert task.stream_time == 5
