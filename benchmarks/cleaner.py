"""Log cleaner benchmarks.

    .venv/bin/python benchmarks/cleaner.py [--mb 200] [--keys 20000] [--codec none|zstd]

1. Cleaner throughput: a compacted SegmentLog (64 MiB segments) is filled with ``--mb`` MB
   of 100-byte values over ``--keys`` distinct keys (batches of 100 records), rolled, and
   copied three times; the copies are cleaned once each, side by side in this run: the
   rewrite on this thread with the Python walks of ``cleaner_scan`` (``python``), on this
   thread with the C helper ``riverbed._native.cleanscan`` (``thread``, when built), and in a
   worker process (``worker``, what the broker's cleaner does). Reported per way: seconds,
   MB/s of log cleaned (log size before / seconds), MB/s read, CPU seconds of this thread
   and of the worker, CPU seconds per GB of log, records removed, log size before and after.
2. Produce latency while the cleaner runs: a riverbed broker (in this process, its event
   loop on its own thread) holds a compacted topic of the same kind; one confluent-kafka
   producer sends 100-byte records at a fixed rate (acks=all) to another topic and records
   each acknowledgement's latency for 8 s, first with the cleaner idle, then from the start
   of a ``LogManager.clean_now`` of the big topic on a background thread (in a worker
   process unless ``--in-thread``); ``sent_during_the_clean`` keeps only the records sent
   while the clean ran. Reported beside the latencies: this process's CPU
   seconds (broker + producer client) in each window, the worker's, the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from riverbed.protocol.records.compression import Compression
from riverbed.protocol.records.records import build_batch
from riverbed.storage import cleaner as cleaner_mod
from riverbed.storage import cleaner_scan
from riverbed.storage.api import LogConfig
from riverbed.storage.cleaner import IN_THREAD, CleanRunner, CleanStats, clean_log
from riverbed.storage.cleaner_worker import ProcessRunner
from riverbed.storage.log import SegmentLog
from riverbed.testing import EmbeddedBroker

VALUE = b"v" * 100


def fill(append: Any, mb: int, keys: int, codec: int) -> int:
    """Append ``mb`` MB of values over ``keys`` keys; returns the record count."""
    n = mb * 1_000_000 // len(VALUE)
    now = int(time.time() * 1000)
    i = 0
    while i < n:
        records = [(f"key-{(i + j) % keys:08d}".encode(), VALUE, [], now) for j in range(100)]
        append(build_batch(records, compression=codec))
        i += 100
    return n


def _clean_copy(directory: Path, config: LogConfig, runner: CleanRunner, native: bool) -> dict[str, Any]:
    saved = (cleaner_mod.filter_records, cleaner_mod.map_keys)
    if not native:
        cleaner_mod.filter_records = cleaner_scan.filter_records_python  # type: ignore[assignment]
        cleaner_mod.map_keys = cleaner_scan.map_keys_python  # type: ignore[assignment]
    try:
        log = SegmentLog.load(directory, "c", 0, config)
        now = int(time.time() * 1000)
        t0 = time.perf_counter()
        stats = clean_log(log, now, runner=runner)
        elapsed = time.perf_counter() - t0
        log.close()
    finally:
        cleaner_mod.filter_records, cleaner_mod.map_keys = saved
    assert stats is not None and not stats.aborted
    return _figures(stats, elapsed)


def _figures(stats: CleanStats, elapsed: float) -> dict[str, Any]:
    cpu = stats.cpu_s + stats.worker_cpu_s
    return {
        "seconds": round(elapsed, 3),
        "cleaned_mb_per_s": round(stats.log_bytes_before / elapsed / 1e6, 1),
        "read_mb_per_s": round(stats.bytes_read / elapsed / 1e6, 1),
        "thread_cpu_s": round(stats.cpu_s, 3),
        "worker_cpu_s": round(stats.worker_cpu_s, 3),
        "cpu_s_per_gb_of_log": round(cpu / (stats.log_bytes_before / 1e9), 2),
        "bytes_read": stats.bytes_read,
        "bytes_written": stats.bytes_written,
        "log_bytes_before": stats.log_bytes_before,
        "log_bytes_after": stats.log_bytes_after,
        "records_removed": stats.records_removed,
    }


def cleaner_throughput(mb: int, keys: int, codec: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        config = LogConfig(segment_bytes=64 << 20, cleanup_compact=True, cleanup_delete=False, min_cleanable_dirty_ratio=0.0)
        source = Path(tmp) / "src-0"
        log = SegmentLog.create(source, "c", 0, config)
        now = int(time.time() * 1000)
        n = fill(lambda b: log.append(b, now_ms=now), mb, keys, codec)
        log.roll()
        log.flush()
        log.close()
        ways: list[tuple[str, CleanRunner, bool]] = [("python", IN_THREAD, False)]
        if cleaner_scan.map_keys is not cleaner_scan.map_keys_python:
            ways.append(("thread", IN_THREAD, True))
        worker = ProcessRunner()
        t0 = time.perf_counter()
        worker.start()  # once per broker: a Python process importing the cleaner
        worker_start = time.perf_counter() - t0
        ways.append(("worker", worker, True))
        out: dict[str, Any] = {"records": n, "worker_start_s": round(worker_start, 3), "load_before": os.getloadavg()}
        for name, runner, native in ways:
            copy = Path(tmp) / f"{name}-0"
            shutil.copytree(source, copy)
            out[name] = _clean_copy(copy, config, runner, native)
            shutil.rmtree(copy)
        worker.close()
        out["load_after"] = os.getloadavg()
    return out


def _latencies(bootstrap: str, topic: str, seconds: float, rate: int, sent_at: list[float] | None = None) -> list[float]:
    """Acknowledgement latencies; with ``sent_at``, also each record's send time (same order)."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1})
    out: list[float] = []
    sends = sent_at if sent_at is not None else []
    interval = 1 / rate
    deadline = time.perf_counter() + seconds
    nxt = time.perf_counter()
    while time.perf_counter() < deadline:
        sent = time.perf_counter()
        p.produce(topic, value=VALUE, on_delivery=lambda err, _m, s=sent: (out.append(time.perf_counter() - s), sends.append(s)) if err is None else None)
        p.poll(0)
        nxt += interval
        delay = nxt - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    p.flush(30)
    return out


def _summary(lat: list[float]) -> dict[str, float]:
    lat = sorted(lat)
    return {
        "count": len(lat),
        "p50_ms": round(statistics.median(lat) * 1000, 2),
        "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 2),
        "max_ms": round(lat[-1] * 1000, 2),
    }


def latency_while_cleaning(mb: int, keys: int, codec: int, rate: int = 2000, in_thread: bool = False, nice: int | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(Path(tmp) / "data", cleaner_enable=False) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        compact = {"cleanup.policy": "compact", "segment.bytes": str(64 << 20), "min.cleanable.dirty.ratio": "0.01"}
        for f in admin.create_topics([NewTopic("big", 1, 1, config=compact), NewTopic("live", 1, 1)]).values():
            f.result(10)
        log = b.broker.partition("big", 0)
        now = int(time.time() * 1000)
        fill(lambda batch: b.call(lambda: log.append(batch, now_ms=now)), mb, keys, codec)
        b.call(log.roll)
        b.call(log.flush)
        runner = b.broker.logs.cleaner.runner
        if in_thread:
            b.broker.logs.cleaner.runner = IN_THREAD
        elif isinstance(runner, ProcessRunner):
            if nice is not None:
                runner.nice = nice
            runner.start()  # as after the broker's first clean
        cpu0 = time.process_time()
        idle = _latencies(b.bootstrap, "live", 8, rate)
        cpu_idle = time.process_time() - cpu0
        done = threading.Event()
        result: dict[str, Any] = {"runner": "thread" if in_thread else f"worker (nice +{runner.nice})"}

        window: list[float] = []

        def clean() -> None:
            t0 = time.perf_counter()
            stats = b.broker.logs.clean_now(log)
            elapsed = time.perf_counter() - t0
            window.extend((t0, t0 + elapsed))
            result["clean_seconds"] = round(elapsed, 2)
            result["clean"] = _figures(stats, elapsed) if stats else None
            done.set()

        load = os.getloadavg()
        cpu0 = time.process_time()
        threading.Thread(target=clean, daemon=True).start()
        sent_at: list[float] = []
        busy = _latencies(b.bootstrap, "live", 8, rate, sent_at)
        cpu_busy = time.process_time() - cpu0
        done.wait(300)
        during = [lat for lat, s in zip(busy, sent_at, strict=True) if window and window[0] <= s <= window[1]]
        return {
            "rate_per_s": rate,
            "idle": {**_summary(idle), "process_cpu_s": round(cpu_idle, 2)},
            "after_clean_start_8s": {**_summary(busy), "process_cpu_s": round(cpu_busy, 2)},
            "sent_during_the_clean": _summary(during) if during else None,
            "load_at_clean_start": load,
            **result,
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--keys", type=int, default=20_000)
    ap.add_argument("--codec", choices=["none", "zstd"], default="none")
    ap.add_argument("--in-thread", action="store_true", help="part 2: the clean's rewrite on the broker's cleaner thread")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--nice", type=int, help="part 2: the worker's nice increment (default: the broker's, 10)")
    ap.add_argument("--out")
    args = ap.parse_args()
    codec = Compression.NONE if args.codec == "none" else Compression.ZSTD
    doc = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "mb": args.mb,
        "keys": args.keys,
        "codec": args.codec,
        "throughput": None if args.skip_throughput else cleaner_throughput(args.mb, args.keys, codec),
        "latency": latency_while_cleaning(args.mb, args.keys, codec, in_thread=args.in_thread, nice=args.nice),
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
