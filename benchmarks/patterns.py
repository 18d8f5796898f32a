"""riverbed.patterns throughput: commands/s (one aggregate; across 10,000 aggregates), aggregate
load time with and without a snapshot over 10,000 events, projection events/s into Redis and
PostgreSQL.

    .venv/bin/python benchmarks/patterns.py [--commands 20000] [--aggregates 10000]
        [--load-events 10000] [--project 50000] [--out r.json]

`riverbed serve` runs as a child process on a free port; redis-server and PostgreSQL are
private servers (riverbed.testing.servers). Commands go through the command topic
(CommandBus -> one AggregateOwner owning all 6 partitions, transactions of up to 500
commands); the time runs from the first send to the last result. Load: one aggregate with
N events, loaded by a fresh Repository with no snapshot and with one taken at version N-10.
Projection: N envelopes produced straight to a 6-partition topic first, then one projector
timed from its start until it has caught up.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Producer

from riverbed.client import ClusterSettings, admin, ensure_topics
from riverbed.patterns import (
    AggregateOwner,
    CommandBus,
    EventStore,
    Repository,
    SqliteSnapshotStore,
)
from riverbed.patterns.envelope import Envelope
from riverbed.patterns.projections import PostgresProjector, RedisProjector
from riverbed.testing import BrokerProcess
from riverbed.testing.servers import PostgresServer, RedisServer
from tests.integration.patterns_domain import Counter, CounterDoc, CounterTable, Increment, types


def commands(settings: ClusterSettings, n: int, aggregates: int) -> dict[str, Any]:
    store = EventStore(settings, "counter", partitions=6, prefix=f"b{uuid.uuid4().hex[:6]}.")
    store.ensure_topics()
    owner = AggregateOwner(store, Counter, types, f"bench{uuid.uuid4().hex[:6]}")
    owner.wait_owned()
    stop = threading.Event()
    t = threading.Thread(target=lambda: [owner.poll(0.02) for _ in iter(stop.is_set, True)], daemon=True)
    t.start()
    bus = CommandBus(store, types)
    ids = [f"agg-{i}" for i in range(aggregates)]
    start = time.perf_counter()
    sent = [bus.send(ids[i % aggregates], Increment(1)) for i in range(n)]
    results = bus.wait(sent, timeout=600)
    elapsed = time.perf_counter() - start
    stop.set()
    t.join()
    accepted = sum(r.accepted for r in results.values())
    bus.close()
    owner.close()
    return {"commands": n, "aggregates": aggregates, "seconds": round(elapsed, 3), "commands_per_s": round(n / elapsed), "accepted": accepted}


def load(settings: ClusterSettings, n: int, tmp: Path) -> dict[str, Any]:
    store = EventStore(settings, "counter", partitions=1, prefix=f"l{uuid.uuid4().hex[:6]}.")
    store.ensure_topics()
    snaps = SqliteSnapshotStore(str(tmp / f"snap-{uuid.uuid4().hex[:6]}.db"))
    owner = AggregateOwner(store, Counter, types, f"load{uuid.uuid4().hex[:6]}", snapshots=snaps)
    owner.wait_owned()
    stop = threading.Event()
    t = threading.Thread(target=lambda: [owner.poll(0.02) for _ in iter(stop.is_set, True)], daemon=True)
    t.start()
    bus = CommandBus(store, types)
    bus.wait([bus.send("one", Increment(1)) for _ in range(n - 10)], timeout=600)
    stop.set()
    t.join()
    owner.take_snapshots()
    for _ in range(10):
        owner.execute("one", Increment(1))
    owner.close()
    bus.close()
    out: dict[str, Any] = {"events": n}
    for label, use in (("without_snapshot", False), ("with_snapshot", True)):
        times = []
        for _ in range(3):
            repo = Repository(store, Counter, types, snapshots=snaps)
            start = time.perf_counter()
            agg = repo.load("one", use_snapshot=use)
            times.append(time.perf_counter() - start)
            assert agg.version == n and agg.total == n, (agg.version, agg.total)
            replayed = repo.last_replayed
            repo.close()
        out[label] = {"seconds_median": round(sorted(times)[1], 4), "replayed": replayed}
    return out


def _produce(settings: ClusterSettings, n: int, aggregates: int) -> str:
    topic = f"proj-{uuid.uuid4().hex[:8]}"
    ensure_topics(admin(settings), {topic: (6, {})})
    p = Producer({"bootstrap.servers": settings.bootstrap, "linger.ms": 20, "batch.num.messages": 10000})
    version: dict[str, int] = {}
    for i in range(n):
        agg = f"a{i % aggregates}"
        version[agg] = version.get(agg, 0) + 1
        p.produce(topic, key=agg.encode(), value=Envelope("Incremented", 2, "counter", agg, version[agg], {"by": 1}).encode())
        if i % 10000 == 0:
            p.poll(0)
    p.flush(120)
    return topic


def project(settings: ClusterSettings, n: int, redis_url: str, pg_dsn: str) -> dict[str, Any]:
    out = {}
    for label in ("redis", "postgresql"):
        topic = _produce(settings, n, 10_000)
        start = time.perf_counter()
        proj: Any
        if label == "redis":
            proj = RedisProjector(settings, [topic], redis_url, f"bench{uuid.uuid4().hex[:6]}", CounterDoc(), types=types, batch=5000)
        else:
            proj = PostgresProjector(settings, [topic], pg_dsn, f"bench{uuid.uuid4().hex[:6]}", CounterTable(), types=types, batch=5000)
        proj.run_until_caught_up(600)
        elapsed = time.perf_counter() - start
        assert proj.applied == n, proj.applied
        proj.close()
        out[label] = {"events": n, "seconds": round(elapsed, 3), "events_per_s": round(n / elapsed)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commands", type=int, default=20000)
    ap.add_argument("--aggregates", type=int, default=10000)
    ap.add_argument("--load-events", type=int, default=10000)
    ap.add_argument("--project", type=int, default=50000)
    ap.add_argument("--out")
    args = ap.parse_args()
    result: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory(prefix="bench-patterns-") as tmp, BrokerProcess(Path(tmp) / "data", extra=["--log-level", "WARNING", "--set", "group.initial.rebalance.delay.ms=0"]) as broker, RedisServer() as redis, PostgresServer() as pg:
        settings = ClusterSettings(bootstrap=broker.bootstrap)
        result["commands_one_aggregate"] = commands(settings, args.commands // 4, 1)
        print(json.dumps(result["commands_one_aggregate"]), flush=True)
        result["commands_across_aggregates"] = commands(settings, args.commands, args.aggregates)
        print(json.dumps(result["commands_across_aggregates"]), flush=True)
        result["load"] = load(settings, args.load_events, Path(tmp))
        print(json.dumps(result["load"]), flush=True)
        result["projection"] = project(settings, args.project, redis.url, pg.dsn)
        print(json.dumps(result["projection"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
