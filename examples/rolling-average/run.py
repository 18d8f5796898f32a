"""The lecture's rolling 60-second average transaction cost, updated continuously.

    python examples/rolling-average/run.py                  # starts its own `riverbed serve`
    python examples/rolling-average/run.py --bootstrap HOST:PORT

Produces a fixed set of transactions (event time in the record timestamp) to `transactions`,
runs a riverbed.streams app that averages the cost over hopping 60-second windows advancing
every 10 seconds (emitting every update), reads `avg-cost` until every update has arrived, and
prints the last value per window as JSON lines: {"start": s, "end": s, "count": n, "avg": x}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from riverbed.streams import JSON, STRING, StreamsApp, TimeWindows

BASE = 1_700_000_040_000  # event time of the first transaction (a multiple of 60 s)
WINDOWS = TimeWindows.of(60_000).advance_by(10_000)
# (seconds after BASE, account, cost)
TRANSACTIONS = [(0, "acc-1", 10.0), (12, "acc-2", 20.0), (31, "acc-1", 30.0), (59, "acc-3", 40.0),
                (60, "acc-2", 50.0), (75, "acc-1", 60.0), (118, "acc-3", 70.0), (125, "acc-2", 80.0)]


def build(app_id: str, bootstrap: str, state_dir: str) -> StreamsApp:
    # cache_max_bytes=0: every update of the average is emitted (with Kafka's default record
    # cache, updates within a commit interval would be folded into one)
    app = StreamsApp(app_id, bootstrap, state_dir=state_dir, commit_interval_ms=500, cache_max_bytes=0)
    (app.stream("transactions", STRING, JSON)
        .group_by(lambda _account, _tx: "all", key_serde=STRING)   # one rolling average over all accounts
        .windowed_by(WINDOWS)
        .aggregate(lambda: {"count": 0, "total": 0.0},
                   lambda _k, tx, a: {"count": a["count"] + 1, "total": a["total"] + tx["cost"]},
                   JSON, name="cost")
        .to_stream()
        .map(lambda w, a: (f"{w.window.start}", {"start": (w.window.start - BASE) // 1000,
                                                 "end": (w.window.end - BASE) // 1000,
                                                 "count": a["count"], "avg": round(a["total"] / a["count"], 2)}))
        .to("avg-cost", STRING, JSON))
    return app


def scenario(bootstrap: str) -> list[dict[str, float]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic("transactions", 1, 1), NewTopic("avg-cost", 1, 1)]).values():
        try:
            fut.result(30)
        except Exception as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    p = Producer({"bootstrap.servers": bootstrap})
    for sec, account, cost in TRANSACTIONS:
        p.produce("transactions", json.dumps({"account": account, "cost": cost}).encode(), account.encode(),
                  timestamp=BASE + sec * 1000)
    if p.flush(30):
        raise SystemExit("could not produce the transactions")
    expected_updates = sum(len(WINDOWS.windows_for(BASE + sec * 1000)) for sec, _a, _c in TRANSACTIONS)

    app_id = f"rolling-average-{uuid.uuid4().hex[:8]}"
    app = build(app_id, bootstrap, tempfile.mkdtemp(prefix="rolling-average-state-"))
    worker = threading.Thread(target=app.run, daemon=True)
    worker.start()
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{app_id}-reader", "auto.offset.reset": "earliest"})
    c.subscribe(["avg-cost"])
    latest: dict[str, dict[str, float]] = {}
    seen = 0
    deadline = time.monotonic() + 120
    try:
        while seen < expected_updates:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out: {seen} of {expected_updates} updates")
            if not worker.is_alive():
                raise SystemExit("the streams app stopped")
            for m in c.consume(100, 0.5):
                if m.error() is None:
                    latest[m.key().decode()] = json.loads(m.value())
                    seen += 1
    finally:
        c.close()
        app.stop()
        worker.join(60)
    return [latest[k] for k in sorted(latest, key=int)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="a running cluster; default: start `riverbed serve` on a free port")
    args = ap.parse_args()
    from riverbed.testing import example_cluster

    with example_cluster(args.bootstrap, "rolling-average") as bootstrap:
        rows = scenario(bootstrap)
    for row in rows:
        print(json.dumps(row))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
