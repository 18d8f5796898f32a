"""The cleaner's rewrite in a worker process (riverbed.storage.cleaner_worker): the worker
dying mid-clean, a stop, and a kill -9 of the process that owns the log (the broker) mid-clean
all leave the log exactly as it was; the same log cleaned on a thread and in a worker comes out
byte for byte the same."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cleaner_helpers import DAY, compact_config, records

from riverbed.protocol.records.compression import Compression
from riverbed.protocol.records.records import build_batch
from riverbed.storage import SegmentLog
from riverbed.storage.cleaner import CleanStats, Throttler, clean_log
from riverbed.storage.cleaner_worker import ProcessRunner
from riverbed.storage.swap import CLEANED_SUFFIX, SWAP_SUFFIX

NOW = 10_000_000
CONFIG = compact_config(segment_bytes=256 << 10, index_interval_bytes=4096, delete_retention_ms=DAY)


def build(directory: Path, batches: int = 400, keys: int = 50) -> SegmentLog:
    """About 100 records per batch, 100 B values, ``keys`` keys, some tombstones and a
    compressed batch every tenth: sealed segments of 256 KiB."""
    log = SegmentLog.create(directory, "t", 0, CONFIG)
    n = 0
    for b in range(batches):
        recs = []
        for _ in range(100):
            value = None if n % 97 == 5 else b"v" * 100
            recs.append((f"key-{n % keys}".encode(), value, [], 1_000))
            n += 1
        log.append(build_batch(recs, compression=Compression.ZSTD if b % 10 == 9 else Compression.NONE), now_ms=1_000)
    log.roll(now_ms=1_000)
    log.flush()
    return log


@pytest.fixture
def runner() -> Iterator[ProcessRunner]:
    r = ProcessRunner()
    yield r
    r.close()


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith((CLEANED_SUFFIX, SWAP_SUFFIX))]


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.suffix in (".log", ".txnindex")}


def test_thread_and_worker_write_the_same_bytes(tmp_path: Path, runner: ProcessRunner) -> None:
    a, b = build(tmp_path / "a-0"), build(tmp_path / "b-0")
    for now in (NOW, NOW + 2 * DAY):
        sa = clean_log(a, now)
        sb = clean_log(b, now, runner=runner)
        assert sa is not None and sb is not None and not sa.aborted and not sb.aborted
        for name in ("end_offset", "records_read", "records_removed", "tombstones_removed", "bytes_written", "segments_after"):
            assert getattr(sa, name) == getattr(sb, name), name
    assert runner.runs == 2 and runner.starts == 1 and runner.crashes == 0
    assert records(a) == records(b)
    assert files(tmp_path / "a-0") == files(tmp_path / "b-0")
    assert not any(v is None for _, _, v in records(b))  # the tombstones went after their horizon
    a.close()
    b.close()


def _clean_in_thread(log: SegmentLog, runner: ProcessRunner, **kwargs: object) -> tuple[threading.Thread, list[CleanStats | None]]:
    out: list[CleanStats | None] = []
    t = threading.Thread(target=lambda: out.append(clean_log(log, NOW, runner=runner, **kwargs)))  # type: ignore[arg-type]
    t.start()
    return t, out


def _wait_for(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("how", ["external-kill", "after-group", "before-answer"])
def test_worker_crash_mid_clean_leaves_the_log_intact(tmp_path: Path, how: str, runner: ProcessRunner) -> None:
    directory = tmp_path / "c-0"
    log = build(directory)
    before = records(log)
    before_files = files(directory)
    if how == "external-kill":
        # slow enough (1 MB/s) to be killed while it writes its first group
        t, out = _clean_in_thread(log, runner, throttle=Throttler(1_000_000))
        _wait_for(lambda: runner.pid is not None and leftovers(directory))
        assert runner.pid is not None
        os.kill(runner.pid, signal.SIGKILL)
        t.join(30)
        stats = out[0]
    else:
        runner.fail_point = how
        stats = clean_log(log, NOW, runner=runner)
    assert stats is not None and stats.aborted and runner.crashes == 1
    assert records(log) == before and files(directory) == before_files
    assert leftovers(directory) == []
    assert log.cleaner_state.first_dirty_offset == -1  # the next clean starts over
    runner.fail_point = None
    stats = clean_log(log, NOW, runner=runner)  # and the next one works
    assert stats is not None and not stats.aborted and stats.records_removed > 0
    assert runner.starts == 2  # a new worker after the crash
    cleaned = records(log)
    assert cleaned != before
    log.close()
    again = SegmentLog.load(directory, "t", 0, CONFIG)
    assert records(again) == cleaned
    again.close()


def test_stop_kills_the_worker_and_keeps_the_log(tmp_path: Path, runner: ProcessRunner) -> None:
    directory = tmp_path / "s-0"
    log = build(directory)
    before = records(log)
    stop = threading.Event()
    t, out = _clean_in_thread(log, runner, throttle=Throttler(1_000_000), stop=stop)
    _wait_for(lambda: runner.pid is not None)
    pid = runner.pid
    assert pid is not None
    stop.set()
    t.join(30)
    assert out[0] is not None and out[0].aborted
    assert _gone(pid) and runner.crashes == 0
    assert records(log) == before and leftovers(directory) == []
    log.close()


OWNER = r"""
import sys, time, threading
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from cleaner_helpers import compact_config, DAY
from riverbed.storage import SegmentLog
from riverbed.storage.cleaner import Throttler, clean_log
from riverbed.storage.cleaner_worker import ProcessRunner

config = compact_config(segment_bytes=256 << 10, index_interval_bytes=4096, delete_retention_ms=DAY)
log = SegmentLog.load(Path(sys.argv[1]), "t", 0, config)
runner = ProcessRunner()
threading.Thread(target=lambda: clean_log(log, 10_000_000, runner=runner, throttle=Throttler(1_000_000)), daemon=True).start()
while runner.pid is None:
    time.sleep(0.005)
print(runner.pid, flush=True)
time.sleep(600)
"""


def test_kill_9_of_the_owning_process_mid_clean(tmp_path: Path, runner: ProcessRunner) -> None:
    """The process that owns the log (the broker) dies by SIGKILL while its worker writes:
    the worker dies too (it must not write into a directory a restarted broker uses), and
    the log opens as it was, without leftovers."""
    directory = tmp_path / "k-0"
    log = build(directory)
    before = records(log)
    log.close()
    helpers = str(Path(__file__).parent)
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(directory), helpers], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        worker = int(owner.stdout.readline())
        _wait_for(lambda: bool(leftovers(directory)))  # the worker is writing a group
        owner.send_signal(signal.SIGKILL)
        owner.wait(30)
        killed = time.monotonic()
        _wait_for(lambda: _gone(worker), timeout=10)
        assert time.monotonic() - killed < 2  # it died with its owner, not at the end of its clean
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        assert owner.stdout is not None
        owner.stdout.close()
    again = SegmentLog.load(directory, "t", 0, CONFIG)
    try:
        assert leftovers(directory) == []
        assert records(again) == before
        stats = clean_log(again, NOW, runner=runner)
        assert stats is not None and not stats.aborted and stats.records_removed > 0
    finally:
        again.close()
