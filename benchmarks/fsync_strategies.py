"""How to make N dirty partition files durable: a micro-benchmark of the flusher's options.

    .venv/bin/python benchmarks/fsync_strategies.py [--files 6] [--write 16384] [--seconds 3]

Each cycle appends ``--write`` bytes to each of ``--files`` files (like one group-commit cycle
of the broker with that many dirty partitions), then makes them durable with:

* ``fsync-each``: os.fsync on every file, one after the other (what the flusher does today);
* ``fdatasync-each``: the same with os.fdatasync;
* ``fsync-threads``: os.fsync on every file at once from a thread pool (the journal commits
  of concurrent fsyncs can be shared);
* ``syncfs``: one syncfs(2) on the file system (Linux; via ctypes), which flushes every
  dirty file of that file system, not only ours.

Reports cycles/s and the mean cycle time (strategies interleaved over five rounds). Writes into a temp dir (``--dir``: same file system
as the broker's data dir).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _syncfs() -> Callable[[int], None] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    if not hasattr(libc, "syncfs"):
        return None
    fn = libc.syncfs

    def syncfs(fd: int) -> None:
        if fn(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return syncfs


def run(directory: Path, files: int, write: int, seconds: float) -> dict[str, tuple[float, float]]:
    fds = [
        os.open(directory / f"f{i}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        for i in range(files)
    ]
    data = os.urandom(write)
    pool = ThreadPoolExecutor(max_workers=files)
    syncfs = _syncfs()

    def each(sync: Callable[[int], None]) -> Callable[[], None]:
        def cycle() -> None:
            for fd in fds:
                sync(fd)

        return cycle

    def threads() -> None:
        for f in [pool.submit(os.fsync, fd) for fd in fds]:
            f.result()

    strategies: dict[str, Callable[[], None]] = {
        "fsync-each": each(os.fsync),
        "fdatasync-each": each(os.fdatasync),
        "fsync-threads": threads,
    }
    if syncfs is not None:
        strategies["syncfs"] = lambda: syncfs(fds[0])
    cycles = dict.fromkeys(strategies, 0)
    spent = dict.fromkeys(strategies, 0.0)
    rounds = 5  # interleaved, so that write-back state and drift hit every strategy alike
    try:
        for _ in range(rounds):
            for name, sync in strategies.items():
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < seconds / rounds:
                    for fd in fds:
                        os.write(fd, data)
                    sync()
                    cycles[name] += 1
                spent[name] += time.perf_counter() - t0
    finally:
        pool.shutdown()
        for fd in fds:
            os.close(fd)
    return {k: (cycles[k] / spent[k], spent[k] / cycles[k] * 1000) for k in strategies}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--files", type=int, default=6)
    ap.add_argument("--write", type=int, default=16384, help="bytes appended per file per cycle")
    ap.add_argument("--seconds", type=float, default=3.0, help="per strategy")
    ap.add_argument("--dir", help="parent of the temp dir (default: $TMPDIR or /tmp)")
    ap.add_argument("--out", help="append the results as one JSON line to this file")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="riverbed-fsync-", dir=args.dir))
    try:
        results = run(root, args.files, args.write, args.seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.files} files, {args.write} bytes appended to each per cycle")
    print("| strategy | cycles/s | ms per cycle |")
    print("|---|---|---|")
    for name, (rate, ms) in results.items():
        print(f"| {name} | {rate:,.0f} | {ms:.2f} |")
    if args.out:
        line = {"date": time.strftime("%Y-%m-%d %H:%M"), "files": args.files, "write_bytes": args.write,
                "seconds": args.seconds, "ms_per_cycle": {k: ms for k, (_rate, ms) in results.items()}}  # fmt: skip
        with open(args.out, "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
