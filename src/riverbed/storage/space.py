"""Disk-full handling for one data directory (see "Disk full" in docs/storage-format.md).

A write that fails with ENOSPC or EDQUOT (a batch's ``pwrite``, creating a segment, writing
an index or a producer snapshot) puts the directory in the *full* state: an ERROR line names
the directory and its free bytes, and from then on every append is refused at once with
KAFKA_STORAGE_ERROR, before anything is written, until the file system has at least
:attr:`DiskSpace.resume_bytes` free again (checked with ``statvfs`` at most every
:data:`PROBE_INTERVAL_S` while full). Then appends resume without a restart. The state is
what DescribeLogDirs and ``riverbed topic describe`` report for the directory.

Thread-safe: the event loop appends, the flusher thread writes indexes; both report here.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from riverbed.protocol.errors import ErrorCode, KafkaError

logger = logging.getLogger("riverbed.storage.space")

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
PROBE_INTERVAL_S = 0.2
MIN_RESUME_BYTES = 256 << 10
MAX_RESUME_BYTES = 16 << 20


def is_no_space(exc: BaseException | None) -> bool:
    """True for ENOSPC/EDQUOT, also when wrapped (a KafkaError raised from the OSError)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return True
        exc = exc.__cause__
    return False


def free_bytes(path: Path) -> tuple[int, int]:
    """(free bytes for unprivileged writers, total bytes) of the file system of ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


class DiskSpace:
    """The full/not-full state of one data directory."""

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self._clock = clock
        self._lock = threading.Lock()
        self._full: str | None = None
        self._next_probe = 0.0
        self.resume_bytes = MIN_RESUME_BYTES
        """Free bytes needed to leave the full state: 5 % of the file system, at least
        256 KiB and at most 16 MiB (room for a batch and the index files of a roll)."""

    @property
    def error(self) -> str | None:
        """Why writes are refused (None: the directory is writable)."""
        return self._full

    def check_writable(self) -> None:
        """Raise KAFKA_STORAGE_ERROR while the directory is full (re-checking the free space
        at most every PROBE_INTERVAL_S); return at once when it is not."""
        if self._full is None:
            return
        with self._lock:
            if self._full is not None and self._clock() >= self._next_probe:
                self._next_probe = self._clock() + PROBE_INTERVAL_S
                try:
                    free, _ = free_bytes(self.directory)
                except OSError:
                    free = 0
                if free >= self.resume_bytes:
                    logger.warning(
                        "log dir %s: %d bytes free again, accepting writes", self.directory, free
                    )
                    self._full = None
            full = self._full
        if full is not None:
            raise KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, full)

    def report(self, exc: BaseException) -> None:
        """A write failed with ``exc`` (ENOSPC/EDQUOT): enter the full state (logged once)."""
        try:
            free, total = free_bytes(self.directory)
        except OSError:
            free, total = -1, -1
        with self._lock:
            self.resume_bytes = min(max(total // 20, MIN_RESUME_BYTES), MAX_RESUME_BYTES)
            self._next_probe = self._clock() + PROBE_INTERVAL_S
            if self._full is not None:
                return
            self._full = (
                f"log dir {self.directory} is full ({free} bytes free): writes refused until "
                f"{self.resume_bytes} bytes are free"
            )
        logger.error(
            "log dir %s: no space left (%s): %d of %d bytes free; refusing writes until %d "
            "bytes are free",
            self.directory,
            exc,
            free,
            total,
            self.resume_bytes,
        )
