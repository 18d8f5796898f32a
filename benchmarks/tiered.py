"""Fetch throughput from remote (tiered) segments vs local ones.

    .venv/bin/python benchmarks/tiered.py [--mb 100]

A riverbed broker (``riverbed serve`` in a child process) with a local-directory object store holds two topics of
one partition with the same ``--mb`` MB of 16 KiB records (large, so that the Python consumer loop is not the limit): ``local`` (ordinary) and
``tiered`` (remote.storage.enable, 1 MiB segments, local.retention.bytes=1, so every sealed
segment is moved to the store and deleted locally). One confluent-kafka consumer reads each
topic from offset 0 to the end; reported: MB/s and the broker process's CPU-seconds per MB. The
remote reads go through ``RemoteLogReader`` (range reads of the store's files and its LRU
cache) on the broker's thread pool, so the store here is as fast as the local disk: the
figure is the cost of the remote path, not of a network.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from riverbed.testing import BrokerProcess

VALUE = b"r" * 16384


def _cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def fill(bootstrap: str, topic: str, n: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 1 << 20})
    for _ in range(n):
        while True:
            try:
                p.produce(topic, value=VALUE, partition=0)
                break
            except BufferError:
                p.poll(0.01)
    assert p.flush(120) == 0


def read_all(bootstrap: str, topic: str, n: int, pid: int) -> dict[str, Any]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False, "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = 0
    cpu0, t0 = _cpu(pid), time.perf_counter()
    while got < n:
        for m in c.consume(10_000, 1.0):
            if m.error() is None:
                got += 1
    elapsed, cpu = time.perf_counter() - t0, _cpu(pid) - cpu0
    c.close()
    mb = n * len(VALUE) / 1e6
    return {"seconds": round(elapsed, 2), "mb_per_s": round(mb / elapsed, 1), "broker_cpu_s_per_mb": round(cpu / mb, 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--out")
    args = ap.parse_args()
    n = args.mb * 1_000_000 // len(VALUE)
    with tempfile.TemporaryDirectory() as tmp:
        extra = ["--set", f"remote.storage.path={Path(tmp) / 'remote'}", "--set", "remote.log.manager.task.interval.ms=100", "--log-level", "WARNING"]
        with BrokerProcess(Path(tmp) / "data", extra=extra) as b:
            assert b.proc is not None
            pid = b.proc.pid
            admin = AdminClient({"bootstrap.servers": b.bootstrap})
            tiered = {"remote.storage.enable": "true", "segment.bytes": str(1 << 20), "local.retention.bytes": "1", "retention.ms": "-1"}
            for f in admin.create_topics([NewTopic("local", 1, 1), NewTopic("tiered", 1, 1, config=tiered)]).values():
                f.result(10)
            fill(b.bootstrap, "local", n)
            fill(b.bootstrap, "tiered", n)
            deadline = time.monotonic() + 300
            while len(list((Path(tmp) / "data" / "tiered-0").glob("*.log"))) > 2:
                assert time.monotonic() < deadline, "tiering did not finish"
                time.sleep(0.2)
            doc = {
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "mb": args.mb,
                "local": read_all(b.bootstrap, "local", n, pid),
                "remote": read_all(b.bootstrap, "tiered", n, pid),
                "remote_again_cached": read_all(b.bootstrap, "tiered", n, pid),
            }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
