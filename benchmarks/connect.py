"""riverbed.connect benchmark: PostgreSQL row changes per second from commit to acknowledged
record (small rows and 1 KiB rows), commit-to-topic latency p50/p99 at a fixed rate, and the
connector's CPU per 1,000 changes.

A private PostgreSQL (wal_level=logical), a riverbed broker process and the connector as its own
process (`riverbed connect run`), so that the figures are the connector's alone:

    .venv/bin/python benchmarks/connect.py [--changes 100000] [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import psycopg
from confluent_kafka import Consumer

from riverbed.connect.pgoutput import parse_lsn
from riverbed.testing import BrokerProcess
from riverbed.testing.servers import PostgresServer

TOML = """
[cluster]
bootstrap.servers = "{bootstrap}"

[[connector]]
name = "bench"
topic.prefix = "bench"
database.dsn = "{dsn}"
slot.name = "bench"
publication.autocreate.mode = "filtered"
table.include.list = "public\\\\.(small|big|lat)"
snapshot.mode = "no_data"
status.update.interval.ms = 20  # the slot's confirmed LSN is how the benchmark sees acknowledgements
value.converter.schemas.enable = {schemas}
key.converter.schemas.enable = {schemas}
"""


def wal_insert_lsn(c: psycopg.Connection) -> int:
    return parse_lsn(c.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])  # type: ignore[index]


def confirmed(c: psycopg.Connection) -> int:
    row = c.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'bench'").fetchone()
    return 0 if row is None or row[0] is None else parse_lsn(row[0])


def wait_confirmed(c: psycopg.Connection, target: int, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while confirmed(c) < target:
        if time.monotonic() > deadline:
            raise TimeoutError("connector did not catch up")
        time.sleep(0.01)
    return time.monotonic()


def throughput(c: psycopg.Connection, proc: psutil.Process, table: str, changes: int, pad: int) -> dict[str, float]:
    cpu0 = sum(proc.cpu_times()[:2])
    t0 = time.monotonic()
    per_txn = 500
    for start in range(0, changes, per_txn):
        c.execute(f"INSERT INTO {table} (id, pad) SELECT g, repeat('x', %s::int) FROM generate_series(%s::int, %s::int) g", (pad, start, start + per_txn - 1))
        c.commit()
    written = time.monotonic()
    end = wait_confirmed(c, wal_insert_lsn(c))
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    return {"changes": changes, "row_bytes": pad, "seconds": round(end - t0, 3), "write_seconds": round(written - t0, 3),
            "changes_per_s": round(changes / (end - t0)), "connector_cpu_s_per_1000": round(cpu / changes * 1000, 4)}


def latency(c: psycopg.Connection, bootstrap: str, rate: int, seconds: float) -> dict[str, float]:
    received: dict[int, float] = {}
    stop = threading.Event()

    def consume() -> None:
        cons = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-lat", "auto.offset.reset": "earliest", "fetch.wait.max.ms": 5})
        cons.subscribe(["bench.public.lat"])
        while not stop.is_set():
            m = cons.poll(0.05)
            if m is None or m.error() or m.value() is None:
                continue
            now = time.monotonic()
            event = json.loads(m.value())
            received[(event["payload"] if "schema" in event else event)["after"]["id"]] = now
        cons.close()

    t = threading.Thread(target=consume)
    t.start()
    c.execute("INSERT INTO lat VALUES (-1, 'warm-up')")
    c.commit()
    deadline = time.monotonic() + 30
    while -1 not in received and time.monotonic() < deadline:
        time.sleep(0.01)
    committed: dict[int, float] = {}
    n = int(rate * seconds)
    t0 = time.monotonic()
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        c.execute("INSERT INTO lat VALUES (%s, 'x')", (i,))
        c.commit()
        committed[i] = time.monotonic()
    deadline = time.monotonic() + 60
    while len([i for i in committed if i in received]) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    t.join()
    lat = sorted((received[i] - committed[i]) * 1000 for i in committed if i in received)
    q = statistics.quantiles(lat, n=100)
    return {"rate_per_s": rate, "changes": n, "received": len(lat), "p50_ms": round(q[49], 2), "p99_ms": round(q[98], 2), "max_ms": round(lat[-1], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--changes", type=int, default=100_000)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--schemas", action="store_true", help="JSON with the schema part (Kafka Connect's default)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="connect-bench-"))
    results: dict[str, object] = {"cpus": os.cpu_count()}
    # synchronous_commit on: with it off (the test default) WAL reaches the walsender only at the
    # WAL writer's next round (wal_writer_delay, 200 ms), which would be most of the latency
    with PostgresServer(settings={"wal_level": "logical", "synchronous_commit": "on"}) as pg, BrokerProcess(tmp / "broker") as broker, psycopg.connect(pg.dsn) as c:
        for t in ("small", "big", "lat"):
            c.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, pad text)")
        c.commit()
        cfg = tmp / "cdc.toml"
        cfg.write_text(TOML.format(bootstrap=broker.bootstrap, dsn=pg.dsn, schemas=str(args.schemas).lower()))
        proc = subprocess.Popen([sys.executable, "-m", "riverbed", "connect", "run", str(cfg), "--log-level", "WARNING"])
        try:
            deadline = time.monotonic() + 60
            while confirmed(c) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            pp = psutil.Process(proc.pid)
            results["small_rows"] = throughput(c, pp, "small", args.changes, 10)
            print(json.dumps(results["small_rows"]), flush=True)
            results["1KiB_rows"] = throughput(c, pp, "big", max(args.changes // 2, 1000), 1024)
            print(json.dumps(results["1KiB_rows"]), flush=True)
            results["latency"] = latency(c, broker.bootstrap, args.rate, args.seconds)
            print(json.dumps(results["latency"]), flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
