"""Dead-letter and retry topics through a real riverbed broker with confluent-kafka clients."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

from riverbed.messaging.deadletter import (
    H_ATTEMPTS,
    H_EXC_CLASS,
    H_EXC_MESSAGE,
    H_EXC_STACK,
    H_GROUP,
    H_OFFSET,
    H_PARTITION,
    H_TIMESTAMP,
    H_TOPIC,
    DeadLetterConsumer,
    RetryPolicy,
    RoutingError,
    create_topics,
    header,
)
from riverbed.testing import EmbeddedBroker

from .messaging_helpers import consumer, create, producer, read_topic, wait_until

pytestmark = pytest.mark.integration


class Poison(Exception):
    pass


def _fill(bootstrap: str, topic: str, n: int, poison: set[int]) -> None:
    p = producer(bootstrap)
    for i in range(n):
        value = f"poison-{i}" if i in poison else f"order-{i}"
        p.produce(topic, key=f"k{i}".encode(), value=value.encode(), headers=[("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")], timestamp=1_700_000_000_000 + i)
    assert p.flush(30) == 0


def _committed(bootstrap: str, group: str, topic: str) -> int:
    c = consumer(bootstrap, group)
    try:
        [tp] = c.committed([TopicPartition(topic, 0)], timeout=30)
        return int(tp.offset)
    finally:
        c.close()


def test_poison_records_go_through_retry_topics_to_the_dlq(riverbed_broker: EmbeddedBroker) -> None:
    bootstrap = riverbed_broker.bootstrap
    topic = f"orders-{uuid.uuid4().hex[:6]}"
    policy = RetryPolicy(attempts_in_place=2, retry_delays=(0.5, 1.0))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_topics(admin, [topic], policy)
    assert {topic, f"{topic}.retry.500ms", f"{topic}.retry.1s", f"{topic}.DLQ"} <= set(admin.list_topics(timeout=30).topics)
    n, poison = 200, {7, 100, 199}  # 1.5% poison
    _fill(bootstrap, topic, n, poison)

    handled: list[str] = []
    calls: dict[str, int] = {}

    def handle(msg: Any) -> None:
        value = msg.value().decode()
        calls[value] = calls.get(value, 0) + 1
        if value.startswith("poison"):
            raise Poison(f"cannot ship {value}")
        handled.append(value)

    group = f"email-{topic}"
    c = consumer(bootstrap, group)
    dlc = DeadLetterConsumer(c, producer(bootstrap), handle, policy, group=group)
    dlc.subscribe([topic])
    try:
        wait_until(lambda: len(handled) == n - len(poison) and all(calls.get(f"poison-{i}") == 6 for i in poison), "every record handled or dead", timeout=120, step=lambda: dlc.poll(0.2))
    finally:
        c.close()

    assert sorted(handled) == sorted(f"order-{i}" for i in range(n) if i not in poison)  # each good record once
    dead = read_topic(bootstrap, f"{topic}.DLQ", len(poison))
    assert sorted(m.value().decode() for m in dead) == sorted(f"poison-{i}" for i in poison)
    for m in dead:
        i = int(m.value().decode().split("-")[1])
        h = m.headers()
        assert m.key() == f"k{i}".encode()
        assert m.timestamp()[1] == 1_700_000_000_000 + i
        assert header(h, H_TOPIC) == topic
        assert header(h, H_PARTITION) == "0"
        assert header(h, H_OFFSET) == str(i)
        assert header(h, H_TIMESTAMP) == str(1_700_000_000_000 + i)
        assert header(h, H_GROUP) == group
        assert header(h, H_EXC_CLASS) == f"{Poison.__module__}.Poison"
        assert header(h, H_EXC_MESSAGE) == f"cannot ship poison-{i}"
        assert "Traceback" in (header(h, H_EXC_STACK) or "") and "raise Poison" in (header(h, H_EXC_STACK) or "")
        assert header(h, H_ATTEMPTS) == "6"  # 2 in place x (original + 2 retry topics)
        assert header(h, "traceparent") == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        assert sum(1 for k, _ in h if k == H_TOPIC) == 1  # hops do not pile up copies
    for hop in ("500ms", "1s"):
        assert sorted(m.value().decode() for m in read_topic(bootstrap, f"{topic}.retry.{hop}", len(poison))) == sorted(f"poison-{i}" for i in poison)
    wait_until(lambda: _committed(bootstrap, group, topic) == n, "the original offsets committed")


def test_crash_between_dlq_write_and_commit_loses_nothing(riverbed_broker: EmbeddedBroker) -> None:
    """The process dies after the DLQ acknowledged the record and before the commit: the
    next consumer of the group gets the record again (a duplicate in the DLQ, nothing lost)."""
    bootstrap = riverbed_broker.bootstrap
    topic = f"orders-{uuid.uuid4().hex[:6]}"
    policy = RetryPolicy(attempts_in_place=1, retry_delays=())
    create_topics(AdminClient({"bootstrap.servers": bootstrap}), [topic], policy)
    _fill(bootstrap, topic, 5, {2})
    group = f"g-{topic}"
    handled: list[str] = []

    def handle(msg: Any) -> None:
        if msg.value().startswith(b"poison"):
            raise Poison("bad")
        handled.append(msg.value().decode())

    class Crash(BaseException):
        pass

    class CrashingBeforeCommit(DeadLetterConsumer):
        def _forward(self, *a: Any, **kw: Any) -> None:
            super()._forward(*a, **kw)
            raise Crash  # like kill -9: the DLQ has the record, the offset is not committed

    c1 = consumer(bootstrap, group)
    first = CrashingBeforeCommit(c1, producer(bootstrap), handle, policy, group=group)
    first.subscribe([topic])
    with pytest.raises(Crash):
        wait_until(lambda: False, "the crash", timeout=60, step=lambda: first.poll(0.2))
    c1.close()
    assert handled == ["order-0", "order-1"]
    assert _committed(bootstrap, group, topic) == 2

    c2 = consumer(bootstrap, group)
    second = DeadLetterConsumer(c2, producer(bootstrap), handle, policy, group=group)
    second.subscribe([topic])
    try:
        wait_until(lambda: len(handled) == 4, "the rest handled", step=lambda: second.poll(0.2))
    finally:
        c2.close()
    assert handled == ["order-0", "order-1", "order-3", "order-4"]
    dead = read_topic(bootstrap, f"{topic}.DLQ", 2)
    assert [m.value() for m in dead] == [b"poison-2", b"poison-2"]
    assert _committed(bootstrap, group, topic) == 5


@pytest.mark.riverbed(auto_create_topics=False)
def test_missing_dlq_topic_fails_loudly_and_keeps_the_offset(riverbed_broker: EmbeddedBroker) -> None:
    bootstrap = riverbed_broker.bootstrap
    topic = f"orders-{uuid.uuid4().hex[:6]}"
    create(bootstrap, topic)  # and no DLQ topic
    _fill(bootstrap, topic, 2, {0})
    group = f"g-{topic}"

    def handle(msg: Any) -> None:
        raise Poison("bad")

    c = consumer(bootstrap, group)
    dlc = DeadLetterConsumer(c, producer(bootstrap, **{"message.timeout.ms": 3000}), handle, RetryPolicy(attempts_in_place=1, retry_delays=()), group=group)
    dlc.subscribe([topic])
    try:
        with pytest.raises(RoutingError, match=rf"{topic}\.DLQ"):
            wait_until(lambda: False, "the routing error", timeout=60, step=lambda: dlc.poll(0.2))
    finally:
        c.close()
    assert _committed(bootstrap, group, topic) < 0  # nothing committed: the record is not lost


def test_blocking_retries_keep_partition_order(riverbed_broker: EmbeddedBroker) -> None:
    bootstrap = riverbed_broker.bootstrap
    topic = f"ledger-{uuid.uuid4().hex[:6]}"
    policy = RetryPolicy(attempts_in_place=1, retry_delays=(0.3, 0.3), blocking=True)
    create_topics(AdminClient({"bootstrap.servers": bootstrap}), [topic], policy)
    assert policy.topics(topic) == [topic, f"{topic}.DLQ"]
    _fill(bootstrap, topic, 4, set())
    failures = {"order-1": 2, "order-2": 5}  # order-1 recovers on its 3rd try, order-2 never
    seen: list[str] = []

    def handle(msg: Any) -> None:
        value = msg.value().decode()
        seen.append(value)
        if failures.get(value, 0) > 0:
            failures[value] -= 1
            raise Poison(value)

    c = consumer(bootstrap, f"g-{topic}")
    dlc = DeadLetterConsumer(c, producer(bootstrap), handle, policy, group=f"g-{topic}")
    dlc.subscribe([topic])
    try:
        wait_until(lambda: "order-3" in seen, "the last record", step=lambda: dlc.poll(0.1))
    finally:
        c.close()
    # nothing overtakes a record being retried; order-2 goes to the DLQ after 1 + 2 tries
    assert seen == ["order-0", "order-1", "order-1", "order-1", "order-2", "order-2", "order-2", "order-3"]
    [dead] = read_topic(bootstrap, f"{topic}.DLQ", 1)
    assert dead.value() == b"order-2" and header(dead.headers(), H_ATTEMPTS) == "3"


def test_kill_9_between_the_dlq_write_and_the_commit(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    """The acceptance run: 1% poison records, the consumer process SIGKILLed after the broker
    acknowledged a dead letter and before it committed the offset; a new process of the group
    finishes. Every good record handled once, every poison record in the DLQ with its metadata."""
    bootstrap = riverbed_broker.bootstrap
    topic = f"orders-{uuid.uuid4().hex[:6]}"
    policy = RetryPolicy(attempts_in_place=2, retry_delays=())
    create_topics(AdminClient({"bootstrap.servers": bootstrap}), [topic], policy)
    n, poison = 500, {49, 150, 151, 300, 499}
    _fill(bootstrap, topic, n, poison)
    group, out = f"g-{topic}", tmp_path / "handled.txt"
    worker = str(Path(__file__).parent / "procs" / "dlq_worker.py")

    first = subprocess.run([sys.executable, worker, bootstrap, topic, group, str(out), "2"], capture_output=True, text=True, timeout=240)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    assert _committed(bootstrap, group, topic) == 150  # poison-150 is in the DLQ, its offset not committed
    second = subprocess.run([sys.executable, worker, bootstrap, topic, group, str(out), "-1"], capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stderr[-2000:]

    handled = out.read_text().splitlines()
    assert sorted(handled) == sorted(f"order-{i}" for i in range(n) if i not in poison)  # each once
    dead = read_topic(bootstrap, f"{topic}.DLQ", len(poison) + 1)
    assert sorted(m.value().decode() for m in dead) == sorted([f"poison-{i}" for i in poison] + ["poison-150"])  # 150 twice
    for m in dead:
        i = int(m.value().decode().split("-")[1])
        assert (header(m.headers(), H_TOPIC), header(m.headers(), H_OFFSET), header(m.headers(), H_ATTEMPTS)) == (topic, str(i), "2")
        assert header(m.headers(), H_EXC_CLASS) == "__main__.Poison"
    assert _committed(bootstrap, group, topic) == n


def test_batched_commits_still_commit_at_once_after_a_dead_letter(riverbed_broker: EmbeddedBroker) -> None:
    bootstrap = riverbed_broker.bootstrap
    topic = f"orders-{uuid.uuid4().hex[:6]}"
    policy = RetryPolicy(attempts_in_place=1, retry_delays=())
    create_topics(AdminClient({"bootstrap.servers": bootstrap}), [topic], policy)
    _fill(bootstrap, topic, 30, {12})
    group = f"g-{topic}"
    seen: list[int] = []

    def handle(msg: Any) -> None:
        seen.append(msg.offset())
        if msg.value().startswith(b"poison"):
            raise Poison("bad")

    c = consumer(bootstrap, group)
    dlc = DeadLetterConsumer(c, producer(bootstrap), handle, policy, group=group, commit_every=10)
    dlc.subscribe([topic])
    try:
        wait_until(lambda: len(seen) == 30, "30 records", step=lambda: dlc.poll(0.2))
        # 0-9 by count, 10-12 when 12 went to the DLQ, 13-22 by count; 23-29 pending
        wait_until(lambda: _committed(bootstrap, group, topic) == 23, "the batched commits")
        dlc.commit()
        wait_until(lambda: _committed(bootstrap, group, topic) == 30, "the explicit commit")
    finally:
        c.close()


@pytest.mark.riverbed(auto_create_topics=False)
def test_a_refused_commit_is_logged_not_raised(riverbed_broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture) -> None:
    bootstrap = riverbed_broker.bootstrap
    topic = f"orders-{uuid.uuid4().hex[:6]}"
    create(bootstrap, topic)
    _fill(bootstrap, topic, 3, set())
    seen: list[int] = []
    c = consumer(bootstrap, f"g-{topic}")
    dlc = DeadLetterConsumer(c, producer(bootstrap), lambda m: seen.append(m.offset()), RetryPolicy(retry_delays=()), commit_every=100)
    c.assign([TopicPartition(topic, 0, 0)])
    try:
        wait_until(lambda: len(seen) == 3, "3 records", step=lambda: dlc.poll(0.2))
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.delete_topics([topic])[topic].result(30)
        wait_until(lambda: topic not in admin.list_topics(timeout=30).topics, "the topic gone")
        assert dlc.commit() is False  # the group refuses offsets of a deleted topic; no exception
        assert "refused" in caplog.text
        assert dlc.commit() is True  # nothing left pending
    finally:
        c.close()
