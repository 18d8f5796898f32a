"""Pull queries on a materialized table: a key lookup (``WHERE id = 'u42'``, ``WHERE id IN
(...)``, read from the store by key) against the same answer found by scanning the store
(``WHERE id = 'u42' OR id = 'u42'``, which the engine does not turn into a lookup), in-process
(``Engine.pull``, no HTTP), for a table of --keys keys.

    python benchmarks/sql_pull_lookup.py                  # starts an embedded broker; 2,000 keys
    python benchmarks/sql_pull_lookup.py --keys 100000 --pulls 2000 --bootstrap HOST:PORT

Prints one JSON object: p50/p99 ms of each kind of pull query.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from typing import Any

from confluent_kafka import Producer

from riverbed.client import ClusterSettings
from riverbed.sql.engine import Engine
from riverbed.sql.errors import SqlError
from riverbed.sql.parser import parse_one


def fill(bootstrap: str, topic: str, keys: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "partitioner": "murmur2_random"})
    for i in range(keys):
        while True:
            try:
                p.produce(topic, json.dumps({"n": i}).encode(), f"u{i}".encode())
                break
            except BufferError:
                p.poll(0.05)
    p.flush(60)


def timed(engine: Engine, sqls: list[str]) -> dict[str, float]:
    queries = [parse_one(s).query for s in sqls]  # type: ignore[attr-defined]
    ms = []
    for q in queries:
        t0 = time.perf_counter()
        engine.pull(q)
        ms.append((time.perf_counter() - t0) * 1000)
    ms.sort()
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[int(len(ms) * 0.99) - 1 if len(ms) >= 100 else -1], 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--bootstrap", default=None, help="an existing cluster (default: an embedded broker)"
    )
    ap.add_argument("--keys", type=int, default=2000)
    ap.add_argument("--pulls", type=int, default=200)
    args = ap.parse_args()
    broker: Any = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker

        broker = EmbeddedBroker(**FIXTURE_DEFAULTS).start()
        bootstrap = broker.bootstrap
    topic = f"lookup_{uuid.uuid4().hex[:6]}"
    engine = Engine(
        ClusterSettings(bootstrap),
        service_id=f"bench{uuid.uuid4().hex[:4]}_",
        state_dir=tempfile.mkdtemp(prefix="sql-pull-"),
        commit_interval_ms=1000,
    ).start()
    try:
        engine.execute(
            f"CREATE STREAM src (id STRING KEY, n INT) WITH (kafka_topic='{topic}', value_format='JSON', partitions=2);"
            "CREATE TABLE t AS SELECT id, COUNT(*) AS c, SUM(n) AS s FROM src GROUP BY id EMIT CHANGES;",
            {"auto.offset.reset": "earliest"},
        )
        fill(bootstrap, topic, args.keys)
        deadline = time.monotonic() + 300
        while True:
            try:
                last = parse_one(f"SELECT id FROM t WHERE id = 'u{args.keys - 1}' OR id = 'u0';")
                _cols, rows = engine.pull(last.query)  # type: ignore[attr-defined]
                if len(rows) == 2:
                    break
            except SqlError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the table did not fill in 300 s")
            time.sleep(0.2)
        rnd = random.Random(7)
        picks = [rnd.randrange(args.keys) for _ in range(args.pulls)]
        out = {
            "keys": args.keys,
            "pulls": args.pulls,
            "lookup (id = k)": timed(
                engine, [f"SELECT * FROM t WHERE id = 'u{k}';" for k in picks]
            ),
            "lookup (id IN (10 keys))": timed(
                engine,
                [
                    "SELECT * FROM t WHERE id IN ("
                    + ", ".join(f"'u{(k + j) % args.keys}'" for j in range(10))
                    + ");"
                    for k in picks
                ],
            ),
            "scan (id = k OR id = k)": timed(
                engine, [f"SELECT * FROM t WHERE id = 'u{k}' OR id = 'u{k}';" for k in picks]
            ),
        }
        print(json.dumps(out, indent=2))
    finally:
        engine.close()
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
