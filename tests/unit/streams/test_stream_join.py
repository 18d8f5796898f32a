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


# asymmetric windows (Kafka's JoinWindows#before / #after): a left record at t joins right
# records in [t - before, t + after]; a right record at t' joins left ones in [t' - after, t' + before]
AFTER_10 = JoinWindows.of(0, grace=100).after(10)


@pytest.mark.parametrize(("windows", "steps", "expected"), [
    (AFTER_10,
     [("left", "a", 100), ("right", "x", 95), ("right", "y", 105), ("right", "z", 111), ("left", "b", 112),
      ("right", "w", 115), ("left", "c", 90)],
     [("k", "a+y", 105), ("k", "b+w", 115), ("k", "c+x", 95)]),
    (AFTER_10.before(-5),  # right records 5 to 10 ms after the left one
     [("left", "a", 100), ("right", "x", 104), ("right", "y", 105), ("right", "z", 110), ("right", "u", 111)],
     [("k", "a+y", 105), ("k", "a+z", 110)]),
    (JoinWindows.of(10, grace=100).before(0),  # the same as after(10) alone
     [("left", "a", 100), ("right", "x", 95), ("right", "y", 105), ("right", "z", 111)],
     [("k", "a+y", 105)]),
])
def test_asymmetric_windows(windows: JoinWindows, steps: list[tuple[str, str, int]], expected: list[object]) -> None:
    got, _ = run("inner", steps, windows)
    assert got == expected


def test_asymmetric_windows_close_and_lateness_per_side() -> None:
    """With before 0 and after 10, a right record is late once t' + 0 + grace < stream time,
    a left one once t + 10 + grace < stream time; a left join emits an unmatched left record
    when t + 10 + grace < stream time."""
    w = JoinWindows.of(0).after(10)
    got, metrics = run("inner", [("left", "a", 100), ("right", "r", 99), ("left", "b", 91), ("right", "s", 100)], w)
    assert got == [("k", "b+s", 100), ("k", "a+s", 100)]
    assert metrics["late_records"] == 1  # r
    got, _ = run("left", [("left", "a", 100), ("right", "y", 110), ("right", "z", 111)], w)
    assert got == [("k", "a+y", 110)]
    got, _ = run("left", [("left", "a", 100), ("right", "y", 120)], w)
    assert got == [("k", "a+-", 100)]


def test_negative_window_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        JoinWindows.of(0).before(-1)
    with pytest.raises(ValueError, match="must not be negative"):
        JoinWindows.of(5).after(-6)
    assert JoinWindows.of(5).after(-5) == JoinWindows(5, -5, 0)
