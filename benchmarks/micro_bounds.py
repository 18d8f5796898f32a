"""Speed figures that used to be wall-clock asserts in unit tests (a loaded machine could
break them without anything being wrong): the rate of ``count_records`` over a block of
10,000 records of ~100 bytes, and how long refusing a 100 MiB decompression bomb (1 MiB
limit) takes per codec. Prints the median of ``--runs`` runs.

Usage: python benchmarks/micro_bounds.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
import zlib

import cramjam
import lz4.frame
import zstandard

from riverbed.protocol.records.batch import HEADER_SIZE
from riverbed.protocol.records.compression import (
    Compression,
    DecompressionLimitExceeded,
    decompress,
)
from riverbed.protocol.records.records import build_batch, count_records

MiB = 1024 * 1024


def bomb(codec: Compression, total: int) -> bytes:
    chunk = bytes(MiB)
    if codec is Compression.GZIP:
        co = zlib.compressobj(9, zlib.DEFLATED, 31)
        return b"".join(co.compress(chunk) for _ in range(total // MiB)) + co.flush()
    if codec is Compression.LZ4:
        lc = lz4.frame.LZ4FrameCompressor()
        return bytes(lc.begin() + b"".join(lc.compress(chunk) for _ in range(total // MiB)) + lc.flush())
    if codec is Compression.ZSTD:
        zc = zstandard.ZstdCompressor().compressobj()
        return b"".join(zc.compress(chunk) for _ in range(total // MiB)) + bytes(zc.flush())
    return bytes(cramjam.snappy.compress_raw(bytes(total)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    block = memoryview(build_batch([(None, b"x" * 90, (), 1_700_000_000_000) for _ in range(10_000)]))[HEADER_SIZE:]
    rates = []
    for _ in range(args.runs):
        started = time.perf_counter()
        for _ in range(20):
            assert count_records(block) == 10_000
        rates.append(200_000 / (time.perf_counter() - started))
    print(f"count_records: median {statistics.median(rates) / 1e6:.1f} M records/s (min {min(rates) / 1e6:.1f}, max {max(rates) / 1e6:.1f})")
    for codec in (Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD):
        packed = bomb(codec, 100 * MiB)
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            try:
                decompress(codec, packed, max_size=MiB)
            except DecompressionLimitExceeded:
                pass
            else:
                raise AssertionError(f"{codec.name}: the bomb was not refused")
            times.append((time.perf_counter() - started) * 1000)
        print(f"refuse a 100 MiB {codec.name} bomb: median {statistics.median(times):.1f} ms (max {max(times):.1f})")


if __name__ == "__main__":
    main()
