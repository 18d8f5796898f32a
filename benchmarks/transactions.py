"""Transactions and idempotence: what exactly-once costs.

    .venv/bin/python benchmarks/transactions.py [--broker riverbed|tansu|both] [--records N]

For each broker (a child process started as in run.py: riverbed with its durable defaults,
Tansu with memory storage), one confluent-kafka producer writes N records of 100 B to a
6-partition topic, acks=all, linger.ms=5, in four modes:

* ``plain``: enable.idempotence=false (the baseline),
* ``idempotent``: enable.idempotence=true,
* ``txn-100`` / ``txn-1000``: transactional, commit_transaction() every 100 / 1,000 records.

Reported: records/s, transactions/s (transactional modes), broker CPU-seconds per 10k
records (and split into user and system time), and for the transactional modes a read_committed consumer's count of the records
(which must equal N: every transaction was committed). Each mode runs in a fresh topic.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run

VALUE = b"x" * 100
MODES = ("plain", "idempotent", "txn-100", "txn-1000")


def produce(bootstrap: str, topic: str, mode: str, n: int) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "enable.idempotence": mode != "plain"}
    per_txn = 0
    if mode.startswith("txn-"):
        per_txn = int(mode.split("-")[1])
        conf["transactional.id"] = f"bench-{topic}"
    p = Producer(conf)
    if per_txn:
        p.init_transactions(30)
    t0 = time.perf_counter()
    txns = 0
    if per_txn:
        for start in range(0, n, per_txn):
            p.begin_transaction()
            for _ in range(min(per_txn, n - start)):
                while True:
                    try:
                        p.produce(topic, value=VALUE)
                        break
                    except BufferError:
                        p.poll(0.01)
            p.commit_transaction(60)
            txns += 1
    else:
        for _ in range(n):
            while True:
                try:
                    p.produce(topic, value=VALUE)
                    break
                except BufferError:
                    p.poll(0.01)
        assert p.flush(120) == 0
    elapsed = time.perf_counter() - t0
    out: dict[str, Any] = {"seconds": round(elapsed, 3), "records_per_s": round(n / elapsed)}
    if per_txn:
        out["txns_per_s"] = round(txns / elapsed, 1)
    return out


def count_committed(bootstrap: str, topic: str, expected: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-count", "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(run.PARTITIONS)])
        got, idle = 0, 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and idle < 8:
            msgs = c.consume(1000, 0.25)
            got += sum(1 for m in msgs if m.error() is None)
            idle = 0 if msgs else idle + 1
            if got >= expected and not msgs:
                break
        return got
    finally:
        c.close()


def bench(name: str, n: int, root: Path) -> dict[str, Any]:
    broker = run.make_broker(name, root)
    broker.start()
    results: dict[str, Any] = {}
    try:
        for mode in MODES:
            topic = f"t-{mode}"
            run.create_topic(broker.bootstrap, topic)
            user0, sys0 = broker.cpu_split()
            try:
                r = produce(broker.bootstrap, topic, mode, n)
            except Exception as exc:  # a broker that cannot do this mode
                results[mode] = {"error": str(exc)}
                print(f"{name} {mode}: {exc}", flush=True)
                continue
            user1, sys1 = broker.cpu_split()
            r["broker_cpu_s_per_10k"] = round((user1 - user0 + sys1 - sys0) / n * 10_000, 3)
            # user (the broker's own work) and system (syscalls: socket I/O, fsync) apart
            r["broker_user_sys_s_per_10k"] = [round((user1 - user0) / n * 10_000, 3), round((sys1 - sys0) / n * 10_000, 3)]
            if mode.startswith("txn-"):
                r["read_committed_count"] = count_committed(broker.bootstrap, topic, n)
            results[mode] = r
            print(f"{name} {mode}: {json.dumps(r)}", flush=True)
    finally:
        broker.stop()
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", choices=["riverbed", "tansu", "both"], default="both")
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--out")
    args = ap.parse_args()
    names = ["riverbed", "tansu"] if args.broker == "both" else [args.broker]
    doc: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()} {platform.processor()}".strip(), "records": args.records}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            doc[name] = bench(name, args.records, Path(tmp))
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
