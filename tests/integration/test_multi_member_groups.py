"""Three-member consumer groups with kafka-python, aiokafka and kafkajs (each member in its own
process), per client-side assignor, with failover: one member is killed with SIGKILL (its
session expires) or closed (LeaveGroup), its partitions move to the others, which carry on
from its committed offsets; no record is lost or read twice.

The broker only relays the leader's assignment (classic protocol), so what this checks is the
relay: every member gets the share the assignor computed, every partition is owned exactly
once, and the committed offsets are where the next owner starts. The expected shares are the
assignors' documented contracts (Kafka's RangeAssignor / RoundRobinAssignor, kafkajs's
RoundRobinAssigner: members sorted by member id; sticky and kafka-python's cooperative-sticky:
balanced, and survivors keep what they had), checked against the members' own reports and against DescribeGroups (confluent-kafka).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from riverbed.testing import EmbeddedBroker

from .helpers import create_topics

pytestmark = pytest.mark.integration

PARTITIONS = 7  # 3 members: range 3/2/2 contiguous, round robin strided
PER_PARTITION = 6
HERE = Path(__file__).parent
NODE_DIR = HERE / "node"
HAVE_KAFKAJS = shutil.which("node") is not None and (NODE_DIR / "node_modules" / "kafkajs").is_dir()


class Member:
    """One group member process; its JSON lines are collected by a reader thread."""

    def __init__(self, cmd: list[str], client_id: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.client_id = client_id
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err, text=True, cwd=cwd, env=env)
        self.lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                with self._lock:
                    self.lines.append(json.loads(line))

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.lines)

    @property
    def assigned(self) -> list[int] | None:
        found = [ln["assigned"] for ln in self.snapshot() if "assigned" in ln]
        return found[-1] if found else None

    @property
    def records(self) -> list[tuple[int, int, str]]:
        return [tuple(ln["rec"]) for ln in self.snapshot() if "rec" in ln]  # type: ignore[misc]

    @property
    def committed(self) -> dict[int, int]:
        done: dict[int, int] = {}
        for ln in self.snapshot():
            for p, o in ln.get("committed", {}).items():
                done[int(p)] = max(done.get(int(p), 0), o)
        return done

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._err.close()

    def stderr_tail(self) -> str:
        self._err.seek(0)
        return self._err.read().decode(errors="replace")[-2000:]


def start_member(client: str, bootstrap: str, group: str, topic: str, assignor: str, client_id: str) -> Member:
    if client == "kafkajs":
        env = {**os.environ, "BOOTSTRAP": bootstrap}
        return Member(["node", "group_member.js", topic, group, client_id], client_id, cwd=NODE_DIR, env=env)
    script = str(HERE / "procs" / "py_group_member.py")
    return Member([sys.executable, script, client, bootstrap, group, topic, assignor, client_id], client_id)


def wait_for(cond: Callable[[], object], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting: {what()}")
        time.sleep(0.1)


def describe(bootstrap: str, group: str) -> tuple[str, dict[str, tuple[str, list[int]]]]:
    """DescribeGroups through confluent-kafka: (state, {client_id: (member_id, partitions)})."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    desc = admin.describe_consumer_groups([group])[group].result(10)
    members = {m.client_id: (m.member_id, sorted(tp.partition for tp in m.assignment.topic_partitions)) for m in desc.members}
    return desc.state.name, members


def diagnose(bootstrap: str, group: str, members: list[Member]) -> str:
    try:
        broker_view: object = describe(bootstrap, group)
    except Exception as exc:
        broker_view = exc
    reports = [(m.client_id, m.assigned, m.stderr_tail()[-600:]) for m in members]
    return f"broker: {broker_view}; members: {reports}"


def expected_layout(assignor: str, member_ids: list[str]) -> dict[str, list[int]] | None:
    """The shares the assignor's contract fixes (None for sticky: checked separately)."""
    ordered = sorted(member_ids)
    n = len(ordered)
    if assignor == "range":  # contiguous ranges in member id order, the first ones one longer
        per, extra = divmod(PARTITIONS, n)
        layout, start = {}, 0
        for i, m in enumerate(ordered):
            length = per + (1 if i < extra else 0)
            layout[m] = list(range(start, start + length))
            start += length
        return layout
    if assignor == "roundrobin":  # dealt out in member id order
        return {m: [p for p in range(PARTITIONS) if p % n == i] for i, m in enumerate(ordered)}
    return None  # sticky, cooperative-sticky


def settled(bootstrap: str, group: str, members: list[Member]) -> dict[str, tuple[str, list[int]]] | None:
    """The group's assignment once it is stable, every live member reports the share the
    broker holds for it, and the shares partition the topic; else None."""
    reports = {m.client_id: m.assigned for m in members}
    if any(not r for r in reports.values()):
        return None
    try:
        state, described = describe(bootstrap, group)
    except Exception:
        return None
    if state != "STABLE" or set(described) != set(reports):
        return None
    if any(described[c][1] != reports[c] for c in reports):
        return None
    owned = sorted(p for r in reports.values() for p in r or [])
    if owned != list(range(PARTITIONS)):
        return None
    return described


def committed_upto(members: list[Member]) -> list[int]:
    """Per partition, the highest offset any member reported committing."""
    return [max(m.committed.get(p, 0) for m in members) for p in range(PARTITIONS)]


def produce(bootstrap: str, topic: str, tag: str) -> set[tuple[int, str]]:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2})
    sent = set()
    for part in range(PARTITIONS):
        for i in range(PER_PARTITION):
            value = f"{tag}-{part}-{i}"
            p.produce(topic, value=value.encode(), partition=part)
            sent.add((part, value))
    assert p.flush(20) == 0
    return sent


def check_layout(assignor: str, described: dict[str, tuple[str, list[int]]], before: dict[str, list[int]] | None = None) -> None:
    by_member = {member_id: parts for member_id, parts in described.values()}
    layout = expected_layout(assignor, list(by_member))
    if layout is not None:
        assert by_member == layout, f"{assignor}: {by_member}"
        return
    sizes = sorted(len(parts) for parts in by_member.values())
    assert sizes[-1] - sizes[0] <= 1, f"sticky is balanced: {by_member}"
    if before is not None:  # survivors keep their partitions and share out the victim's
        for client_id, (_, parts) in described.items():
            assert set(before[client_id]) <= set(parts), f"sticky moved {client_id}'s partitions: {before} -> {described}"


CASES = [
    ("kafka-python", "range", "close"),
    ("kafka-python", "roundrobin", "kill"),
    ("kafka-python", "sticky", "kill"),
    ("kafka-python", "cooperative-sticky", "kill"),
    ("aiokafka", "range", "kill"),
    ("aiokafka", "roundrobin", "close"),
    ("aiokafka", "sticky", "close"),
    ("kafkajs", "roundrobin", "kill"),
    ("kafkajs", "roundrobin", "close"),
]


@pytest.fixture
def group_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path / "data", group_initial_rebalance_delay_ms=0) as b:
        yield b


@pytest.mark.parametrize(("client", "assignor", "failover"), CASES, ids=[f"{c}-{a}-{f}" for c, a, f in CASES])
def test_three_members_share_the_partitions_and_fail_over(group_broker: EmbeddedBroker, topic_name: str, client: str, assignor: str, failover: str) -> None:
    if client == "kafkajs" and not HAVE_KAFKAJS:
        pytest.skip("node or kafkajs not installed (scripts/setup dev installs them)")
    b = group_broker.bootstrap
    group = "g-" + topic_name
    create_topics(b, NewTopic(topic_name, PARTITIONS, 1))
    members = [start_member(client, b, group, topic_name, assignor, f"m{i}") for i in range(3)]
    try:
        # 1. three members: every partition owned once, the shares the assignor fixes
        got: dict[str, Any] = {}

        def three() -> bool:
            assert all(m.alive() for m in members), [m.stderr_tail() for m in members]
            got["d"] = settled(b, group, members)
            return got["d"] is not None

        wait_for(three, 90, lambda: f"3 members settled: {diagnose(b, group, members)}")
        first: dict[str, tuple[str, list[int]]] = got["d"]
        check_layout(assignor, first)
        for m in members:  # kafkajs reports its member id: the one DescribeGroups lists for it
            ids = [ln["member"] for ln in m.snapshot() if "member" in ln]
            assert not ids or ids[-1] == first[m.client_id][0], (m.client_id, ids[-1], first[m.client_id])
        assert all(len(parts) >= 2 for _, parts in first.values())  # 7 over 3: each has a share

        # 2. records reach the owner of their partition, which commits them
        sent_a = produce(b, topic_name, "a")
        wait_for(lambda: committed_upto(members) == [PER_PARTITION] * PARTITIONS, 60, lambda: f"commits: {[m.committed for m in members]}")
        for m in members:
            assert {p for p, _, _ in m.records} <= set(first[m.client_id][1])
            assert m.committed == dict.fromkeys(first[m.client_id][1], PER_PARTITION)

        # 3. failover: the middle member goes; its partitions move to the other two
        victim, survivors = members[1], [members[0], members[2]]
        victim_parts = first[victim.client_id][1]
        if failover == "kill":
            victim.proc.send_signal(signal.SIGKILL)
        else:
            victim.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: any(ln.get("closed") for ln in victim.snapshot()), 30, lambda: f"close: {victim.snapshot()[-3:]}")
        victim.proc.wait(30)

        def two() -> bool:
            assert all(m.alive() for m in survivors), [m.stderr_tail() for m in survivors]
            got["d"] = settled(b, group, survivors)
            return got["d"] is not None

        wait_for(two, 90, lambda: f"2 members settled: {diagnose(b, group, survivors)}")
        second: dict[str, tuple[str, list[int]]] = got["d"]
        check_layout(assignor, second, before={c: parts for c, (_, parts) in first.items()})

        # 4. new records: the new owners of the victim's partitions start at its commits
        sent_b = produce(b, topic_name, "b")
        everything = sent_a | sent_b

        def all_read() -> bool:
            return {(p, v) for m in members for p, _, v in m.records} >= everything

        wait_for(all_read, 60, lambda: f"{len(everything - {(p, v) for m in members for p, _, v in m.records})} records unread")
        wait_for(lambda: committed_upto(members) == [2 * PER_PARTITION] * PARTITIONS, 60, lambda: f"commits: {[m.committed for m in members]}")
        reads = [(p, o) for m in members for p, o, _ in m.records]
        assert len(reads) == len(set(reads)) == len(everything), "every record read exactly once (nothing lost, nothing re-read)"
        owner_before = {p: c for c, (_, parts) in first.items() for p in parts}
        owner_after = {p: c for c, (_, parts) in second.items() for p in parts}
        by_id = {m.client_id: m for m in members}
        for m in members:  # batch a read by the first owners, batch b by the second ones
            for p, o, _ in m.records:
                assert (owner_before if o < PER_PARTITION else owner_after)[p] == m.client_id, (m.client_id, p, o)
        moved = [p for p in range(PARTITIONS) if owner_before[p] != owner_after[p]]
        assert set(victim_parts) <= set(moved)
        for p in moved:  # the new owner starts where the old one had committed
            assert by_id[owner_before[p]].committed[p] == PER_PARTITION
            assert min(o for q, o, _ in by_id[owner_after[p]].records if q == p) == PER_PARTITION

        # 5. the broker holds the survivors' commits
        c = Consumer({"bootstrap.servers": b, "group.id": group})
        try:
            committed = c.committed([TopicPartition(topic_name, p) for p in range(PARTITIONS)], 10)
        finally:
            c.close()
        assert [tp.offset for tp in committed] == [2 * PER_PARTITION] * PARTITIONS
    finally:
        for m in members:
            m.stop()
