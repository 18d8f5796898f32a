"""What the command runner costs a statement: ``CREATE STREAM`` + ``DROP STREAM`` pairs through
``Engine.execute`` (no HTTP) on an engine whose runner executes its commands (the default since
several servers share a command topic: write, then wait for the runner's outcome), side by side
with one that executes them itself right after writing (the earlier path: no runner), in one
process, alternating, against one embedded broker.

    python benchmarks/sql_statements.py                  # 200 statements per engine
    python benchmarks/sql_statements.py --pairs 500 --bootstrap HOST:PORT

Prints one JSON object: p50/p99 ms per statement of each (latency: the runner's cost is waiting
for its poll, not CPU; both engines and the broker share the process, so its CPU time is not
split between them), and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from riverbed.client import ClusterSettings
from riverbed.sql.engine import Engine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap")
    ap.add_argument("--pairs", type=int, default=100)
    args = ap.parse_args()
    broker: Any = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        from riverbed.testing import EmbeddedBroker

        broker = EmbeddedBroker(Path(tempfile.mkdtemp(prefix="sql-statements-")), group_initial_rebalance_delay_ms=0).start()
        bootstrap = broker.bootstrap
    settings = ClusterSettings(bootstrap=bootstrap)
    runner = Engine(settings, service_id=f"bench_{uuid.uuid4().hex[:6]}_").start()
    inline = Engine(settings, service_id=f"bench_{uuid.uuid4().hex[:6]}_").start()
    inline.close()  # stops its runner: executes its statements itself, as before
    inline._closing.clear()
    inline._runner = None
    inline._end_reader = None
    times: dict[str, list[float]] = {"runner": [], "inline": []}
    for i in range(args.pairs):
        for name, eng in (("runner", runner), ("inline", inline)):
            for text in (f"CREATE STREAM s{i} (id STRING KEY, v INT) WITH (kafka_topic='st_{name}', value_format='JSON', "
                         "partitions=1);", f"DROP STREAM s{i};"):
                t0 = time.perf_counter()
                eng.execute(text)
                times[name].append((time.perf_counter() - t0) * 1000)
    out: dict[str, Any] = {"statements_each": 2 * args.pairs, "loadavg": os.getloadavg()}
    for name, ts in times.items():
        ts.sort()
        out[name] = {"p50_ms": round(statistics.median(ts), 2), "p99_ms": round(ts[int(len(ts) * 0.99) - 1], 2)}
    print(json.dumps(out))
    runner.close()
    if broker is not None:
        broker.stop()


if __name__ == "__main__":
    main()
