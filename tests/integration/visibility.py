"""Reading "everything visible" without trusting a quiet moment: a non-transactional sentinel
record is appended after the records under test on every partition, and the consumer reads
until it has seen every sentinel. Whatever it returned before the sentinels is then exactly
what the isolation level shows (a slow consumer cannot pass by having read nothing)."""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

SENTINEL = b"--sentinel--"


def read_through_sentinel(bootstrap: str, topic: str, partitions: int, isolation: str, timeout: float = 60) -> list[bytes]:
    """Append a sentinel to each partition, then return every value before the sentinels (in
    per-partition order, partitions concatenated by arrival) read with ``isolation``."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for partition in range(partitions):
        p.produce(topic, value=SENTINEL, partition=partition)
    assert p.flush(30) == 0, "sentinels not acknowledged"
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"sentinel-{isolation}", "enable.auto.commit": False, "isolation.level": isolation})
    try:
        c.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for part in range(partitions)])
        got: list[bytes] = []
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < partitions:
            assert time.monotonic() < deadline, f"sentinels of partitions {sorted(set(range(partitions)) - seen)} never arrived; read {got!r}"
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            if m.value() == SENTINEL:
                seen.add(m.partition())
            else:
                assert m.partition() not in seen, "a record after the sentinel"
                got.append(m.value())
        return got
    finally:
        c.close()
