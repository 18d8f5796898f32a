"""Window tables (Kafka Streams' documented semantics) end to end: the time-window table of
tests/unit/streams/window_cases.py plus session and sliding cases, in one app with one
sub-topology per case, each reading its own topic on a real broker."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from riverbed.streams import LONG, STRING, SessionWindows, SlidingWindows, StreamsApp
from riverbed.streams.runtime import Runtime
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics
from .test_streams import Reader, running, wait_until

pytestmark = pytest.mark.integration


def _load_cases() -> list[tuple[Any, ...]]:
    path = Path(__file__).parents[1] / "unit" / "streams" / "window_cases.py"
    spec = importlib.util.spec_from_file_location("streams_window_cases", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.CASES)


CASES = _load_cases()

# (librdkafka reads a produce timestamp of 0 as "now", so no input here is at 0)
EXTRA_CASES = [
    ("session-update", SessionWindows.with_inactivity_gap(5, grace=10), "on_update",
     [("A", 1), ("A", 4), ("A", 11), ("A", 7)],
     [("A@1-1", 1), ("A@1-1", None), ("A@1-4", 2), ("A@11-11", 1), ("A@1-4", None), ("A@11-11", None), ("A@1-11", 4)]),
    ("session-final", SessionWindows.with_inactivity_gap(5), "on_window_close",
     [("A", 1), ("A", 4), ("B", 5), ("A", 21), ("A", 25), ("A", 31)],
     [("A@1-4", 2), ("B@5-5", 1), ("A@21-25", 2)]),
    ("sliding-update", SlidingWindows.of(10, grace=100), "on_update",
     [("A", 20), ("A", 30), ("A", 25)],
     [("A@10-20", 1), ("A@20-30", 2), ("A@21-31", 1), ("A@15-25", 2), ("A@20-30", 3), ("A@21-31", 2), ("A@26-36", 1)]),
    ("sliding-final", SlidingWindows.of(10), "on_window_close",
     [("A", 20), ("A", 25), ("A", 40), ("A", 60)],
     [("A@10-20", 1), ("A@15-25", 2), ("A@21-31", 1), ("A@30-40", 1)]),
]


def test_window_tables_end_to_end(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    bs = riverbed_broker.bootstrap
    cases = [*CASES, *EXTRA_CASES]
    create_topics(bs, *(NewTopic(f"in-{c[0]}", 1, 1) for c in cases), *(NewTopic(f"out-{c[0]}", 1, 1) for c in cases))
    app = StreamsApp("win-e2e")
    for name, windows, emit, _inputs, _expected in cases:
        (app.stream(f"in-{name}", STRING, STRING)
            .group_by_key()
            .windowed_by(windows, emit=emit)
            .count(name=f"store-{name}")
            .to_stream()
            .map(lambda wk, n: (f"{wk.key}@{wk.window.start}-{wk.window.end}", n))
            .to(f"out-{name}", STRING, LONG))
    p = Producer({"bootstrap.servers": bs})
    for name, _w, _e, inputs, _x in cases:
        for key, ts in inputs:
            p.produce(f"in-{name}", b"x", key.encode(), timestamp=ts)
    assert p.flush(30) == 0
    readers = {c[0]: Reader(bs, f"out-{c[0]}") for c in cases}

    def got(name: str) -> list[tuple[str, int | None]]:
        return [(k.decode(), LONG.deserialize(v)) for k, v, _ in readers[name].poll() if k is not None]

    with running(Runtime(app.topology(), bs, state_dir=tmp_path, commit_interval_ms=200,
                         cache_max_bytes=0)):  # every update, as the driver tables (no record cache)
        for name, _w, _e, _i, expected in cases:
            wait_until(lambda name=name, expected=expected: len(got(name)) >= len(expected), f"outputs of {name}: {got(name)}")  # type: ignore[misc]
    for name, _w, _e, _i, expected in cases:
        assert got(name) == expected, name
        readers[name].close()
