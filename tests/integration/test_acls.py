"""ACLs with real clients: the lecture's billing example, transactions and groups under
ACLs, and ACLs that survive a restart. The principal here is User:ANONYMOUS (a PLAINTEXT
listener); the same checks apply to SASL and mTLS principals."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from riverbed.testing import BrokerProcess

pytestmark = pytest.mark.integration

ANON = "User:ANONYMOUS"


def cli(bootstrap: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "riverbed", *args, "-b", bootstrap], capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def start(data: Path, port: int | None = None, *, superuser: bool) -> BrokerProcess:
    extra = ["--set", "authorizer.class.name=riverbed", "--set", "group.initial.rebalance.delay.ms=0"]
    if superuser:
        extra += ["--set", f"super.users={ANON}"]
    return BrokerProcess(data, port=port, extra=extra).start()


def test_billing_reads_orders_but_cannot_write_and_sees_no_other_topic(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = start(data, superuser=True)
    try:
        b = proc.bootstrap
        admin = AdminClient({"bootstrap.servers": b})
        for f in admin.create_topics([NewTopic("orders", 1, 1), NewTopic("payroll", 1, 1)]).values():
            f.result(10)
        p = Producer({"bootstrap.servers": b})
        for i in range(5):
            p.produce("orders", value=f"order-{i}".encode())
        assert p.flush(10) == 0
        cli(b, "acl", "add", "--principal", ANON, "--operation", "READ", "--topic", "orders")
        cli(b, "acl", "add", "--principal", ANON, "--operation", "READ", "--group", "billing-service")
        listed = cli(b, "acl", "list").stdout
        assert "TOPIC:LITERAL:orders" in listed and "GROUP:LITERAL:billing-service" in listed
        proc.terminate()
        proc = start(data, port=proc.port, superuser=False)  # ACLs are durable; no super user now

        # consume in group billing-service: works
        c = Consumer({"bootstrap.servers": b, "group.id": "billing-service", "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe(["orders"])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < 5 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.value())
        c.commit(asynchronous=False)
        c.close()
        assert got == [f"order-{i}".encode() for i in range(5)]

        # produce: TOPIC_AUTHORIZATION_FAILED
        errors: list[KafkaError] = []
        p = Producer({"bootstrap.servers": b, "enable.idempotence": False, "message.timeout.ms": 5000})
        p.produce("orders", value=b"forged", on_delivery=lambda err, _m: errors.append(err))
        p.flush(10)
        assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]

        # metadata: only the topic it may describe
        md = AdminClient({"bootstrap.servers": b}).list_topics(timeout=10)
        assert "orders" in md.topics and "payroll" not in md.topics

        # another group: GROUP_AUTHORIZATION_FAILED
        other = Consumer({"bootstrap.servers": b, "group.id": "intruders", "auto.offset.reset": "earliest"})
        other.subscribe(["orders"])
        failure = None
        deadline = time.monotonic() + 15
        while failure is None and time.monotonic() < deadline:
            m = other.poll(0.5)
            if m is not None and m.error() is not None:
                failure = m.error()
        other.close()
        assert failure is not None and failure.code() == KafkaError.GROUP_AUTHORIZATION_FAILED

        # no ACL admin without ALTER on the cluster
        denied = cli(b, "acl", "add", "--principal", ANON, "--operation", "WRITE", "--topic", "orders", check=False)
        assert denied.returncode != 0 and "authoriz" in denied.stderr.lower()
        denied = cli(b, "acl", "list", check=False)  # not an empty list: an error
        assert denied.returncode != 0 and "CLUSTER_AUTHORIZATION_FAILED" in denied.stderr, denied
    finally:
        proc.kill()


def test_transactions_and_groups_with_the_acls_kafka_requires(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = start(data, superuser=True)
    try:
        b = proc.bootstrap
        admin = AdminClient({"bootstrap.servers": b})
        for f in admin.create_topics([NewTopic("in", 1, 1), NewTopic("out", 1, 1)]).values():
            f.result(10)
        p = Producer({"bootstrap.servers": b})
        for i in range(4):
            p.produce("in", value=f"v{i}".encode())
        assert p.flush(10) == 0
        for args in (
            ["--operation", "READ", "--topic", "in"],
            ["--operation", "WRITE", "--topic", "out"],
            ["--operation", "READ", "--group", "etl"],
            ["--operation", "WRITE", "--transactional-id", "etl-", "--prefixed"],
        ):
            cli(b, "acl", "add", "--principal", ANON, *args)
        proc.terminate()
        proc = start(data, port=proc.port, superuser=False)

        consumer = Consumer({"bootstrap.servers": b, "group.id": "etl", "auto.offset.reset": "earliest", "enable.auto.commit": False, "isolation.level": "read_committed"})
        consumer.subscribe(["in"])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 4 and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m)
        assert len(got) == 4
        tp = Producer({"bootstrap.servers": b, "transactional.id": "etl-1"})
        tp.init_transactions(20)
        tp.begin_transaction()
        for m in got:
            tp.produce("out", value=m.value().upper())
        tp.send_offsets_to_transaction([TopicPartition("in", 0, 4)], consumer.consumer_group_metadata(), 20)
        tp.commit_transaction(20)
        assert consumer.committed([TopicPartition("in", 0)], 10)[0].offset == 4
        consumer.close()

        # a transactional id outside the prefix: TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        bad = Producer({"bootstrap.servers": b, "transactional.id": "rogue"})
        with pytest.raises(KafkaException) as info:
            bad.init_transactions(10)
        assert info.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    finally:
        proc.kill()
