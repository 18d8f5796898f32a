"""RemoteLogManager: copies, retries, local and remote deletion, crash consistency."""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import fill_log
from remote_helpers import Crash, FakeTieredLog, FaultyStore, ManualMonotonic
from storage_helpers import headers, read_all

from riverbed.storage import LogConfig, SegmentLog
from riverbed.storage.remote import (
    LocalDirStore,
    RemoteLogManager,
    RemoteLogManagerConfig,
    RemoteLogMetadata,
    RemoteLogReader,
    SegmentState,
    TieringConfig,
)
from riverbed.storage.remote.copier import STAGING_DIR

TIER_ALL = TieringConfig(True, local_retention_ms=0)
"""Delete local copies as soon as they are remote."""
NO_JITTER = RemoteLogManagerConfig(
    backoff_initial_s=1.0, backoff_max_s=8.0, backoff_jitter=0.0, max_copies_per_pass=100
)


def _manager(
    store: object, clock_ms: list[int], mono: ManualMonotonic, **kw: object
) -> RemoteLogManager:
    return RemoteLogManager(
        store,  # type: ignore[arg-type]
        kw.pop("config", NO_JITTER),  # type: ignore[arg-type]
        clock=lambda: clock_ms[0] / 1000,
        monotonic=mono,
        rng=random.Random(1),
        **kw,  # type: ignore[arg-type]
    )


def _check_consistent(
    store: LocalDirStore, meta: RemoteLogMetadata, fake: FakeTieredLog, *, settled: bool = True
) -> None:
    """No lost, duplicated or orphaned segment: finished ranges are disjoint and ordered,
    every object in the store belongs to an entry (once ``settled``: to a finished one, with
    its full size), and every offset deleted locally is in a finished remote segment."""
    finished = meta.finished()
    for a, b in itertools.pairwise(finished):
        assert a.last_offset < b.base_offset
    stored = {k: store.head(k) for k in store.list("")}
    if settled:
        assert all(s.state is SegmentState.COPY_FINISHED for s in meta.segments())
        expected = {
            k: s.files[k.rsplit("-", 1)[1][32:]] for s in finished for k in s.keys(meta.prefix)
        }
        assert stored == expected
    else:
        known = {k for s in meta.segments() for k in s.keys(meta.prefix)}
        assert set(stored) <= known
        for s in finished:
            for suffix, size in s.files.items():
                assert stored[s.key(meta.prefix, suffix)] == size
    covered = [(s.base_offset, s.last_offset) for s in finished]
    for base, last in fake.dropped:
        if last < fake.log_start_offset:
            continue  # total retention removed it everywhere
        assert any(b <= base and last <= e for b, e in covered), (base, last, covered)
    sealed = fake.sealed_segments()
    if finished and sealed:
        assert finished[-1].last_offset + 1 >= sealed[0].base_offset  # no hole


def _everything(log: SegmentLog, meta: RemoteLogMetadata, reader: RemoteLogReader) -> bytes:
    """Read the whole partition, remote part then local part, as a consumer would."""
    out = bytearray()
    offset = 0
    while offset < log.high_watermark:
        data = reader.read(meta, offset, 1 << 20) if offset < log.log_start_offset else None
        if data is None:
            data = log.read(offset, 1 << 20).records
        assert len(data) > 0
        out += data
        offset = headers(data)[-1].next_offset
    return bytes(out)


def test_copies_then_deletes_local(make_log: Callable[..., SegmentLog], tmp_path: Path) -> None:
    log = make_log()
    fill_log(log, 40)
    original = read_all(log)
    fake = FakeTieredLog(log)
    sealed = fake.sealed_segments()
    assert len(sealed) >= 5
    store = LocalDirStore(tmp_path / "objects")
    clock, mono = [10**9], ManualMonotonic()
    rlm = _manager(store, clock, mono)
    meta = rlm.register(fake, TieringConfig(True, local_retention_ms=-1, local_retention_bytes=-1))
    assert rlm.run_once() == 0
    assert [(s.base_offset, s.last_offset) for s in meta.finished()] == [
        (s.base_offset, s.last_offset) for s in sealed
    ]
    assert fake.dropped == []  # local retention keeps everything
    _check_consistent(store, meta, fake)
    for seg in meta.finished():
        assert (
            store.get(seg.key(meta.prefix, ".log"))
            == (log.directory / f"{seg.base_offset:020d}.log").read_bytes()
        )
        assert seg.key(meta.prefix, ".snapshot") in store.list("")
    assert not any((log.directory / STAGING_DIR).iterdir())
    # a second pass copies nothing new
    rlm.run_once()
    assert len(meta.segments()) == len(sealed)
    # now local retention expires them: the local copies go, the data stays readable
    rlm.update_tiering("t", 0, TIER_ALL)
    rlm.run_once()
    assert [b for b, _ in fake.dropped] == [s.base_offset for s in sealed]
    assert log.log_start_offset == sealed[-1].last_offset + 1
    assert fake.log_start_offset == 0
    _check_consistent(store, meta, fake)
    assert _everything(log, meta, RemoteLogReader(store, block_size=100)) == original


def test_unreachable_store_backs_off_and_keeps_local(
    make_log: Callable[..., SegmentLog], tmp_path: Path
) -> None:
    log = make_log()
    fill_log(log, 30)
    fake = FakeTieredLog(log)
    store = FaultyStore(LocalDirStore(tmp_path / "objects"), down=True)
    clock, mono = [10**9], ManualMonotonic()
    rlm = _manager(store, clock, mono)
    meta = rlm.register(fake, TIER_ALL)
    status = rlm.status("t", 0)
    assert status is not None
    for _ in range(6):
        assert rlm.run_once() == 1
        assert rlm.run_once() == 0  # backing off: no attempt at all
        mono.now = status.next_attempt
    assert status.delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert status.failures == 6 and "down" in (status.last_error or "")
    assert fake.dropped == [] and meta.finished() == []
    # produce and fetch of local data are unaffected
    fill_log(log, 5)
    assert log.read(0, 100).records
    store.down = False
    assert rlm.run_once() == 0
    assert status.failures == 0
    assert meta.finished() and fake.dropped
    _check_consistent(store.inner, meta, fake)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(8))
def test_random_faults_never_lose_or_duplicate(
    make_log: Callable[..., SegmentLog], tmp_path: Path, seed: int
) -> None:
    log = make_log()
    inner = LocalDirStore(tmp_path / "objects")
    store = FaultyStore(inner, fail_rate=0.3, seed=seed)
    fake = FakeTieredLog(log)
    clock, mono = [10**9], ManualMonotonic()
    rlm = _manager(store, clock, mono)
    meta = rlm.register(fake, TIER_ALL)
    rng = random.Random(seed)
    expected = bytearray()
    for _ in range(60):
        fill_log(log, rng.randint(0, 4))
        rlm.run_once()
        _check_consistent(inner, meta, fake, settled=False)
        mono.now += rng.choice([0.0, 1.0, 10.0])
    store.fail_rate = 0.0
    mono.now += 100
    rlm.run_once()
    _check_consistent(inner, meta, fake)
    assert sum(store.faults.values()) > 10
    sealed_total = meta.highest_copied_offset()
    assert sealed_total >= 0
    reader = RemoteLogReader(inner, block_size=128)
    data = _everything(log, meta, reader)
    offsets = [h.base_offset for h in headers(data)]
    assert offsets == sorted(set(offsets)) and offsets[0] == 0
    assert headers(data)[-1].next_offset == log.high_watermark
    del expected


class CrashingFsync:
    """fsync that dies after ``limit`` calls (counted together with store calls)."""

    def __init__(self, counter: list[int], limit: int | None) -> None:
        self.counter = counter
        self.limit = limit

    def __call__(self, fd: int) -> None:
        self.counter[0] += 1
        if self.limit is not None and self.counter[0] > self.limit:
            raise Crash()
        os.fsync(fd)


class CountingStore(FaultyStore):
    def __init__(self, inner: LocalDirStore, counter: list[int], limit: int | None) -> None:
        super().__init__(inner)
        self.counter = counter
        self.limit = limit

    def _step(self) -> str | None:
        self.counter[0] += 1
        if self.limit is not None and self.counter[0] > self.limit:
            raise Crash()
        return None


def _crash_run(tmp_path: Path, limit: int | None, retention: LogConfig | None = None) -> int:
    """Tier a fresh log with a crash after ``limit`` steps (store calls + fsyncs of the
    metadata), restart from the files, finish; check consistency. Returns the step count."""
    root = tmp_path / f"run-{limit}"
    config = retention or LogConfig(segment_bytes=600, index_interval_bytes=150, retention_ms=-1)
    log = SegmentLog.create(root / "t-0", "t", 0, config)
    try:
        fill_log(log, 30)
        original_end = log.high_watermark
        inner = LocalDirStore(root / "objects")
        counter = [0]
        fake = FakeTieredLog(log)
        clock, mono = [10**9], ManualMonotonic()
        rlm = _manager(
            CountingStore(inner, counter, limit), clock, mono, fsync=CrashingFsync(counter, limit)
        )
        try:
            rlm.register(fake, TIER_ALL)
            rlm.run_once()
            rlm.run_once()
        except Crash:
            pass
        steps = counter[0]
        # restart: a new manager from the metadata file, a healthy store
        rlm2 = _manager(inner, clock, mono)
        fake2 = FakeTieredLog(log)
        fake2.dropped = fake.dropped
        fake2._start = fake.log_start_offset
        meta = rlm2.register(fake2, TIER_ALL)
        rlm2.run_once()
        _check_consistent(inner, meta, fake2)
        staging = log.directory / STAGING_DIR
        assert not staging.exists() or not list(staging.iterdir())
        data = _everything(log, meta, RemoteLogReader(inner))
        assert headers(data)[0].base_offset == fake2.log_start_offset
        assert headers(data)[-1].next_offset == original_end
        return steps
    finally:
        log.close(clean=False)


def test_crash_at_every_step_leaves_a_consistent_state(tmp_path: Path) -> None:
    total = _crash_run(tmp_path, None)
    assert total > 20
    for limit in range(total + 1):
        _crash_run(tmp_path, limit)


def test_total_retention_deletes_remote_segments(
    make_log: Callable[..., SegmentLog], tmp_path: Path
) -> None:
    log = make_log()
    fill_log(log, 40, start_ts=1_000, ts_step=100)
    fake = FakeTieredLog(log)
    store = LocalDirStore(tmp_path / "objects")
    clock, mono = [1_000], ManualMonotonic()
    moved: list[int] = []  # the broker is told when the log start moves (its fetches look again)
    rlm = _manager(store, clock, mono, on_log_start_moved=lambda: moved.append(fake.log_start_offset))
    meta = rlm.register(fake, TIER_ALL)
    rlm.run_once()
    finished = meta.finished()
    assert len(finished) >= 4
    assert moved == []
    log.update_config(LogConfig(segment_bytes=600, index_interval_bytes=150, retention_ms=1_000))
    clock[0] = finished[1].max_timestamp + 1_001  # the first two segments expire
    rlm.run_once()
    assert [s.segment_id for s in meta.finished()] == [s.segment_id for s in finished[2:]]
    assert fake.log_start_offset == finished[2].base_offset
    assert moved == [finished[2].base_offset]
    assert meta.log_start_offset == finished[2].base_offset
    _check_consistent(store, meta, fake)
    # DeleteRecords into the middle of a remote segment
    fake.advance_log_start(finished[2].base_offset + 1)
    rlm.run_once()
    assert meta.log_start_offset == finished[2].base_offset + 1
    assert len(meta.finished()) == len(finished) - 2


def test_compacted_topic_is_tiered(make_log: Callable[..., SegmentLog], tmp_path: Path) -> None:
    log = make_log()
    log.update_config(
        LogConfig(
            segment_bytes=600,
            index_interval_bytes=150,
            cleanup_delete=False,
            cleanup_compact=True,
            retention_ms=1,
        )
    )
    fill_log(log, 30)
    fake = FakeTieredLog(log)
    store = LocalDirStore(tmp_path / "objects")
    clock, mono = [10**12], ManualMonotonic()
    rlm = _manager(store, clock, mono)
    meta = rlm.register(fake, TieringConfig(True, local_retention_bytes=700, local_retention_ms=-1))
    rlm.run_once()
    assert meta.finished() and fake.dropped
    assert log.size_bytes - 700 < max(s.size for s in fake.sealed_segments() or meta.finished())
    assert len(meta.finished()) == len(meta.segments())  # retention.ms ignored: compact only
    _check_consistent(store, meta, fake)


def test_background_thread(make_log: Callable[..., SegmentLog], tmp_path: Path) -> None:
    log = make_log()
    fill_log(log, 20)
    fake = FakeTieredLog(log)
    rlm = RemoteLogManager(LocalDirStore(tmp_path / "o"), RemoteLogManagerConfig(interval_s=0.01))
    meta = rlm.register(fake, TieringConfig(True))
    rlm.start()
    try:
        deadline = time.monotonic() + 10
        while meta.highest_copied_offset() < fake.sealed_segments()[-1].last_offset:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        rlm.stop()
    rlm.unregister("t", 0)
    assert rlm.status("t", 0) is None


def test_delete_remote_partition(make_log: Callable[..., SegmentLog], tmp_path: Path) -> None:
    log = make_log()
    fill_log(log, 20)
    store = LocalDirStore(tmp_path / "objects")
    rlm = RemoteLogManager(store)
    meta = rlm.register(FakeTieredLog(log), TieringConfig(True))
    rlm.run_once()
    assert store.list("")
    count = len(store.list(""))
    assert rlm.delete_remote_partition("t", 0) == count
    assert store.list("") == []
    assert meta.segments() == []
    assert rlm.status("t", 0) is None
