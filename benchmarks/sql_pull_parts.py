"""Where a pull query's time goes: the parse alone, ``Engine.query`` (parse, plan, store lookup,
no HTTP), the whole ``POST /query-stream`` with httpx, and ``GET /info`` (the HTTP round trip
with nothing behind it), p50 / p99 ms over --pulls queries by key on a table of --keys keys,
one embedded broker, everything in one process.

    python benchmarks/sql_pull_parts.py [--records 20000] [--keys 1000] [--pulls 1000] [--profile]

``--profile`` adds a cProfile of ``Engine.query`` (by cumulative time). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from sql import create, fill, wait_total

from riverbed.client import ClusterSettings
from riverbed.sql.engine import Engine
from riverbed.sql.parser import parse
from riverbed.sql.server import SqlServer
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--keys", type=int, default=1_000)
    ap.add_argument("--pulls", type=int, default=1_000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    broker = EmbeddedBroker(**FIXTURE_DEFAULTS).start()
    bs = broker.bootstrap
    run = uuid.uuid4().hex[:6]
    src = f"pull-users-{run}"
    create(bs, src)
    fill(bs, src, args.records, args.keys)
    engine = Engine(ClusterSettings(bs), service_id=f"pull{run}_", state_dir=tempfile.mkdtemp()).start()
    server = SqlServer(engine, "127.0.0.1", 0)
    server.http.start_in_thread()
    try:
        engine.execute(f"CREATE STREAM users{run} (id STRING KEY, status STRING, n BIGINT) "
                       f"WITH (kafka_topic='{src}', value_format='JSON');")
        engine.execute(f"CREATE TABLE totals{run} AS SELECT id, COUNT(*) AS n FROM users{run} GROUP BY id EMIT CHANGES;",
                       {"auto.offset.reset": "earliest"})
        wait_total(bs, f"TOTALS{run}".upper(), args.records)

        def query(i: int) -> str:
            return f"SELECT * FROM totals{run} WHERE id = 'u{i % args.keys}';"

        def timed(fn: Callable[[int], Any]) -> dict[str, float]:
            lat = []
            for i in range(args.pulls):
                t0 = time.perf_counter()
                fn(i)
                lat.append((time.perf_counter() - t0) * 1000)
            return {"p50": round(statistics.median(lat), 3), "p99": round(statistics.quantiles(lat, n=100)[98], 3)}

        http = httpx.Client(timeout=30)
        out = {"parse": timed(lambda i: parse(query(i))), "engine_query": timed(lambda i: engine.query(query(i))),
               "http_query_stream": timed(lambda i: http.post(f"{server.url}/query-stream", json={"sql": query(i)})),
               "http_info": timed(lambda i: http.get(f"{server.url}/info"))}
        http.close()
        if args.profile:
            p = cProfile.Profile()
            p.enable()
            for i in range(args.pulls):
                engine.query(query(i))
            p.disable()
            pstats.Stats(p, stream=sys.stderr).sort_stats("cumtime").print_stats(30)
    finally:
        server.http.stop()
        engine.close()
        broker.stop()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
