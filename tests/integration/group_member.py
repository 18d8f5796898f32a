"""A confluent-kafka group member in its own process (so a test can kill -9 it).
Prints JSON lines: {"assigned": [...]} on every assignment, {"v": value} per record."""

from __future__ import annotations

import json
import sys

from confluent_kafka import Consumer


def main() -> None:
    bootstrap, group, topic = sys.argv[1:4]
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 200,
        }
    )

    def on_assign(consumer: Consumer, partitions: list[object]) -> None:
        print(json.dumps({"assigned": sorted(p.partition for p in partitions)}), flush=True)  # type: ignore[attr-defined]

    c.subscribe([topic], on_assign=on_assign)
    while True:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            print(json.dumps({"v": m.value().decode(), "p": m.partition()}), flush=True)


if __name__ == "__main__":
    main()
