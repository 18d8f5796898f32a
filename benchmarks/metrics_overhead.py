"""What scraping /metrics costs the broker, in CPU-seconds.

    .venv/bin/python benchmarks/metrics_overhead.py [--records 200000] [--partitions 12] [--groups 4]

``riverbed serve`` runs in a child process with its metrics endpoint on a free port. A topic
with ``--partitions`` partitions gets ``--groups`` consumer groups with committed offsets
(so every per-partition and per-group series exists). Then:

1. cost of one scrape: the broker idle, ``--scrapes`` scrapes back to back; the broker's
   CPU-seconds over them minus its idle CPU over the same wall time, divided by the scrapes;
2. the broker's CPU rate under load: a producer process (confluent-kafka, acks=all, 16 KB batches as Java's default, 100-byte
   records) writes ``--records`` records as fast as it can, twice: once with no scraper and
   once scraped every ``--interval`` seconds (default 1 s, 15x Prometheus' usual rate, so the
   A/B difference is large enough to see at all); CPU-seconds of the broker (user + system,
   all threads, from /proc: not wall time, the machine may be shared) per run;
3. the share of the broker's CPU a 15 s scrape interval costs: (cost of one scrape / 15 s)
   divided by the broker's CPU rate under load;
4. whether the endpoint's figures agree with what the benchmark did: records in against
   records produced, bytes in against the topic's segment files, the lag of a group that
   committed offset 1 on every partition against records produced minus partitions.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from prometheus_client.parser import text_string_to_metric_families

from riverbed.testing import free_port

TOPIC = "metrics-bench"
LOAD = """
import sys, time
from confluent_kafka import Producer
n, topic, bootstrap = int(sys.argv[1]), sys.argv[2], sys.argv[3]
p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1, "batch.size": 16384, "queue.buffering.max.messages": 200000})
value = b"x" * 100
for i in range(n):
    while True:
        try:
            p.produce(topic, value=value)
            break
        except BufferError:
            p.poll(0.05)
    if i % 1000 == 0:
        p.poll(0)
assert p.flush(120) == 0
"""


def cpu(pid: int) -> float:
    """CPU-seconds (user + system, all threads) of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        return len(resp.read())


def sums(port: int) -> dict[str, float]:
    """Per metric name, the sum of its samples for the topic (and group bench-group-0)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("topic") == TOPIC and sample.labels.get("group", "bench-group-0") == "bench-group-0":
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def records_in(port: int) -> float:
    """The broker's own count of records appended to the topic (riverbed_topic_records_in_total)."""
    return sums(port).get("riverbed_topic_records_in_total", 0.0)


def produce(bootstrap: str, records: int) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", LOAD, str(records), TOPIC, bootstrap], check=True)
    return time.monotonic() - t0


class Scraper(threading.Thread):
    def __init__(self, port: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.port, self.interval = port, interval
        self.stop = threading.Event()
        self.scrapes = 0

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            scrape(self.port)
            self.scrapes += 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--scrapes", type=int, default=200)
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="riverbed-metrics-bench-"))
    port, mport = free_port(), free_port()
    bootstrap = f"127.0.0.1:{port}"
    log = open(tmp / "broker.log", "ab")  # noqa: SIM115 - owned by the child
    cmd = [sys.executable, "-m", "riverbed", "serve", "--listen", bootstrap, "--data-dir", str(tmp / "data"), "--no-registry", "--no-console", "--metrics-listen", f"127.0.0.1:{mport}", "--log-level", "WARNING"]
    broker = subprocess.Popen(cmd, stdout=log, stderr=log)
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        deadline = time.monotonic() + 60
        while True:
            try:
                admin.list_topics(timeout=1)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        for fut in admin.create_topics([NewTopic(TOPIC, num_partitions=args.partitions, replication_factor=1)]).values():
            fut.result(30)
        produce(bootstrap, 1000)  # warm-up, and something to commit
        for g in range(args.groups):
            c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-group-{g}"})
            c.commit(offsets=[TopicPartition(TOPIC, p, 1) for p in range(args.partitions)], asynchronous=False)
            c.close()
        size = scrape(mport)

        # 1. one scrape's cost, against the idle broker's own CPU over the same time
        t0, c0 = time.monotonic(), cpu(broker.pid)
        time.sleep(5)
        idle_rate = (cpu(broker.pid) - c0) / (time.monotonic() - t0)
        t0, c0 = time.monotonic(), cpu(broker.pid)
        for _ in range(args.scrapes):
            scrape(mport)
        wall = time.monotonic() - t0
        per_scrape = max((cpu(broker.pid) - c0) - idle_rate * wall, 0.0) / args.scrapes

        # 2. produce load without, then with, a scraper
        runs = {}
        for label, interval in (("no_scraper", None), ("scraper", args.interval)):
            scraper = Scraper(mport, interval) if interval else None
            if scraper:
                scraper.start()
            before = records_in(mport)
            c0 = cpu(broker.pid)
            seconds = produce(bootstrap, args.records)
            used = cpu(broker.pid) - c0
            counted = records_in(mport) - before
            if scraper:
                scraper.stop.set()
                scraper.join()
            runs[label] = {"wall_s": round(seconds, 2), "broker_cpu_s": round(used, 2), "broker_cpu_per_s": round(used / seconds, 3), "scrapes": scraper.scrapes if scraper else 0, "records_produced": args.records, "records_in_counted_by_metrics": counted}
        load_rate = runs["no_scraper"]["broker_cpu_per_s"]
        # what the endpoint says against what this benchmark did and what is on disk
        final = sums(mport)
        produced = 1000 + 2 * args.records
        on_disk = sum(f.stat().st_size for f in (tmp / "data").glob(f"{TOPIC}-*/*.log"))
        agree = {
            "records_produced": produced,
            "records_in_total": final.get("riverbed_topic_records_in_total"),
            "segment_bytes_on_disk": on_disk,
            "bytes_in_total": final.get("riverbed_topic_bytes_in_total"),
            "expected_lag_of_a_group": produced - args.partitions,  # each committed offset 1
            "group_lag_sum": final.get("riverbed_group_lag"),
        }
        print(json.dumps({
            "partitions": args.partitions,
            "groups": args.groups,
            "exposition_bytes": size,
            "broker_cpu_per_scrape_ms": round(per_scrape * 1000, 2),
            "idle_broker_cpu_per_s": round(idle_rate, 4),
            "load": runs,
            "scrape_every_15s_share_of_loaded_broker_cpu_pct": round(100 * per_scrape / 15 / load_rate, 4) if load_rate else None,
            "scrape_every_15s_cpu_per_s": round(per_scrape / 15, 5),
            "figures_agree": agree,
        }, indent=2))
    finally:
        broker.terminate()
        broker.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
