"""The stateless DSL and stream/table aggregations through the test driver (no broker)."""

from __future__ import annotations

import json
import logging

import pytest

from riverbed.streams import JSON, LONG, STRING, StreamsApp, StreamsError, TestDriver


def test_filter_map_peek_to() -> None:
    app = StreamsApp("t")
    seen: list[tuple[str, int]] = []
    (app.stream("in", STRING, JSON)
        .filter(lambda _k, v: v["amount"] > 10)
        .map_values(lambda v: v["amount"] * 2)
        .peek(lambda k, v: seen.append((k, v)))
        .map(lambda k, v: (k.upper(), v), value_serde=LONG)
        .to("out"))
    with TestDriver(app) as d:
        d.pipe("in", "a", {"amount": 5}, 1)
        d.pipe("in", "b", {"amount": 50}, 2)
        assert d.read("out", STRING, LONG, with_timestamp=True) == [("B", 100, 2)]
    assert seen == [("b", 100)]


def test_flat_map_branch_merge() -> None:
    app = StreamsApp("t")
    words = app.stream("in", STRING, STRING).flat_map(lambda k, v: [(w, k) for w in v.split()])
    short, long_, _rest = words.branch(lambda k, _v: len(k) <= 2, lambda k, _v: len(k) >= 5, lambda _k, _v: True)
    short.to("short")
    long_.to("long")
    short.merge(long_).map_values(str.upper).to("both")
    with TestDriver(app) as d:
        d.pipe("in", "s", "ab abcdef abc x", 1)
        assert d.read("short", STRING, STRING) == [("ab", "s"), ("x", "s")]
        assert d.read("long", STRING, STRING) == [("abcdef", "s")]
        assert d.read("both", STRING, STRING) == [("ab", "S"), ("abcdef", "S"), ("x", "S")]


def test_branch_first_match_wins() -> None:
    app = StreamsApp("t")
    a, b = app.stream("in", STRING, LONG).branch(lambda _k, v: v > 0, lambda _k, v: v > 10)
    a.to("a")
    b.to("b")
    with TestDriver(app) as d:
        d.pipe("in", "k", 20, 1)
        assert d.read("a", STRING, LONG) == [("k", 20)]
        assert d.read("b", STRING, LONG) == []


def test_word_count_repartitions_through_internal_topic() -> None:
    app = StreamsApp("wc")
    (app.stream("lines", STRING, STRING)
        .flat_map_values(str.split)
        .group_by(lambda _k, w: w, key_serde=STRING)
        .count(name="counts")
        .to_stream()
        .to("counts-out", STRING, LONG))
    topo = app.topology()
    assert topo.repartition_topics == ["wc-counts-repartition"]
    assert len(topo.subtopologies) == 2
    with TestDriver(app) as d:
        d.pipe("lines", None, "the cat the dog", 1)
        d.pipe("lines", None, "the end", 2)
        assert d.read("counts-out", STRING, LONG) == [("the", 1), ("cat", 1), ("the", 2), ("dog", 1), ("the", 3), ("end", 1)]
        assert dict(d.store("counts").all()) == {"cat": 1, "dog": 1, "end": 1, "the": 3}  # type: ignore[union-attr]
        # every store write went to the compacted changelog, keyed like the store
        log = d.outputs["wc-counts-changelog"]
        assert [(r.key, LONG.deserialize(r.value)) for r in log][-1] == (b"end", 1)


def test_group_by_key_without_key_change_does_not_repartition() -> None:
    app = StreamsApp("t")
    app.stream("in", STRING, LONG).filter(lambda _k, v: v > 0).group_by_key().reduce(lambda a, b: a + b, name="sum")
    assert app.topology().repartition_topics == []
    app2 = StreamsApp("t")
    app2.stream("in", STRING, LONG).select_key(lambda _k, v: str(v)).group_by_key().count(name="c")
    assert app2.topology().repartition_topics == ["t-c-repartition"]


def test_reduce_and_aggregate() -> None:
    app = StreamsApp("t")
    g = app.stream("in", STRING, LONG).group_by_key()
    g.reduce(lambda a, b: max(a, b), name="max").to_stream().to("max", STRING, LONG)
    g.aggregate(lambda: {"n": 0, "sum": 0}, lambda _k, v, a: {"n": a["n"] + 1, "sum": a["sum"] + v}, JSON, name="avg") \
        .to_stream().map_values(lambda a: a["sum"] / a["n"]).to("avg", STRING, JSON)
    with TestDriver(app) as d:
        for v in (3, 9, 6):
            d.pipe("in", "k", v, 1)
        assert d.read("max", STRING, LONG) == [("k", 3), ("k", 9), ("k", 9)]
        assert d.read("avg", STRING, JSON) == [("k", 3.0), ("k", 6.0), ("k", 6.0)]


def test_table_latest_value_and_tombstone() -> None:
    app = StreamsApp("t")
    app.table("users", STRING, JSON, name="users").to_stream().to("users-out", STRING, JSON)
    with TestDriver(app) as d:
        d.pipe("users", "u1", {"name": "ann"}, 1)
        d.pipe("users", "u1", {"name": "bob"}, 2)
        d.pipe("users", "u2", {"name": "cy"}, 3)
        d.pipe("users", "u2", None, 4)
        st = d.store("users")
        assert st.get("u1") == {"name": "bob"}
        assert st.get("u2") is None
        assert d.read("users-out", STRING, JSON)[-1] == ("u2", None)


def test_records_without_key_are_skipped_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    app = StreamsApp("t")
    app.stream("in", STRING, STRING).group_by_key().count(name="c").to_stream().to("out", STRING, LONG)
    with TestDriver(app) as d, caplog.at_level(logging.WARNING, "riverbed.streams"):
        d.pipe("in", None, "x", 1)
        d.pipe("in", "k", "x", 2)
        assert d.read("out", STRING, LONG) == [("k", 1)]
        assert d.metrics()["skipped_records"] == 1
    assert "without a key" in caplog.text


def test_deserialization_errors_fail_or_skip(caplog: pytest.LogCaptureFixture) -> None:
    app = StreamsApp("t")
    app.stream("in", STRING, JSON).to("out")
    with TestDriver(app) as d, pytest.raises(StreamsError, match="deserialization of in-0@0 failed"):
        d.pipe_raw("in", b"k", b"{not json", 1)
    app2 = StreamsApp("t")
    app2.stream("in", STRING, JSON, on_error="skip").to("out")
    with TestDriver(app2) as d, caplog.at_level(logging.WARNING, "riverbed.streams"):
        d.pipe_raw("in", b"k", b"{not json", 1)
        d.pipe_raw("in", b"k", json.dumps([1]).encode(), 2)
        assert d.read("out", STRING, JSON) == [("k", [1])]
        assert d.metrics()["deserialization_errors"] == 1
    assert "deserialization of in-0@0 failed, skipped" in caplog.text


def test_timestamp_extractor_and_negative_timestamps() -> None:
    app = StreamsApp("t")
    app.stream("in", STRING, JSON, timestamp_extractor=lambda r, _pt: r.value["ts"]).to("out")
    with TestDriver(app) as d:
        d.pipe("in", "a", {"ts": 42}, 1)
        d.pipe("in", "a", {"ts": -5}, 2)
        assert d.read("out", STRING, JSON, with_timestamp=True) == [("a", {"ts": 42}, 42)]
        assert d.metrics()["skipped_records"] == 1


def test_bad_topologies_are_refused() -> None:
    app = StreamsApp("t")
    app.stream("in")
    app.stream("in")
    with pytest.raises(StreamsError, match="source twice"):
        app.topology()
    app2 = StreamsApp("t")
    s = app2.stream("in", STRING, STRING)
    s.group_by_key().count(name="c")
    with pytest.raises(StreamsError, match="used twice"):
        s.group_by_key().count(name="c")
    with pytest.raises(StreamsError, match="emit"):
        s.group_by_key().windowed_by(__import__("riverbed.streams").streams.TimeWindows.of(10), emit="sometimes")
