"""The gateway's producer settings without the gateway: one librdkafka producer (acks=all,
idempotent, as `riverbed.gateway.AsyncProducer`) against `riverbed serve` in a child process,
keeping `--outstanding` records in flight (each delivery report sends the next, like the
inbound benchmark's keep-alive connections), for each `--linger-ms` given. Reports records/s,
the produce-to-report latency (p50/p99) and librdkafka's own statistics (broker round trip,
time in the local queue, produce requests sent), i.e. the floor under the inbound webhook
benchmark's latency at the same concurrency.

    .venv/bin/python benchmarks/producer_latency.py [--outstanding 64] [--seconds 5] [--linger-ms 5 2 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from riverbed.testing import BrokerProcess


def run(bootstrap: str, linger_ms: int, outstanding: int, seconds: float) -> dict[str, Any]:
    stats: list[dict[str, Any]] = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": linger_ms,
                  "statistics.interval.ms": 1000, "stats_cb": lambda s: stats.append(json.loads(s))})
    p.produce("latency", b"x")
    p.flush(10)
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    def send() -> None:
        sent = time.perf_counter()

        def report(err: Any, msg: Any) -> None:
            if err is None:
                latencies.append(time.perf_counter() - sent)
            if time.monotonic() < stop:
                send()

        p.produce("latency", b"y" * 130, key=b"cus_1", on_delivery=report)

    started = time.monotonic()
    for _ in range(outstanding):
        send()
    while time.monotonic() < stop:
        p.poll(0.05)
    p.flush(10)
    elapsed = time.monotonic() - started
    latencies.sort()
    brokers = [b for b in (stats[-1]["brokers"].values() if stats else ()) if b.get("nodeid", -1) >= 0]
    out: dict[str, Any] = {"linger_ms": linger_ms, "outstanding": outstanding, "per_second": round(len(latencies) / elapsed),
                           "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1), "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1)}
    if brokers:
        b = brokers[0]
        out.update({"rtt_p50_ms": round(b["rtt"]["p50"] / 1000, 1), "queue_p50_ms": round(b["int_latency"]["p50"] / 1000, 1), "produce_requests": b["tx"]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outstanding", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--linger-ms", type=int, nargs="+", default=[5, 2, 1])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-producer-latency-") as tmp, BrokerProcess(Path(tmp) / "data") as broker:
        for linger in args.linger_ms:
            print(json.dumps(run(broker.bootstrap, linger, args.outstanding, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
