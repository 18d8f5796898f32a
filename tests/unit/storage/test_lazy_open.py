"""Start-up after a clean shutdown loads partitions at their first use (or on the loader
thread); after a crash every partition is recovered before open() returns."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest
from storage_helpers import make_batch, producer_batch, read_all

from riverbed.storage import LogConfig, LogManager, SegmentLog
from riverbed.storage import manager as manager_module
from riverbed.storage.files import (
    CLEANER_CHECKPOINT,
    RECOVERY_CHECKPOINT,
    RECOVERY_POSITIONS,
    read_offset_checkpoint,
    read_recovery_positions,
)

BATCH = len(make_batch(2))
SMALL = LogConfig(segment_bytes=3 * BATCH, index_interval_bytes=BATCH)
PARTITIONS = 4


def _fill(manager: LogManager) -> None:
    for p in range(PARTITIONS):
        log = manager.create("t", p, SMALL)
        for i in range(10):
            log.append(make_batch(2, timestamp=1_000 + 10 * i), now_ms=1_000 + 10 * i)
        # an idempotent producer: its state must come back with the partition
        log.append(producer_batch(7, 0, 2, timestamp=2_000, transactional=False), now_ms=2_000)
        log.flush()


def _state(log: SegmentLog) -> tuple[object, ...]:
    return (
        read_all(log),
        log.log_start_offset,
        log.log_end_offset,
        log.high_watermark,
        log.last_stable_offset,
        log.segment_base_offsets(),
        log.offset_for_timestamp(1_045),
        log.offset_for_timestamp(0),
        log.max_timestamp(),
        [(v.producer_id, v.last_sequence, v.current_txn_start_offset) for v in log.producer_states()],
        bytes(log.read(7, 1 << 20).records),  # a fetch from the middle of a sealed segment
    )


def _open(path: Path, **kwargs: object) -> LogManager:
    manager = LogManager(path, **kwargs)  # type: ignore[arg-type]
    manager.open()
    return manager


def test_a_lazily_loaded_partition_serves_reads_appends_and_lookups_as_before(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manager = _open(data)
    _fill(manager)
    manager.close()
    eager = _open(data, lazy_open=False)
    expected = {p: _state(eager.get("t", p)) for p in range(PARTITIONS)}  # type: ignore[arg-type]
    eager.close()

    lazy = _open(data, background_load=False)
    assert lazy.unloaded_count() == PARTITIONS
    assert lazy.get_loaded("t", 1) is None
    assert lazy.configure("t", 1, SMALL) and not lazy.configure("t", 99, SMALL)
    assert lazy.unloaded_count() == PARTITIONS  # configure does not load
    log = lazy.get("t", 1)
    assert log is not None and lazy.get_loaded("t", 1) is log
    assert lazy.unloaded_count() == PARTITIONS - 1
    assert log.config == SMALL
    assert _state(log) == expected[1]
    # appends continue the log (offsets, the producer's sequence numbers)
    info = log.append(producer_batch(7, 2, 1, timestamp=3_000, transactional=False), now_ms=3_000)
    assert info.base_offset == expected[1][2]
    log.flush()
    assert lazy.create("t", 2, SMALL) is lazy.get("t", 2)  # create of a known one loads it
    assert _state(lazy.get("t", 2)) == expected[2]  # type: ignore[arg-type]
    assert len(lazy.partitions()) == PARTITIONS  # every one, loading the rest
    lazy.close()

    again = _open(data, lazy_open=False)
    log = again.get("t", 1)
    assert log is not None and log.log_end_offset == expected[1][2] + 1
    for p in (0, 2, 3):
        assert _state(again.get("t", p)) == expected[p]  # type: ignore[arg-type]
    again.close()


def test_unloaded_partitions_keep_their_checkpoints_and_can_be_deleted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manager = _open(data)
    _fill(manager)
    for p in range(PARTITIONS):
        log = manager.get("t", p)
        assert log is not None
        log.cleaner_state.first_dirty_offset = 3 + p
    manager.cleaner.write_checkpoint()
    manager.close()
    points = dict(read_offset_checkpoint(data / RECOVERY_CHECKPOINT))
    assert len(points) == PARTITIONS

    lazy = _open(data, background_load=False)
    assert dict(read_offset_checkpoint(data / RECOVERY_CHECKPOINT)) == points
    lazy.cleaner.write_checkpoint()
    cleaner = dict(read_offset_checkpoint(data / CLEANER_CHECKPOINT))
    assert cleaner == {("t", p): 3 + p for p in range(PARTITIONS)}
    assert lazy.get("t", 0).cleaner_state.first_dirty_offset == 3  # type: ignore[union-attr]
    assert lazy.delete_partition("t", 3)
    assert lazy.get("t", 3) is None and not (data / "t-3").exists()
    lazy.cleaner.write_checkpoint()
    lazy.close()
    points.pop(("t", 3))
    assert dict(read_offset_checkpoint(data / RECOVERY_CHECKPOINT)) == points
    assert ("t", 3) not in read_offset_checkpoint(data / CLEANER_CHECKPOINT)
    assert lazy.loaded_in_background == 0


def test_the_loader_thread_loads_every_partition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "LOADER_DELAY_S", 0.0)
    data = tmp_path / "data"
    manager = _open(data)
    _fill(manager)
    manager.close()
    lazy = _open(data)
    deadline = time.monotonic() + 10
    while lazy.unloaded_count() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert lazy.unloaded_count() == 0
    assert len(lazy.loaded_partitions()) == PARTITIONS
    lazy.close()


def test_a_crash_after_a_lazy_start_still_truncates_a_torn_tail(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manager = _open(data)
    _fill(manager)
    manager.close()
    lazy = _open(data, background_load=False)
    log = lazy.get("t", 0)
    assert log is not None
    end = log.log_end_offset
    log.append(make_batch(2, timestamp=5_000), now_ms=5_000)
    log.flush()
    active = log.directory / f"{log.segment_base_offsets()[-1]:020d}.log"
    lazy.abandon()  # kill -9: partitions 1-3 were never loaded, partition 0 was appended to
    size = os.path.getsize(active)
    with open(active, "ab") as f:
        f.write(make_batch(3, timestamp=6_000)[:-5])  # a torn batch
    other_active = max((data / "t-1").glob("*.log"))
    other_size = other_active.stat().st_size
    with open(other_active, "ab") as f:
        f.write(b"\x00" * 17)  # a torn header in a partition never loaded before the crash

    again = _open(data, background_load=False)
    assert again.unloaded_count() == 0  # after a crash: all loaded, and recovered, by open()
    log = again.get("t", 0)
    assert log is not None
    assert log.log_end_offset == end + 2
    assert os.path.getsize(active) == size
    other = again.get("t", 1)
    assert other is not None and other.log_end_offset == end
    assert other_active.stat().st_size == other_size
    again.close()


def test_a_partition_holding_an_open_transaction_is_loaded_at_start(tmp_path: Path) -> None:
    """The transaction coordinator's start-up looks at the open transactions of loaded
    partitions (to abort those it does not know): a clean shutdown lists the partitions
    holding one, and the next open() loads them at once."""
    data = tmp_path / "data"
    manager = _open(data)
    _fill(manager)
    log = manager.get("t", 2)
    assert log is not None
    log.append(producer_batch(9, 0, 2, timestamp=2_500), now_ms=2_500)  # left open
    log.flush()
    manager.close()
    lazy = _open(data, background_load=False)
    assert lazy.unloaded_count() == PARTITIONS - 1
    loaded = lazy.get_loaded("t", 2)
    assert loaded is not None
    assert [v.current_txn_start_offset for v in loaded.producer_states() if v.producer_id == 9] == [22]
    lazy.close()
    # a clean shutdown without the list (an older version): every partition is loaded
    (data / "open-transactions-checkpoint").unlink()
    eager = _open(data, background_load=False)
    assert eager.unloaded_count() == 0
    eager.close()


def _positions(data: Path) -> dict[tuple[str, int], int]:
    positions = read_recovery_positions(data)
    assert all(base == 0 for base, _ in positions.values())  # (one segment in these tests)
    return {key: pos for key, (_, pos) in positions.items()}


def test_recovery_after_a_crash_validates_from_the_durable_position(tmp_path: Path) -> None:
    """The checkpoint records how much of the recovery-point segment was on disk: after a
    kill -9 the batches before it are indexed from their headers, not read and validated
    again (as the segments below the recovery point), and a torn tail after it is cut."""
    data = tmp_path / "data"
    manager = _open(data)
    log = manager.create("t", 0, LogConfig())
    for i in range(10):
        log.append(make_batch(2, timestamp=1_000 + i), now_ms=1_000 + i)
    log.flush()
    manager.flush_all()  # (writes the checkpoints)
    active = log.directory / f"{0:020d}.log"
    durable = active.stat().st_size
    assert _positions(data) == {("t", 0): durable}
    log.append(make_batch(2, timestamp=2_000), now_ms=2_000)
    log.flush()
    size = active.stat().st_size
    manager.abandon()
    with open(active, "ab") as f:
        f.write(make_batch(2, timestamp=3_000)[:-3])  # torn
    flip = BATCH * 3 + BATCH - 2  # a value byte of the 4th batch, inside the durable prefix
    with open(active, "r+b") as f:
        f.seek(flip)
        byte = f.read(1)
        f.seek(flip)
        f.write(bytes([byte[0] ^ 0xFF]))

    again = _open(data, background_load=False)
    log = again.get("t", 0)
    assert log is not None
    # the damaged batch was not validated again (it is in the prefix the checkpoint
    # vouches for); the batch written after the checkpoint was, and the torn one is gone
    assert log.log_end_offset == 22 and active.stat().st_size == size
    assert len(log.read(20, 1 << 20).records) == BATCH
    assert log.offset_for_timestamp(1_005) == (9, 1_005)  # (the header walk rebuilt the indexes)
    again.close()


def test_without_a_position_the_whole_segment_is_validated(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manager = _open(data)
    log = manager.create("t", 0, LogConfig())
    for i in range(10):
        log.append(make_batch(2, timestamp=1_000 + i), now_ms=1_000 + i)
    log.flush()
    manager.flush_all()
    active = log.directory / f"{0:020d}.log"
    manager.abandon()
    (data / RECOVERY_POSITIONS).unlink()
    flip = BATCH * 3 + BATCH - 2
    with open(active, "r+b") as f:
        f.seek(flip)
        byte = f.read(1)
        f.seek(flip)
        f.write(bytes([byte[0] ^ 0xFF]))
    again = _open(data, background_load=False)
    log = again.get("t", 0)
    assert log is not None and log.log_end_offset == 6  # cut at the corrupt 4th batch
    again.close()


def test_a_truncation_lowers_the_durable_position(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manager = _open(data)
    log = manager.create("t", 0, LogConfig())
    for i in range(10):
        log.append(make_batch(2, timestamp=1_000 + i), now_ms=1_000 + i)
    log.flush()
    manager.flush_all()
    assert _positions(data) == {("t", 0): 10 * BATCH}
    seen: list[dict[tuple[str, int], int]] = []
    assert log.hooks is not None
    lowered = log.hooks.recovery_point_lowered

    def spy(lg: SegmentLog) -> None:
        lowered(lg)
        seen.append(_positions(data))

    log.hooks = dataclasses.replace(log.hooks, recovery_point_lowered=spy)  # type: ignore[arg-type]
    log.truncate_to(8)
    # before the file is cut the position is forgotten; after, it is the new size
    assert seen == [{}, {("t", 0): 4 * BATCH}]
    manager.close()


def test_a_position_written_for_another_segment_is_not_used(tmp_path: Path) -> None:
    """A position names its segment: one left from before a roll (the other checkpoint file
    newer) is ignored, and that segment is validated whole."""
    data = tmp_path / "data"
    manager = _open(data)
    log = manager.create("t", 0, LogConfig())
    for i in range(10):
        log.append(make_batch(2, timestamp=1_000 + i), now_ms=1_000 + i)
    log.flush()
    manager.flush_all()
    active = log.directory / f"{0:020d}.log"
    manager.abandon()
    text = (data / RECOVERY_POSITIONS).read_text().replace("t 0 0 ", "t 0 7 ")
    (data / RECOVERY_POSITIONS).write_text(text)
    flip = BATCH * 3 + BATCH - 2
    with open(active, "r+b") as f:
        f.seek(flip)
        byte = f.read(1)
        f.seek(flip)
        f.write(bytes([byte[0] ^ 0xFF]))
    again = _open(data, background_load=False)
    log = again.get("t", 0)
    assert log is not None and log.log_end_offset == 6  # validated from the start: cut there
    again.close()
