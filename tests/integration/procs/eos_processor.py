"""A consume-transform-produce loop with exactly-once semantics (confluent-kafka), run as a
child process by test_transactions.py, which kills it with SIGKILL in states it reports.

usage: python eos_processor.py BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID [HOLD_OPEN_AT]

Reads INPUT (read_committed) in group GROUP, writes ``out:<value>`` with the same key to
OUTPUT, and commits the consumed offsets in the same transaction (at most 50 records per
transaction). Runs until killed, or until it has seen nothing new for 3 s while it had
partitions assigned (then exits 0).

Prints a JSON line ``{"committed": N, "records": R}`` after its Nth commit, so that the test
can kill it in a known state. With HOLD_OPEN_AT = K, its Kth transaction is held open: its
records are written (flushed), it prints ``{"open": R}`` and waits to be killed.
"""

from __future__ import annotations

import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition


def main() -> int:
    bootstrap, source, sink, group, txn_id = sys.argv[1:6]
    hold_open_at = int(sys.argv[6]) if len(sys.argv) > 6 else None
    commits = 0
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5, "transaction.timeout.ms": 10000})
    producer.init_transactions(30)
    consumer.subscribe([source])
    idle_since = time.monotonic()
    while True:
        msgs = consumer.consume(50, 0.5)
        msgs = [m for m in msgs if m.error() is None or m.error().code() != KafkaError._PARTITION_EOF]
        if not msgs:
            if not consumer.assignment():  # still joining (a killed member may hold the group
                idle_since = time.monotonic()  # until its session times out): not idle yet
                continue
            if time.monotonic() - idle_since > 3:
                consumer.close()
                return 0
            continue
        idle_since = time.monotonic()
        for m in msgs:
            if m.error() is not None:
                raise SystemExit(f"consume error: {m.error()}")
        producer.begin_transaction()
        positions: dict[tuple[str, int], int] = {}
        for m in msgs:
            producer.produce(sink, key=m.key(), value=b"out:" + m.value())
            positions[(m.topic(), m.partition())] = m.offset() + 1
        if commits + 1 == hold_open_at:  # the records are in the log, the transaction open
            assert producer.flush(30) == 0
            print(json.dumps({"open": len(msgs)}), flush=True)
            while True:
                time.sleep(1)  # until killed
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        commits += 1
        print(json.dumps({"committed": commits, "records": len(msgs)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
