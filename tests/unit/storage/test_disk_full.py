"""ENOSPC in the storage write path (the integration test mounts a real tmpfs; these inject
the error where a tmpfs rarely shows it): a partial batch never becomes visible, the
directory refuses writes until space returns, and no space for the index files of a
rolled segment neither fails the log nor withholds the acknowledgement of fsynced data."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from storage_helpers import make_batch, read_all

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.storage import LogConfig, LogManager, SegmentLog, segment, space
from riverbed.storage.log_state import LogHooks
from riverbed.storage.space import DiskSpace

BIG = 1 << 40


class Disk:
    """The free space statvfs reports, set by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.free = BIG
        monkeypatch.setattr(space, "free_bytes", lambda _path: (self.free, BIG))


def enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def attach(log: SegmentLog, directory: Path, clock: Clock | None = None) -> tuple[DiskSpace, list[SegmentLog]]:
    disk_space = DiskSpace(directory, clock=clock or Clock())
    retries: list[SegmentLog] = []
    log.hooks = LogHooks(lambda _l: None, lambda lg, _d: retries.append(lg), lambda _l: None, space=disk_space)
    return disk_space, retries


def test_a_partial_write_is_cut_off_and_writes_wait_for_space(
    make_segment_log: Callable[..., SegmentLog], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk(monkeypatch)
    log = make_segment_log()
    clock = Clock()
    disk_space, _ = attach(log, tmp_path, clock)
    log.append(make_batch(3), now_ms=1)
    log.flush()
    size = log.size_bytes
    real = segment.write_fully

    def half_then_enospc(fd: int, data: bytes | bytearray | memoryview, position: int) -> None:
        real(fd, bytes(data)[: len(data) // 2], position)  # the kernel wrote part of it
        raise enospc()

    monkeypatch.setattr(segment, "write_fully", half_then_enospc)
    disk.free = 0
    with pytest.raises(KafkaError) as info:
        log.append(make_batch(3, fill=0x62), now_ms=2)
    assert info.value.code == ErrorCode.KAFKA_STORAGE_ERROR
    assert disk_space.error is not None and "full" in disk_space.error
    assert os.path.getsize(log.directory / "00000000000000000000.log") == size  # cut off
    assert (log.log_end_offset, log.size_bytes) == (3, size)
    monkeypatch.setattr(segment, "write_fully", real)
    # the file system would take this one, but the directory stays refused until the free
    # space reaches the resume threshold
    with pytest.raises(KafkaError):
        log.append(make_batch(1), now_ms=3)
    disk.free = BIG
    clock.now += 1  # the next statvfs probe is due
    assert log.append(make_batch(2, fill=0x63), now_ms=4).base_offset == 3
    assert disk_space.error is None
    log.flush()
    assert log.high_watermark == 5 and log.failed is None
    data = read_all(log)
    assert b"b" * 10 not in data and b"c" * 10 in data  # only whole batches


def test_no_space_for_index_files_is_retried_and_the_data_is_acknowledged(
    make_segment_log: Callable[..., SegmentLog], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk(monkeypatch)
    log = make_segment_log(LogConfig(segment_bytes=300))
    disk_space, retries = attach(log, tmp_path)
    real = segment.Segment.write_indexes
    monkeypatch.setattr(segment.Segment, "write_indexes", lambda self, fsync: (_ for _ in ()).throw(enospc()))
    for _ in range(6):  # rolls: the sealed segments' index files are due in the flush
        log.append(make_batch(3, value_size=40), now_ms=1)
    disk.free = 0
    assert log.flush() is True  # fsynced: acknowledged although the indexes are not written
    assert log.high_watermark == log.log_end_offset == 18
    assert log.failed is None
    assert retries == [log]  # asked to try again later
    assert disk_space.error is not None
    assert log.recovery_point == 0  # the rolled segments are validated after a crash
    monkeypatch.setattr(segment.Segment, "write_indexes", real)
    disk.free = BIG
    log.flush()
    assert log.recovery_point == log.segment_base_offsets()[-1]
    assert len(read_all(log)) == log.size_bytes


def test_fsync_failure_still_fails_the_log(make_segment_log: Callable[..., SegmentLog], tmp_path: Path) -> None:
    # ENOSPC from fsync itself: the kernel may have dropped the pages, nothing becomes
    # durable later (unchanged): the log refuses writes until a restart
    failing = False

    def fsync(fd: int) -> None:
        if failing:
            raise enospc()

    log = make_segment_log(fsync=fsync)
    attach(log, tmp_path)
    log.append(make_batch(2), now_ms=1)
    failing = True
    with pytest.raises(KafkaError):
        log.flush()
    assert log.failed is not None and log.high_watermark == 0
    with pytest.raises(KafkaError):
        log.append(make_batch(1), now_ms=2)


def test_manager_reports_the_log_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = Disk(monkeypatch)
    with LogManager(tmp_path / "data") as manager:
        log = manager.create("t", 0, LogConfig())
        assert manager.log_dir_error() is None
        monkeypatch.setattr(segment, "write_fully", lambda *_a: (_ for _ in ()).throw(enospc()))
        disk.free = 0
        with pytest.raises(KafkaError):
            log.append(make_batch(1), now_ms=1)
        error = manager.log_dir_error()
        assert error is not None and str(tmp_path / "data") in error
