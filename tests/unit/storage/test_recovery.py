"""Restarts: clean and unclean shutdowns, torn and corrupt tails, damaged index files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from storage_helpers import headers, make_batch, read_all

from riverbed.storage import LogConfig, LogManager, SegmentLog
from riverbed.storage.files import CLEAN_SHUTDOWN, RECOVERY_CHECKPOINT

BATCH = len(make_batch(2))
SMALL = LogConfig(segment_bytes=3 * BATCH, index_interval_bytes=BATCH)
MakeManager = Callable[..., LogManager]


def seg_path(log: SegmentLog, base: int, suffix: str = ".log") -> Path:
    return log.directory / f"{base:020d}{suffix}"


def fill(log: SegmentLog, n: int, ts: int = 1_000) -> None:
    for i in range(n):
        log.append(make_batch(2, timestamp=ts + i, max_timestamp=ts + i), now_ms=ts + i)
    log.flush()


def reopen(manager: LogManager, make: MakeManager, *, clean: bool = True) -> SegmentLog:
    log = manager.get("t", 0)
    assert log is not None
    if clean:
        manager.close()
    else:
        manager.abandon()
    again = make(default_config=log.config).get("t", 0)
    assert again is not None
    return again


def flip_byte(path: Path, position: int) -> None:
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_clean_restart_keeps_everything(manager_factory: MakeManager) -> None:
    manager = manager_factory()
    log = manager.create("t", 0, SMALL)
    fill(log, 10)
    log.delete_records(3)
    expected = read_all(log)
    again = reopen(manager, manager_factory)
    assert (again.log_start_offset, again.log_end_offset, again.high_watermark) == (3, 20, 20)
    # sealed segments keep their indexes on disk until a lookup needs them
    assert not again._segments[0].indexes_loaded
    assert again.max_timestamp() == (18, 1_009)
    assert read_all(again) == expected
    assert again.offset_for_timestamp(1_004) == (8, 1_004)
    fill(again, 1)
    assert again.log_end_offset == 22


def test_clean_shutdown_marker_and_checkpoint(manager_factory: MakeManager, tmp_path: Path) -> None:
    manager = manager_factory()
    fill(manager.create("t", 0, SMALL), 4)
    manager.create("u", 3, LogConfig())
    manager.close()
    data = tmp_path / "data"
    assert (data / CLEAN_SHUTDOWN).exists()
    lines = (data / RECOVERY_CHECKPOINT).read_text().splitlines()
    assert lines == ["0", "2", "t 0 6", "u 3 0"]
    manager_factory()
    assert not (data / CLEAN_SHUTDOWN).exists()


def test_unclean_restart_keeps_every_flushed_record(manager_factory: MakeManager) -> None:
    manager = manager_factory()
    log = manager.create("t", 0, SMALL)
    fill(log, 10)
    expected = read_all(log)
    again = reopen(manager, manager_factory, clean=False)
    assert again.log_end_offset == again.high_watermark == 20
    assert read_all(again) == expected
    for offset in range(20):
        first = headers(again.read(offset, 1).records)[0]
        assert first.base_offset <= offset <= first.last_offset


def test_torn_tail_is_truncated(manager_factory: MakeManager) -> None:
    manager = manager_factory()
    log = manager.create("t", 0, LogConfig())
    fill(log, 5)
    manager.abandon()
    path = seg_path(log, 0)
    os.truncate(path, 5 * BATCH - 10)  # cut the last batch in the middle
    again = manager_factory().get("t", 0)
    assert again is not None
    assert again.log_end_offset == again.high_watermark == 8
    assert path.stat().st_size == 4 * BATCH
    assert [h.base_offset for h in headers(read_all(again))] == [0, 2, 4, 6]
    fill(again, 1)
    assert again.log_end_offset == 10


def test_corrupt_batch_truncates_from_that_batch(manager_factory: MakeManager) -> None:
    manager = manager_factory()
    log = manager.create("t", 0, LogConfig())
    fill(log, 5)
    manager.abandon()
    flip_byte(seg_path(log, 0), 2 * BATCH + 70)  # inside the third batch's records
    again = manager_factory().get("t", 0)
    assert again is not None
    assert again.log_end_offset == 4
    assert [h.base_offset for h in headers(read_all(again))] == [0, 2]


def test_corruption_drops_later_segments(tmp_path: Path) -> None:
    log = SegmentLog.create(tmp_path / "t-0", "t", 0, SMALL)
    fill(log, 9)  # segments 0, 6, 12
    log.close(clean=False)
    flip_byte(seg_path(log, 6), BATCH + 70)  # second batch of the middle segment
    again = SegmentLog.load(tmp_path / "t-0", "t", 0, SMALL, recovery_point=None)
    assert again.segment_base_offsets() == [0, 6]
    assert again.log_end_offset == 8
    assert not seg_path(log, 12).exists()
    again.close()


def test_segments_below_the_recovery_point_are_trusted(manager_factory: MakeManager) -> None:
    manager = manager_factory()
    log = manager.create("t", 0, SMALL)
    fill(log, 9)
    manager.flush_all()  # seals segments 0 and 6 and checkpoints the recovery point 12
    assert log.recovery_point == 12
    manager.abandon()
    flip_byte(seg_path(log, 0), BATCH + 70)  # not looked at: below the recovery point
    again = manager_factory().get("t", 0)
    assert again is not None
    assert again.log_end_offset == 18
    assert not again._segments[0].indexes_loaded


def test_missing_index_files_are_rebuilt(manager_factory: MakeManager) -> None:
    manager = manager_factory()
    log = manager.create("t", 0, SMALL)
    fill(log, 8)
    manager.close()
    originals = {p.name: p.read_bytes() for p in log.directory.glob("*index")}
    seg_path(log, 0, ".index").unlink()
    seg_path(log, 6, ".timeindex").unlink()
    seg_path(log, 12, ".index").unlink()  # the active segment
    again = manager_factory(default_config=SMALL).get("t", 0)
    assert again is not None
    assert again.log_end_offset == 16
    for offset in range(16):
        first = headers(again.read(offset, 1).records)[0]
        assert first.base_offset <= offset <= first.last_offset
    assert again.offset_for_timestamp(1_003) == (6, 1_003)
    assert {p.name: p.read_bytes() for p in log.directory.glob("*index")}.keys() >= {
        name for name in originals if not name.startswith(f"{12:020d}")
    }
    assert seg_path(log, 0, ".index").read_bytes() == originals[f"{0:020d}.index"]
    assert seg_path(log, 6, ".timeindex").read_bytes() == originals[f"{6:020d}.timeindex"]


def test_garbage_index_files_are_rebuilt(manager_factory: MakeManager) -> None:
    manager = manager_factory()
    log = manager.create("t", 0, SMALL)
    fill(log, 8)
    manager.close()
    good = seg_path(log, 0, ".index").read_bytes()
    seg_path(log, 0, ".index").write_bytes(os.urandom(len(good)))  # whole entries, wrong
    seg_path(log, 6, ".index").write_bytes(b"\x00" * 7)  # not a whole entry
    entries = bytearray(seg_path(log, 12, ".index").read_bytes())
    entries[-1] ^= 1  # the last entry points next to a batch boundary
    seg_path(log, 12, ".index").write_bytes(bytes(entries))
    again = manager_factory(default_config=SMALL).get("t", 0)
    assert again is not None
    assert seg_path(log, 0, ".index").read_bytes() == good
    for offset in range(16):
        first = headers(again.read(offset, 1).records)[0]
        assert first.base_offset <= offset <= first.last_offset


def test_log_start_offset_survives_an_unclean_restart(manager_factory: MakeManager) -> None:
    manager = manager_factory()
    log = manager.create("t", 0, SMALL)
    fill(log, 8)
    log.delete_records(7)
    again = reopen(manager, manager_factory, clean=False)
    assert again.log_start_offset == 7
    assert again.segment_base_offsets() == [6, 12]


def test_truncation_lowers_the_recovery_point(manager_factory: MakeManager) -> None:
    manager = manager_factory()
    log = manager.create("t", 0, SMALL)
    fill(log, 9)
    manager.flush_all()
    log.truncate_to(4)
    assert log.recovery_point == 0
    fill(log, 1)
    manager.abandon()
    flip_byte(seg_path(log, 0), 2 * BATCH + 70)  # the batch appended after the truncation
    again = manager_factory(default_config=SMALL).get("t", 0)
    assert again is not None
    assert again.log_end_offset == 4  # validated, hence truncated again


def test_metadata_ahead_of_data_restarts_at_the_log_start(tmp_path: Path) -> None:
    log = SegmentLog.create(tmp_path / "t-0", "t", 0, LogConfig())
    fill(log, 2)
    log.delete_records(4)
    log.close(clean=False)
    os.truncate(seg_path(log, 0), 0)  # the data is gone, the metadata is not
    again = SegmentLog.load(tmp_path / "t-0", "t", 0, LogConfig())
    assert (again.log_start_offset, again.log_end_offset) == (4, 4)
    assert again.segment_base_offsets() == [4]
    again.close()


def test_open_cleans_leftovers(manager_factory: MakeManager, tmp_path: Path) -> None:
    # how long opening takes is measured by benchmarks/storage_open.py, not asserted here
    manager = manager_factory()
    for p in range(20):
        fill(manager.create("t", p, SMALL), 3)
    manager.close()
    data = tmp_path / "data"
    (data / "t-0" / f"{99:020d}.index").write_bytes(b"")  # orphan index
    (data / "t-0" / "partition.metadata.tmp").write_bytes(b"junk")
    (data / "gone-1.abc.deleted").mkdir()
    (data / "not a partition").mkdir()
    manager = manager_factory()
    assert len(manager.partitions()) == 20
    assert not (data / "gone-1.abc.deleted").exists()
    assert not (data / "t-0" / f"{99:020d}.index").exists()
    assert not (data / "t-0" / "partition.metadata.tmp").exists()
    empty = LogManager(tmp_path / "empty")
    empty.open()
    assert empty.partitions() == []
    empty.close()
