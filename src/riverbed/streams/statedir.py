"""The state directory of one application instance, locked so that two instances on one
machine cannot open the same store files (Kafka Streams locks its state directory too).

The lock is an ``flock`` on ``<state_dir>/<app>/.lock``: the kernel drops it when the process
dies, so a directory left by a crashed instance is simply taken over (its SQLite files roll
back to their last commit; see docs/adr/0007-streams-state-store.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from .records import StreamsError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock
    fcntl = None  # type: ignore[assignment]


class StateDirLock:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None

    def acquire(self) -> StateDirLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise StreamsError(f"state directory {self.directory} is in use by another instance (pid {holder}); "
                                   "give each instance on this machine its own state_dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
