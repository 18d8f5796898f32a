"""A Hypothesis state machine drives a log (and restarts it) against a list model."""

from __future__ import annotations

import shutil
import tempfile
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from storage_helpers import headers, make_batch, read_all

from riverbed.protocol.records.records import decode_records
from riverbed.storage import LogConfig, LogManager, MemoryLog, OffsetOutOfRange, PartitionLog

CONFIG = LogConfig(segment_bytes=400, index_interval_bytes=150)


@dataclass
class Model:
    bases: list[int] = field(default_factory=list)
    lasts: list[int] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    start: int = 0
    end: int = 0

    def visible(self) -> range:
        return range(bisect_left(self.lasts, self.start), len(self.bases))

    def drop_from(self, i: int) -> None:
        for column in (self.bases, self.lasts, self.stamps, self.data):
            del column[i:]

    def truncate(self, offset: int) -> None:
        if offset >= self.end:
            return
        if offset < self.start:
            self.drop_from(0)
            self.start = self.end = offset
            return
        i = bisect_left(self.lasts, offset)
        self.end = self.bases[i]
        self.drop_from(i)
        if self.end < self.start:
            self.drop_from(0)
            self.end = self.start


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.log: PartitionLog = self.make_log()

    def make_log(self) -> PartitionLog:
        return MemoryLog("t", 0, CONFIG)

    @rule(
        count=st.integers(1, 5),
        ts=st.integers(-1, 10_000),
        size=st.integers(0, 150),
        append_time=st.booleans(),
    )
    def append(self, count: int, ts: int, size: int, append_time: bool) -> None:
        batch = make_batch(count, timestamp=max(ts, 0), max_timestamp=ts, value_size=size)
        info = self.log.append(batch, now_ms=7_777, log_append_time=append_time)
        self.log.flush()
        m = self.model
        assert (info.base_offset, info.last_offset) == (m.end, m.end + count - 1)
        m.bases.append(m.end)
        m.lasts.append(m.end + count - 1)
        m.stamps.append(7_777 if append_time else ts)
        m.data.append(bytes(batch))
        m.end += count

    @rule(data=st.data(), max_bytes=st.integers(0, 1_500), min_one=st.booleans())
    def read(self, data: st.DataObject, max_bytes: int, min_one: bool) -> None:
        m = self.model
        offset = data.draw(st.integers(m.start - 2, m.end + 2), label="offset")
        if offset < m.start or offset > m.end:
            try:
                self.log.read(offset, max_bytes, min_one_batch=min_one)
            except OffsetOutOfRange:
                return
            raise AssertionError("expected OffsetOutOfRange")
        records = bytes(self.log.read(offset, max_bytes, min_one_batch=min_one).records)
        i = bisect_left(m.lasts, offset)
        expected = b"".join(m.data[i:])
        assert expected.startswith(records)
        got = headers(records)
        if got:
            assert got[0].base_offset <= max(offset, m.start) <= got[-1].last_offset
        if len(got) > 1 or not min_one:
            assert len(records) <= max_bytes
        if offset < m.end and min_one:
            assert len(got) >= 1

    @rule(data=st.data())
    def delete_records(self, data: st.DataObject) -> None:
        m = self.model
        target = data.draw(st.one_of(st.just(-1), st.integers(m.start, m.end)), label="target")
        assert self.log.delete_records(target) == max(m.start, m.end if target == -1 else target)
        m.start = self.log.log_start_offset

    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(0, self.model.end + 1), label="offset")
        self.log.truncate_to(offset)
        self.model.truncate(offset)

    @rule(ts=st.integers(-1, 10_001))
    def offset_for_timestamp(self, ts: int) -> None:
        # the first record (at or after the log start) with a timestamp >= ts, in the first
        # batch whose max timestamp (the header's, which may not match its records) is >= ts
        m = self.model
        expected = next(
            (
                (r.offset, r.timestamp)
                for i in m.visible()
                if m.stamps[i] >= ts
                for r in decode_records(m.data[i])
                if r.offset >= m.start and r.timestamp >= ts
            ),
            None,
        )
        assert self.log.offset_for_timestamp(ts) == expected

    @rule()
    def max_timestamp(self) -> None:
        # the first record holding the largest header max timestamp (the batch's base offset
        # when none of its records holds it), never below the log start
        m = self.model
        best, at = -1, -1
        for i in m.visible():
            if m.stamps[i] > best:
                best, at = m.stamps[i], i
        if best < 0:
            assert self.log.max_timestamp() == (-1, -1)
            return
        offset = next(
            (r.offset for r in decode_records(m.data[at]) if r.offset >= m.start and r.timestamp == best),
            max(m.bases[at], m.start),
        )
        assert self.log.max_timestamp() == (offset, best)

    @rule()
    def read_everything(self) -> None:
        m = self.model
        assert read_all(self.log) == b"".join(m.data[i] for i in m.visible())

    @invariant()
    def offsets_agree(self) -> None:
        m = self.model
        log = self.log
        assert (log.log_start_offset, log.log_end_offset) == (m.start, m.end)
        assert log.high_watermark == m.end


class SegmentLogMachine(LogMachine):
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="riverbed-stateful-"))
        self.manager = self.open_manager()
        super().__init__()

    def open_manager(self) -> LogManager:
        manager = LogManager(self.dir, fsync=lambda fd: None, default_config=CONFIG)
        manager.open()
        return manager

    def make_log(self) -> PartitionLog:
        return self.manager.create("t", 0, CONFIG)

    @rule(ms=st.integers(0, 10))
    def roll(self, ms: int) -> None:
        self.manager.get("t", 0).roll(now_ms=ms)  # type: ignore[union-attr]

    @rule(retention_bytes=st.integers(0, 2_000), now_ms=st.integers(0, 20_000))
    def retention(self, retention_bytes: int, now_ms: int) -> None:
        log = self.manager.get("t", 0)
        assert log is not None
        before = log.size_bytes
        log.update_config(LogConfig(retention_bytes=retention_bytes, retention_ms=5_000))
        deleted = log.enforce_retention(now_ms)
        log.update_config(CONFIG)
        m = self.model
        assert log.log_start_offset >= m.start
        if log.log_start_offset > m.start:
            # whole segments went: the new log start is a batch boundary of the model
            assert deleted > 0
            assert log.log_start_offset in m.bases or log.log_start_offset == m.end
        assert (log.size_bytes < before) == (deleted > 0)
        m.start = log.log_start_offset

    @rule(clean=st.booleans())
    def restart(self, clean: bool) -> None:
        if clean:
            self.manager.close()
        else:
            self.manager.abandon()
        self.manager = self.open_manager()
        log = self.manager.get("t", 0)
        assert log is not None
        self.log = log

    def teardown(self) -> None:
        self.manager.close()
        shutil.rmtree(self.dir, ignore_errors=True)


FAST = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMemoryLogModel = LogMachine.TestCase
TestMemoryLogModel.settings = FAST
TestSegmentLogModel = SegmentLogMachine.TestCase
TestSegmentLogModel.settings = FAST
