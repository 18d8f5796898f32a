"""A kafka-python or aiokafka group member in its own process, for
test_multi_member_groups.py (which runs three of them in one group and kills or closes one).

usage: python py_group_member.py CLIENT BOOTSTRAP GROUP TOPIC ASSIGNOR CLIENT_ID
  CLIENT: kafka-python | aiokafka;  ASSIGNOR: range | roundrobin | sticky
  (kafka-python also cooperative-sticky: incremental rebalances)

Reads from the earliest offset, commits synchronously after every poll that returned
records (no auto-commit), and prints JSON lines:
  {"assigned": [partitions]}            whenever its assignment changes
  {"rec": [partition, offset, value]}   per record
  {"committed": {partition: offset}}    after a commit succeeded (the next offsets)
  {"commit_failed": "..."}              when a commit failed (a rebalance)
  {"closed": true}                      after SIGTERM: the consumer was closed (LeaveGroup)
The client logs its group coordination on stderr (INFO; DEBUG with MEMBER_DEBUG=1).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any


def out(obj: object) -> None:
    print(json.dumps(obj), flush=True)


def report(records: dict[Any, list[Any]]) -> dict[int, int]:
    done: dict[int, int] = {}
    for tp, msgs in records.items():
        for m in msgs:
            out({"rec": [tp.partition, m.offset, m.value.decode()]})
            done[tp.partition] = m.offset + 1
    return done


def run_kafka_python(bootstrap: str, group: str, topic: str, assignor: str, client_id: str) -> None:
    from kafka import KafkaConsumer
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
    from kafka.errors import KafkaError

    strategy = {
        "range": RangePartitionAssignor,
        "roundrobin": RoundRobinPartitionAssignor,
        "sticky": StickyPartitionAssignor,
        "cooperative-sticky": CooperativeStickyAssignor,
    }[assignor]
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    c = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=client_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        partition_assignment_strategy=[strategy],
    )
    last: list[int] | None = None
    while not stop:
        # a long poll: kafka-python 3.0.12 can wedge when a poll's timeout expires while its
        # JoinGroup/SyncGroup round trip completes (the SyncGroup answer is never applied, its
        # heartbeats stay off, the broker expires it and it never rejoins); seen under load
        records = c.poll(timeout_ms=3000)
        now = sorted(tp.partition for tp in c.assignment())
        if now != last:
            last = now
            out({"assigned": now})
        done = report(records)
        if done:
            try:
                c.commit()
            except KafkaError as exc:
                out({"commit_failed": repr(exc)})
            else:
                out({"committed": done})
    c.close()
    out({"closed": True})


async def run_aiokafka(bootstrap: str, group: str, topic: str, assignor: str, client_id: str) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
    from aiokafka.errors import KafkaError

    strategy = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor, "sticky": StickyPartitionAssignor}[assignor]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    c = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=client_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        partition_assignment_strategy=(strategy,),
    )
    await c.start()
    last: list[int] | None = None
    while not stop.is_set():
        records = await c.getmany(timeout_ms=200)
        now = sorted(tp.partition for tp in c.assignment())
        if now != last:
            last = now
            out({"assigned": now})
        done = report(records)
        if done:
            try:
                await c.commit()
            except KafkaError as exc:
                out({"commit_failed": repr(exc)})
            else:
                out({"committed": done})
    await c.stop()
    out({"closed": True})


def main() -> None:
    client, bootstrap, group, topic, assignor, client_id = sys.argv[1:7]
    # the client's own account of joining and rebalancing, on stderr (the test shows it when
    # the group does not settle)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in ("kafka.coordinator", "aiokafka.consumer.group_coordinator"):
        logging.getLogger(name).setLevel(logging.DEBUG if os.environ.get("MEMBER_DEBUG") else logging.INFO)
    if client == "kafka-python":
        run_kafka_python(bootstrap, group, topic, assignor, client_id)
    elif client == "aiokafka":
        asyncio.run(run_aiokafka(bootstrap, group, topic, assignor, client_id))
    else:
        raise SystemExit(f"unknown client {client}")


if __name__ == "__main__":
    main()
