"""Fixtures for the storage tests (helpers live in storage_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from storage_helpers import ManualClock

from riverbed.storage import LogConfig, LogManager, SegmentLog


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_segment_log(tmp_path: Path) -> Iterator[Callable[..., SegmentLog]]:
    """A standalone SegmentLog (no manager, no flusher: call ``flush()`` yourself)."""
    made: list[SegmentLog] = []

    def make(config: LogConfig | None = None, name: str = "t-0", **kwargs: object) -> SegmentLog:
        log = SegmentLog.create(
            tmp_path / name,
            "t",
            0,
            config or LogConfig(),
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(log)
        return log

    yield make
    for log in made:
        log.close(clean=False)


@pytest.fixture
def manager_factory(tmp_path: Path) -> Iterator[Callable[..., LogManager]]:
    made: list[LogManager] = []

    def make(**kwargs: object) -> LogManager:
        manager = LogManager(tmp_path / "data", **kwargs)  # type: ignore[arg-type]
        manager.open()
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()
