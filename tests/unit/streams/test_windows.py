"""Windowed aggregations against Kafka Streams' documented semantics, through the test driver.

Windows are ``[start, end)``; hopping windows start at multiples of the advance; a window
closes when ``end + grace <= stream time``; records for closed windows are late.
"""

from __future__ import annotations

import logging

import pytest

from riverbed.streams import LONG, STRING, LateRecord, StreamsApp, TestDriver, TimeWindows, Window

from .window_cases import CASES  # shared with tests/integration/test_streams_windows.py

S = 1000


@pytest.mark.parametrize(
    ("windows", "ts", "expected"),
    [
        (TimeWindows.of(5 * S), 0, [(0, 5000)]),
        (TimeWindows.of(5 * S), 4999, [(0, 5000)]),
        (TimeWindows.of(5 * S), 5000, [(5000, 10000)]),  # end is exclusive
        (TimeWindows.of(5 * S).advance_by(1 * S), 8000,
         [(4000, 9000), (5000, 10000), (6000, 11000), (7000, 12000), (8000, 13000)]),
        (TimeWindows.of(5 * S).advance_by(1 * S), 2500, [(0, 5000), (1000, 6000), (2000, 7000)]),  # no negative starts
        (TimeWindows.of(10).advance_by(3), 10, [(3, 13), (6, 16), (9, 19)]),
    ],
)
def test_window_assignment(windows: TimeWindows, ts: int, expected: list[tuple[int, int]]) -> None:
    assert windows.windows_for(ts) == [Window(a, b) for a, b in expected]


def test_window_definitions_are_checked() -> None:
    with pytest.raises(ValueError):
        TimeWindows.of(0)
    with pytest.raises(ValueError):
        TimeWindows.of(10).advance_by(11)
    with pytest.raises(ValueError):
        TimeWindows.of(10, grace=-1)


def _app(windows: TimeWindows, emit: str, idle: int | None = None, late: bool = False) -> StreamsApp:
    app = StreamsApp("w")
    table = (app.stream("clicks", STRING, STRING)
             .group_by_key()
             .windowed_by(windows, emit=emit, close_after_idle=idle)
             .count(name="counts"))
    table.to_stream().map(lambda wk, n: (f"{wk.key}@{wk.window.start}-{wk.window.end}", n)).to("out", STRING, LONG)
    if late:
        table.late_records().map_values(lambda lr: f"{lr.record.timestamp}:{len(lr.missed_windows)}", STRING).to("late")
    return app




@pytest.mark.parametrize(("name", "windows", "emit", "inputs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_windowed_count(name: str, windows: TimeWindows, emit: str, inputs: list[tuple[str, int]],
                        expected: list[tuple[str, int]]) -> None:
    with TestDriver(_app(windows, emit)) as d:
        for key, ts in inputs:
            d.pipe("clicks", key, "x", ts)
        assert d.read("out", STRING, LONG) == expected


def test_final_results_carry_the_largest_record_timestamp_and_are_emitted_once() -> None:
    # Kafka: an aggregation's result carries the largest timestamp of the records that made it,
    # for final results (suppress / onWindowClose) too, not the window's end
    with TestDriver(_app(TimeWindows.of(10, grace=5), "on_window_close")) as d:
        d.pipe("clicks", "a", "x", 5)
        d.pipe("clicks", "a", "x", 7)
        d.pipe("clicks", "a", "x", 3)  # out of order: the largest stays 7
        d.pipe("clicks", "a", "x", 10)
        d.pipe("clicks", "b", "x", 12)
        d.pipe("clicks", "a", "x", 25)
        d.pipe("clicks", "a", "x", 36)
        assert d.read("out", STRING, LONG, with_timestamp=True) == [("a@0-10", 3, 7), ("a@10-20", 1, 10),
                                                                    ("b@10-20", 1, 12), ("a@20-30", 1, 25)]


def test_on_update_results_carry_the_largest_timestamp_so_far() -> None:
    with TestDriver(_app(TimeWindows.of(10), "on_update")) as d:
        d.pipe("clicks", "a", "x", 8)
        d.pipe("clicks", "a", "x", 2)  # out of order in the same window
        d.pipe("clicks", "a", "x", 9)
        assert d.read("out", STRING, LONG, with_timestamp=True) == [("a@0-10", 1, 8), ("a@0-10", 2, 8), ("a@0-10", 3, 9)]


def test_hopping_final_results_carry_each_windows_own_largest_timestamp() -> None:
    with TestDriver(_app(TimeWindows.of(10).advance_by(5), "on_window_close")) as d:
        d.pipe("clicks", "a", "x", 3)
        d.pipe("clicks", "a", "x", 7)  # in [0,10) and [5,15)
        d.pipe("clicks", "a", "x", 13)  # in [5,15) and [10,20)
        d.pipe("clicks", "a", "x", 40)
        assert d.read("out", STRING, LONG, with_timestamp=True) == [
            ("a@0-10", 2, 7), ("a@5-15", 2, 13), ("a@10-20", 1, 13)]


def test_late_records_go_to_the_side_output() -> None:
    with TestDriver(_app(TimeWindows.of(10).advance_by(5), "on_update", late=True)) as d:
        d.pipe("clicks", "a", "x", 30)
        d.read("out", STRING, LONG)
        d.pipe("clicks", "a", "x", 28)  # windows [20,30) and [25,35): [20,30) closed (30 <= 30), [25,35) open
        assert d.read("out", STRING, LONG) == [("a@25-35", 2)]
        d.pipe("clicks", "a", "x", 3)  # all windows closed
        assert d.read("out", STRING, LONG) == []
        assert d.read("late", STRING, STRING) == [("a", "28:1"), ("a", "3:1")]
        assert d.metrics()["late_records"] == 2


def test_late_records_without_side_output_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with TestDriver(_app(TimeWindows.of(10), "on_update")) as d, caplog.at_level(logging.WARNING, "riverbed.streams"):
        d.pipe("clicks", "a", "x", 30)
        d.pipe("clicks", "a", "x", 3)
        assert d.metrics()["late_records"] == 1
    assert "late record" in caplog.text and "timestamp 3" in caplog.text


def test_windows_close_on_wall_clock_when_no_later_record_arrives() -> None:
    with TestDriver(_app(TimeWindows.of(10 * S), "on_window_close", idle=2 * S), wall_clock_ms=1_000_000) as d:
        d.pipe("clicks", "a", "x", 1 * S)
        d.pipe("clicks", "a", "x", 2 * S)
        d.advance_wall_clock(1 * S)  # idle for less than close_after_idle: nothing moves
        assert d.read("out", STRING, LONG) == []
        d.advance_wall_clock(7 * S)  # idle 8 s: stream time 2 s + 8 s = 10 s, window [0, 10 s) closes
        assert d.read("out", STRING, LONG) == [("a@0-10000", 2)]
        d.advance_wall_clock(60 * S)
        assert d.read("out", STRING, LONG) == []  # emitted once
        d.pipe("clicks", "a", "x", 5 * S)  # its window closed on the wall clock: late
        assert d.metrics()["late_records"] == 1


def test_without_close_after_idle_the_wall_clock_does_not_close_windows() -> None:
    with TestDriver(_app(TimeWindows.of(10 * S), "on_window_close")) as d:
        d.pipe("clicks", "a", "x", 1 * S)
        d.advance_wall_clock(3600 * S)
        assert d.read("out", STRING, LONG) == []


def test_retention_expires_old_windows_from_the_store() -> None:
    with TestDriver(_app(TimeWindows.of(10).advance_by(5), "on_update")) as d:
        for ts in range(0, 200, 3):
            d.pipe("clicks", "a", "x", ts)
        starts = [start for _k, start, _v in d.store("counts").all()]  # type: ignore[union-attr]
        assert min(starts) == 190  # kept: start >= 198 - retention (10) + 1 = 189; 185 expired
        assert LateRecord  # exported


def test_rolling_average_over_hopping_windows() -> None:
    """The lecture's 'rolling 60-second average transaction cost', every 10 s."""
    from riverbed.streams import JSON

    app = StreamsApp("avg")
    (app.stream("tx", STRING, JSON)
        .group_by(lambda _k, _v: "all", key_serde=STRING)
        .windowed_by(TimeWindows.of(60 * S).advance_by(10 * S), emit="on_window_close")
        .aggregate(lambda: [0, 0.0], lambda _k, v, a: [a[0] + 1, a[1] + v["cost"]], JSON, name="cost")
        .to_stream()
        .map(lambda wk, a: (str(wk.window.start // S), round(a[1] / a[0], 2)), value_serde=JSON)
        .to("avg-cost", STRING, JSON))
    with TestDriver(app) as d:
        for ts, cost in [(5, 10.0), (15, 20.0), (55, 30.0), (65, 40.0), (200, 1.0)]:
            d.pipe("tx", "t", {"cost": cost}, ts * S)
        got = dict(d.read("avg-cost", STRING, JSON))
    # windows [0,60): 10,20,30 -> 20; [10,70): 20,30,40 -> 30; [60,120): 40
    assert got["0"] == 20.0 and got["10"] == 30.0 and got["60"] == 40.0 and got["50"] == 35.0
