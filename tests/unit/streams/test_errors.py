"""Error policies: fail, skip with a log line, or a dead-letter topic with the error in Kafka
Streams' ``__streams.errors.*`` headers (KIP-1034), for deserialization and processing errors."""

from __future__ import annotations

import logging

import pytest

from riverbed.streams import JSON, LONG, STRING, StreamsApp, StreamsError, TestDriver


def _headers(rec: object) -> dict[str, bytes]:
    return dict(rec.headers or [])  # type: ignore[attr-defined]


def test_deserialization_error_to_dead_letter_topic() -> None:
    app = StreamsApp("e", dead_letter_topic="dlq")
    app.stream("in", STRING, JSON, on_error="dead_letter").to("out")
    with TestDriver(app) as d:
        d.pipe_raw("in", b"k", b"{broken", 7, headers=[("trace", b"t1")])
        d.pipe_raw("in", b"k", b"[1]", 8)
        assert d.read("out", STRING, JSON) == [("k", [1])]
        [dead] = d.outputs["dlq"]
        assert (dead.key, dead.value, dead.timestamp) == (b"k", b"{broken", 7)
        h = _headers(dead)
        assert h["trace"] == b"t1"  # the input's own headers are kept
        assert h["__streams.errors.topic"] == b"in"
        assert h["__streams.errors.partition"] == b"0" and h["__streams.errors.offset"] == b"0"
        assert h["__streams.errors.exception"].startswith(b"json.decoder.JSONDecodeError: ")
        assert b"Traceback" in h["__streams.errors.stacktrace"]
        assert d.metrics()["deserialization_errors"] == 1


@pytest.mark.parametrize("policy", ["fail", "skip", "dead_letter"])
def test_processing_errors(policy: str, caplog: pytest.LogCaptureFixture) -> None:
    app = StreamsApp("e", on_processing_error=policy, dead_letter_topic="dlq")
    app.stream("in", STRING, LONG).map_values(lambda v: 100 // v).to("out")
    with TestDriver(app) as d, caplog.at_level(logging.WARNING, "riverbed.streams"):
        if policy == "fail":
            with pytest.raises(StreamsError, match=r"processing of in-0@0 failed: ZeroDivisionError"):
                d.pipe("in", "k", 0, 1)
            return
        d.pipe("in", "k", 0, 1)
        d.pipe("in", "k", 4, 2)
        assert d.read("out", STRING, LONG) == [("k", 25)]
        assert d.metrics()["processing_errors"] == 1
        dead = d.outputs.get("dlq", [])
        if policy == "skip":
            assert dead == []
            assert "processing of in-0@0 failed, skipped" in caplog.text
        else:
            assert [(r.key, LONG.deserialize(r.value)) for r in dead] == [(b"k", 0)]
            assert _headers(dead[0])["__streams.errors.message"] == b"integer division or modulo by zero"


def test_error_policies_are_checked() -> None:
    app = StreamsApp("e", on_processing_error="ignore")
    app.stream("in")
    with pytest.raises(StreamsError, match="error policy"):
        app.topology()
    app2 = StreamsApp("e")
    app2.stream("in", on_error="dead_letter")
    with pytest.raises(StreamsError, match="dead_letter_topic"):
        app2.topology()
