"""PushQuery.take: the HTTP server's batches of queued rows (one thread hop and one chunk each)."""

from __future__ import annotations

import threading
from typing import Any

from riverbed.sql.engine import PushQuery


class _Runtime:
    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_take_returns_what_is_queued_then_ends_after_close() -> None:
    closed: list[Any] = []
    pq = PushQuery("q", [], None, _Runtime(), on_close=closed.append)  # type: ignore[arg-type]
    assert pq.take(poll=0.01) == []  # nothing yet: an empty batch (the caller checks its client)
    for i in range(5):
        pq.rows.put([i])
    assert pq.take(poll=0.01, most=3) == [[0], [1], [2]]
    assert pq.take(poll=0.01) == [[3], [4]]
    pq.rows.put([5])
    pq.close()  # the end marker after the last row
    assert pq.take(poll=0.01) == [[5]]
    assert pq.take(poll=0.01) is None
    assert pq.take(poll=0.01) is None
    assert closed == [pq] and pq.runtime.stopped  # type: ignore[attr-defined]


def test_take_waits_for_the_first_row() -> None:
    pq = PushQuery("q", [], None, _Runtime())  # type: ignore[arg-type]
    t = threading.Timer(0.05, lambda: pq.rows.put(["late"]))
    t.start()
    assert pq.take(poll=5.0) == [["late"]]
    t.join()


def test_take_ends_when_closed_with_a_full_queue_drained() -> None:
    pq = PushQuery("q", [], None, _Runtime())  # type: ignore[arg-type]
    pq.rows.maxsize = 1
    pq.rows.put([1])
    pq.close()  # the queue is full: no end marker, the closed flag tells
    assert pq.take(poll=0.01) == [[1]]
    assert pq.take(poll=0.01) is None
