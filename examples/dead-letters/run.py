"""The lecture's email service, in one command:

    .venv/bin/python examples/dead-letters/run.py                           # starts its own broker
    .venv/bin/python examples/dead-letters/run.py --bootstrap 127.0.0.1:9092

A checkout produces OrderCreated CloudEvents to `ecommerce-orders` (one resent by a producer
retry, one undecodable, one the mail server always refuses). The email service consumes them
with the dead-letter policy (2 tries in place, then `ecommerce-orders.retry.1s`, then
`ecommerce-orders.DLQ`) and idempotent sends (duplicates dropped by event id). Then it lists the
dead letters with the error details carried in their headers.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from riverbed.messaging import CloudEvent, InvalidEvent, from_message, to_binary
from riverbed.messaging.deadletter import (
    H_ATTEMPTS,
    H_EXC_CLASS,
    H_EXC_MESSAGE,
    H_OFFSET,
    H_TOPIC,
    DeadLetterConsumer,
    RetryPolicy,
    create_topics,
    header,
)
from riverbed.messaging.dedup import MemoryStore, idempotent
from riverbed.testing import example_cluster


class MailServerRefused(Exception):
    pass


def scenario(bootstrap: str) -> None:
    topic = f"ecommerce-orders-{uuid.uuid4().hex[:6]}"
    policy = RetryPolicy(attempts_in_place=2, retry_delays=(1.0,), non_retryable=(InvalidEvent,))
    create_topics(AdminClient({"bootstrap.servers": bootstrap}), [topic], policy)
    print(f"topics: {', '.join(policy.topics(topic))}")

    # the checkout service
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    orders = [CloudEvent(type="eu.company.domain.order.created.v1", source="/checkout", data={"orderId": f"A{100 + i}", "email": f"user{i}@example.com"}, extensions={"partitionkey": f"user{i}"}) for i in range(8)]
    orders[5].data["email"] = "bounce@example.com"  # the mail server refuses this address, every time
    for event in [*orders, orders[2]]:  # orders[2] resent (a producer-side retry)
        key, value, headers = to_binary(event)
        producer.produce(topic, value=value, key=key, headers=headers)
    producer.produce(topic, value=b"\x00garbage", key=b"user9", headers=[("ce_specversion", b"1.0")])  # undecodable
    producer.flush(30)
    print("produced 8 orders, 1 duplicate and 1 undecodable record")

    # the email service
    sent: list[str] = []

    def send_email(msg: Any) -> None:
        order = from_message(msg)  # InvalidEvent for the garbage: straight to the DLQ
        if order.data["email"].startswith("bounce"):
            raise MailServerRefused(f"550 mailbox unavailable: {order.data['email']}")
        sent.append(order.data["orderId"])
        print(f"sent email for {order.data['orderId']}")

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"email-service-{topic}", "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    service = DeadLetterConsumer(consumer, producer, idempotent(send_email, MemoryStore()), policy, group="email-service")
    service.subscribe([topic])
    deadline = time.monotonic() + 120
    dlq = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dlq-reader-{topic}", "enable.auto.commit": False})
    dlq.assign([TopicPartition(policy.dlq_topic(topic), 0, OFFSET_BEGINNING)])
    dead: list[Any] = []
    while (len(sent) < 7 or len(dead) < 2) and time.monotonic() < deadline:
        service.poll(0.2)
        m = dlq.poll(0.05)
        if m is not None and not m.error():
            dead.append(m)
    consumer.close()
    dlq.close()
    if len(sent) != 7 or len(dead) != 2:
        raise SystemExit(f"expected 7 emails and 2 dead letters, got {len(sent)} and {len(dead)}")
    print(f"emails sent: {len(sent)} (the duplicate of {orders[2].data['orderId']} was dropped)")
    for m in dead:
        h = m.headers()
        print(
            f"dead letter: {header(h, H_TOPIC)}@{header(h, H_OFFSET)} after {header(h, H_ATTEMPTS)} attempts: "
            f"{header(h, H_EXC_CLASS)}: {header(h, H_EXC_MESSAGE)}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--bootstrap", help="a running cluster (default: start riverbed serve)")
    args = ap.parse_args()
    with example_cluster(args.bootstrap, "dead-letters") as bootstrap:
        scenario(bootstrap)


if __name__ == "__main__":
    main()
