"""Broker start-up with many partitions and data (issue 9, items 2 and 5), measured from outside.

    .venv/bin/python benchmarks/startup.py [--topics 100] [--partitions 100]
        [--mb-per-partition 0] [--segment-mb 1] [--runs 3] [--src before=OLD/src ...]
        [--dir DIR] [--label NAME]

Builds a data directory once: ``riverbed serve`` creates the topics (CreateTopics), stops
cleanly, then this process fills every partition through the storage layer directly
(``LogManager``, 256 KiB batches, ``--segment-mb`` segments; one 100 B record each when
``--mb-per-partition`` is 0), which is much faster than a client. Then, for every source tree
(``--src NAME=DIR``, and this tree as ``after``), alternately, ``--runs`` times:

* ``clean_s``: SIGTERM (clean shutdown), then process start -> first Metadata answer (of
  every topic, as librdkafka's ``list_topics``; connection attempts every 10 ms, a 10 s
  timeout for the answer);
  ``clean_cpu_s`` the broker's CPU-seconds at that moment; ``clean_serve_s``: start -> a
  Fetch of one partition answered with its last record (a ListOffsets and a Fetch);
* ``kill_s`` / ``kill_cpu_s`` / ``kill_serve_s``: the same after SIGKILL of a broker that had
  just answered;
* ``fds``: the broker's open descriptors after the clean start.

The broker's own CPU is read from /proc (the machine may be shared: compare runs of one
invocation, not absolute figures).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from riverbed.storage import LogConfig, LogManager
from riverbed.testing import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
from storage_append import build_batch

PREFIX = "su"


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(data: Path, port: int, src: str | None) -> tuple[subprocess.Popen[bytes], float, float]:
    """The broker, seconds from Popen to its first Metadata answer, its CPU-s then."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    cmd = [sys.executable, "-m", "riverbed", "serve", "--listen", f"127.0.0.1:{port}"]
    cmd += ["--data-dir", str(data), "--no-registry", "--no-metrics", "--no-console"]
    log = open(data.parent / "broker.log", "ab")  # noqa: SIM115 - owned by the child
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    log.close()
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0})
    deadline = t0 + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode} (see {data.parent / 'broker.log'})")
        try:
            admin.list_topics(timeout=10)  # (every topic: 10,000 partitions take a while)
            elapsed, used = time.monotonic() - t0, cpu(proc.pid)
            del admin
            return proc, elapsed, used
        except Exception:
            time.sleep(0.01)
    proc.kill()
    raise RuntimeError("broker did not start")


def last_record(port: int, topic: str, partition: int) -> int:
    """Offset of the last record of a partition, read with a Fetch (-1 if empty)."""
    consumer = Consumer(
        {
            "bootstrap.servers": f"127.0.0.1:{port}",
            "group.id": "startup-bench",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    try:
        tp = TopicPartition(topic, partition)
        _low, high = consumer.get_watermark_offsets(tp, timeout=60)
        if high <= 0:
            return -1
        consumer.assign([TopicPartition(topic, partition, high - 1)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                return int(msg.offset())
        raise RuntimeError("no record fetched")
    finally:
        consumer.close()


def build(data: Path, topics: int, partitions: int, mb: float, segment_mb: float) -> dict[str, Any]:
    port = free_port()
    proc, _, _ = start(data, port, None)
    try:
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0})
        names = [f"{PREFIX}-{i:03d}" for i in range(topics)]
        futures = admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names],
            request_timeout=600,
        )
        for fut in futures.values():
            fut.result(600)
        del admin, futures
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    t0 = time.monotonic()
    manager = LogManager(data, max_open_segment_files=0)  # (bounded by ulimit -n)
    manager.open()
    now = int(time.time() * 1000)
    if mb > 0:
        batch = build_batch(64, 4000, now)  # ~256 KiB
        per = max(1, round(mb * (1 << 20) / len(batch)))
    else:
        batch = build_batch(1, 100, now)
        per = 1
    config = LogConfig(segment_bytes=max(int(segment_mb * (1 << 20)), 1 << 14))
    total = 0
    for i in range(topics):
        for p in range(partitions):
            log = manager.create(f"{PREFIX}-{i:03d}", p, config)
            for _ in range(per):
                log.append(bytearray(batch), now_ms=now, flush=False)
                total += len(batch)
    manager.close()  # (writes every file back, then one syncfs)
    segments = sum(1 for _ in data.glob("*/*.log"))
    return {"bytes": total, "segments": segments, "fill_s": round(time.monotonic() - t0, 1)}


def measure(data: Path, src: str | None, topic: str) -> dict[str, Any]:
    port = free_port()
    out: dict[str, Any] = {}
    proc, _, _ = start(data, port, src)  # (the state left by the previous run)
    proc.send_signal(signal.SIGTERM)
    proc.wait(300)
    proc, out["clean_s"], out["clean_cpu_s"] = start(data, port, src)
    t0 = time.monotonic()
    out["clean_last_offset"] = last_record(port, topic, 7)
    out["clean_fetch_s"] = round(time.monotonic() - t0, 3)
    out["fds"] = len(os.listdir(f"/proc/{proc.pid}/fd"))
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    proc, out["kill_s"], out["kill_cpu_s"] = start(data, port, src)
    t0 = time.monotonic()
    out["kill_last_offset"] = last_record(port, topic, 7)
    out["kill_fetch_s"] = round(time.monotonic() - t0, 3)
    proc.send_signal(signal.SIGTERM)
    proc.wait(300)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--topics", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=100, help="partitions per topic")
    ap.add_argument("--mb-per-partition", type=float, default=0.0)
    ap.add_argument("--segment-mb", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--src", action="append", default=[], help="NAME=DIR: an older src tree")
    ap.add_argument("--dir", default=None, help="parent directory of the data (default: a temporary one)")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    variants: list[tuple[str, str | None]] = [tuple(s.split("=", 1)) for s in args.src]  # type: ignore[misc]
    variants.append(("after", None))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        info = build(data, args.topics, args.partitions, args.mb_per_partition, args.segment_mb)
        print(json.dumps({"label": args.label, "partitions": args.topics * args.partitions, **info}), flush=True)
        for run in range(args.runs):
            for name, src in variants:
                result = measure(data, src, f"{PREFIX}-{run % args.topics:03d}")
                load = os.getloadavg()[0]
                print(json.dumps({"label": args.label, "variant": name, "run": run, "load": load, **result}), flush=True)


if __name__ == "__main__":
    main()
