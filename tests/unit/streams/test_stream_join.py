"""Windowed stream-stream joins through the test driver, against Kafka Streams' semantics:
records join when |t_left - t_right| <= the time difference (bounds inclusive), the output
timestamp is the larger of the two; left/outer joins emit a record without a partner (with
None) once its window has closed; records late on arrival are dropped with a log line."""

from __future__ import annotations

import pytest

from riverbed.streams import STRING, JoinWindows, StreamsApp, StreamsError, TestDriver

W10 = JoinWindows.of(10)


def _app(how: str, windows: JoinWindows = W10) -> StreamsApp:
    app = StreamsApp("ss")
    left = app.stream("left", STRING, STRING)
    right = app.stream("right", STRING, STRING)

    def joiner(a: str | None, b: str | None) -> str:
        return f"{a or '-'}+{b or '-'}"

    if how == "inner":
        out = left.join(right, joiner, windows=windows, value_serde=STRING)
    elif how == "left":
        out = left.left_join(right, joiner, windows=windows, value_serde=STRING)
    else:
        out = left.outer_join(right, joiner, windows, value_serde=STRING)
    out.to("joined", STRING, STRING)
    return app


def run(how: str, steps: list[tuple[str, str, int]], windows: JoinWindows = W10) -> tuple[list[object], dict[str, int]]:
    with TestDriver(_app(how, windows)) as d:
        for topic, value, ts in steps:
            d.pipe(topic, "k", value, ts)
        return d.read("joined", STRING, STRING, with_timestamp=True), d.metrics()


STEPS = [("left", "a", 100), ("right", "x", 105), ("left", "b", 200), ("right", "y", 300), ("left", "c", 400)]


@pytest.mark.parametrize(("how", "expected"), [
    ("inner", [("k", "a+x", 105)]),
    ("left", [("k", "a+x", 105), ("k", "b+-", 200)]),
    ("outer", [("k", "a+x", 105), ("k", "b+-", 200), ("k", "-+y", 300)]),
])
def test_join_kinds(how: str, expected: list[object]) -> None:
    got, _ = run(how, STEPS)
    assert got == expected


def test_window_bounds_are_inclusive() -> None:
    steps = [("left", "a", 100), ("right", "x", 110), ("right", "y", 111), ("right", "z", 90), ("right", "w", 89)]
    got, _ = run("inner", steps, JoinWindows.of(10, grace=50))  # grace: z and w are not late
    assert got == [("k", "a+x", 110), ("k", "a+z", 100)]


def test_every_partner_joins_in_time_order() -> None:
    got, _ = run("inner", [("left", "a", 100), ("left", "b", 105), ("right", "x", 106)])
    assert got == [("k", "a+x", 106), ("k", "b+x", 106)]


def test_late_records_are_dropped_and_counted() -> None:
    got, metrics = run("left", [("left", "a", 100), ("right", "x", 130), ("left", "c", 100)])
    # x@130 closes a's window (100 + 10 < 130): a is emitted without a partner; c@100 is late
    assert got == [("k", "a+-", 100)]
    assert metrics["late_records"] == 1


def test_grace_keeps_windows_open() -> None:
    got, metrics = run("inner", [("left", "a", 100), ("right", "x", 130), ("right", "y", 105)], JoinWindows.of(10, grace=30))
    assert got == [("k", "a+y", 105)] and "late_records" not in metrics


def test_stream_join_needs_windows() -> None:
    app = StreamsApp("ss")
    a, b = app.stream("a", STRING, STRING), app.stream("b", STRING, STRING)
    with pytest.raises(StreamsError, match="JoinWindows"):
        a.join(b, lambda x, y: x)
    a.join(b, lambda x, y: x, windows=JoinWindows.of(5))
    topo = app.topology()
    assert topo.sub_for_topic["a"] is topo.sub_for_topic["b"]
    assert sorted(s.name for s in topo.sub_for_topic["a"].stores) == ["join-0000000002-left-buffer", "join-0000000002-right-buffer"]
