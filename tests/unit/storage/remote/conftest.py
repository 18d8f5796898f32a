"""Fixtures for the tiered-storage tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from storage_helpers import make_batch

from riverbed.storage import LogConfig, SegmentLog


def fill_log(
    log: SegmentLog,
    batches: int,
    *,
    count: int = 3,
    start_ts: int = 1_000,
    ts_step: int = 10,
    value_size: int = 20,
) -> None:
    """Append ``batches`` batches, then flush so every rolled segment is finalized."""
    for i in range(batches):
        log.append(
            make_batch(count, timestamp=start_ts + i * ts_step, value_size=value_size),
            now_ms=start_ts + i * ts_step,
        )
    log.flush()


@pytest.fixture
def make_log(tmp_path: Path) -> Iterator[Callable[..., SegmentLog]]:
    made: list[SegmentLog] = []

    def make(
        segment_bytes: int = 600, index_interval_bytes: int = 150, name: str = "t-0"
    ) -> SegmentLog:
        config = LogConfig(
            segment_bytes=segment_bytes,
            index_interval_bytes=index_interval_bytes,
            retention_ms=-1,
        )
        log = SegmentLog.create(tmp_path / name, "t", 0, config)
        made.append(log)
        return log

    yield make
    for log in made:
        if not log.closed:
            log.close(clean=False)
