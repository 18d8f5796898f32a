"""Page load times of the web console with many topics and groups.

    .venv/bin/python benchmarks/console.py [--topics 1000] [--groups 500] [--requests 20]

``riverbed serve`` runs in a child process (no embedded console); the console runs in this
process as `riverbed console` would, against it. Setup: ``--topics`` topics of one partition,
a few records in each, and ``--groups`` consumer groups with committed offsets spread over the
topics (AlterConsumerGroupOffsets), so that the topic list shows a lag per consuming group.
Then, once the console's first snapshot is in, each page is fetched ``--requests`` times over
one keep-alive HTTP connection: the overview, the topic list (every topic with its groups'
lag), the group list, one topic and one group (both read live from the cluster). Reports the
median, p95 and max wall time per page (time to the full body), the HTML size, and how long
one background refresh of the snapshot takes. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from riverbed.client import ClusterSettings
from riverbed.console import ConsoleConfig, ConsoleService
from riverbed.testing import BrokerProcess


def setup(bootstrap: str, topics: int, groups: int) -> tuple[list[str], list[str]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [f"bench-topic-{i:04d}" for i in range(topics)]
    for start in range(0, topics, 200):
        futs = admin.create_topics([NewTopic(n, 1, 1) for n in names[start:start + 200]], request_timeout=60)
        for f in futs.values():
            f.result(120)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for n in names:
        for j in range(5):
            p.produce(n, value=b'{"n": %d}' % j)
    assert p.flush(120) == 0
    gids = [f"bench-group-{i:03d}" for i in range(groups)]
    futs = []
    for i, gid in enumerate(gids):  # each group on 4 topics, committed at offset 2: lag 3 each
        tps = [TopicPartition(names[(i * 4 + k) % topics], 0, 2) for k in range(4)]
        futs.extend(admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(gid, tps)], request_timeout=60).values())
    for f in futs:
        f.result(120)
    return names, gids


def measure(client: httpx.Client, path: str, n: int) -> dict[str, float]:
    times = []
    size = 0
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        size = len(r.content)
    times.sort()
    return {"median_ms": round(statistics.median(times), 1), "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1), "max_ms": round(times[-1], 1), "html_kib": round(size / 1024, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topics", type=int, default=1000)
    ap.add_argument("--groups", type=int, default=500)
    ap.add_argument("--requests", type=int, default=20)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="riverbed-console-bench-"))
    proc = BrokerProcess(tmp / "data").start()
    try:
        t0 = time.monotonic()
        names, gids = setup(proc.bootstrap, args.topics, args.groups)
        setup_s = time.monotonic() - t0
        config = ConsoleConfig(ClusterSettings(proc.bootstrap), refresh_s=3600)  # refreshed by hand below
        with ConsoleService(config) as svc, httpx.Client(base_url=svc.url, timeout=60) as client:
            view = svc.console.view
            deadline = time.monotonic() + 120
            while not (view.snapshot.ok and len(view.snapshot.groups) >= args.groups):
                assert time.monotonic() < deadline, view.snapshot.error
                view.refresh_soon(wait=30)
            refreshes = []
            for _ in range(3):
                t1 = time.monotonic()
                view.refresh()
                refreshes.append((time.monotonic() - t1) * 1000)
            snap = view.snapshot
            lagging = sum(1 for t in snap.topics.values() if t.group_lag)
            pages = {
                "/": measure(client, "/", args.requests),
                "/topics": measure(client, "/topics", args.requests),
                "/groups": measure(client, "/groups", args.requests),
                f"/topics/{names[0]}": measure(client, f"/topics/{names[0]}", args.requests),
                f"/groups/{gids[0]}": measure(client, f"/groups/{gids[0]}", args.requests),
                f"/topics/{names[0]}/messages": measure(client, f"/topics/{names[0]}/messages", args.requests),
            }
        out = {
            "topics": args.topics, "groups": args.groups, "topics_with_group_lag": lagging, "setup_s": round(setup_s, 1),
            "snapshot_refresh_ms": [round(x) for x in refreshes], "pages": pages,
            "slowest_median_ms": max(p["median_ms"] for p in pages.values()), "slowest_p95_ms": max(p["p95_ms"] for p in pages.values()),
        }
        print(json.dumps(out, indent=2))
        return 0
    finally:
        proc.terminate()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
