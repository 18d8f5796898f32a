"""The time-window table shared by the driver tests (test_windows.py) and the end-to-end run
(tests/integration/test_streams_windows.py): Kafka Streams' documented semantics on fixed input."""

from __future__ import annotations

from riverbed.streams import TimeWindows

CASES = [
    # (name, windows, emit, [(key, ts)], expected outputs "key@start-end" -> count, in order)
    ("tumbling-update", TimeWindows.of(10), "on_update",
     [("a", 1), ("a", 9), ("b", 3), ("a", 10), ("b", 11)],
     [("a@0-10", 1), ("a@0-10", 2), ("b@0-10", 1), ("a@10-20", 1), ("b@10-20", 1)]),
    ("tumbling-final", TimeWindows.of(10), "on_window_close",
     [("a", 1), ("a", 9), ("b", 3), ("a", 10), ("a", 19), ("a", 20)],
     [("a@0-10", 2), ("b@0-10", 1), ("a@10-20", 2)]),
    ("hopping-update", TimeWindows.of(10).advance_by(5), "on_update",
     [("a", 7)],
     [("a@0-10", 1), ("a@5-15", 1)]),
    ("hopping-final", TimeWindows.of(10).advance_by(5), "on_window_close",
     [("a", 1), ("a", 7), ("a", 12), ("a", 20)],
     [("a@0-10", 2), ("a@5-15", 2), ("a@10-20", 1)]),
    # grace 5: window [0,10) stays open until stream time 15; the record at 3 (stream time 14) counts
    ("grace-accepts-out-of-order", TimeWindows.of(10, grace=5), "on_window_close",
     [("a", 1), ("a", 14), ("a", 3), ("a", 15)],
     [("a@0-10", 2)]),
    # without grace the same out-of-order record is late (window closed at stream time 10)
    ("no-grace-late", TimeWindows.of(10), "on_window_close",
     [("a", 1), ("a", 14), ("a", 3), ("a", 20)],
     [("a@0-10", 1), ("a@10-20", 1)]),
]
