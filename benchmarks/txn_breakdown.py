"""Where a transaction's time goes: per-request latency at the broker for transactions of N records.

    .venv/bin/python benchmarks/txn_breakdown.py [--txns 500] [--per-txn 100]

Starts ``riverbed serve`` (durable defaults, metrics on a free port), creates a 6-partition
topic, runs one confluent-kafka transactional producer (acks=all, linger.ms=5, as
``transactions.py``) and reads the broker's own request histograms (``/metrics``) before and
after: per API, requests per transaction and the mean total / local (event loop) / remote
(waiting for fsync) time, the flush cycles per transaction and their mean duration, and the
broker's CPU per transaction beside the client's wall time per transaction.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run

VALUE = b"x" * 100
_LINE = re.compile(r'^(riverbed_[a-z_]+?)(?:_sum|_count)?(?:\{([^}]*)\})? ([0-9.e+-]+)$')


def scrape(url: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith("#") or "_bucket" in line:
            continue
        name, _, rest = line.partition(" ")
        try:
            out[(name, "")] = float(rest)
        except ValueError:
            continue
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--txns", type=int, default=500)
    ap.add_argument("--per-txn", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mport = run.free_port()
        broker = run.make_broker("riverbed", Path(tmp))
        assert broker.popen is None
        cmd = [c for c in broker.cmd if c != "--no-metrics"] + ["--metrics-listen", f"127.0.0.1:{mport}"]
        broker.cmd = cmd
        broker.start()
        url = f"http://127.0.0.1:{mport}/metrics"
        try:
            run.create_topic(broker.bootstrap, "t")
            p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5, "transactional.id": "bd"})
            p.init_transactions(30)
            for _ in range(20):  # warm-up
                p.begin_transaction()
                for _ in range(args.per_txn):
                    p.produce("t", value=VALUE)
                p.commit_transaction(60)
            m0 = scrape(url)
            c0 = broker.cpu_split()
            t0 = time.perf_counter()
            commit_wait = 0.0
            for _ in range(args.txns):
                p.begin_transaction()
                for _ in range(args.per_txn):
                    p.produce("t", value=VALUE)
                t1 = time.perf_counter()
                p.commit_transaction(60)
                commit_wait += time.perf_counter() - t1
            wall = time.perf_counter() - t0
            c1 = broker.cpu_split()
            m1 = scrape(url)
        finally:
            broker.stop()
    n = args.txns
    d = {k: m1.get(k, 0.0) - m0.get(k, 0.0) for k in m1}
    print(f"{n} transactions of {args.per_txn}: {n / wall:.1f} txns/s, {wall / n * 1e3:.2f} ms each, of which commit_transaction() {commit_wait / n * 1e3:.2f} ms")
    print(f"broker CPU per txn: user {(c1[0] - c0[0]) / n * 1e3:.2f} ms, system {(c1[1] - c0[1]) / n * 1e3:.2f} ms")
    apis = sorted({re.search(r'api="([^"]+)"', k[0]).group(1) for k in d if k[0].startswith("riverbed_request_total_time_seconds_count")})  # type: ignore[union-attr]
    print(f"{'api':<22}{'per txn':>8}{'total ms':>10}{'local ms':>10}{'remote ms':>10}")
    for api in apis:
        row: list[Any] = []
        cnt = d.get((f'riverbed_request_total_time_seconds_count{{api="{api}"}}', ""), 0.0)
        if not cnt:
            continue
        for kind in ("total", "local", "remote"):
            s = d.get((f'riverbed_request_{kind}_time_seconds_sum{{api="{api}"}}', ""), 0.0)
            row.append(s / cnt * 1e3)
        print(f"{api:<22}{cnt / n:>8.2f}{row[0]:>10.3f}{row[1]:>10.3f}{row[2]:>10.3f}")
    fc = d.get(("riverbed_log_flush_seconds_count", ""), 0.0)
    fs = d.get(("riverbed_log_flush_seconds_sum", ""), 0.0)
    if fc:
        print(f"flush cycles per txn {fc / n:.2f}, mean cycle {fs / fc * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
