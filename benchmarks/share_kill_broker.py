"""Acceptance run by hand: a broker kill -9 in the middle of a share-group drain.

    .venv/bin/python benchmarks/share_kill_broker.py --records 100000 --consumers 3

Three ShareConsumers (explicit acknowledgement, ACCEPT each record, ``commit_sync`` after
each poll) drain a 1-partition topic from a ``riverbed serve`` child process; when a third
of the records are accepted the broker is killed with SIGKILL and started again on the same
data dir and port, and the consumers carry on. Checked at the end: every record was
processed; no record whose acknowledgement was confirmed (commit_sync returned no error for
its partition) was delivered again; the records delivered more than once are reported
(those acquired, or acknowledged without a confirmation, when the broker died).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import AcknowledgeType, KafkaException, Producer, ShareConsumer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from riverbed.testing import BrokerProcess

TOPIC, GROUP = "jobs", "kill-bench"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--consumers", type=int, default=3)
    args = ap.parse_args()
    n = args.records
    with tempfile.TemporaryDirectory(prefix="share-kill-") as tmp:
        broker = BrokerProcess(Path(tmp) / "data").start()
        bs = broker.bootstrap
        admin = AdminClient({"bootstrap.servers": bs})
        admin.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(10)
        res = ConfigResource(
            ResourceType.GROUP,
            GROUP,
            incremental_configs=[
                ConfigEntry(
                    "share.auto.offset.reset",
                    "earliest",
                    incremental_operation=AlterConfigOpType.SET,
                )
            ],
        )
        admin.incremental_alter_configs([res])[res].result(10)
        p = Producer({"bootstrap.servers": bs, "linger.ms": 20})
        for i in range(n):
            while True:
                try:
                    p.produce(TOPIC, value=b"x" * 100, key=str(i).encode())
                    break
                except BufferError:
                    p.poll(0.05)
        assert p.flush(60) == 0
        lock = threading.Lock()
        deliveries: dict[int, int] = {}
        confirmed: set[int] = set()
        redelivered_confirmed: set[int] = set()
        stop = threading.Event()

        def work() -> None:
            c = ShareConsumer(
                {
                    "bootstrap.servers": bs,
                    "group.id": GROUP,
                    "share.acknowledgement.mode": "explicit",
                    "max.poll.records": 200,
                }
            )
            c.subscribe([TOPIC])
            while not stop.is_set():
                try:
                    msgs = [m for m in c.poll(0.2) if m.error() is None]
                    batch = []
                    for m in msgs:
                        c.acknowledge(m, AcknowledgeType.ACCEPT)
                        batch.append(m.offset())
                    with lock:
                        for o in batch:
                            deliveries[o] = deliveries.get(o, 0) + 1
                            if o in confirmed:
                                redelivered_confirmed.add(o)
                    if batch:
                        results = c.commit_sync(30)
                        if all(e is None for e in results.values()):
                            with lock:
                                confirmed.update(batch)
                except KafkaException:
                    time.sleep(0.1)  # the broker is down: carry on
            c.close()

        threads = [threading.Thread(target=work, daemon=True) for _ in range(args.consumers)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        while len(confirmed) < n // 3:
            time.sleep(0.01)
        broker.kill()
        killed_at = len(confirmed)
        time.sleep(0.5)
        broker.start()
        deadline = time.monotonic() + 300
        while len(deliveries) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        stop.set()
        for t in threads:
            t.join(30)
        broker.kill()
        out = {
            "records": n,
            "consumers": args.consumers,
            "confirmed_when_killed": killed_at,
            "processed": len(deliveries),
            "all_processed": len(deliveries) == n,
            "confirmed_then_redelivered": len(redelivered_confirmed),
            "delivered_more_than_once": sum(1 for v in deliveries.values() if v > 1),
            "seconds": round(elapsed, 1),
        }
        print(json.dumps(out))
        return 0 if out["all_processed"] and not redelivered_confirmed else 1


if __name__ == "__main__":
    raise SystemExit(main())
