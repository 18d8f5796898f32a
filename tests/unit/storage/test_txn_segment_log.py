"""Transactions on the segment log: ``.txnindex`` files, producer snapshots with ongoing
transactions, clean and unclean restarts, retention and truncation."""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from storage_helpers import make_batch, producer_batch

from riverbed.storage import LogConfig, LogManager, SegmentLog
from riverbed.storage.files import LOG_SUFFIX, TXN_INDEX_SUFFIX, segment_name
from riverbed.storage.log import PRODUCER_SNAPSHOT, LogHooks

ENTRY = struct.Struct(">hqqqq")

Reopen = Callable[..., SegmentLog]


@pytest.fixture
def reopen() -> Iterator[Reopen]:
    """Close a log (cleanly or as a crash would) and load it again."""
    opened: list[SegmentLog] = []

    def run(log: SegmentLog, *, clean: bool) -> SegmentLog:
        point = log.recovery_point
        log.close(clean=clean)
        again = SegmentLog.load(
            log.directory, "t", 0, log.config, clean=clean, recovery_point=None if clean else point
        )
        opened.append(again)
        return again

    yield run
    for log in opened:
        log.close(clean=False)


def txnindex(log: SegmentLog, base: int) -> Path:
    return log.directory / segment_name(base, TXN_INDEX_SUFFIX)


def entries(path: Path) -> list[tuple[int, int, int, int, int]]:
    data = path.read_bytes()
    assert len(data) % 34 == 0
    return [ENTRY.unpack_from(data, i) for i in range(0, len(data), 34)]


def txn(log: SegmentLog, pid: int, seq: int = 0, count: int = 1) -> int:
    return log.append(producer_batch(pid, seq, count), now_ms=1_000).base_offset


def end(log: SegmentLog, pid: int, commit: bool) -> int:
    return log.append_marker(pid, 0, commit, 0, now_ms=2_000).base_offset


def state(log: SegmentLog) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
    """What must survive a restart: the LSO, the aborted transactions, the open ones."""
    ongoing = [(v.producer_id, v.current_txn_start_offset) for v in log.producer_states()]
    return log.last_stable_offset, log.aborted_transactions(0, log.log_end_offset), ongoing


def test_txnindex_layout_and_snapshot(make_segment_log: Callable[..., SegmentLog]) -> None:
    log = make_segment_log()
    assert txn(log, 5, count=2) == 0  # 0-1
    assert txn(log, 6) == 2
    assert end(log, 5, commit=False) == 3  # pid 6 still open: LSO recorded as 2
    txn(log, 7)  # 4: open across the roll
    log.flush()
    assert not txnindex(log, 0).exists()  # written when the segment is sealed
    log.roll(now_ms=3_000)
    assert not (log.directory / PRODUCER_SNAPSHOT).exists()  # written by the flush cycle
    log.flush()
    assert entries(txnindex(log, 0)) == [(0, 5, 0, 3, 2)]
    snapshot = json.loads((log.directory / PRODUCER_SNAPSHOT).read_bytes())
    assert (snapshot["version"], snapshot["offset"]) == (2, 5)
    assert snapshot["producers"]["6"]["txn"] == 2
    assert snapshot["producers"]["7"]["txn"] == 4
    assert snapshot["producers"]["5"]["txn"] == -1
    assert snapshot["producers"]["5"]["coord"] == 0
    assert not txnindex(log, 5).exists()  # no aborted transaction in the active segment


def test_marker_goes_through_group_commit(make_segment_log: Callable[..., SegmentLog]) -> None:
    log = make_segment_log()
    asked: list[SegmentLog] = []
    log.hooks = LogHooks(asked.append, lambda *_: None, lambda _: None)
    txn(log, 1)
    log.flush()
    asked.clear()
    end(log, 1, commit=True)
    assert asked == [log]
    assert (log.high_watermark, log.last_stable_offset) == (1, 0)
    log.flush()
    assert (log.high_watermark, log.last_stable_offset) == (2, 2)


def test_an_append_without_flush_asks_for_none(make_segment_log: Callable[..., SegmentLog]) -> None:
    """The coordinator's Complete record (flush=False): no fsync of its own; the next
    append that asks for one, or the caller, has it made durable."""
    log = make_segment_log()
    soon: list[SegmentLog] = []
    later: list[tuple[SegmentLog, float]] = []
    log.hooks = LogHooks(soon.append, lambda lg, d: later.append((lg, d)), lambda _: None)
    log.append(make_batch(1), now_ms=1_000, flush=False)
    log.append(make_batch(1), now_ms=1_000, flush=False)
    assert (soon, later) == ([], [])
    assert log.high_watermark == 0  # not durable, so not visible (flush.messages = 1)
    log.append(make_batch(1), now_ms=1_000)
    assert soon == [log]
    log.flush()
    assert log.high_watermark == 3


def test_an_append_without_flush_is_made_durable_on_request(manager_factory: Callable[..., LogManager]) -> None:
    manager = manager_factory()
    log = manager.create("t", 0, LogConfig())
    log.append(make_batch(2), now_ms=1_000, flush=False)
    time.sleep(0.2)
    assert log.high_watermark == 0  # nothing asked for a flush
    manager.request_flush(log)
    deadline = time.monotonic() + 10
    while log.high_watermark < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.high_watermark == 2


def test_clean_restart_restores_everything_without_replay(
    make_segment_log: Callable[..., SegmentLog], reopen: Reopen, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = make_segment_log()
    txn(log, 1)
    end(log, 1, commit=False)
    log.roll(now_ms=3_000)
    txn(log, 2)  # 2
    txn(log, 3)  # 3
    end(log, 2, commit=False)  # 4: aborted, in the active segment
    log.flush()
    before = state(log)
    assert before == (3, [(1, 0), (2, 2)], [(1, -1), (2, -1), (3, 3)])
    replays: list[int] = []
    original = SegmentLog._replay_locked

    def spy(self: SegmentLog, start: int) -> None:
        replays.append(start)
        original(self, start)

    monkeypatch.setattr(SegmentLog, "_replay_locked", spy)
    again = reopen(log, clean=True)
    assert replays == [5]  # from the log end: nothing
    assert entries(txnindex(again, 2)) == [(0, 2, 2, 4, 3)]
    assert state(again) == before
    # the open transaction still forbids non-transactional writes, and can end
    assert again.append_marker(3, 0, False, 0, now_ms=1).base_offset == 5
    again.flush()
    assert again.aborted_transactions(0, 10) == [(1, 0), (2, 2), (3, 3)]


def test_unclean_restart_replays_markers_after_the_snapshot(
    make_segment_log: Callable[..., SegmentLog], reopen: Reopen
) -> None:
    log = make_segment_log()
    txn(log, 1)  # 0: open when the segment rolls
    log.roll(now_ms=3_000)
    log.flush()  # snapshot at 1 (pid 1 open) and segment 0 finalized
    end(log, 1, commit=False)  # 1: aborts [0, 1], after the snapshot
    txn(log, 2)  # 2: begins after the snapshot
    log.flush()
    before = state(log)
    assert before == (2, [(1, 0)], [(1, -1), (2, 2)])
    assert not txnindex(log, 1).exists()  # the active segment's is written when sealed
    again = reopen(log, clean=False)
    assert state(again) == before
    assert entries(txnindex(again, 1)) == [(0, 1, 0, 1, 2)]  # rebuilt, and written at load


def test_unclean_restart_before_the_flush_cycle(
    make_segment_log: Callable[..., SegmentLog], reopen: Reopen
) -> None:
    """Rolled segments whose .txnindex was never written: the snapshot on disk is older than
    them (it is written after their indexes), so the replay covers them."""
    log = make_segment_log()
    txn(log, 1)
    end(log, 1, commit=False)  # 1
    log.roll(now_ms=3_000)
    log.flush()  # snapshot at 2
    txn(log, 2)  # 2
    end(log, 2, commit=False)  # 3
    log.roll(now_ms=3_000)
    txn(log, 3)  # 4
    end(log, 3, commit=False)  # 5
    log.roll(now_ms=3_000)  # not flushed: segments 2 and 4 have no .txnindex yet
    assert not txnindex(log, 2).exists()
    before = state(log)
    assert before[1] == [(1, 0), (2, 2), (3, 4)]
    again = reopen(log, clean=False)  # kill -9 keeps what was written, fsynced or not
    assert state(again) == (6, *before[1:])
    assert entries(txnindex(again, 2)) == [(0, 2, 2, 3, 4)]  # rewritten at load
    assert entries(txnindex(again, 4)) == [(0, 3, 4, 5, 6)]


@pytest.mark.parametrize("damage", ["missing", "short", "torn", "garbage"])
def test_damaged_txnindex_is_rebuilt(
    make_segment_log: Callable[..., SegmentLog], reopen: Reopen, damage: str
) -> None:
    """A crash while the flusher writes a .txnindex (before the snapshot that would
    vouch for it)."""
    log = make_segment_log()
    for pid in (1, 2, 3):
        txn(log, pid)
    for pid in (1, 2, 3):
        end(log, pid, commit=False)  # 3, 4, 5
    txn(log, 4)  # 6: open
    log.roll(now_ms=3_000)
    log.flush()
    before = state(log)
    assert len(entries(txnindex(log, 0))) == 3
    path = txnindex(log, 0)
    if damage == "missing":
        path.unlink()
    elif damage == "short":
        path.write_bytes(path.read_bytes()[:34])
    elif damage == "torn":
        path.write_bytes(path.read_bytes()[: 2 * 34 + 7])
    else:
        path.write_bytes(path.read_bytes() + ENTRY.pack(0, 9, 100, 200, 201) + b"\x00\x01")
    (log.directory / PRODUCER_SNAPSHOT).unlink()  # it was not written yet
    again = reopen(log, clean=False)
    assert state(again) == before
    assert [e[1:3] for e in entries(txnindex(again, 0))] == [(1, 0), (2, 1), (3, 2)]


def test_entries_beyond_the_recovered_end_are_dropped(
    make_segment_log: Callable[..., SegmentLog], reopen: Reopen
) -> None:
    log = make_segment_log()
    txn(log, 1)  # 0
    txn(log, 2)  # 1
    end(log, 1, commit=False)  # 2
    end(log, 2, commit=False)  # 3
    log.flush()
    log.close()  # clean: the active segment's .txnindex has both entries
    assert len(entries(txnindex(log, 0))) == 2
    # a torn write at the very end: the last marker is gone
    segment = log.directory / segment_name(0, LOG_SUFFIX)
    os.truncate(segment, segment.stat().st_size - 5)
    again = SegmentLog.load(log.directory, "t", 0, log.config, clean=False, recovery_point=0)
    try:
        assert again.log_end_offset == 3
        assert state(again) == (1, [(1, 0)], [(1, -1), (2, 1)])  # pid 2 is open again
        again.close()
        assert [e[1] for e in entries(txnindex(again, 0))] == [1]
    finally:
        again.close(clean=False)


def test_snapshot_version_1_is_still_read(
    make_segment_log: Callable[..., SegmentLog], reopen: Reopen
) -> None:
    log = make_segment_log()
    log.append(producer_batch(3, 0, 2, transactional=False), now_ms=1)
    log.flush()
    log.close()
    v1 = {
        "version": 1,
        "offset": 2,
        "producers": {"3": {"epoch": 0, "ts": 1001, "batches": [[0, 1, 0, 1, 1001]]}},
    }
    (log.directory / PRODUCER_SNAPSHOT).write_text(json.dumps(v1))
    again = SegmentLog.load(log.directory, "t", 0, log.config, clean=True)
    try:
        (view,) = again.producer_states()
        assert (view.producer_id, view.last_sequence, view.coordinator_epoch) == (3, 1, -1)
        assert view.current_txn_start_offset == -1
        dup = again.append(producer_batch(3, 0, 2, transactional=False), now_ms=1)
        assert (dup.base_offset, again.log_end_offset) == (0, 2)
    finally:
        again.close(clean=False)


def test_retention_and_delete_records_remove_txnindex_files(
    make_segment_log: Callable[..., SegmentLog],
) -> None:
    log = make_segment_log()
    for i in range(3):  # three segments, each with one aborted transaction
        base = txn(log, i)
        end(log, i, commit=False)
        log.roll(now_ms=3_000)
        log.flush()
        assert txnindex(log, base).exists()
    assert log.aborted_transactions(0, 6) == [(0, 0), (1, 2), (2, 4)]
    log.delete_records(2)
    assert not txnindex(log, 0).exists()
    assert log.aborted_transactions(2, 6) == [(1, 2), (2, 4)]
    log.update_config(LogConfig(retention_bytes=0))
    assert log.enforce_retention(now_ms=4_000) == 2
    assert not txnindex(log, 2).exists() and not txnindex(log, 4).exists()
    assert log.aborted_transactions(6, 6) == []


def test_delete_topic_removes_txnindex_files(manager_factory: Callable[..., LogManager]) -> None:
    manager = manager_factory()
    log = manager.create("t", 0, LogConfig())
    log.append(producer_batch(1, 0), now_ms=1)
    log.append_marker(1, 0, False, 0, now_ms=1)
    log.roll()
    manager.flush_all()
    assert txnindex(log, 0).exists()
    assert manager.delete_topic("t") == 1
    assert not log.directory.exists()


def test_truncation_rewrites_the_txnindex(
    make_segment_log: Callable[..., SegmentLog], reopen: Reopen
) -> None:
    log = make_segment_log()
    txn(log, 1)  # 0
    end(log, 1, commit=False)  # 1
    txn(log, 2)  # 2
    end(log, 2, commit=False)  # 3
    log.append(make_batch(1), now_ms=1)  # 4
    log.roll(now_ms=3_000)
    txn(log, 3)  # 5
    end(log, 3, commit=False)  # 6
    log.flush()
    assert len(entries(txnindex(log, 0))) == 2
    log.truncate_to(3)  # segment 5 goes, the second marker too
    assert not txnindex(log, 5).exists()
    assert [e[1] for e in entries(txnindex(log, 0))] == [1]  # rewritten at once
    assert state(log) == (2, [(1, 0)], [(1, -1), (2, 2)])
    end(log, 2, commit=True)  # 3
    txn(log, 4)  # 4
    log.flush()
    before = state(log)
    assert before == (4, [(1, 0)], [(1, -1), (2, -1), (4, 4)])
    again = reopen(log, clean=False)
    assert state(again) == before
    again.truncate_to(1)
    assert state(again) == (0, [], [(1, 0)])
    assert not txnindex(again, 0).exists()


def test_coordinator_batches_survive_a_crash(make_segment_log: Callable[..., SegmentLog], reopen: Reopen) -> None:
    log = make_segment_log()
    log.append(producer_batch(4, -1, epoch=1), now_ms=1, origin_coordinator=True)
    log.append(producer_batch(4, -1, epoch=1), now_ms=1, origin_coordinator=True)
    log.flush()
    again = reopen(log, clean=False)
    assert state(again) == (0, [], [(4, 0)])
    info = again.append(producer_batch(4, -1, epoch=1), now_ms=1, origin_coordinator=True)
    assert info.base_offset == 2
    assert again.append_marker(4, 1, False, 0, now_ms=1).base_offset == 3
    again.flush()
    assert state(again) == (4, [(4, 0)], [(4, -1)])
