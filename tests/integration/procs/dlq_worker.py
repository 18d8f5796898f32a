"""A consumer under the dead-letter policy, run as a child process by
test_messaging_deadletter.py, which has it SIGKILL itself right after the broker acknowledged
its Nth dead letter and before the consumed offset is committed.

usage: python dlq_worker.py BOOTSTRAP TOPIC GROUP OUT_FILE KILL_AFTER_DEAD

Appends each good record's value to OUT_FILE (one line, flushed and fsynced) and raises for
values starting with ``poison``. KILL_AFTER_DEAD < 0: never killed; exits 0 once it has seen
nothing new for 3 s while it had partitions assigned.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from confluent_kafka import Consumer, Producer

from riverbed.messaging.deadletter import DeadLetterConsumer, RetryPolicy


class Poison(Exception):
    pass


def main() -> int:
    bootstrap, topic, group, out_file, kill_after = sys.argv[1:6]
    kill_at = int(kill_after)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    })
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 2})
    out = open(out_file, "a")  # noqa: SIM115

    def handle(msg: Any) -> None:
        value = msg.value().decode()
        if value.startswith("poison"):
            raise Poison(value)
        out.write(value + "\n")
        out.flush()
        os.fsync(out.fileno())

    dead = 0

    class Worker(DeadLetterConsumer):
        def _forward(self, *args: Any, **kwargs: Any) -> None:
            nonlocal dead
            super()._forward(*args, **kwargs)  # returns once the DLQ acknowledged the record
            dead += 1
            if dead == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)  # before the commit

    worker = Worker(consumer, producer, handle, RetryPolicy(attempts_in_place=2, retry_delays=()), group=group)
    worker.subscribe([topic])
    idle_since = time.monotonic()
    while True:
        if worker.poll(0.5) or not consumer.assignment():
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > 3:
            break
    consumer.close()
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
