"""Share-group (KIP-932) benchmark and acceptance run, by hand (not in the suite):

    .venv/bin/python benchmarks/share_groups.py                 # 100,000 records, 1/3/6 consumers
    .venv/bin/python benchmarks/share_groups.py --records 20000 --consumers 3

For each consumer count: a fresh ``riverbed serve`` (BrokerProcess, fsync on every append as
by default), one 1-partition topic holding N records of 100 bytes, and that many
confluent-kafka ShareConsumers (implicit acknowledgement: every record is accepted) in one
group, each on its own thread. Reported: the drain time and records/s, the records per
consumer (the spread), records delivered more than once, and the broker's CPU seconds per
1,000 acknowledged records (psutil, the broker process only). The same N records read by one
plain consumer-group Consumer (commit after each poll) give the acknowledgement overhead.
Every record must be processed; the script exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, Producer, ShareConsumer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from riverbed.testing import BrokerProcess

TOPIC, GROUP = "jobs", "bench"


def _setup(bootstrap: str, n: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(10)
    res = ConfigResource(
        ResourceType.GROUP,
        GROUP,
        incremental_configs=[
            ConfigEntry(
                "share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET
            )
        ],
    )
    admin.incremental_alter_configs([res])[res].result(10)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 2000})
    payload = b"x" * 100
    for i in range(n):
        while True:
            try:
                p.produce(TOPIC, value=payload, key=str(i).encode())
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(60) == 0


def share_run(n: int, consumers: int, max_poll_records: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="share-bench-") as tmp,
        BrokerProcess(Path(tmp) / "data") as broker,
    ):
        _setup(broker.bootstrap, n)
        assert broker.proc is not None
        proc = psutil.Process(broker.proc.pid)
        seen: list[dict[int, int]] = [{} for _ in range(consumers)]
        stop = threading.Event()
        cs = [
            ShareConsumer(
                {
                    "bootstrap.servers": broker.bootstrap,
                    "group.id": GROUP,
                    "max.poll.records": max_poll_records,
                }
            )
            for _ in range(consumers)
        ]
        for c in cs:
            c.subscribe([TOPIC])

        first: list[float] = []

        def work(i: int) -> None:
            mine = seen[i]
            while not stop.is_set():
                for m in cs[i].poll(0.1):
                    if not first:
                        first.append(time.perf_counter())
                    if m.error() is None:
                        o = m.offset()
                        mine[o] = mine.get(o, 0) + 1

        cpu0 = sum(proc.cpu_times()[:2])
        t0 = time.perf_counter()
        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(consumers)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + max(120.0, n / 500)
        while time.monotonic() < deadline:
            if len(set().union(*seen)) >= n:
                break
            time.sleep(0.01)
        elapsed = time.perf_counter() - (
            first[0] if first else t0
        )  # from the first record (joins excluded)
        stop.set()
        for t in threads:
            t.join(30)
        for c in cs:
            c.close()  # the last implicit acknowledgements
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        processed = set().union(*seen)
        deliveries = sum(sum(s.values()) for s in seen)
        return {
            "consumers": consumers,
            "records": n,
            "processed": len(processed),
            "all_processed": processed == set(range(n)),
            "seconds": round(elapsed, 2),
            "records_per_s": round(n / elapsed),
            "per_consumer": [len(s) for s in seen],
            "redelivered": deliveries - len(processed),
            "broker_cpu_s_per_1000": round(cpu / n * 1000, 4),
        }


def plain_run(n: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="share-bench-") as tmp,
        BrokerProcess(Path(tmp) / "data") as broker,
    ):
        _setup(broker.bootstrap, n)
        assert broker.proc is not None
        proc = psutil.Process(broker.proc.pid)
        c = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "plain",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        c.subscribe([TOPIC])
        got = 0
        cpu0 = sum(proc.cpu_times()[:2])
        t0 = time.perf_counter()
        while got < n:
            msgs = [m for m in c.consume(500, 0.5) if m.error() is None]
            if msgs and got == 0:
                t0 = time.perf_counter()  # from the first record (the join excluded)
            got += len(msgs)
            if msgs:
                c.commit(asynchronous=False)
        elapsed = time.perf_counter() - t0
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        c.close()
        return {
            "consumers": "plain consumer group, 1 consumer, commit per poll of up to 500",
            "records": n,
            "seconds": round(elapsed, 2),
            "records_per_s": round(n / elapsed),
            "broker_cpu_s_per_1000": round(cpu / n * 1000, 4),
        }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument(
        "--consumers", type=int, action="append", help="consumer counts (default 1, 3, 6)"
    )
    ap.add_argument("--max-poll-records", type=int, default=500)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    results = [
        share_run(args.records, k, args.max_poll_records) for k in args.consumers or [1, 3, 6]
    ]
    results.append(plain_run(args.records))
    for r in results:
        print(json.dumps(r))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(r.get("all_processed", True) for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
