"""A Hypothesis state machine drives transactional and plain appends, markers, flushes,
truncations and (for the segment log) rolls, clean restarts and crashes with damaged files,
and compares the LSO, the aborted transactions and the open transactions with a model that
replays the surviving log from scratch."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from storage_helpers import make_batch, producer_batch

from riverbed.protocol.errors import ErrorCode, KafkaError
from riverbed.storage import LogConfig, MemoryLog, PartitionLog, SegmentLog
from riverbed.storage.files import LOG_SUFFIX, TXN_INDEX_SUFFIX, parse_segment_name, segment_name
from riverbed.storage.log import PRODUCER_SNAPSHOT
from riverbed.storage.txn_index import TXN_ENTRY_SIZE, AbortedTxn, encode_entries

CONFIG = LogConfig(segment_bytes=400, index_interval_bytes=150)
PIDS = (1, 2, 3)


@dataclass(frozen=True)
class Event:
    """One stored batch: data (``pid`` -1 for a plain batch) or a marker."""

    pid: int
    base: int
    last: int
    marker: bool = False
    transactional: bool = False
    commit: bool = False
    epoch: int = 0
    last_seq: int = -1


@dataclass
class Replay:
    ongoing: dict[int, int] = field(default_factory=dict)
    completed: list[tuple[int, int, int, bool]] = field(default_factory=list)
    """(pid, first offset, marker offset, aborted)"""
    epoch: dict[int, int] = field(default_factory=dict)
    next_seq: dict[int, int] = field(default_factory=dict)


def replay(events: list[Event]) -> Replay:
    r = Replay()
    for e in events:
        if e.pid < 0:
            continue
        if r.epoch.get(e.pid) != e.epoch:
            r.epoch[e.pid] = e.epoch
            r.next_seq[e.pid] = 0
        if not e.marker:
            r.next_seq[e.pid] = e.last_seq + 1
            if e.transactional:
                r.ongoing.setdefault(e.pid, e.base)
            continue
        first = r.ongoing.pop(e.pid, None)
        if first is not None:
            r.completed.append((e.pid, first, e.base, not e.commit))
    return r


def expected_aborted(r: Replay, start: int, upper: int) -> list[tuple[int, int]]:
    found = sorted((first, pid) for pid, first, m, aborted in r.completed if aborted and m >= start and first < upper)
    return [(pid, first) for first, pid in found]


class TxnMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self.end = 0
        self.log: PartitionLog = self.make_log()

    def make_log(self) -> PartitionLog:
        return MemoryLog("t", 0, CONFIG)

    def refused(self, code: ErrorCode, fn: object, *args: object, **kwargs: object) -> None:
        with pytest.raises(KafkaError) as info:
            fn(*args, **kwargs)  # type: ignore[operator]
        assert info.value.code == code
        assert self.log.log_end_offset == self.end

    def stored(self, event: Event) -> None:
        assert event.base == self.end
        self.events.append(event)
        self.end = event.last + 1

    @rule(pid=st.sampled_from(PIDS), count=st.integers(1, 3))
    def transactional(self, pid: int, count: int) -> None:
        r = replay(self.events)
        seq, epoch = r.next_seq.get(pid, 0), r.epoch.get(pid, 0)
        info = self.log.append(producer_batch(pid, seq, count, epoch=epoch), now_ms=1)
        self.stored(Event(pid, info.base_offset, info.last_offset, transactional=True, epoch=epoch, last_seq=seq + count - 1))

    @rule(pid=st.sampled_from((-1, *PIDS)), count=st.integers(1, 3))
    def plain(self, pid: int, count: int) -> None:
        if pid < 0:
            info = self.log.append(make_batch(count), now_ms=1)
            self.stored(Event(-1, info.base_offset, info.last_offset))
            return
        r = replay(self.events)
        seq, epoch = r.next_seq.get(pid, 0), r.epoch.get(pid, 0)
        batch = producer_batch(pid, seq, count, epoch=epoch, transactional=False)
        if pid in r.ongoing:
            self.refused(ErrorCode.INVALID_TXN_STATE, self.log.append, batch, now_ms=1)
            return
        info = self.log.append(batch, now_ms=1)
        self.stored(Event(pid, info.base_offset, info.last_offset, epoch=epoch, last_seq=seq + count - 1))

    @rule(pid=st.sampled_from(PIDS), commit=st.booleans(), bump=st.booleans())
    def end_transaction(self, pid: int, commit: bool, bump: bool) -> None:
        epoch = replay(self.events).epoch.get(pid, 0) + int(bump)
        info = self.log.append_marker(pid, epoch, commit, 0, now_ms=2)
        self.stored(Event(pid, info.base_offset, info.last_offset, marker=True, commit=commit, epoch=epoch))

    @rule(pid=st.sampled_from(PIDS))
    def fenced_marker(self, pid: int) -> None:
        epoch = replay(self.events).epoch.get(pid, 0)
        if epoch > 0:
            self.refused(ErrorCode.INVALID_PRODUCER_EPOCH, self.log.append_marker, pid, epoch - 1, True, 0, now_ms=2)

    @rule()
    def flush(self) -> None:
        self.log.flush()

    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(0, self.end + 1), label="offset")
        self.log.truncate_to(offset)
        if offset < self.end:
            cut = next(i for i, e in enumerate(self.events) if e.last >= offset)
            self.end = self.events[cut].base
            del self.events[cut:]

    @rule(data=st.data())
    def aborted_window(self, data: st.DataObject) -> None:
        start = data.draw(st.integers(0, self.end), label="start")
        upper = data.draw(st.integers(0, self.end + 2), label="upper")
        got = self.log.aborted_transactions(start, upper)
        assert got == expected_aborted(replay(self.events), start, upper)

    @invariant()
    def agrees_with_a_fresh_replay(self) -> None:
        log = self.log
        r = replay(self.events)
        assert log.log_end_offset == self.end
        hw = log.high_watermark
        unstable = [*r.ongoing.values(), *(first for _, first, m, _ in r.completed if m >= hw)]
        assert log.last_stable_offset == min([hw, *unstable])
        assert log.read(log.log_start_offset, 0).last_stable_offset == log.last_stable_offset
        assert log.aborted_transactions(0, self.end) == expected_aborted(r, 0, self.end)
        half = self.end // 2
        assert log.aborted_transactions(half, self.end) == expected_aborted(r, half, self.end)
        assert log.aborted_transactions(0, half) == expected_aborted(r, 0, half)
        views = log.producer_states()
        assert {v.producer_id: v.current_txn_start_offset for v in views if v.current_txn_start_offset >= 0} == r.ongoing
        assert {v.producer_id: v.producer_epoch for v in views} == r.epoch


def _noop_fsync(fd: int) -> None:
    pass


class SegmentTxnMachine(TxnMachine):
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="riverbed-txn-"))
        super().__init__()

    @property
    def path(self) -> Path:
        return self.dir / "t-0"

    def make_log(self) -> PartitionLog:
        return SegmentLog.create(self.path, "t", 0, CONFIG, fsync=_noop_fsync)

    @property
    def seglog(self) -> SegmentLog:
        assert isinstance(self.log, SegmentLog)
        return self.log

    @rule()
    def roll(self) -> None:
        self.seglog.roll(now_ms=5)

    @rule()
    def clean_restart(self) -> None:
        self.seglog.close()
        self.log = SegmentLog.load(self.path, "t", 0, CONFIG, clean=True, fsync=_noop_fsync)

    @rule(
        chop=st.integers(0, 90),
        damage=st.lists(st.sampled_from(["missing", "short", "torn", "garbage"]), max_size=3),
        data=st.data(),
    )
    def crash(self, chop: int, damage: list[str], data: st.DataObject) -> None:
        """kill -9, maybe mid-write: the last segment may lose a tail, and any .txnindex that
        the snapshot on disk does not vouch for (at or after its offset) may be missing,
        short, torn or stale."""
        point = self.seglog.recovery_point
        self.seglog.close(clean=False)
        names = os.listdir(self.path)
        bases = sorted(b for n in names if (b := parse_segment_name(n, LOG_SUFFIX)) is not None)
        last = self.path / segment_name(bases[-1], LOG_SUFFIX)
        os.truncate(last, max(0, last.stat().st_size - chop))
        try:
            snapshot_at = json.loads((self.path / PRODUCER_SNAPSHOT).read_bytes())["offset"]
        except FileNotFoundError:
            snapshot_at = -1
        exposed = [b for b in bases if b >= snapshot_at]
        for kind in damage if exposed else []:
            base = data.draw(st.sampled_from(exposed), label="segment")
            index = self.path / segment_name(base, TXN_INDEX_SUFFIX)
            old = index.read_bytes() if index.exists() else b""
            if kind == "missing":
                index.unlink(missing_ok=True)
            elif kind == "short":
                index.write_bytes(old[: len(old) - TXN_ENTRY_SIZE] if old else b"")
            elif kind == "torn":  # whole entries, then part of one
                whole = old[: len(old) - len(old) % TXN_ENTRY_SIZE]
                index.write_bytes(whole + encode_entries([AbortedTxn(1, base, base + 1, base + 2)])[:20])
            else:  # an entry for a marker that is not (or no longer) in the log
                index.write_bytes(old + encode_entries([AbortedTxn(2, base, base + 1_000, base + 1_001)]))
        self.log = SegmentLog.load(self.path, "t", 0, CONFIG, clean=False, recovery_point=point, fsync=_noop_fsync)
        new_end = self.log.log_end_offset
        assert new_end <= self.end
        kept = [e for e in self.events if e.last < new_end]
        assert new_end == (kept[-1].last + 1 if kept else 0)
        self.events, self.end = kept, new_end

    def teardown(self) -> None:
        self.seglog.close(clean=False)
        shutil.rmtree(self.dir, ignore_errors=True)


FAST = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMemoryTxnModel = TxnMachine.TestCase
TestMemoryTxnModel.settings = FAST
TestSegmentTxnModel = SegmentTxnMachine.TestCase
TestSegmentTxnModel.settings = FAST
