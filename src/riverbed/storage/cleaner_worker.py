"""The cleaner's rewrite in a worker process, off the broker's GIL (issue 9, item 4).

:class:`ProcessRunner` runs steps 2 and 3 of a clean (offset map, ``.cleaned`` files: see
:mod:`.cleaner`) in a worker process (a ``python`` running :func:`main`), started
with the first clean (or :meth:`ProcessRunner.start`) and kept for the next ones: jobs and
answers go over two pipes, pickled. (Not ``multiprocessing.Process``: its ``spawn`` and
``forkserver`` children import the parent's ``__main__`` module again, and ``fork`` is unsafe
in a threaded broker.)
The broker's process only plans (under the log's lock) and swaps (under its flush lock); its
cleaner thread waits on a pipe meanwhile and holds no GIL.

The child reads the segments through ``/proc/<broker pid>/fd/<n>``: the broker's duplicated
descriptors of the planned segments, so a segment deleted by retention meanwhile still reads
as planned (where ``/proc`` is missing it opens the segment's path). It writes every group's
``.cleaned`` files (fsynced) and sends back, per group, what the broker needs to adopt the new
segment (sizes, offsets, index arrays, aborted-transaction entries), then exits.

Failure modes, and why each leaves the log as it was:

* the worker dies (killed, out of memory, a bug): the pipe reaches EOF without an answer; the
  broker removes every ``.cleaned`` file of the job and the clean counts as aborted (the
  background cleaner tries again after its backoff, with a new worker); nothing was swapped.
* the broker stops the cleaner mid-clean: the worker is killed, its files removed, the clean
  aborted.
* the broker is killed (kill -9): a thread of the worker waits on a pidfd of the broker's
  process and kills the child at once, so it cannot go on writing into a directory a
  restarted broker uses. Files left behind are uncommitted ``.cleaned`` files, which the next
  open of the log removes (:func:`.swap.finish_interrupted_swaps`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any

from .cleaner import (
    CleanAborted,
    CleanerError,
    CleanerView,
    CleanJob,
    CleanRunner,
    CleanStats,
    GroupResult,
    Throttler,
    rewrite,
)
from .files import LOG_SUFFIX, Fsync
from .index import OffsetIndex, TimeIndex
from .segment import Segment
from .swap import cleaned_path, discard_cleaned
from .txn_index import AbortedTxn

logger = logging.getLogger(__name__)

_POLL_S = 0.05
_OPEN_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_OPEN_RW = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)


class WorkerCrashed(CleanAborted):
    """The worker process ended without an answer; nothing was swapped, its files are gone."""


@dataclass(frozen=True, slots=True)
class _SegmentState:
    """A cleaned segment as the worker left it (all its files fsynced under ``.cleaned``)."""

    base_offset: int
    size: int
    next_offset: int
    max_timestamp: int
    offset_of_max_timestamp: int
    bytes_since_index: int
    last_modified_ms: int
    index: bytes
    time_index: bytes

    @classmethod
    def of(cls, s: Segment) -> _SegmentState:
        return cls(
            s.base_offset, s.size, s.next_offset, s.max_timestamp, s.offset_of_max_timestamp,
            s.bytes_since_index, s.last_modified_ms, s.index.to_bytes(), s.time_index.to_bytes(),
        )

    def adopt(self, job: CleanJob, entries: list[AbortedTxn]) -> Segment:
        """The :class:`Segment` of these files in the broker's process."""
        fd = os.open(cleaned_path(job.directory, self.base_offset, LOG_SUFFIX), _OPEN_RW)
        s = Segment(job.directory, self.base_offset, fd, job.index_interval_bytes)
        s.size = s.synced_size = self.size
        s.next_offset = self.next_offset
        s.max_timestamp = self.max_timestamp
        s.offset_of_max_timestamp = self.offset_of_max_timestamp
        s.bytes_since_index = self.bytes_since_index
        s.last_modified_ms = self.last_modified_ms
        s.first_append_ms = -1
        s.index = OffsetIndex.from_bytes(self.index)
        s.time_index = TimeIndex.from_bytes(self.time_index)
        s.aborted = list(entries)
        s.txn_loaded = True
        s.txn_dirty = False
        return s


# -- the child ---------------------------------------------------------------------------


def _die_with(broker: int) -> None:
    """Kill this process as soon as the broker's is gone (mid-clean too: the end of the jobs
    pipe is only seen between jobs). Linux: a thread waits on a pidfd of the broker;
    elsewhere it polls the pid."""
    pidfd = -1
    with contextlib.suppress(OSError, AttributeError):
        pidfd = os.pidfd_open(broker)

    def watch() -> None:
        if pidfd >= 0:
            select.select([pidfd], [], [])
        else:
            while _alive(broker):
                time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="riverbed-cleaner-watchdog", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _open(job: CleanJob, i: int) -> int:
    try:
        return os.open(job.read_paths[i], _OPEN_READ)
    except PermissionError:  # /proc/<pid>/fd not ours to read: the segment's own path
        return os.open(job.path(i), _OPEN_READ)


def _clean_one(job: CleanJob, fail: str | None) -> tuple[Any, ...]:
    stats = CleanStats(first_dirty_offset=job.first_dirty)
    cpu = time.process_time()
    fds: list[int] = []
    try:
        fds = [_open(job, i) for i in range(job.k)]
        rate = job.io_max_bytes_per_second
        throttle = None if math.isinf(rate) else Throttler(rate)
        out: list[tuple[list[int], int, _SegmentState | None, list[AbortedTxn]]] = []
        for r in rewrite(job, fds, stats, throttle=throttle, yield_gil=False):
            if fail == "after-group":
                os.kill(os.getpid(), signal.SIGKILL)
            out.append((r.group, r.base_offset, None if r.segment is None else _SegmentState.of(r.segment), r.entries))
            if r.segment is not None:
                r.segment.close()
        if fail == "before-answer":
            os.kill(os.getpid(), signal.SIGKILL)
        stats.worker_cpu_s = time.process_time() - cpu
        return ("ok", stats, out)
    except FileNotFoundError as exc:
        return ("aborted", f"a segment is gone: {exc}")
    except CleanerError as exc:
        return ("error", str(exc))
    except OSError as exc:
        return ("error", f"{job.directory}: clean failed: {exc}")
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def main(argv: list[str]) -> None:
    """The worker process (``argv``: jobs fd, answers fd, broker pid, nice increment):
    cleans the jobs it reads, one at a time, until EOF."""
    jobs = multiprocessing.connection.Connection(int(argv[0]), writable=False)
    answers = multiprocessing.connection.Connection(int(argv[1]), readable=False)
    _die_with(int(argv[2]))
    if len(argv) > 3 and int(argv[3]) > 0:
        with contextlib.suppress(OSError):
            os.nice(int(argv[3]))  # background work: the broker's threads go first
    while True:
        try:
            job, fail = jobs.recv()
        except EOFError:
            return
        answers.send(_clean_one(job, fail))


# -- the broker's side -------------------------------------------------------------------


# (not ``-m``: the classes pickled in answers must be this module's, not ``__main__``'s)
_ENTRY = f"import sys; from {__name__} import main; main(sys.argv[1:])"


class _Worker:
    """One worker process and its two pipes."""

    def __init__(self, nice: int) -> None:
        job_r, job_w = os.pipe()
        ans_r, ans_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, str(job_r), str(ans_w), str(os.getpid()), str(nice)],
                pass_fds=(job_r, ans_w),
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(job_r)
            os.close(ans_w)
        self.jobs = multiprocessing.connection.Connection(job_w, readable=False)
        self.answers = multiprocessing.connection.Connection(ans_r, writable=False)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
        self.jobs.close()
        self.answers.close()


class ProcessRunner(CleanRunner):
    """Runs each clean's rewrite in a worker process (see the module documentation)."""

    def __init__(self, *, nice: int = 0) -> None:
        self.nice = nice
        """Added to the worker's nice value (``os.nice``): its CPU comes after the broker's."""
        self._worker: _Worker | None = None
        self._lock = threading.Lock()
        self.crashes = 0
        """Worker processes that ended without an answer (metrics, tests)."""
        self.starts = 0
        """Worker processes started."""
        self.runs = 0
        """Cleans run in a worker process."""
        self.fail_point: str | None = None
        """Tests: the worker kills itself "after-group" (its first group written) or
        "before-answer"."""

    @property
    def pid(self) -> int | None:
        """The worker's process id, once started (tests)."""
        worker = self._worker
        return None if worker is None else worker.proc.pid

    def start(self) -> None:
        """Start the worker process now (else the first clean does: ~0.1-0.5 s)."""
        with self._lock:
            if self._worker is None:
                self._worker = _Worker(self.nice)
                self.starts += 1

    def close(self) -> None:
        """Stop the worker process (it exits on the end of its job pipe)."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.jobs.close()
            try:
                worker.proc.wait(5)
            except subprocess.TimeoutExpired:
                worker.kill()
            worker.answers.close()

    def run(
        self,
        job: CleanJob,
        view: CleanerView,
        stats: CleanStats,
        throttle: Throttler | None,
        stop: threading.Event | None,
        fsync: Fsync,
    ) -> Generator[GroupResult, None, None]:
        return self._run(job, stats, throttle, stop)

    def _run(
        self, job: CleanJob, stats: CleanStats, throttle: Throttler | None, stop: threading.Event | None
    ) -> Generator[GroupResult, None, None]:
        if throttle is not None:
            job = replace(job, io_max_bytes_per_second=throttle.rate)
        self.start()
        worker = self._worker
        assert worker is not None
        answer: tuple[Any, ...] | None = None
        results: list[GroupResult] = []
        done = 0
        try:
            self.runs += 1
            worker.jobs.send((job, self.fail_point))
            while answer is None:
                if stop is not None and stop.is_set():
                    raise CleanAborted("the cleaner is stopping")
                if worker.answers.poll(_POLL_S):
                    answer = worker.answers.recv()
                elif worker.proc.poll() is not None and not worker.answers.poll(0):
                    break
        except (OSError, EOFError):
            pass  # the worker is gone: below
        finally:
            if answer is None:  # crashed, or stopped: the worker goes, a new one next time
                with self._lock:
                    self._worker = None
                worker.kill()
                _discard_job(job)
        if answer is None:
            self.crashes += 1
            code = worker.proc.returncode
            logger.warning("%s: cleaner worker %s exited (code %s) without an answer", job.directory, worker.proc.pid, code)
            raise WorkerCrashed(f"the cleaner worker exited with code {code}")
        if answer[0] == "aborted":
            _discard_job(job)
            raise CleanAborted(answer[1])
        if answer[0] == "error":
            _discard_job(job)
            raise CleanerError(answer[1])
        _, child_stats, out = answer
        for name in CleanStats.__slots__:
            if name not in ("first_dirty_offset", "log_bytes_before"):
                setattr(stats, name, getattr(child_stats, name))
        try:
            for group, base, state, entries in out:
                segment = None if state is None else state.adopt(job, entries)
                results.append(GroupResult(group, base, segment, entries))
        except OSError:
            for r in results:
                if r.segment is not None:
                    r.segment.close()
            _discard_job(job)
            raise
        try:
            for r in results:
                done += 1
                yield r
        finally:
            for r in results[done:]:  # not handed out: not swapped in
                if r.segment is not None:
                    r.segment.close()
                discard_cleaned(job.directory, r.base_offset)


def _discard_job(job: CleanJob) -> None:
    for base in job.bases[: job.k]:
        discard_cleaned(job.directory, base)

