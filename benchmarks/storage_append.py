"""Micro-benchmark of the segment log's append path.

Appends 16 KiB batches (16 records of 1 KiB, uncompressed) to one partition for about
``--seconds`` per mode and reports MB/s and fsyncs/s:

* ``fsync-each``: flush.messages = 1 done naively, ``append`` then ``flush`` (one fsync per
  append) on the calling thread;
* ``group-commit``: flush.messages = 1 through the LogManager's flusher thread, which
  covers many appends with one fsync (the clock stops once everything is durable);
* ``page-cache``: flush.messages = 100000, appends are visible at once, fsync by count/time.

Usage: python benchmarks/storage_append.py [--seconds 2] [--dir /path/on/the/disk/to/test]
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import tempfile
import threading
import time
from pathlib import Path

from crc32c import crc32c

from riverbed.storage import LogConfig, LogManager


def _varint(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = zigzag & 0x7F
        zigzag >>= 7
        if not zigzag:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def build_batch(records: int, value_size: int, timestamp: int) -> bytearray:
    body = b""
    for i in range(records):
        rec = b"\x00" + _varint(0) + _varint(i) + _varint(-1)
        rec += _varint(value_size) + os.urandom(value_size) + _varint(0)
        body += _varint(len(rec)) + rec
    header = struct.pack(
        ">qiibIhiqqqhii", 0, 0, 0, 2, 0, 0, records - 1, timestamp, timestamp, -1, -1, -1, records
    )
    batch = bytearray(header + body)
    struct.pack_into(">i", batch, 8, len(batch) - 12)
    struct.pack_into(">I", batch, 17, crc32c(bytes(batch[21:])))
    return batch


class CountingFsync:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        os.fsync(fd)


def run(mode: str, root: Path, seconds: float, template: bytearray) -> dict[str, float]:
    data_dir = root / mode
    fsync = CountingFsync()
    durable = threading.Event()
    manager = LogManager(data_dir, fsync=fsync, on_durable=durable.set)
    manager.open()
    flush_messages = 100_000 if mode == "page-cache" else 1
    log = manager.create("bench", 0, LogConfig(flush_messages=flush_messages))
    fsync.calls = 0
    appended = 0
    now_ms = int(time.time() * 1000)
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(64):
            log.append(bytearray(template), now_ms=now_ms)
            if mode == "fsync-each":
                log.flush()
        appended += 64
        if time.perf_counter() >= deadline:
            break
    if mode == "group-commit":
        while log.high_watermark < log.log_end_offset:
            durable.wait(5)
            durable.clear()
    elapsed = time.perf_counter() - started
    fsyncs = fsync.calls
    manager.close()
    shutil.rmtree(data_dir, ignore_errors=True)
    nbytes = appended * len(template)
    return {
        "batches": appended,
        "MB/s": nbytes / elapsed / 1e6,
        "batches/s": appended / elapsed,
        "fsyncs": fsyncs,
        "fsyncs/s": fsyncs / elapsed,
        "batches/fsync": appended / fsyncs if fsyncs else float("inf"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--dir", type=Path, default=None, help="directory on the disk to test")
    parser.add_argument("--record-size", type=int, default=1024)
    parser.add_argument("--batch-bytes", type=int, default=16 * 1024)
    args = parser.parse_args()
    template = build_batch(
        args.batch_bytes // args.record_size, args.record_size, 1_700_000_000_000
    )
    root = Path(tempfile.mkdtemp(prefix="riverbed-bench-", dir=args.dir))
    try:
        print(f"batch: {len(template)} bytes, {args.batch_bytes // args.record_size} records")
        print(f"{'mode':<14}{'MB/s':>9}{'batches/s':>11}{'fsyncs/s':>10}{'batches/fsync':>15}")
        for mode in ("fsync-each", "group-commit", "page-cache"):
            r = run(mode, root, args.seconds, template)
            print(
                f"{mode:<14}{r['MB/s']:>9.1f}{r['batches/s']:>11.0f}{r['fsyncs/s']:>10.0f}"
                f"{r['batches/fsync']:>15.1f}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
