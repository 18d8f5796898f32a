"""The processor API through the test driver: state stores, forward, stream-time and
wall-clock punctuation."""

from __future__ import annotations

import pytest

from riverbed.streams import (
    LONG,
    STRING,
    Processor,
    ProcessorContext,
    Record,
    StreamsApp,
    StreamsError,
    TestDriver,
)


class Dedup(Processor):
    def init(self, ctx: ProcessorContext) -> None:
        self.ctx = ctx
        self.seen = ctx.get_store("seen")

    def process(self, record: Record) -> None:
        if self.seen.get(record.key) is None:
            self.seen.put(record.key, record.timestamp)
            self.ctx.forward(record.key, record.value, record.timestamp)


def test_processor_with_a_store() -> None:
    app = StreamsApp("p")
    app.add_state_store("seen", STRING, LONG)
    app.stream("in", STRING, STRING).process(Dedup, stores=["seen"]).to("out")
    with TestDriver(app) as d:
        for k, ts in [("a", 1), ("b", 2), ("a", 3)]:
            d.pipe("in", k, f"v{ts}", ts)
        assert d.read("out", STRING, STRING, with_timestamp=True) == [("a", "v1", 1), ("b", "v2", 2)]
        assert d.store("seen").get("a") == 1
        assert [r.key for r in d.outputs["p-seen-changelog"]] == [b"a", b"b"]  # logged like any store


class Buffer(Processor):
    """Sums values and flushes the sum on stream-time and wall-clock punctuation."""

    def init(self, ctx: ProcessorContext) -> None:
        self.ctx = ctx
        self.total = 0
        ctx.schedule(10, "stream_time", lambda t: self.flush(f"stream@{t}"))
        ctx.schedule(1000, "wall_clock", lambda t: self.flush(f"wall@{t}"))

    def process(self, record: Record) -> None:
        self.total += record.value

    def flush(self, why: str) -> None:
        self.ctx.forward(why, self.total)
        self.total = 0


def test_punctuation() -> None:
    app = StreamsApp("p")
    app.stream("in", STRING, LONG).process(Buffer).to("out", STRING, LONG)
    with TestDriver(app, wall_clock_ms=5000) as d:
        d.advance_wall_clock(0)   # first tick starts the wall-clock schedule at 5000
        d.pipe("in", "k", 1, 0)   # first record starts the stream-time schedule at 0
        d.pipe("in", "k", 2, 5)
        assert d.read("out", STRING, LONG) == []
        d.pipe("in", "k", 3, 25)  # stream time jumped past two intervals: fires once
        assert d.read("out", STRING, LONG) == [("stream@25", 6)]
        d.pipe("in", "k", 4, 30)
        assert d.read("out", STRING, LONG) == []
        d.pipe("in", "k", 5, 35)
        assert d.read("out", STRING, LONG) == [("stream@35", 9)]
        d.pipe("in", "k", 7, 36)
        d.advance_wall_clock(999)
        assert d.read("out", STRING, LONG) == []
        d.advance_wall_clock(1)
        assert d.read("out", STRING, LONG) == [("wall@6000", 7)]


def test_processor_declares_its_stores() -> None:
    app = StreamsApp("p")
    with pytest.raises(StreamsError, match="not defined"):
        app.stream("in").process(Dedup, stores=["nope"])
    app = StreamsApp("p")
    app.add_state_store("seen", STRING, LONG)
    app.add_state_store("other", STRING, LONG)
    app.stream("in", STRING, STRING).process(Dedup, stores=["other"])
    with pytest.raises(StreamsError, match="did not declare store 'seen'"), TestDriver(app):
        pass


def test_processor_output_is_rekeyed_for_grouping() -> None:
    app = StreamsApp("p")
    app.add_state_store("seen", STRING, LONG)
    app.stream("in", STRING, STRING).process(Dedup, stores=["seen"]).group_by_key().count(name="c")
    assert app.topology().repartition_topics == ["p-c-repartition"]
