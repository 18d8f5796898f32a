"""Consumer-group benchmarks.

1. Rebalance time: three confluent-kafka consumers join one group on a 6-partition topic
   (group.initial.rebalance.delay.ms=0); time from the last member's subscribe() until all
   three hold their partitions. Repeated a few times.
2. Heartbeat cost: 1,000 members in one Stable group (built directly on the coordinator, as
   no test machine can run 1,000 client processes), then 1,000 Heartbeat requests over TCP
   through the real broker, pipelined on one connection; reported as broker CPU per
   heartbeat and heartbeats/s. The pure coordinator cost per heartbeat is measured too.

    .venv/bin/python benchmarks/groups.py
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from riverbed.coordinator.group import GroupCoordinator
from riverbed.coordinator.group_types import GroupConfig, JoinResult, SyncResult
from riverbed.protocol.messages.heartbeat import HeartbeatRequest
from riverbed.testing import EmbeddedBroker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from wire import Wire


def _poll(c: Consumer, i: int, sizes: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        c.poll(0.01)
        sizes[i] = len(c.assignment())


def rebalance_time(runs: int = 3, delay_ms: int = 0, heartbeat_ms: int = 3000) -> list[float]:
    """Seconds from the last subscribe() to every member holding its partitions, minus the
    configured initial rebalance delay."""
    out: list[float] = []
    with EmbeddedBroker(group_initial_rebalance_delay_ms=delay_ms) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("rb", 6, 1)])["rb"].result(10)
        p = Producer({"bootstrap.servers": b.bootstrap})
        p.produce("rb", value=b"x")
        p.flush(10)
        for run in range(runs):
            group = f"rb-{run}"
            consumers = [Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "session.timeout.ms": 6000, "heartbeat.interval.ms": heartbeat_ms}) for _ in range(3)]
            stop = threading.Event()
            sizes = [0, 0, 0]

            for c in consumers:
                c.subscribe(["rb"])
            t0 = time.perf_counter()
            threads = [threading.Thread(target=_poll, args=(consumers[i], i, sizes, stop), daemon=True) for i in range(3)]
            for t in threads:
                t.start()
            while sizes != [2, 2, 2] and time.perf_counter() - t0 < 30:
                time.sleep(0.001)
            out.append(time.perf_counter() - t0 - delay_ms / 1000)
            stop.set()
            for t in threads:
                t.join()
            for c in consumers:
                c.close()
    return out


def stable_group(coord: GroupCoordinator, n: int) -> list[tuple[str, int]]:
    results: dict[int, JoinResult] = {}
    ids: list[str] = []
    for i in range(n):
        coord.join_group("big", "", None, f"c{i}", "/127.0.0.1", 30000, 60000, "consumer", [("range", b"")], require_known_member_id=True, reason=None, reply=lambda r, i=i: results.__setitem__(i, r))
        ids.append(results[i].member_id)
    for i, mid in enumerate(ids):
        coord.join_group("big", mid, None, f"c{i}", "/127.0.0.1", 30000, 60000, "consumer", [("range", b"")], require_known_member_id=True, reason=None, reply=lambda r, i=i: results.__setitem__(i, r))
    coord.tick()
    gen = results[0].generation_id
    leader = next(r.member_id for r in results.values() if r.members)
    synced: list[SyncResult] = []
    coord.sync_group("big", gen, leader, None, None, None, {m: b"a" for m in ids}, reply=synced.append)
    for mid in ids:
        if mid != leader:
            coord.sync_group("big", gen, mid, None, None, None, {}, reply=synced.append)
    return [(m, gen) for m in ids]


def heartbeat_cost(n: int = 1000) -> dict[str, float]:
    clock = [0]
    coord = GroupCoordinator(lambda: clock[0], GroupConfig(initial_rebalance_delay_ms=0))
    members = stable_group(coord, n)
    t0 = time.perf_counter()
    rounds = 20
    for _ in range(rounds):
        for mid, gen in members:
            assert coord.heartbeat("big", gen, mid, None) == 0
    pure_us = (time.perf_counter() - t0) / (rounds * n) * 1e6

    with EmbeddedBroker(group_initial_rebalance_delay_ms=0) as b:
        coord = b.broker.groups.coordinator
        members = b.call(stable_group, coord, n)
        with Wire(b.bootstrap) as w:
            frames = b"".join(
                Wire.frame(12, 3, i, HeartbeatRequest(group_id="big", generation_id=gen, member_id=mid).encode(3)) for i, (mid, gen) in enumerate(members * rounds)
            )
            cpu0 = os.times()
            t0 = time.perf_counter()
            w.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sender = threading.Thread(target=w.sock.sendall, args=(frames,))
            sender.start()
            errors = 0
            for _ in range(n * rounds):
                frame = w.recv_frame()
                errors += struct.unpack_from(">h", frame, 8)[0] != 0
            wall = time.perf_counter() - t0
            cpu1 = os.times()
            sender.join()
    # the broker runs in this process: CPU here = broker + this client loop
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    total = n * rounds
    return {
        "coordinator_us_per_heartbeat": pure_us,
        "wire_heartbeats_per_s": total / wall,
        "wire_cpu_us_per_heartbeat_incl_client": cpu / total * 1e6,
        "errors": errors,
        "members": n,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="consumer-group rebalance and heartbeat costs")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    doc: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": _commit(), "rebalance": []}
    for delay_ms, heartbeat_ms in ((500, 3000), (0, 100), (0, 3000)):
        times = rebalance_time(delay_ms=delay_ms, heartbeat_ms=heartbeat_ms)
        doc["rebalance"].append({"initial_delay_ms": delay_ms, "heartbeat_interval_ms": heartbeat_ms,  # type: ignore[attr-defined]
                                 "seconds_after_last_join": times})  # fmt: skip
        print(
            f"rebalance of 3 members, initial delay {delay_ms} ms, heartbeat.interval.ms {heartbeat_ms}: "
            f"{', '.join(f'{t * 1000:.0f} ms' for t in times)} after the last join, beyond the delay"
        )
    hb = heartbeat_cost()
    print(f"heartbeats, {hb['members']} members: coordinator {hb['coordinator_us_per_heartbeat']:.1f} µs each; "
          f"over TCP {hb['wire_heartbeats_per_s']:.0f}/s, {hb['wire_cpu_us_per_heartbeat_incl_client']:.0f} µs CPU each "
          f"(broker + client loop), errors {hb['errors']}")
    doc["heartbeats"] = hb
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[1]), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())

