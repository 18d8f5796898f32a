"""What fetch sessions (KIP-227) save: the broker's CPU while a consumer of 1,000 partitions
sits idle and while light traffic arrives.

    .venv/bin/python benchmarks/fetch_sessions.py [--partitions 1000] [--seconds 30] [--rate 100]
    .venv/bin/python benchmarks/fetch_sessions.py --src /path/to/old/checkout/src   # before

``riverbed serve`` runs in a child process (from ``--src`` when given, to measure an older
riverbed). One kafka-python consumer (it uses incremental fetch sessions when the broker
offers them) is assigned every partition of a new topic at its end. After a warm-up, the
broker's CPU-seconds (user + system, from the process, not wall time: the machine may be
shared) are measured over ``--seconds`` with no traffic, then over ``--seconds`` while a
producer writes ``--rate`` records/s spread over all partitions. Also reported: the Fetch
requests per second the consumer sent (its own metric) and that every record produced arrived.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from kafka import KafkaConsumer, TopicPartition

from riverbed.testing import free_port

TOPIC = "fetch-sessions-bench"


def start_broker(data_dir: Path, port: int, src: str | None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    cmd = [sys.executable, "-m", "riverbed", "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir)]
    if not src:  # an older riverbed (--src) has neither the embedded registry nor metrics, nor these flags
        cmd += ["--no-registry", "--no-metrics", "--no-console"]
    log = open(data_dir.parent / "broker.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    log.close()
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=1)
            return proc
        except Exception:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("broker did not start")


def cpu(pid: int) -> float:
    """CPU-seconds (user + system, all threads) of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Poller(threading.Thread):
    def __init__(self, consumer: KafkaConsumer) -> None:
        super().__init__(daemon=True)
        self.consumer = consumer
        self.received = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for records in self.consumer.poll(timeout_ms=200).values():
                self.received += len(records)


def fetch_rate(consumer: KafkaConsumer) -> float:
    """The consumer's own Fetch requests per second (its windowed ``fetch-rate`` metric)."""
    metrics = consumer.metrics()
    return round(float(metrics.get("consumer-fetch-manager-metrics", {}).get("fetch-rate", 0.0)), 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=int, default=100, help="records per second in the light-traffic phase")
    ap.add_argument("--src", default=None, help="run the broker from this src directory (an older riverbed)")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        port = free_port()
        broker = start_broker(data, port, args.src)
        bootstrap = f"127.0.0.1:{port}"
        try:
            proc = broker.pid
            admin = AdminClient({"bootstrap.servers": bootstrap})
            for fut in admin.create_topics([NewTopic(TOPIC, num_partitions=args.partitions, replication_factor=1)]).values():
                fut.result(60)
            consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
            tps = [TopicPartition(TOPIC, i) for i in range(args.partitions)]
            consumer.assign(tps)
            consumer.seek_to_end()
            poller = Poller(consumer)
            poller.start()
            time.sleep(5)  # warm-up: metadata, offsets, the first full fetch (not measured)
            result: dict[str, Any] = {"label": args.label, "partitions": args.partitions, "seconds": args.seconds, "rate": args.rate}
            c0 = cpu(proc)
            time.sleep(args.seconds)
            result["idle_cpu_s"] = round(cpu(proc) - c0, 3)
            result["idle_fetch_rate"] = fetch_rate(consumer)
            producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
            produced = 0
            c0 = cpu(proc)
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < args.seconds:
                while produced < elapsed * args.rate:
                    producer.produce(TOPIC, b"x" * 100, partition=produced % args.partitions)
                    produced += 1
                producer.poll(0)
                time.sleep(0.01)
            producer.flush(30)
            result["traffic_cpu_s"] = round(cpu(proc) - c0, 3)
            result["traffic_fetch_rate"] = fetch_rate(consumer)
            deadline = time.monotonic() + 60
            while poller.received < produced and time.monotonic() < deadline:
                time.sleep(0.1)
            result["produced"], result["received"] = produced, poller.received
            poller.stop.set()
            poller.join(5)
            consumer.close()
            print(json.dumps(result))
        finally:
            broker.terminate()
            broker.wait(30)


if __name__ == "__main__":
    main()
