"""Helpers for the tiered-storage tests: a TieredLog adapter over a real SegmentLog, and an
object store that injects faults (timeouts, 500s, partial uploads) or simulated crashes."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

from riverbed.storage import SegmentLog
from riverbed.storage.api import LogConfig
from riverbed.storage.files import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX
from riverbed.storage.remote import ObjectStore, ObjectStoreError, SealedSegment, StagedSegment


class FakeTieredLog:
    """Implements :class:`riverbed.storage.remote.TieredLog` over a SegmentLog by reaching
    into its segment list (what the wiring step will do inside SegmentLog itself)."""

    def __init__(self, log: SegmentLog) -> None:
        self.log = log
        self._start = log.log_start_offset
        self.dropped: list[tuple[int, int]] = []
        """(base offset, last offset) of every local segment deleted through the hook."""
        self.lock = threading.Lock()

    @property
    def topic(self) -> str:
        return self.log.topic

    @property
    def partition(self) -> int:
        return self.log.partition

    @property
    def directory(self) -> Path:
        return self.log.directory

    @property
    def config(self) -> LogConfig:
        return self.log.config

    @property
    def log_start_offset(self) -> int:
        return self._start

    @property
    def size_bytes(self) -> int:
        return self.log.size_bytes

    def _sealed_locked(self) -> list[object]:
        segments = self.log._segments[:-1]
        return [s for s in segments if s not in self.log._unfinalized]

    def sealed_segments(self) -> list[SealedSegment]:
        with self.log._lock:
            return [_describe(s) for s in self._sealed_locked()]  # type: ignore[arg-type]

    def stage_segment(self, base_offset: int, staging_dir: Path) -> StagedSegment | None:
        log = self.log
        with log._flush_lock, log._lock:
            for segment in self._sealed_locked():
                if segment.base_offset != base_offset:  # type: ignore[attr-defined]
                    continue
                files = {}
                for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX):
                    source = segment.path(suffix)  # type: ignore[attr-defined]
                    if suffix == TXN_INDEX_SUFFIX and not source.exists():
                        continue
                    target = staging_dir / source.name
                    os.link(source, target)
                    files[suffix] = target
                snapshot = log._last_snapshot[1] if log._last_snapshot else None
                return StagedSegment(_describe(segment), files, snapshot)  # type: ignore[arg-type]
        return None

    def drop_local_below(self, offset: int) -> int:
        log = self.log
        with log._flush_lock:
            with log._lock:
                n = 0
                segments = log._segments
                while n < len(segments) - 1 and segments[n].next_offset <= offset:
                    n += 1
                doomed = log._drop_prefix_locked(n)
                if doomed:
                    log._log_start = max(log._log_start, log._segments[0].base_offset)
            for segment in doomed:
                self.dropped.append((segment.base_offset, segment.next_offset - 1))
                segment.delete()
        return len(doomed)

    def advance_log_start(self, offset: int) -> None:
        self._start = max(self._start, offset)

    @property
    def local_log_start(self) -> int:
        return self.log.log_start_offset


def _describe(segment: object) -> SealedSegment:
    return SealedSegment(
        base_offset=segment.base_offset,  # type: ignore[attr-defined]
        last_offset=segment.next_offset - 1,  # type: ignore[attr-defined]
        max_timestamp=segment.largest_timestamp,  # type: ignore[attr-defined]
        size=segment.size,  # type: ignore[attr-defined]
        offset_of_max_timestamp=segment.offset_of_max_timestamp,  # type: ignore[attr-defined]
    )


class Crash(BaseException):
    """A simulated process death (not an Exception, so nothing catches it)."""


class FaultyStore:
    """Wraps a store. ``fail_rate``: share of calls that fail with a retriable error (a
    timeout before the call, a 500 after it, or for puts a partial upload reported as a
    success). ``crash_after``: the call after that many calls raises :class:`Crash`, and
    so does every later one."""

    def __init__(
        self,
        inner: ObjectStore,
        *,
        fail_rate: float = 0.0,
        seed: int = 0,
        crash_after: int | None = None,
        down: bool = False,
    ) -> None:
        self.inner = inner
        self.fail_rate = fail_rate
        self.rng = random.Random(seed)
        self.crash_after = crash_after
        self.down = down
        self.calls = 0
        self.faults: dict[str, int] = {"timeout": 0, "500": 0, "partial": 0}

    def _step(self) -> str | None:
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise Crash()
        if self.down:
            raise ObjectStoreError("connect timeout (store down)", retriable=True)
        if self.fail_rate and self.rng.random() < self.fail_rate:
            return self.rng.choice(["timeout", "500", "partial"])
        return None

    def _fail(self, fault: str) -> None:
        self.faults[fault] += 1
        raise ObjectStoreError(f"injected {fault}", retriable=True)

    def put_file(self, key: str, path: Path) -> None:
        self.put_bytes(key, path.read_bytes())

    def put_bytes(self, key: str, data: bytes) -> None:
        fault = self._step()
        if fault == "timeout":
            self._fail(fault)
        if fault == "partial":
            self.faults["partial"] += 1
            self.inner.put_bytes(key, data[: len(data) // 2])
            return  # the store claims success
        self.inner.put_bytes(key, data)
        if fault == "500":
            self._fail(fault)  # done, but reported as failed

    def _read(self, fn, *args):  # type: ignore[no-untyped-def]
        fault = self._step()
        if fault == "timeout":
            self._fail(fault)
        result = fn(*args)
        if fault == "500":
            self._fail(fault)
        return result

    def get(self, key: str) -> bytes:
        return self._read(self.inner.get, key)  # type: ignore[no-any-return]

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self._read(self.inner.get_range, key, start, length)  # type: ignore[no-any-return]

    def head(self, key: str) -> int | None:
        return self._read(self.inner.head, key)  # type: ignore[no-any-return]

    def delete(self, key: str) -> None:
        self._read(self.inner.delete, key)

    def list(self, prefix: str) -> list[str]:
        return self._read(self.inner.list, prefix)  # type: ignore[no-any-return]


class ManualMonotonic:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now
