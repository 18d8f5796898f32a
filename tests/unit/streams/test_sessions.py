"""Session windows against Kafka Streams' documented semantics, through the test driver:
sessions are [start, end] (inclusive) per key, merged when a record falls within the
inactivity gap of one or more sessions; closed once end < stream time - gap - grace."""

from __future__ import annotations

from typing import Any

import pytest

from riverbed.streams import LONG, STRING, SessionWindows, StreamsApp, TestDriver
from riverbed.streams.sessions import SessionStore
from riverbed.streams.stores import MemoryEngine


def _app(windows: SessionWindows, emit: str) -> StreamsApp:
    app = StreamsApp("s")
    t = app.stream("clicks", STRING, STRING).group_by_key().windowed_by(windows, emit=emit).count(name="sessions")
    t.to_stream().map(lambda wk, n: (f"{wk.key}@{wk.window.start}-{wk.window.end}", n)).to("out", STRING, LONG)
    t.late_records().map_values(lambda lr: str(lr.record.timestamp), STRING).to("late")
    return app


def run(windows: SessionWindows, emit: str, inputs: list[tuple[str, int]]) -> tuple[list[Any], list[Any]]:
    with TestDriver(_app(windows, emit)) as d:
        for k, ts in inputs:
            d.pipe("clicks", k, "x", ts)
        return d.read("out", STRING, LONG, with_timestamp=True), d.read("late", STRING, STRING)


def test_sessions_merge_on_update() -> None:
    # grace 10 keeps [0,3] open at stream time 10 (close = 10 - 5 - 10), so 6 can bridge it
    out, late = run(SessionWindows.with_inactivity_gap(5, grace=10), "on_update", [("A", 0), ("A", 3), ("A", 10), ("A", 6)])
    assert out == [
        ("A@0-0", 1, 0),
        ("A@0-0", None, 0), ("A@0-3", 2, 3),                          # [0,0] grows to [0,3]
        ("A@10-10", 1, 10),                                           # 10 - 3 > gap: a new session
        ("A@0-3", None, 3), ("A@10-10", None, 10), ("A@0-10", 4, 10),  # 6 bridges both
    ]
    assert late == []


def test_without_grace_a_closed_session_is_not_bridged() -> None:
    """At stream time 10 [0,3] is closed (3 < 10 - 5) and gone from the store (retention
    gap + grace): 6 joins [10,10] only, as in Kafka Streams."""
    out, _ = run(SessionWindows.with_inactivity_gap(5), "on_update", [("A", 0), ("A", 3), ("A", 10), ("A", 6)])
    assert [(k, v) for k, v, _ in out][-2:] == [("A@10-10", None), ("A@6-10", 2)]


def test_gap_is_inclusive() -> None:
    out, _ = run(SessionWindows.with_inactivity_gap(5), "on_update", [("A", 0), ("A", 5), ("A", 11)])
    assert [(k, v) for k, v, _ in out if v is not None] == [("A@0-0", 1), ("A@0-5", 2), ("A@11-11", 1)]


def test_sessions_are_per_key() -> None:
    out, _ = run(SessionWindows.with_inactivity_gap(5), "on_update", [("A", 0), ("B", 1), ("A", 2)])
    assert [(k, v) for k, v, _ in out if v is not None] == [("A@0-0", 1), ("B@1-1", 1), ("A@0-2", 2)]


@pytest.mark.parametrize(
    ("grace", "inputs", "expected_late"),
    [
        (0, [("B", 100), ("B", 80)], ["80"]),   # close = 100 - 5 = 95; [80,80] ends before it
        (0, [("B", 100), ("B", 92)], ["92"]),   # 92 does not reach [100,100] (100 > 92 + 5): late on its own
        (0, [("B", 100), ("B", 96)], []),       # 96 merges into [96,100]: not late
        (20, [("B", 100), ("B", 80)], []),      # grace 20: close = 75
    ],
)
def test_late_sessions(grace: int, inputs: list[tuple[str, int]], expected_late: list[str]) -> None:
    _out, late = run(SessionWindows.with_inactivity_gap(5, grace=grace), "on_update", inputs)
    assert late == [("B", x) for x in expected_late]


def test_final_results_on_session_close() -> None:
    out, _ = run(SessionWindows.with_inactivity_gap(5), "on_window_close",
                 [("A", 0), ("A", 3), ("B", 4), ("A", 20), ("A", 24), ("A", 30)])
    # at stream time 20 (close 15) A[0,3] and B[4,4] close; at 30 (close 25) A[20,24] closes
    assert out == [("A@0-3", 2, 3), ("B@4-4", 1, 4), ("A@20-24", 2, 24)]


def test_session_reduce_merges_with_the_reducer() -> None:
    app = StreamsApp("s")
    (app.stream("v", STRING, LONG).group_by_key()
        .windowed_by(SessionWindows.with_inactivity_gap(15, grace=20)).reduce(max, name="mx")
        .to_stream().filter(lambda _k, v: v is not None)
        .map(lambda wk, v: (f"{wk.window.start}-{wk.window.end}", v)).to("out", STRING, LONG))
    with TestDriver(app) as d:
        for ts, v in [(0, 5), (30, 7), (15, 1)]:
            d.pipe("v", "k", v, ts)
        assert d.read("out", STRING, LONG)[-1] == ("0-30", 7)


def test_changelog_rebuilds_the_session_store() -> None:
    app = _app(SessionWindows.with_inactivity_gap(5, grace=100), "on_update")  # nothing expires
    with TestDriver(app) as d:
        for k, ts in [("A", 0), ("A", 3), ("B", 4), ("A", 10), ("A", 6), ("C", 40)]:
            d.pipe("clicks", k, "x", ts)
        original = list(d.store("sessions").all())
        log = d.outputs["s-sessions-changelog"]
    restored = MemoryEngine()
    restored.put_many([(r.key, r.value) for r in log if r.key is not None])
    st = SessionStore("sessions", restored, STRING, LONG, None)
    assert list(st.all()) == original
    assert [(k, s, e) for k, s, e, _v in st.ended_between(0, 100)] == [(b"B", 4, 4), (b"A", 0, 10), (b"C", 40, 40)]


def test_session_definitions_are_checked() -> None:
    with pytest.raises(ValueError):
        SessionWindows.with_inactivity_gap(0)
    with pytest.raises(ValueError):
        SessionWindows.with_inactivity_gap(5, grace=-1)


def test_sessions_close_on_wall_clock_when_idle() -> None:
    app = StreamsApp("s")
    (app.stream("clicks", STRING, STRING).group_by_key()
        .windowed_by(SessionWindows.with_inactivity_gap(5_000), emit="on_window_close", close_after_idle=1_000)
        .count(name="sessions")
        .to_stream().map(lambda wk, n: (f"{wk.key}@{wk.window.start}-{wk.window.end}", n)).to("out", STRING, LONG))
    with TestDriver(app, wall_clock_ms=50_000) as d:
        d.pipe("clicks", "A", "x", 1_000)
        d.pipe("clicks", "A", "x", 2_000)
        d.advance_wall_clock(900)
        assert d.read("out", STRING, LONG) == []
        d.advance_wall_clock(4_100)  # idle 5 s: stream time 7 s, close = 2 s: end 2 s is not < 2 s
        assert d.read("out", STRING, LONG) == []
        d.advance_wall_clock(1)
        assert d.read("out", STRING, LONG) == [("A@1000-2000", 2)]
        d.pipe("clicks", "A", "x", 1_500)  # its session closed on the wall clock: late
        assert d.metrics()["late_records"] == 1
