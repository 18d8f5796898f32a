"""Consumer groups and committed offsets with real clients over TCP."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic

from riverbed.testing import BrokerProcess, EmbeddedBroker

from .helpers import create_topics

pytestmark = pytest.mark.integration
MEMBER = Path(__file__).with_name("group_member.py")


@pytest.fixture
def fast_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker without the 3 s initial rebalance delay and with a 6 s session timeout for
    KIP-848 groups, so group tests stay quick."""
    with EmbeddedBroker(tmp_path / "data", group_initial_rebalance_delay_ms=0, consumer_session_timeout_ms=6000, consumer_heartbeat_interval_ms=500) as b:
        yield b


def fill(bootstrap: str, topic: str, n: int, partitions: int = 6) -> list[str]:
    create_topics(bootstrap, NewTopic(topic, partitions, 1))
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    values = [f"r{i}" for i in range(n)]
    for i, v in enumerate(values):
        p.produce(topic, key=f"k{i}".encode(), value=v.encode())
    assert p.flush(20) == 0
    return values


class Member:
    """Reads a group member's stdout lines in the background."""

    def __init__(self, bootstrap: str, group: str, topic: str, protocol: str = "classic") -> None:
        self.proc = subprocess.Popen([sys.executable, str(MEMBER), bootstrap, group, topic, protocol], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.assigned: list[int] = []
        self.values: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            row = json.loads(line)
            if "assigned" in row:
                self.assigned = row["assigned"]
            else:
                self.values.append(row["v"])

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def wait_for(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_three_members_share_six_partitions_and_fail_over(fast_broker: EmbeddedBroker, topic_name: str, protocol: str) -> None:
    """Classic groups (JoinGroup/SyncGroup) and KIP-848 groups (ConsumerGroupHeartbeat,
    librdkafka group.protocol=consumer) both spread partitions and fail over after kill -9."""
    values = fill(fast_broker.bootstrap, topic_name, 600)
    members = [Member(fast_broker.bootstrap, f"g3-{protocol}", topic_name, protocol) for _ in range(3)]
    try:
        def balanced() -> bool:
            sets = [set(m.assigned) for m in members]
            return all(len(s) == 2 for s in sets) and set().union(*sets) == set(range(6))

        assert wait_for(balanced, 30), [m.assigned for m in members]
        assert wait_for(lambda: len(set().union(*[set(m.values) for m in members])) == 600, 30)
        victim = members.pop(0)
        taken = set(victim.assigned)
        victim.kill()  # kill -9: no LeaveGroup, the session timeout (6 s) must notice
        # no wall-clock bound: a loaded machine may take longer, the state is what counts
        assert wait_for(lambda: set().union(*[set(m.assigned) for m in members]) == set(range(6)), 60)
        assert taken <= set().union(*[set(m.assigned) for m in members])
        # records produced after the failover reach the survivors
        p = Producer({"bootstrap.servers": fast_broker.bootstrap})
        for i in range(60):
            p.produce(topic_name, key=f"k{i}".encode(), value=f"late{i}".encode())
        p.flush(10)
        assert wait_for(lambda: {f"late{i}" for i in range(60)} <= set().union(*[set(m.values) for m in members]), 20)
        seen = set(victim.values).union(*[set(m.values) for m in members])
        assert set(values) <= seen  # at least once
    finally:
        for m in members:
            m.kill()


def consume(bootstrap: str, group: str, topic: str, n: int, reset: str = "earliest", commit: bool = True) -> list[str]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": reset, "enable.auto.commit": False})
    c.subscribe([topic])
    got: list[str] = []
    deadline = time.monotonic() + 20
    try:
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.3)
            if m is not None and m.error() is None:
                got.append(m.value().decode())
        if commit and got:
            c.commit(asynchronous=False)
    finally:
        c.close()
    return got


def test_commit_close_resume_and_two_groups(fast_broker: EmbeddedBroker, topic_name: str) -> None:
    b = fast_broker.bootstrap
    values = fill(b, topic_name, 100, partitions=3)
    first = consume(b, "resume", topic_name, 100)
    assert sorted(first) == sorted(values)
    p = Producer({"bootstrap.servers": b})
    for i in range(10):
        p.produce(topic_name, value=f"more{i}".encode())
    p.flush(10)
    again = consume(b, "resume", topic_name, 10)
    assert sorted(again) == sorted(f"more{i}" for i in range(10))  # resumed after the commit
    # a second group reads everything: reading never deletes
    assert len(consume(b, "other", topic_name, 110)) == 110
    # auto.offset.reset=latest starts at the end for a group without commits
    assert consume(b, "late-joiner", topic_name, 1, reset="latest") == []


def test_committed_offsets_survive_broker_restart(tmp_path: Path) -> None:
    proc = BrokerProcess(tmp_path / "data", extra=["--set", "group.initial.rebalance.delay.ms=0"]).start()
    try:
        values = fill(proc.bootstrap, "restart", 50, partitions=2)
        assert len(consume(proc.bootstrap, "survivor", "restart", 50)) == 50
        proc.kill()
        proc.start()
        p = Producer({"bootstrap.servers": proc.bootstrap})
        p.produce("restart", value=b"after-restart")
        p.flush(10)
        assert consume(proc.bootstrap, "survivor", "restart", 1) == ["after-restart"]
        del values
    finally:
        proc.kill()


def test_aiokafka_and_kafka_python_groups(fast_broker: EmbeddedBroker, topic_name: str) -> None:
    from aiokafka import AIOKafkaConsumer
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    b = fast_broker.bootstrap
    values = fill(b, topic_name, 40, partitions=3)

    async def aio() -> list[str]:
        c = AIOKafkaConsumer(topic_name, bootstrap_servers=b, group_id="aio-group", auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        try:
            out: list[str] = []
            per_partition: dict[int, int] = {}  # records read per partition (offsets start at 0)
            async with asyncio.timeout(60):
                while len(out) < 40:
                    for batch in (await c.getmany(timeout_ms=500)).values():
                        out.extend(m.value.decode() for m in batch)
                        for m in batch:
                            per_partition[m.partition] = per_partition.get(m.partition, 0) + 1
            await c.commit()
            # the committed offset of each partition is the next one to read: its record count
            committed = {tp.partition: await c.committed(tp) for tp in c.assignment()}
            assert committed == {p: per_partition.get(p, 0) for p in range(3)}
            assert sum(committed.values()) == 40
            return out
        finally:
            await c.stop()

    assert sorted(asyncio.run(aio())) == sorted(values)
    kc = KafkaConsumer(topic_name, bootstrap_servers=b, group_id="kp-group", auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        got: list[str] = []
        deadline = time.monotonic() + 20
        while len(got) < 40 and time.monotonic() < deadline:
            for batch in kc.poll(timeout_ms=500).values():
                got.extend(m.value.decode() for m in batch)
        kc.commit()
        assert sorted(got) == sorted(values)
        assert sum(kc.committed(KTP(topic_name, p)) or 0 for p in range(3)) == 40
    finally:
        kc.close()


def test_group_cli_describe_lag_and_reset(fast_broker: EmbeddedBroker, topic_name: str) -> None:
    from .test_cli import cli

    b = fast_broker.bootstrap
    fill(b, topic_name, 30, partitions=2)
    assert len(consume(b, "cli-group", topic_name, 30)) == 30
    p = Producer({"bootstrap.servers": b})
    for i in range(5):
        p.produce(topic_name, key=b"same", value=f"x{i}".encode())
    p.flush(10)
    assert "cli-group" in cli("group", "list", "-b", b).stdout
    desc = cli("group", "describe", "cli-group", "-b", b).stdout
    assert "State: Empty" in desc or "State: EMPTY" in desc
    assert "TOTAL LAG: 5" in desc
    dry = cli("group", "reset-offsets", "cli-group", "--topic", topic_name, "--to-earliest", "-b", b).stdout
    assert "dry run" in dry
    assert "TOTAL LAG: 5" in cli("group", "describe", "cli-group", "-b", b).stdout
    cli("group", "reset-offsets", "cli-group", "--topic", topic_name, "--to-earliest", "--execute", "-b", b)
    assert "TOTAL LAG: 35" in cli("group", "describe", "cli-group", "-b", b).stdout
    cli("group", "reset-offsets", "cli-group", "--topic", topic_name, "--to-latest", "--execute", "-b", b)
    assert "TOTAL LAG: 0" in cli("group", "describe", "cli-group", "-b", b).stdout
    cli("group", "delete", "cli-group", "-b", b)
    assert "cli-group" not in cli("group", "list", "-b", b).stdout


class ThreadMember:
    """A confluent-kafka group member polling in a thread of this process."""

    def __init__(self, bootstrap: str, group: str, topic: str, **conf: object) -> None:
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 300, **conf})
        self.c.subscribe([topic])
        self.stop = threading.Event()
        self.assigned: set[int] = set()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.c.poll(0.1)
            self.assigned = {tp.partition for tp in self.c.assignment()}

    def close(self) -> None:
        self.stop.set()
        self.t.join(10)
        self.c.close()


@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_client_assignors(fast_broker: EmbeddedBroker, topic_name: str, strategy: str) -> None:
    fill(fast_broker.bootstrap, topic_name, 12)
    members = [ThreadMember(fast_broker.bootstrap, f"as-{strategy}", topic_name, **{"partition.assignment.strategy": strategy}) for _ in range(3)]
    try:
        def balanced() -> bool:
            sets = [m.assigned for m in members]
            return sum(len(s) for s in sets) == 6 and set().union(*sets) == set(range(6)) and all(len(s) == 2 for s in sets)

        assert wait_for(balanced, 30), [m.assigned for m in members]
        desc = fast_broker.call(fast_broker.broker.groups.coordinator.describe_group, f"as-{strategy}")
        assert desc.state == "Stable" and desc.protocol == strategy and len(desc.members) == 3
    finally:
        for m in members:
            m.close()


def test_kafka_python_sticky_assignor(fast_broker: EmbeddedBroker, topic_name: str) -> None:
    from kafka import KafkaConsumer
    from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

    fill(fast_broker.bootstrap, topic_name, 12)
    stop = threading.Event()
    sets: list[set[int]] = [set(), set()]

    def member(i: int) -> None:
        c = KafkaConsumer(bootstrap_servers=fast_broker.bootstrap, group_id="kp-sticky", partition_assignment_strategy=[StickyPartitionAssignor], session_timeout_ms=6000, heartbeat_interval_ms=500)
        # kafka-python races its first metadata fetch against its first join: a leader that
        # assigns before it knows the topic's partitions hands out nothing ("No partition
        # metadata for topic") and may not rejoin. Fetch the metadata first; the assignor is
        # what this test is about.
        assert c.partitions_for_topic(topic_name) == set(range(6))
        c.subscribe([topic_name])
        try:
            while not stop.is_set():
                c.poll(timeout_ms=100)
                sets[i] = {tp.partition for tp in c.assignment()}
        finally:
            c.close()

    threads = [threading.Thread(target=member, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    try:
        assert wait_for(lambda: set().union(*sets) == set(range(6)) and all(len(s) == 3 for s in sets), 30), sets
    finally:
        stop.set()
        for t in threads:
            t.join(15)


def test_static_member_restart_keeps_assignment_without_rebalance(fast_broker: EmbeddedBroker, topic_name: str) -> None:
    fill(fast_broker.bootstrap, topic_name, 12)
    # a session timeout far longer than a restart can take even on a loaded machine: the
    # property is "no rebalance", which a member restarting slower than its session would break
    conf = {"group.instance.id": "static-1", "session.timeout.ms": 60000}
    a = ThreadMember(fast_broker.bootstrap, "static", topic_name, **conf)
    b = ThreadMember(fast_broker.bootstrap, "static", topic_name, **{"group.instance.id": "static-2", "session.timeout.ms": 60000})
    try:
        assert wait_for(lambda: a.assigned and b.assigned and a.assigned | b.assigned == set(range(6)), 30)
        before = a.assigned
        gen_before = fast_broker.call(fast_broker.broker.groups.coordinator.group_snapshot, "static").generation
        a.close()  # a static member does not leave the group on close
        a = ThreadMember(fast_broker.bootstrap, "static", topic_name, **conf)
        assert wait_for(lambda: a.assigned == before, 50)
        assert fast_broker.call(fast_broker.broker.groups.coordinator.group_snapshot, "static").generation == gen_before
    finally:
        a.close()
        b.close()


def test_classic_and_consumer_groups_coexist(fast_broker: EmbeddedBroker, topic_name: str) -> None:
    b = fast_broker.bootstrap
    values = fill(b, topic_name, 50, partitions=3)
    assert sorted(consume(b, "old-style", topic_name, 50)) == sorted(values)
    c = Consumer({"bootstrap.servers": b, "group.id": "new-style", "group.protocol": "consumer", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic_name])
    got: list[str] = []
    deadline = time.monotonic() + 20
    try:
        while len(got) < 50 and time.monotonic() < deadline:
            m = c.poll(0.3)
            if m is not None and m.error() is None:
                got.append(m.value().decode())
        c.commit(asynchronous=False)
    finally:
        c.close()
    assert sorted(got) == sorted(values)
    groups = fast_broker.call(fast_broker.broker.groups.consumer.list_groups, None, None)
    assert any(g == "new-style" for g, _, _ in groups)
    _, rows = fast_broker.call(fast_broker.broker.groups.coordinator.fetch_offsets, "new-style", None)
    assert sum(off for _t, _p, off, *_ in rows) == 50
