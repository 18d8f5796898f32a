"""The job-queue workload on RabbitMQ, to compare with benchmarks/share_groups.py, by hand:

    .venv/bin/python benchmarks/share_vs_rabbitmq.py --records 100000 --consumers 3

Uses the RabbitMQ already running on this machine (amqp://guest:guest@127.0.0.1:5672,
``--url`` otherwise) through pika: a durable quorum-less classic queue of its own (deleted
afterwards), persistent messages of 100 bytes published with publisher confirms (pika's
BlockingConnection: each publish waits for its confirm, so the publish rate is not
comparable with librdkafka's batched acks=all), then K consumers, each on its own connection and thread with manual acks and
``basic_qos(prefetch_count)`` equal to the share consumers' ``max.poll.records``, acking each
delivery. Reported like the share-group runs: publish rate, drain time and records/s from the
first delivery until every job was delivered, jobs per consumer and redeliveries.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from typing import Any

import pika  # type: ignore[import-untyped]


def run(url: str, n: int, consumers: int, prefetch: int) -> dict[str, Any]:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    params = pika.URLParameters(url)
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.queue_declare(queue=queue, durable=True)
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
    body = b"x" * 100
    t0 = time.perf_counter()
    for i in range(n):
        ch.basic_publish("", queue, body, props, mandatory=False)  # blocks until confirmed
        del i
    publish_s = time.perf_counter() - t0
    seen: list[dict[int, int]] = [{} for _ in range(consumers)]
    counts = [0] * consumers
    first: list[float] = []
    total = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def work(k: int) -> None:
        c = pika.BlockingConnection(params)
        cch = c.channel()
        cch.basic_qos(prefetch_count=prefetch)
        for method, _props, _body in cch.consume(queue, auto_ack=False, inactivity_timeout=0.2):
            if stop.is_set():
                break
            if method is None:
                continue
            if not first:
                first.append(time.perf_counter())
            counts[k] += 1
            tag = method.delivery_tag
            seen[k][tag] = seen[k].get(tag, 0) + 1
            cch.basic_ack(tag)
            with lock:
                total[0] += 1
        cch.cancel()
        c.close()

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(consumers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + max(120.0, n / 200)
    while total[0] < n and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.perf_counter() - (first[0] if first else t0)
    stop.set()
    for t in threads:
        t.join(30)
    ch.queue_delete(queue)
    conn.close()
    return {
        "system": "rabbitmq",
        "consumers": consumers,
        "records": n,
        "processed": total[0],
        "publish_records_per_s": round(n / publish_s),
        "seconds": round(elapsed, 2),
        "records_per_s": round(total[0] / elapsed),
        "per_consumer": counts,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--consumers", type=int, action="append")
    ap.add_argument("--prefetch", type=int, default=500)
    args = ap.parse_args()
    results = [run(args.url, args.records, k, args.prefetch) for k in args.consumers or [1, 3, 6]]
    for r in results:
        print(json.dumps(r))
    return 0 if all(r["processed"] == r["records"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
