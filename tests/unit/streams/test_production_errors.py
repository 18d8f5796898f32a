"""The production error policy (Kafka's ProductionExceptionHandler, serialization side) and
dead letters for records the DSL drops (late, without a key), through the driver. Delivery
failures need a broker: tests/integration/test_streams_errors.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from riverbed.streams import (
    JSON,
    LONG,
    STRING,
    SessionWindows,
    SlidingWindows,
    StreamsApp,
    StreamsError,
    TestDriver,
    TimeWindows,
)
from riverbed.streams.records import ProductionError


class Picky:
    """A value serde that refuses negative numbers."""

    def serialize(self, value: Any) -> bytes | None:
        if value is not None and value < 0:
            raise ValueError(f"negative: {value}")
        return LONG.serialize(value)

    def deserialize(self, data: bytes | None) -> Any:
        return LONG.deserialize(data)


def _headers(rec: Any) -> dict[str, bytes]:
    return dict(rec.headers or [])


def picky_app(policy: str, on_processing_error: str = "fail") -> StreamsApp:
    app = StreamsApp("p", production_error=policy, dead_letter_topic="dlq", on_processing_error=on_processing_error)
    app.stream("in", STRING, LONG).map_values(lambda v: v - 10).to("out", STRING, Picky())
    return app


def test_serialization_error_fails_by_default() -> None:
    # not the processing handler's business: even with on_processing_error="skip" it stops the app
    with TestDriver(picky_app("fail", on_processing_error="skip")) as d:
        d.pipe("in", "a", 15)
        with pytest.raises(ProductionError, match=r"serialization of an output record to out failed: ValueError\('negative: -5'\)"):
            d.pipe("in", "b", 5)
        assert isinstance(ProductionError("x"), StreamsError)
        assert d.read("out", STRING, LONG) == [("a", 5)]


def test_serialization_error_skipped_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with TestDriver(picky_app("skip")) as d, caplog.at_level(logging.WARNING, "riverbed.streams"):
        d.pipe("in", "a", 5)
        d.pipe("in", "b", 20)
        assert d.read("out", STRING, LONG) == [("b", 10)]
        assert d.metrics()["production_errors"] == 1
        assert "dlq" not in d.outputs
        assert "serialization of an output record to out failed, skipped" in caplog.text


def test_serialization_error_to_dead_letter_topic() -> None:
    with TestDriver(picky_app("dead_letter")) as d:
        d.pipe_raw("in", b"a", LONG.serialize(5), 7, headers=[("h", b"1")])
        [dead] = d.outputs["dlq"]
        # the input record's bytes, as the other handlers' dead letters
        assert (dead.key, dead.value, dead.timestamp) == (b"a", LONG.serialize(5), 7)
        h = _headers(dead)
        assert h["h"] == b"1"
        assert h["__streams.errors.exception"] == b"builtins.ValueError: negative: -5"
        assert (h["__streams.errors.topic"], h["__streams.errors.partition"], h["__streams.errors.offset"]) == (b"in", b"0", b"0")
        assert d.metrics()["production_errors"] == 1


def test_policy_is_checked() -> None:
    with pytest.raises(StreamsError, match="production_error"):
        picky_app("ignore").topology()
    app = StreamsApp("p", production_error="dead_letter")
    app.stream("in").to("out")
    with pytest.raises(StreamsError, match="dead_letter_topic"):
        app.topology()


def windowed_app(on_error: str, side_output: bool = False) -> StreamsApp:
    app = StreamsApp("w", dead_letter_topic="dlq")
    t = (app.stream("in", STRING, STRING)
         .group_by_key(on_error=on_error)
         .windowed_by(TimeWindows.of(10))
         .count(name="c"))
    t.to_stream().map(lambda wk, n: (f"{wk.key}@{wk.window.start}", n)).to("out", STRING, LONG)
    if side_output:
        t.late_records().map_values(lambda lr: lr.record.value).to("late", STRING, STRING)
    return app


def test_late_and_keyless_records_to_dead_letter_topic(caplog: pytest.LogCaptureFixture) -> None:
    with TestDriver(windowed_app("dead_letter")) as d, caplog.at_level(logging.WARNING, "riverbed.streams"):
        d.pipe("in", "k", "a", timestamp=5)
        d.pipe("in", "k", "b", timestamp=25)
        d.pipe("in", "k", "late", timestamp=3)   # window [0, 10) closed at stream time 25
        d.pipe("in", None, "nokey", timestamp=26)
        assert d.read("out", STRING, LONG) == [("k@0", 1), ("k@20", 1)]
        late, nokey = d.outputs["dlq"]
        assert (late.key, late.value, late.timestamp) == (b"k", b"late", 3)
        h = _headers(late)
        assert h["__streams.errors.exception"].startswith(b"riverbed.streams.task.DroppedRecord: ")
        assert b"late record (timestamp 3, stream time 25) missed windows [(0, 10)]" in h["__streams.errors.message"]
        assert h["__streams.errors.offset"] == b"2"
        assert (nokey.key, nokey.value) == (None, b"nokey")
        assert b"without a key" in _headers(nokey)["__streams.errors.message"]
        m = d.metrics()
        assert (m["late_records"], m["skipped_records"], m["dead_lettered_records"]) == (1, 1, 2)
        assert "sent to dead-letter topic dlq" in caplog.text


def test_without_dead_letter_late_records_go_to_the_side_output_as_before() -> None:
    with TestDriver(windowed_app("skip", side_output=True)) as d:
        d.pipe("in", "k", "a", timestamp=5)
        d.pipe("in", "k", "b", timestamp=25)
        d.pipe("in", "k", "late", timestamp=3)
        assert d.read("late", STRING, STRING) == [("k", "late")]
        assert "dlq" not in d.outputs


@pytest.mark.parametrize("kind", ["session", "sliding", "plain"])
def test_other_aggregations_dead_letter_their_drops(kind: str) -> None:
    app = StreamsApp("o", dead_letter_topic="dlq")
    g = app.stream("in", STRING, STRING).group_by_key(on_error="dead_letter")
    if kind == "session":
        g.windowed_by(SessionWindows.with_inactivity_gap(5)).count(name="s")
    elif kind == "sliding":
        g.windowed_by(SlidingWindows.of(5)).count(name="s")
    else:
        g.aggregate(list, lambda _k, v, a: [*a, v], JSON, name="s")
    with TestDriver(app) as d:
        d.pipe("in", None, "nokey", timestamp=1)
        d.pipe("in", "k", "x", timestamp=100)
        d.pipe("in", "k", "old", timestamp=1)
        dead = [r.value for r in d.outputs.get("dlq", [])]
        assert dead == ([b"nokey"] if kind == "plain" else [b"nokey", b"old"])


def test_on_error_is_checked() -> None:
    app = StreamsApp("x")
    with pytest.raises(StreamsError, match="on_error"):
        app.stream("in").group_by_key(on_error="fail")
    app.stream("in").group_by_key(on_error="dead_letter").count(name="c")
    with pytest.raises(StreamsError, match="dead_letter_topic"):
        app.topology()


def test_app_wide_dead_letters_for_dropped_records() -> None:
    """dropped_records="dead_letter": tables, joins and aggregations send what they drop to
    the dead-letter topic; an aggregation's on_error="skip" keeps its drops to the log line."""
    from riverbed.streams import JoinWindows

    app = StreamsApp("d", dead_letter_topic="dlq", dropped_records="dead_letter")
    table = app.table("t", STRING, STRING, name="t")
    app.stream("s", STRING, STRING).join(table, lambda v, tv: f"{v}+{tv}").to("joined", STRING, STRING)
    left = app.stream("l", STRING, STRING)
    left.join(app.stream("r", STRING, STRING), lambda a, b: a + b, windows=JoinWindows.of(10)).to("ss", STRING, STRING)
    app.stream("agg", STRING, STRING).group_by_key(on_error="skip").count(name="c")
    with TestDriver(app) as d:
        d.pipe("t", None, "keyless-row", timestamp=1)
        d.pipe("s", None, "keyless-event", timestamp=1)
        d.pipe("l", "k", "x", timestamp=100)
        d.pipe("l", "k", "too-late", timestamp=50)
        d.pipe("agg", None, "kept-to-the-log", timestamp=1)
        assert [r.value for r in d.outputs["dlq"]] == [b"keyless-row", b"keyless-event", b"too-late"]
        assert [_headers(r)["__streams.errors.topic"] for r in d.outputs["dlq"]] == [b"t", b"s", b"l"]
        assert d.metrics()["skipped_records"] == 3
    with pytest.raises(StreamsError, match="dropped_records"):
        StreamsApp("d", dropped_records="dead_letter").topology()
