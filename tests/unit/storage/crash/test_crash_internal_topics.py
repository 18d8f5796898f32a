"""Crash consistency of ``__consumer_offsets`` and ``__transaction_state``: a broker runs in
this process on the simulated file system (simfs.py) and a real client (confluent-kafka,
over TCP) commits offsets and runs transactions; crash images are taken right after each
acknowledgement and at sampled points in between. A broker started on each crash image
must give back every acknowledged committed offset, show the records of every
acknowledged committed transaction to a read_committed consumer and none of an
acknowledged aborted one, and know each transactional id's producer id and epoch."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from simfs import Choice, Fixed, Image, Random, Reordered, SimFS

from riverbed.app import runtime
from riverbed.coordinator.txn_types import TxnState
from riverbed.storage import LogManager
from riverbed.testing import EmbeddedBroker

GROUP = "crash-group"
TXN_ID = "crash-txn"
DEADLINE_S = 60.0
T = TypeVar("T")


def wait_for(what: str, fn: Callable[[], T | None]) -> T:
    """Poll ``fn`` until it returns something other than None (generous deadline)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = fn()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(30)


def committed(bootstrap: str, topic: str, partition: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False})
    try:
        return int(c.committed([TopicPartition(topic, partition)], timeout=30)[0].offset)
    finally:
        c.close()


def read_committed_values(bootstrap: str, topic: str, expected: set[bytes]) -> set[bytes]:
    """The values a read_committed consumer sees, once it has seen ``expected`` (or the
    deadline passed), plus a short drain to catch anything extra."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "reader",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    seen: set[bytes] = set()
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + DEADLINE_S
        while not expected <= seen and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None and (value := m.value()) is not None:
                seen.add(value)
        # the end of what is readable: the position reaches the last stable offset
        _low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        while time.monotonic() < deadline:
            pos = c.position([TopicPartition(topic, 0)])[0].offset
            if pos >= high:
                break
            m = c.poll(0.2)
            if m is not None and m.error() is None and (value := m.value()) is not None:
                seen.add(value)
    finally:
        c.close()
    return seen


def txn_state(eb: EmbeddedBroker) -> Any:
    return eb.call(lambda: eb.broker.txns.coordinator.snapshot(TXN_ID))


def run_workload(eb: EmbeddedBroker, sim: SimFS, images: list[Image]) -> None:
    create_topic(eb.bootstrap, "in", 1)
    create_topic(eb.bootstrap, "out", 1)
    c = Consumer({"bootstrap.servers": eb.bootstrap, "group.id": GROUP, "enable.auto.commit": False})
    try:
        for k in range(1, 5):
            c.commit(offsets=[TopicPartition("in", 0, 10 * k)], asynchronous=False)
            sim.note(("offset", 10 * k))
            images.append(sim.capture(f"after commit {10 * k}"))
    finally:
        c.close()
    p = Producer({"bootstrap.servers": eb.bootstrap, "transactional.id": TXN_ID, "linger.ms": 0})
    p.init_transactions(30)
    for j in range(4):
        p.begin_transaction()
        p.produce("out", value=f"txn-{j}".encode())
        commit = j % 2 == 0
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
        snap = txn_state(eb)
        sim.note(("txn", f"txn-{j}".encode(), commit, snap.producer_id, snap.producer_epoch))
        images.append(sim.capture(f"after {'commit' if commit else 'abort'} of txn-{j}"))


def check(dest: Path, image: Image, label: str, between_acks: bool = False) -> None:
    offsets = [n[1] for n in image.notes if n[0] == "offset"]
    txns = [n for n in image.notes if n[0] == "txn"]
    eb = EmbeddedBroker(dest / "data", flush_syncfs=False).start()
    try:
        if offsets:
            got = committed(eb.bootstrap, "in", 0)
            assert got >= max(offsets), f"{label}: committed offset {got}, acknowledged {max(offsets)}"
            assert got in offsets + [10 * k for k in range(1, 5)], label
        if txns:
            want = {n[1] for n in txns if n[2]}
            aborted = {n[1] for n in txns if not n[2]}
            seen = read_committed_values(eb.bootstrap, "out", want)
            assert want <= seen, f"{label}: committed transactions missing: {want - seen}"
            assert not seen & aborted, f"{label}: aborted transactions visible: {seen & aborted}"
            snap = wait_for("the transactional id", lambda: txn_state(eb))
            _, _, _, pid, epoch = txns[-1]
            assert (snap.producer_id, snap.producer_epoch) >= (pid, epoch), f"{label}: {snap}"
            assert snap.producer_id == pid, f"{label}: {snap}"
            ended = (TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT, TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)
            # a crash between acknowledgements may fall inside the next transaction, once its
            # Ongoing record is durable (the coordinator keeps it open, as Kafka's does, until
            # the producer goes on or its timeout aborts it); right after an acknowledged
            # commit or abort the transaction must have ended
            if snap.state not in ended and not (between_acks and snap.state == TxnState.ONGOING):
                raise AssertionError(f"{label}: {snap}")
            # the transactional id can go on: a new producer instance fences the old one
            p = Producer({"bootstrap.servers": eb.bootstrap, "transactional.id": TXN_ID})
            try:
                p.init_transactions(30)
            except KafkaException as exc:  # pragma: no cover - reported by the assertion
                raise AssertionError(f"{label}: init_transactions failed: {exc}") from exc
    finally:
        eb.stop()


def test_acknowledged_offsets_and_transactions_survive_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "live"
    root.mkdir()
    sim = SimFS(root, capture_every_op=True)
    # the broker's LogManager takes its fsync as a default argument bound at import
    monkeypatch.setattr(runtime, "LogManager", functools.partial(LogManager, fsync=sim.fsync))
    acked: list[Image] = []
    with sim.install():
        eb = EmbeddedBroker(root / "data", flush_syncfs=False).start()
        try:
            first = len(sim.images)
            run_workload(eb, sim, acked)
            between = sim.images[first:]
        finally:
            eb.stop()
    monkeypatch.undo()
    # sampled crash points between acknowledgements (the workload's own file operations)
    sampled = between[:: max(1, len(between) // 8)]
    plan: list[tuple[Image, Choice, bool]] = []
    for image in acked:
        plan += [(image, Fixed("all pending dropped", files=False, dirs=False), False), (image, Reordered.seeded(len(plan)), False)]
    for image in sampled:
        plan.append((image, Random.seeded(len(plan)), True))
    for n, (image, choice, between_acks) in enumerate(plan):
        dest = tmp_path / f"crash-{n}"
        image.materialize(dest, choice)
        check(dest, image, f"crash {image.label}, {choice}", between_acks)
