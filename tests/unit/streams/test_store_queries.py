"""The stores' read-only queries (Kafka's ReadOnlyKeyValueStore#range/all,
ReadOnlyWindowStore#fetch/fetchAll), through the test driver's stores; the runtime's
interactive queries use them (tests/integration/test_streams_query.py)."""

from __future__ import annotations

from riverbed.streams import (
    LONG,
    STRING,
    SessionWindows,
    StreamsApp,
    TestDriver,
    TimeWindows,
    Window,
)


def _app() -> StreamsApp:
    app = StreamsApp("q")
    g = app.stream("in", STRING, STRING).group_by_key()
    g.count(name="counts")
    g.windowed_by(TimeWindows.of(10), retention=1000).count(name="wcounts")
    g.windowed_by(SessionWindows.with_inactivity_gap(5), retention=1000).count(name="sessions")
    return app


def test_key_value_range_and_all() -> None:
    with TestDriver(_app()) as d:
        for k in ["b", "a", "d", "c", "a", "e"]:
            d.pipe("in", k, "x")
        st = d.store("counts")
        assert list(st.all()) == [("a", 2), ("b", 1), ("c", 1), ("d", 1), ("e", 1)]
        assert list(st.range("b", "d")) == [("b", 1), ("c", 1), ("d", 1)]  # both ends inclusive
        assert list(st.range("bb", "cc")) == [("c", 1)]
        assert list(st.range(None, "b")) == [("a", 2), ("b", 1)]
        assert list(st.range("d", None)) == [("d", 1), ("e", 1)]
        assert list(st.range("d", "b")) == []


def test_long_keys_range_follows_the_serialized_bytes() -> None:
    app = StreamsApp("ql")
    app.stream("in", LONG, STRING).group_by_key().count(name="n")
    with TestDriver(app) as d:
        for k in [5, 1, 300, 2]:
            d.pipe("in", k, "x")
        assert list(d.store("n").range(2, 300)) == [(2, 1), (5, 1), (300, 1)]


def test_window_fetch_and_fetch_all() -> None:
    with TestDriver(_app()) as d:
        for k, t in [("a", 1), ("a", 12), ("b", 15), ("a", 25), ("a", 27)]:
            d.pipe("in", k, "x", timestamp=t)
        ws = d.store("wcounts")
        assert ws.fetch("a", 0, 100) == [(Window(0, 10), 1), (Window(10, 20), 1), (Window(20, 30), 2)]
        assert ws.fetch("a", 10, 20) == [(Window(10, 20), 1), (Window(20, 30), 2)]  # by start time, inclusive
        assert ws.fetch("a", 11, 19) == []
        assert ws.fetch("nobody", 0, 100) == []
        assert ws.fetch_all(10, 19) == [("a", Window(10, 20), 1), ("b", Window(10, 20), 1)]


def test_session_find() -> None:
    with TestDriver(_app()) as d:
        for k, t in [("a", 1), ("a", 4), ("b", 3), ("a", 20)]:
            d.pipe("in", k, "x", timestamp=t)
        ss = d.store("sessions")
        found = [(Window(s, e), ss.value_serde.deserialize(v)) for s, e, v in ss.find(ss.key_bytes("a"), 0, 1 << 62)]
        assert found == [(Window(1, 4), 2), (Window(20, 20), 1)]
