"""riverbed.sql against the same pipelines written with riverbed.streams, on one broker.

    python benchmarks/sql.py                       # starts `riverbed serve` in a child process; 20,000 records
    python benchmarks/sql.py --records 100000 --bootstrap HOST:PORT

(a) filter: ``CREATE STREAM vip AS SELECT * FROM users WHERE status = 'VIP'`` vs
    ``app.stream(...).filter(...).to(...)`` with JSON values;
(b) tumbling count: ``CREATE TABLE c AS SELECT id, COUNT(*) FROM users WINDOW TUMBLING (SIZE 10
    SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY id`` vs ``group_by_key().windowed_by(TimeWindows.of(10 s)).count()``
    (the same grace on both sides: ksqlDB's default when a window names none is 24 hours);
each from the query's partition assignment to the last output on the output topic (records/s
of input; the input is produced beforehand), and the CPU µs per record of the query's thread
meanwhile (its poll loop: decoding, processing, stores, producing; steadier than records/s
on a busy machine; cpu_streams_vs_sql is the CPU counterpart of sql_vs_streams).
(p) push query end-to-end latency at --rate records/s (produce time in the value -> the row
    read from POST /query-stream), p50/p99;
(q) pull query latency by key over HTTP (POST /query-stream), p50/p99.
(a) and (b) run in this process, both sides alike; (p) and (q) ask a `riverbed sql serve` child
process (as users run it: this process's clients and queries do not share its interpreter),
unless --server-in-process.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from riverbed.client import ClusterSettings
from riverbed.sql.engine import Engine
from riverbed.sql.server import SqlServer
from riverbed.streams import JSON, LONG, STRING, StreamsApp, TimeWindows, WindowedSerde
from riverbed.streams.runtime import Runtime


def create(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(30)


def fill(bootstrap: str, topic: str, n: int, keys: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "partitioner": "murmur2_random"})
    base = 1_700_000_000_000
    for i in range(n):
        v = json.dumps({"status": "VIP" if i % 4 == 0 else "regular", "n": i}).encode()
        while True:
            try:
                p.produce(topic, v, f"u{i % keys}".encode(), timestamp=base + i * 10)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(60)


_probes: dict[str, Consumer] = {}


def total(bootstrap: str, topic: str) -> int:
    """The records on ``topic`` (the sum of its partitions' high watermarks), read by one
    long-lived consumer per bootstrap (a new client per probe would cost milliseconds of this
    process's CPU, and the probe's resolution, at every check)."""
    c = _probes.get(bootstrap)
    if c is None:
        c = _probes[bootstrap] = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe"})
    md = c.list_topics(topic, timeout=10)
    if topic not in md.topics or md.topics[topic].error is not None:
        return 0
    return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.topics[topic].partitions)


def wait_total(bootstrap: str, topic: str, want: int, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if total(bootstrap, topic) >= want:
            return time.monotonic()
        time.sleep(0.01)
    raise SystemExit(f"{topic}: {total(bootstrap, topic)} of {want} records after {timeout} s")


def thread_cpu(t: threading.Thread | None) -> float:
    """CPU seconds a thread has used so far (Linux /proc; 0.0 elsewhere)."""
    try:
        with open(f"/proc/self/task/{t.native_id if t else 0}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def run_streams(bootstrap: str, app: StreamsApp, out: str, want: int) -> tuple[float, float]:
    """Seconds from the assignment to the last output, and the CPU seconds of the app's thread then."""
    rt = Runtime(app.topology(), bootstrap, state_dir=tempfile.mkdtemp(), commit_interval_ms=2000,
                 cache_max_bytes=0)  # as riverbed.sql runs its queries (every change emitted) unless told otherwise
    t = threading.Thread(target=rt.run, daemon=True)
    t.start()
    while not rt.tasks:  # from the assignment on, as for the SQL query (CREATE returns then)
        time.sleep(0.005)
    t0, c0 = time.monotonic(), thread_cpu(t)
    t1 = wait_total(bootstrap, out, want)
    c1 = thread_cpu(t)
    rt.stop()
    t.join(30)
    return t1 - t0, c1 - c0


def run_sql(engine: Engine, ddl: str, out: str, bootstrap: str, want: int) -> tuple[float, float]:
    engine.execute(ddl, {"auto.offset.reset": "earliest"})  # returns once the query's partitions are assigned
    thread = next((q.thread for q in engine.queries.values() if q.sink_topic == out), None)
    t0, c0 = time.monotonic(), thread_cpu(thread)
    t1 = wait_total(bootstrap, out, want)
    return t1 - t0, thread_cpu(thread) - c0


def ratios(n: int, s: tuple[float, float], q: tuple[float, float]) -> dict[str, Any]:
    """records/s of both, and the query threads' CPU µs per record (steadier on a busy machine)."""
    out: dict[str, Any] = {"streams_rps": round(n / s[0]), "sql_rps": round(n / q[0]), "sql_vs_streams": round(s[0] / q[0], 3)}
    if s[1] > 0 and q[1] > 0:
        out.update(streams_cpu_us=round(s[1] / n * 1e6, 1), sql_cpu_us=round(q[1] / n * 1e6, 1),
                   cpu_streams_vs_sql=round(s[1] / q[1], 3))
    return out


def push_and_pull(bootstrap: str, server_url: str, src: str, run: str, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """(q) and (p), against a SQL server at ``server_url`` (REST only)."""
    http = httpx.Client(timeout=60)

    def ksql(text: str) -> None:
        r = http.post(f"{server_url}/ksql", json={"ksql": text, "streamsProperties": {"auto.offset.reset": "earliest"}})
        assert r.status_code == 200, r.text

    n = args.records
    ksql(f"CREATE STREAM pusers{run} (id STRING KEY, status STRING, n BIGINT) WITH (kafka_topic='{src}', value_format='JSON');")
    # (q) pull queries by key over HTTP, on a non-windowed table
    ksql(f"CREATE TABLE totals{run} AS SELECT id, COUNT(*) AS n FROM pusers{run} GROUP BY id EMIT CHANGES;")
    wait_total(bootstrap, f"TOTALS{run}".upper(), n)
    lat = []
    for i in range(args.pulls):
        t0 = time.perf_counter()
        r = http.post(f"{server_url}/query-stream", json={"sql": f"SELECT * FROM totals{run} WHERE id = 'u{i % args.keys}';"})
        lat.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200 and r.text.count("\n") == 2, r.text  # the header and the key's row
    out["pull_ms"] = {"p50": round(statistics.median(lat), 2), "p99": round(statistics.quantiles(lat, n=100)[98], 2)}
    # (p) push query latency at a steady rate
    live = f"bench-live-{run}"
    create(bootstrap, live)
    ksql(f"CREATE STREAM live{run} (id STRING KEY, sent DOUBLE) WITH (kafka_topic='{live}', value_format='JSON');")
    lat = []
    base: list[float] = []  # the same records read by a plain confluent-kafka consumer (the floor)
    plain = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-plain-{run}", "auto.offset.reset": "latest"})
    plain.subscribe([live])
    while not plain.assignment():
        plain.poll(0.1)

    def read_plain() -> None:
        want = int(args.rate * args.seconds)
        deadline = time.monotonic() + args.seconds + 30
        while len(base) < want and time.monotonic() < deadline:
            m = plain.poll(0.1)
            if m is not None and m.error() is None:
                base.append((time.time() - json.loads(m.value() or b"{}")["sent"]) * 1000)

    reader = threading.Thread(target=read_plain, daemon=True)
    reader.start()
    with http.stream("POST", f"{server_url}/query-stream", json={"sql": f"SELECT id, sent FROM live{run} EMIT CHANGES;"}) as r:
        lines = r.iter_lines()
        next(lines)
        want = int(args.rate * args.seconds)

        def produce() -> None:
            p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
            start = time.monotonic()
            for i in range(want):
                delay = start + i / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                p.produce(live, json.dumps({"sent": time.time()}).encode(), f"k{i}".encode())
                p.poll(0)
            p.flush(10)

        threading.Thread(target=produce, daemon=True).start()
        for line in lines:
            if line.strip():
                lat.append((time.time() - json.loads(line)[1]) * 1000)
                if len(lat) >= want:
                    break
    out["push_ms"] = {"rate": args.rate, "rows": len(lat), "p50": round(statistics.median(lat), 2),
                      "p99": round(statistics.quantiles(lat, n=100)[98], 2)}
    reader.join(60)
    plain.close()
    if len(base) > 100:
        out["plain_consumer_ms"] = {"p50": round(statistics.median(base), 2), "p99": round(statistics.quantiles(base, n=100)[98], 2)}
    http.close()


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over the pairs, and the pairs' ratios."""
    out: dict[str, Any] = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0] if all(k in r for r in runs)}
    out["pairs"] = len(runs)
    out["sql_vs_streams_each"] = [r["sql_vs_streams"] for r in runs]
    if all("cpu_streams_vs_sql" in r for r in runs):
        out["cpu_streams_vs_sql_each"] = [r["cpu_streams_vs_sql"] for r in runs]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="a running cluster (default: `riverbed serve` in a child process)")
    ap.add_argument("--embedded", action="store_true",
                    help="the broker in this process (as before 2026-12-08: its threads share this interpreter's GIL)")
    ap.add_argument("--server-in-process", action="store_true",
                    help="push and pull queries against a SQL server in this process (its GIL shared with the "
                         "benchmark's clients and the other queries) instead of a `riverbed sql serve` child process")
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--keys", type=int, default=1_000)
    ap.add_argument("--rate", type=int, default=1_000, help="records/s for the push-latency run")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of the push-latency run")
    ap.add_argument("--pulls", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=3, help="pairs of throughput runs (sql and streams) per pipeline; medians printed")
    ap.add_argument("--no-freeze", action="store_true", help="no gc.freeze() before the push-latency run")
    args = ap.parse_args()
    broker: Any = None
    bootstrap = args.bootstrap
    tmp = Path(tempfile.mkdtemp(prefix="bench-sql-"))
    if bootstrap is None:
        from riverbed.testing import FIXTURE_DEFAULTS, BrokerProcess, EmbeddedBroker

        if args.embedded:
            broker = EmbeddedBroker(**FIXTURE_DEFAULTS).start()
        else:
            broker = BrokerProcess(tmp / "data", extra=["--log-level", "WARNING", "--set",
                                                        "group.initial.rebalance.delay.ms=0"]).start(timeout=60)
        bootstrap = broker.bootstrap
    run = uuid.uuid4().hex[:6]
    n = args.records
    src = f"bench-users-{run}"
    create(bootstrap, src)
    fill(bootstrap, src, n, args.keys)
    vip = (n + 3) // 4
    out: dict[str, Any] = {"records": n, "keys": args.keys, "broker": "embedded" if args.embedded else "given" if args.bootstrap else "process",
                           "sql_server": "in-process" if args.server_in_process else "process"}
    engine = Engine(ClusterSettings(bootstrap), service_id=f"bench{run}_", state_dir=str(tmp / "sql-state")).start()
    server = SqlServer(engine, "127.0.0.1", 0)
    server.http.start_in_thread()
    child = None
    try:
        engine.execute(f"CREATE STREAM users{run} (id STRING KEY, status STRING, n BIGINT) WITH (kafka_topic='{src}', value_format='JSON');")
        filters: list[dict[str, Any]] = []
        counts: list[dict[str, Any]] = []
        for rep in range(args.repeat):  # pairs; within a pair the side that goes first alternates
            # (a) filter
            def streams_filter(rep: int = rep) -> tuple[float, float]:
                app = StreamsApp(f"bench-filter-{run}-{rep}", bootstrap)
                app.stream(src, STRING, JSON).filter(lambda _k, v: v["status"] == "VIP").to(f"streams-vip-{run}-{rep}", STRING, JSON)
                create(bootstrap, f"streams-vip-{run}-{rep}")
                return run_streams(bootstrap, app, f"streams-vip-{run}-{rep}", vip)

            def sql_filter(rep: int = rep) -> tuple[float, float]:
                return run_sql(engine, f"CREATE STREAM vip{run}_{rep} AS SELECT * FROM users{run} WHERE status = 'VIP' EMIT CHANGES;",
                               f"VIP{run}_{rep}".upper(), bootstrap, vip)

            # (b) tumbling count per key
            def streams_count(rep: int = rep) -> tuple[float, float]:
                app = StreamsApp(f"bench-count-{run}-{rep}", bootstrap)
                (app.stream(src, STRING, JSON).group_by_key().windowed_by(TimeWindows.of(10_000))
                    .count(name="c").to_stream().to(f"streams-count-{run}-{rep}", WindowedSerde(STRING, 10_000), LONG))
                create(bootstrap, f"streams-count-{run}-{rep}")
                return run_streams(bootstrap, app, f"streams-count-{run}-{rep}", n)

            def sql_count(rep: int = rep) -> tuple[float, float]:
                return run_sql(engine, f"CREATE TABLE counts{run}_{rep} AS SELECT id, COUNT(*) AS n FROM users{run} "
                                       "WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 0 SECONDS) GROUP BY id EMIT CHANGES;",
                               f"COUNTS{run}_{rep}".upper(), bootstrap, n)

            for results, streams_side, sql_side in ((filters, streams_filter, sql_filter), (counts, streams_count, sql_count)):
                if rep % 2 == 0:
                    st = streams_side()
                    sq = sql_side()
                else:
                    sq = sql_side()
                    st = streams_side()
                results.append(ratios(n, st, sq))
            for q in list(engine.queries.values()):  # the finished queries stop polling
                engine.execute(f"TERMINATE {q.id};")
        out["filter"] = summary(filters)
        out["tumbling_count"] = summary(counts)
        if args.server_in_process:
            # what `riverbed sql serve` does once it has replayed its command topic: what start-up
            # built is moved out of the cyclic collector's generations (gc.freeze), or full
            # collections of this process stop every thread for 100-400 ms now and then
            if not args.no_freeze:
                gc.collect()
                gc.freeze()
            url = server.url
        else:  # the server as users run it; the queries above stay in this process
            from riverbed.testing import SqlServerProcess

            child = SqlServerProcess(bootstrap, tmp / "sql-child-state", tmp / "sql-child.log", service_id=f"benchc{run}_").start()
            url = child.url
        push_and_pull(bootstrap, url, src, run, args, out)
    finally:
        if child is not None:
            child.stop()
        server.http.stop()
        engine.close()
        for c in _probes.values():
            c.close()
        if broker is not None:
            broker.stop() if args.embedded else broker.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
