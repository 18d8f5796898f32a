"""Micro-benchmark of state-store engines for riverbed.streams (docs/adr/0007-streams-state-store.md).

The aggregation workload: ``--updates`` read-modify-write updates (get, then put 8 bytes) over
``--keys`` keys, committing every 1,000 updates as a task commit would; then a restore-shaped
bulk load of ``--keys`` entries. Engines: the in-memory engine, riverbed's SQLite engine (one
transaction per commit, checkpoint in the same transaction), and rocksdict (RocksDB) when it is
installed (``pip install rocksdict``; not a riverbed dependency), with a flush per commit.

Usage: python benchmarks/streams_store.py [--updates 200000] [--keys 20000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

from riverbed.streams.stores import MemoryEngine, SqliteEngine

PACK = struct.Struct(">q")


class RocksAdapter:
    def __init__(self, path: Path) -> None:
        from rocksdict import Rdict  # type: ignore[import-not-found]

        self.db = Rdict(str(path))

    def get(self, k: bytes) -> bytes | None:
        return self.db.get(k)  # type: ignore[no-any-return]

    def put(self, k: bytes, v: bytes | None) -> None:
        if v is None:
            del self.db[k]
        else:
            self.db[k] = v

    def commit(self, cp: int | None) -> None:
        self.db[b"\x01checkpoint"] = PACK.pack(cp or 0)
        self.db.flush()

    def close(self) -> None:
        self.db.close()


def run(engine: Any, keys: list[bytes], updates: int) -> tuple[float, float]:
    rnd = random.Random(1)
    t0 = time.perf_counter()
    for i in range(updates):
        k = keys[rnd.randrange(len(keys))]
        old = engine.get(k)
        engine.put(k, PACK.pack((0 if old is None else PACK.unpack(old)[0]) + 1))
        if i % 1000 == 999:
            engine.commit(i)
    engine.commit(updates)
    upd = updates / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i, k in enumerate(keys):
        engine.put(b"r" + k, PACK.pack(i))
    engine.commit(0)
    restore = len(keys) / (time.perf_counter() - t0)
    return upd, restore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--updates", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=20_000)
    args = ap.parse_args()
    keys = [f"user-{i}".encode() for i in range(args.keys)]
    tmp = Path(tempfile.mkdtemp(prefix="streams-store-bench-"))
    try:
        engines: list[tuple[str, Any]] = [("memory", MemoryEngine()), ("sqlite", SqliteEngine(tmp / "s.sqlite"))]
        try:
            engines.append(("rocksdict", RocksAdapter(tmp / "rocks")))
        except ImportError:
            print("rocksdict not installed: skipped")
        for name, eng in engines:
            upd, restore = run(eng, keys, args.updates)
            print(f"{name:10s} updates/s {upd:>10,.0f}   bulk load (restore) puts/s {restore:>10,.0f}")
            eng.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
