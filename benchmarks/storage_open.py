"""How long LogManager.open takes at start-up (moved here from a unit test's wall-clock bound,
which a loaded machine could break without anything being wrong).

Creates ``--partitions`` partitions with ``--batches`` small batches each in a temporary
directory, closes the manager, then times opening it again (with leftovers to clean, as after
a crash) and opening an empty data directory. Prints the median of ``--runs`` runs in ms.

Usage: python benchmarks/storage_open.py [--partitions 20] [--batches 3] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from riverbed.storage import LogConfig, LogManager

sys.path.insert(0, str(Path(__file__).resolve().parent))
from storage_append import build_batch


def timed_open(path: Path) -> tuple[float, LogManager]:
    manager = LogManager(path)
    started = time.perf_counter()
    manager.open()
    return (time.perf_counter() - started) * 1000, manager


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--partitions", type=int, default=20)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        manager = LogManager(data)
        manager.open()
        config = LogConfig(segment_bytes=64 * 1024)
        for p in range(args.partitions):
            log = manager.create("t", p, config)
            for _ in range(args.batches):
                now = int(time.time() * 1000)
                log.append(build_batch(4, 100, now), now_ms=now)
        manager.close()
        full, empty = [], []
        for run in range(args.runs):
            (data / "t-0" / f"{99 + run:020d}.index").write_bytes(b"")  # an orphan to clean up
            ms, manager = timed_open(data)
            assert len(manager.partitions()) == args.partitions
            manager.close()
            full.append(ms)
            ms, manager = timed_open(Path(tmp) / f"empty-{run}")
            manager.close()
            empty.append(ms)
    print(f"open {args.partitions} partitions: median {statistics.median(full):.1f} ms (min {min(full):.1f}, max {max(full):.1f})")
    print(f"open an empty data dir: median {statistics.median(empty):.1f} ms (min {min(empty):.1f}, max {max(empty):.1f})")


if __name__ == "__main__":
    main()
