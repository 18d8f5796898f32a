"""LogManager: the group-commit flusher, partition lifecycle, retention through the manager."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from storage_helpers import CountingFsync, ManualClock, headers, make_batch, read_all

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.storage import LogConfig, LogManager, SegmentLog

MakeManager = Callable[..., LogManager]
BATCH = len(make_batch(2))


class Durable:
    """on_durable callback that tests can wait on."""

    def __init__(self) -> None:
        self.calls = 0
        self.event = threading.Event()

    def __call__(self) -> None:
        self.calls += 1
        self.event.set()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        while not predicate():
            assert self.event.wait(timeout), "on_durable never came"
            self.event.clear()


def test_group_commit_covers_many_appends_with_few_fsyncs(manager_factory: MakeManager) -> None:
    fsync = CountingFsync()
    durable = Durable()
    manager = manager_factory(fsync=fsync, on_durable=durable)
    log = manager.create("t", 0, LogConfig())
    fsync.calls = 0
    fsync.gate.clear()
    fsync.entered.clear()
    log.append(make_batch(2), now_ms=0)
    assert fsync.entered.wait(10)  # the flusher is now inside an fsync, held at the gate
    for _ in range(300):
        log.append(make_batch(2), now_ms=0)
        manager.request_flush(log)  # what the broker does; appends already asked anyway
    assert log.high_watermark == 0
    fsync.gate.set()
    durable.wait_until(lambda: log.high_watermark == 602)
    assert fsync.calls <= 3
    assert durable.calls <= 3
    assert log.durable_offset == 602
    assert len(headers(read_all(log))) == 301


def test_gathered_flush_requests_reach_the_flusher_together(manager_factory: MakeManager) -> None:
    """Appends to two logs inside gather_flushes ask for nothing until the block ends, then
    one flush cycle covers both (a transaction's state record and its batches)."""
    durable = Durable()
    manager = manager_factory(fsync=CountingFsync(), on_durable=durable)
    a = manager.create("a", 0, LogConfig())
    b = manager.create("b", 0, LogConfig())
    a.append(make_batch(1), now_ms=0)
    b.append(make_batch(1), now_ms=0)
    durable.wait_until(lambda: a.high_watermark == 1 and b.high_watermark == 1)
    cycles = manager.flush_cycles
    with manager.gather_flushes():
        a.append(make_batch(2), now_ms=0)
        with manager.gather_flushes():  # nested: joins the outer block
            manager.request_flush(a)
        # held back, not handed to the flusher
        assert manager._gathered == {a: None} and not manager._requested
        b.append(make_batch(3), now_ms=0)
    assert manager._gathered is None
    durable.wait_until(lambda: a.high_watermark == 3 and b.high_watermark == 4)
    assert manager.flush_cycles == cycles + 1
    # after the block requests go straight to the flusher again
    a.append(make_batch(1), now_ms=0)
    durable.wait_until(lambda: a.high_watermark == 4)


def test_high_watermark_moves_only_after_fsync(manager_factory: MakeManager) -> None:
    fsync = CountingFsync()
    durable = Durable()
    manager = manager_factory(fsync=fsync, on_durable=durable)
    log = manager.create("t", 0, LogConfig())
    fsync.gate.clear()
    fsync.entered.clear()
    log.append(make_batch(3), now_ms=0)
    assert fsync.entered.wait(10)
    assert (log.log_end_offset, log.high_watermark) == (3, 0)
    assert len(log.read(0, 1 << 20).records) == 0
    fsync.gate.set()
    durable.wait_until(lambda: log.high_watermark == 3)
    assert len(log.read(0, 1 << 20).records) > 0


def test_flush_messages_triggers_a_flush_by_count(manager_factory: MakeManager) -> None:
    fsync = CountingFsync()
    durable = Durable()
    manager = manager_factory(fsync=fsync, on_durable=durable)
    log = manager.create("t", 0, LogConfig(flush_messages=10, flush_ms=3_600_000))
    for _ in range(4):
        log.append(make_batch(2), now_ms=0)
    assert log.high_watermark == 8  # visible at once
    assert log.durable_offset == 0
    log.append(make_batch(2), now_ms=0)  # the 10th message
    durable.wait_until(lambda: log.durable_offset == 10)


def test_flush_ms_triggers_a_flush_by_time(manager_factory: MakeManager) -> None:
    durable = Durable()
    manager = manager_factory(on_durable=durable)
    log = manager.create("t", 0, LogConfig(flush_messages=1_000_000, flush_ms=10))
    log.append(make_batch(2), now_ms=0)
    assert log.high_watermark == 2
    durable.wait_until(lambda: log.durable_offset == 2)


def test_rolled_segments_are_sealed_and_checkpointed(
    manager_factory: MakeManager, tmp_path: Path
) -> None:
    durable = Durable()
    manager = manager_factory(on_durable=durable)
    log = manager.create("t", 0, LogConfig(segment_bytes=2 * BATCH))
    for _ in range(5):
        log.append(make_batch(2), now_ms=0)
    durable.wait_until(lambda: log.high_watermark == 10 and log.recovery_point == 8)
    manager.flush_all()
    assert "t 0 8" in (tmp_path / "data" / "recovery-point-offset-checkpoint").read_text()
    assert (log.directory / f"{4:020d}.index").stat().st_size == 8


def test_flush_all_and_on_durable(manager_factory: MakeManager) -> None:
    durable = Durable()
    manager = manager_factory(on_durable=durable, fsync=CountingFsync())
    logs = [manager.create("t", p, LogConfig(flush_messages=100)) for p in range(3)]
    for log in logs:
        log.append(make_batch(2), now_ms=0)
    manager.flush_all()
    assert all(log.durable_offset == 2 for log in logs)
    assert durable.calls >= 1


def test_create_get_delete(manager_factory: MakeManager, tmp_path: Path) -> None:
    manager = manager_factory()
    a0 = manager.create("a", 0, LogConfig())
    manager.create("a", 1, LogConfig())
    manager.create("b", 0, LogConfig())
    config = LogConfig(retention_ms=1)
    assert manager.create("a", 0, config) is a0
    assert a0.config == config
    assert manager.get("a", 0) is a0
    assert manager.get("a", 9) is None
    assert sorted((log.topic, log.partition) for log in manager.partitions()) == [
        ("a", 0),
        ("a", 1),
        ("b", 0),
    ]
    a0.append(make_batch(1), now_ms=0)
    assert manager.delete_partition("a", 1)
    assert not manager.delete_partition("a", 1)
    assert manager.delete_topic("a") == 1
    assert manager.get("a", 0) is None
    assert sorted(p.name for p in (tmp_path / "data").iterdir() if p.is_dir()) == ["b-0"]
    with pytest.raises(KafkaError):
        a0.append(make_batch(1), now_ms=0)
    manager.close()
    again = manager_factory()
    assert [(log.topic, log.partition) for log in again.partitions()] == [("b", 0)]
    recreated = again.create("a", 0, LogConfig())
    assert recreated.log_end_offset == 0


@pytest.mark.parametrize("topic", ["", "a/b", "x" * 250, "..", "sp ace"])
def test_illegal_topic_names(manager_factory: MakeManager, topic: str) -> None:
    with pytest.raises(KafkaError) as info:
        manager_factory().create(topic, 0, LogConfig())
    assert info.value.code == ErrorCode.INVALID_TOPIC_EXCEPTION


def test_run_retention(manager_factory: MakeManager) -> None:
    clock = ManualClock(now_ms=100_000)
    manager = manager_factory(clock=clock)
    config = LogConfig(segment_bytes=2 * BATCH, retention_ms=10_000)
    log = manager.create("t", 0, config)
    for i in range(6):
        log.append(make_batch(2, timestamp=100_000 + i, max_timestamp=100_000 + i), now_ms=0)
    manager.flush_all()
    manager.run_retention(now_ms=105_000)
    assert log.log_start_offset == 0
    manager.run_retention(now_ms=110_002)
    assert log.segment_base_offsets() == [4, 8]
    assert log.log_start_offset == 4


def test_appends_racing_the_flusher_and_retention(manager_factory: MakeManager) -> None:
    durable = Durable()
    manager = manager_factory(on_durable=durable)
    config = LogConfig(segment_bytes=8 * BATCH, retention_bytes=40 * BATCH, index_interval_bytes=0)
    log = manager.create("t", 0, config)
    for i in range(2_000):
        log.append(make_batch(2), now_ms=i)
        if i % 97 == 0:
            manager.run_retention(now_ms=i)
    durable.wait_until(lambda: log.high_watermark == 4_000)
    manager.run_retention(now_ms=10_000)
    data = read_all(log)
    offsets = [h.base_offset for h in headers(data)]
    assert offsets == list(range(offsets[0], 4_000, 2))
    assert log.size_bytes <= 48 * BATCH
    closed_fds = [s for s in log._segments if s.closed]
    assert closed_fds == []


def test_a_failed_fsync_fails_the_log(manager_factory: MakeManager) -> None:
    failing = threading.Event()

    def broken(fd: int) -> None:
        if failing.is_set():
            raise OSError(5, "I/O error")

    manager = manager_factory()
    log = SegmentLog.create(manager.data_dir / "z-0", "z", 0, LogConfig(), fsync=broken)
    failing.set()
    log.append(make_batch(1), now_ms=0)
    with pytest.raises(KafkaError) as info:
        log.flush()
    assert info.value.code == ErrorCode.KAFKA_STORAGE_ERROR
    with pytest.raises(KafkaError):
        log.append(make_batch(1), now_ms=0)
    assert log.high_watermark == 0
    failing.clear()  # a later fsync that works does not make the record durable after all
    assert log.flush() is False
    assert log.high_watermark == 0
    log.close(clean=False)


def test_syncfs_cycle_makes_several_logs_durable(tmp_path: Path) -> None:
    from riverbed.storage.manager import LogManager as RealManager

    manager = RealManager(tmp_path / "data", syncfs=True)
    manager.open()
    try:
        logs = [manager.create("s", p, LogConfig()) for p in range(3)]
        for log in logs:
            log.append(make_batch(3), now_ms=1000)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(log.high_watermark < 3 for log in logs):
            time.sleep(0.005)
        assert all(log.high_watermark == 3 for log in logs)
    finally:
        manager.close()


def _syncfs_manager(path: Path) -> tuple[LogManager, list[SegmentLog], CountingFsync]:
    """A manager using the real syncfs(2), with 20 logs appended to and not yet flushed: their
    flush requests are withheld (no hooks while appending) so a test runs the cycle itself;
    each log's own fsyncs are counted (real ones)."""
    from riverbed.storage.manager import _load_syncfs

    if _load_syncfs() is None:
        pytest.skip("syncfs(2) reporting writeback errors needs Linux 5.8 or later")
    manager = LogManager(path, syncfs=True)
    manager.open()
    counting = CountingFsync()
    logs = [manager.create("many", p, LogConfig()) for p in range(20)]
    for log in logs:
        hooks, log.hooks = log.hooks, None
        log._fsync = counting  # type: ignore[attr-defined]
        log.append(make_batch(2), now_ms=1000)
        log.hooks = hooks
        assert log.high_watermark == 0
    return manager, logs, counting


def test_one_syncfs_makes_a_cycle_of_many_logs_durable_without_per_log_fsyncs(
    tmp_path: Path,
) -> None:
    manager, logs, counting = _syncfs_manager(tmp_path / "data")
    try:
        manager._cycle(logs)
        assert [log.high_watermark for log in logs] == [2] * 20
        assert counting.calls == 0  # neither the segments nor the new directories
    finally:
        manager.close()
    assert (tmp_path / "data" / ".clean-shutdown").exists()
    reopened = LogManager(tmp_path / "data")
    reopened.open()
    try:
        assert all(log.log_end_offset == 2 for log in reopened.partitions())
    finally:
        reopened.close()


def test_a_failed_syncfs_falls_back_to_fsyncs_and_is_not_trusted_again(tmp_path: Path) -> None:
    manager, logs, counting = _syncfs_manager(tmp_path / "data")
    calls: list[int] = []

    def failing_syncfs(fd: int) -> int:
        calls.append(fd)
        return -1

    manager._syncfs = failing_syncfs
    try:
        manager._cycle(logs)
        assert [log.high_watermark for log in logs] == [2] * 20
        # each new log: its metadata file, its directory, the data directory; then its segment
        assert counting.calls == 20 * 4
        assert len(calls) == 1
        for log in logs:
            hooks, log.hooks = log.hooks, None
            log.append(make_batch(1), now_ms=1000)
            log.hooks = hooks
        manager._cycle(logs)
        assert len(calls) == 1  # not asked again
        assert counting.calls == 20 * 5
        assert [log.high_watermark for log in logs] == [3] * 20
    finally:
        manager.close()
    # close did not rely on syncfs either: every log fsynced its files, the marker is there
    assert (tmp_path / "data" / ".clean-shutdown").exists()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _open_segments(manager: LogManager) -> int:
    """The manager's segments whose file is open now (the bound is per process; other
    tests' segments may count towards it too)."""
    return sum(s._fd >= 0 for log in manager.partitions() for s in log._segments)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_segment_files_stay_within_the_bound_and_reopen_on_use(tmp_path: Path) -> None:
    from riverbed.storage.segment import OPEN_SEGMENT_FILES

    before_limit = OPEN_SEGMENT_FILES.limit
    baseline = _open_fds()
    manager = LogManager(tmp_path / "data", max_open_segment_files=8)
    manager.open()
    try:
        logs = [manager.create("fd", p, LogConfig(segment_bytes=400)) for p in range(40)]
        for round_ in range(3):  # small segments: rolls too
            for log in logs:
                log.append(make_batch(2), now_ms=1000 + round_)
        manager.flush_all()
        # the flusher closes what its cycle kept busy once the cycle is over
        deadline = time.monotonic() + 10
        while _open_segments(manager) > 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _open_segments(manager) <= 8
        # (the flusher's pool threads and the data directory take a few more)
        assert _open_fds() - baseline <= 8 + 12
        for log in logs:  # every log is read back through reopened files
            assert log.high_watermark == 6
            assert [h.base_offset for h in headers(read_all(log))] == [0, 2, 4]
        assert OPEN_SEGMENT_FILES.evictions > 0
    finally:
        manager.close()
        OPEN_SEGMENT_FILES.limit = before_limit
    reopened = LogManager(tmp_path / "data", max_open_segment_files=8)
    reopened.open()
    try:
        assert _open_segments(reopened) <= 8
        assert all(log.log_end_offset == 6 for log in reopened.partitions())
    finally:
        reopened.close()
        OPEN_SEGMENT_FILES.limit = before_limit


def _crashed_data_dir(path: Path, partitions: int) -> None:
    """A data directory of ``partitions`` logs of 2 records each, as a crash leaves it (no
    clean-shutdown marker: every last segment is validated at the next start)."""
    manager = LogManager(path)
    manager.open()
    try:
        for p in range(partitions):
            log = manager.create("crash", p, LogConfig())
            log.append(make_batch(2), now_ms=1000)
            log.flush()
    finally:
        manager.close()
    (path / ".clean-shutdown").unlink()


@pytest.mark.parametrize("syncfs_result", ["works", "fails", "absent"])
def test_recovery_after_a_crash_syncs_the_validated_segments_once(tmp_path: Path, syncfs_result: str) -> None:
    from riverbed.storage.manager import _load_syncfs

    if syncfs_result != "absent" and _load_syncfs() is None:
        pytest.skip("syncfs(2) reporting writeback errors needs Linux 5.8 or later")
    data = tmp_path / "data"
    _crashed_data_dir(data, 12)
    manager = LogManager(data)
    counting = CountingFsync()
    manager._fsync = counting
    calls: list[int] = []
    real = manager._syncfs
    if syncfs_result == "absent":
        manager._syncfs = None
    elif syncfs_result == "fails":

        def failing(fd: int) -> int:
            calls.append(fd)
            return -1

        manager._syncfs = failing
    else:
        assert real is not None

        def counted(fd: int) -> int:
            calls.append(fd)
            return real(fd)

        manager._syncfs = counted
    manager.open()
    try:
        assert sorted(log.log_end_offset for log in manager.partitions()) == [2] * 12
        if syncfs_result == "works":
            assert len(calls) == 1 and counting.calls < 12  # no fsync per partition (the checkpoint's only)
        else:  # every validated segment fsynced on its own
            assert counting.calls >= 12
            assert len(calls) == (1 if syncfs_result == "fails" else 0)
    finally:
        manager.close()
    if syncfs_result == "fails":
        assert not manager._syncfs_trusted
