"""A confluent-kafka group member in its own process (so a test can kill -9 it).
Prints JSON lines: {"assigned": [...]} on every assignment, {"v": value} per record."""

from __future__ import annotations

import json
import sys

from confluent_kafka import Consumer


def main() -> None:
    bootstrap, group, topic = sys.argv[1:4]
    protocol = sys.argv[4] if len(sys.argv) > 4 else "classic"
    conf: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 200,
    }
    if protocol == "consumer":  # KIP-848: timeouts are the broker's
        conf["group.protocol"] = "consumer"
    else:
        conf.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c = Consumer(conf)

    last: list[int] | None = None
    while True:
        if last is None:
            c.subscribe([topic])
            last = []
        m = c.poll(0.2)
        now = sorted(tp.partition for tp in c.assignment())
        if now != last:
            last = now
            print(json.dumps({"assigned": now}), flush=True)
        if m is not None and m.error() is None:
            print(json.dumps({"v": m.value().decode(), "p": m.partition()}), flush=True)


if __name__ == "__main__":
    main()
