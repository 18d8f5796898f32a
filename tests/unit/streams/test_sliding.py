"""Sliding windows (Kafka's SlidingWindows) through the test driver: windows [start, start + d]
(both ends inclusive) ending at each record or starting just after it; records earlier than d
share [0, d]; a window with end < stream time - grace is closed. Outputs are compared per input
record as sets: riverbed emits a record's window updates by window start, Kafka in the order its
incremental algorithm touches them."""

from __future__ import annotations

from typing import Any

import pytest

from riverbed.streams import LONG, STRING, SlidingWindows, StreamsApp, StreamsError, TestDriver


def _app(windows: SlidingWindows, emit: str = "on_update") -> StreamsApp:
    app = StreamsApp("sl")
    t = app.stream("clicks", STRING, STRING).group_by_key().windowed_by(windows, emit=emit).count(name="sliding")
    t.to_stream().map(lambda wk, n: (f"{wk.key}@{wk.window.start}-{wk.window.end}", n)).to("out", STRING, LONG)
    t.late_records().map_values(lambda lr: ",".join(f"{w.start}-{w.end}" for w in lr.missed_windows), STRING).to("late")
    return app


def run(windows: SlidingWindows, inputs: list[tuple[str, int]], emit: str = "on_update") -> tuple[list[Any], list[Any]]:
    per_record = []
    with TestDriver(_app(windows, emit)) as d:
        for k, ts in inputs:
            d.pipe("clicks", k, "x", ts)
            per_record.append(set(d.read("out", STRING, LONG)))
        return per_record, d.read("late", STRING, STRING)


D10 = SlidingWindows.of(10, grace=100)

CASES = [
    ("in-order", D10, [("A", 20), ("A", 25), ("A", 40)],
     [{("A@10-20", 1)}, {("A@15-25", 2), ("A@21-31", 1)}, {("A@30-40", 1)}]),
    ("out-of-order", D10, [("A", 20), ("A", 30), ("A", 25)],
     [{("A@10-20", 1)}, {("A@20-30", 2), ("A@21-31", 1)},
      {("A@15-25", 2), ("A@20-30", 3), ("A@21-31", 2), ("A@26-36", 1)}]),
    ("early-records", D10, [("A", 3), ("A", 7), ("A", 15)],
     [{("A@0-10", 1)}, {("A@0-10", 2), ("A@4-14", 1)}, {("A@5-15", 2), ("A@8-18", 1)}]),
    ("per-key", D10, [("A", 20), ("B", 22), ("A", 24)],
     [{("A@10-20", 1)}, {("B@12-22", 1)}, {("A@14-24", 2), ("A@21-31", 1)}]),
    ("same-timestamp", D10, [("A", 20), ("A", 20)],
     [{("A@10-20", 1)}, {("A@10-20", 2)}]),
]


@pytest.mark.parametrize(("name", "windows", "inputs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_sliding_windows(name: str, windows: SlidingWindows, inputs: list[tuple[str, int]], expected: list[Any]) -> None:
    got, late = run(windows, inputs)
    assert got == expected
    assert late == []


def test_late_and_partly_late_records() -> None:
    got, late = run(SlidingWindows.of(10), [("A", 50), ("A", 35), ("A", 45)])
    # close = 50: 35 + 1 + 10 <= 50, all its windows are closed; 45's left window [35,45] is
    # closed, [40,50] is not, and its right window [46,56] is new
    assert got == [{("A@40-50", 1)}, set(), {("A@40-50", 2), ("A@46-56", 1)}]
    assert late == [("A", "25-35"), ("A", "35-45")]


def test_final_results() -> None:
    got, _ = run(SlidingWindows.of(10), [("A", 20), ("A", 25), ("A", 40), ("A", 60)], emit="on_window_close")
    # close = stream time: at 25 [10,20] has closed, at 40 [15,25] and [21,31], at 60 [30,40]
    assert got == [set(), {("A@10-20", 1)}, {("A@15-25", 2), ("A@21-31", 1)}, {("A@30-40", 1)}]


def test_old_records_and_windows_are_expired() -> None:
    with TestDriver(_app(SlidingWindows.of(10))) as d:
        for ts in range(100, 400, 7):
            d.pipe("clicks", "A", "x", ts)
        st = d.store("sliding")
        starts = [s for _k, s, _v in st.all()]
        kept_records = [raw for raw, _ in st.engine.range(b"\x03", b"\x04")]
    assert min(starts) >= 394 - 10 - 10  # nothing closed stays: close = 394, windows end >= 394
    assert 0 < len(kept_records) <= 5


def test_sliding_windows_are_checked() -> None:
    with pytest.raises(ValueError):
        SlidingWindows.of(0)
    app = StreamsApp("sl")
    g = app.stream("in", STRING, STRING).group_by_key()
    with pytest.raises(StreamsError, match="not offered for sliding"):
        g.windowed_by(SlidingWindows.of(10), close_after_idle=5)  # type: ignore[call-overload]


def test_final_sliding_results_carry_the_largest_record_timestamp() -> None:
    app = StreamsApp("s-ts")
    (app.stream("in", STRING, STRING).group_by_key()
        .windowed_by(SlidingWindows.of(10), emit="on_window_close").count(name="c")
        .to_stream().map(lambda wk, n: (f"{wk.key}@{wk.window.start}-{wk.window.end}", n)).to("out", STRING, LONG))
    with TestDriver(app) as d:
        for t in [20, 24, 27, 50]:
            d.pipe("in", "a", "x", timestamp=t)
        # right windows [21, 31] and [25, 35] hold records up to 27: that is their timestamp, not their end
        assert d.read("out", STRING, LONG, with_timestamp=True) == [
            ("a@10-20", 1, 20), ("a@14-24", 2, 24), ("a@17-27", 3, 27), ("a@21-31", 2, 27), ("a@25-35", 1, 27)]
