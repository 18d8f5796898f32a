"""Event-sourced aggregates on a real broker: single-writer ownership with transactional
appends (no version appended twice under many writers and an owner change), fencing of a
zombie owner, load by replay, snapshots and time travel."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from riverbed.client import ClusterSettings
from riverbed.patterns import (
    AggregateOwner,
    CommandBus,
    EventStore,
    EveryNEvents,
    Fenced,
    NotOwner,
    Repository,
    SqliteSnapshotStore,
)
from riverbed.patterns.envelope import Envelope
from riverbed.testing import EmbeddedBroker

from .patterns_domain import Counter, Increment, types

pytestmark = pytest.mark.integration
OWNER_PROC = str(Path(__file__).parent / "patterns_owner_proc.py")


@pytest.fixture(scope="module")
def settings() -> Iterator[ClusterSettings]:
    with EmbeddedBroker(group_initial_rebalance_delay_ms=0, accept_replication_factor=True) as broker:
        yield ClusterSettings(bootstrap=broker.bootstrap)


def _store(settings: ClusterSettings, partitions: int = 4) -> EventStore:
    store = EventStore(settings, "counter", partitions=partitions, prefix=f"t{uuid.uuid4().hex[:6]}.")
    store.ensure_topics()
    return store


def _read_topic(settings: ClusterSettings, topic: str, partitions: int) -> list[Any]:
    c = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"check-{uuid.uuid4().hex[:6]}", "isolation.level": "read_committed", "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, eof, deadline = [], set(), time.monotonic() + 30
    while len(eof) < partitions and time.monotonic() < deadline:
        for m in c.consume(1000, 0.5):
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                continue
            out.append(m)
    c.close()
    assert len(eof) == partitions
    return out


class _OwnerThread(threading.Thread):
    """An owner polling in its own thread (owners are single-threaded), counting its results."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(daemon=True)
        self.owner = AggregateOwner(store, Counter, types, "app", consumer_config={"session.timeout.ms": 6000})
        self.handled = 0
        self.max_owned = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.handled += len(self.owner.poll(0.1))
            self.max_owned = max(self.max_owned, len(self.owner.owned))
        self.owner.close()


def _wait(cond: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_many_writers_same_aggregates_no_version_twice(settings: ClusterSettings, tmp_path: Path) -> None:
    """Eight writers on six aggregates; the first owner is a process, a second owner joins, then
    the first is killed with -9 (mid-transaction or not) and the second takes every partition."""
    store = _store(settings, partitions=4)
    ids = [f"c{n}" for n in range(6)]
    log_path = tmp_path / "owner.log"
    with open(log_path, "wb") as log:
        first = subprocess.Popen([sys.executable, OWNER_PROC, settings.bootstrap, store.prefix, str(store.partitions)], stdout=log, stderr=subprocess.STDOUT)
    checker = CommandBus(store, types)
    checker._results.assign([TopicPartition(store.results_topic, p, 0) for p in range(store.partitions)])
    sent: list[str] = []
    lock = threading.Lock()
    stop_writing = threading.Event()

    def writer(n: int) -> None:  # 8 writers on the same 6 aggregates, some with an expected version
        bus = CommandBus(store, types)
        rnd = random.Random(n)
        while not stop_writing.is_set():
            for _ in range(5):
                expected = rnd.choice([None, rnd.randrange(0, 40)])
                cid = bus.send(rnd.choice(ids), Increment(1), expected_version=expected)
                with lock:
                    sent.append(cid)
            bus.flush()
            time.sleep(0.02)  # pacing: the writers keep going while the owners change
        bus.flush()

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for w in writers:
        w.start()
    def first_handled() -> int:
        lines = [x for x in log_path.read_text().splitlines() if x.startswith("handled ")]
        return int(lines[-1].split()[1]) if lines else 0

    _wait(lambda: first_handled() >= 50)
    second = _OwnerThread(store)  # joins: the partitions are split between the two
    second.start()
    _wait(lambda: second.max_owned > 0 and second.handled > 0)
    first.kill()  # kill -9: its partitions move to the second owner after the session timeout
    first.wait(10)
    _wait(lambda: second.max_owned == store.partitions)
    handled = second.handled
    _wait(lambda: second.handled >= handled + 50)
    stop_writing.set()
    for w in writers:
        w.join()
    checker.wait(sent, timeout=60)
    second.halt.set()
    second.join()
    checker.close()
    assert checker.duplicates == 0  # one result per command
    assert first_handled() > 0 and second.handled > 0
    accepted = {cid for cid, r in checker.seen.items() if r.accepted}
    assert accepted and len(accepted) < len(sent)  # stale expected versions were refused
    events = [Envelope.decode(m.value()) for m in _read_topic(settings, store.events_topic, store.partitions)]
    by_agg: dict[str, list[int]] = {}
    for e in events:
        by_agg.setdefault(e.aggregate_id, []).append(e.aggregate_version)
    for agg_id, versions in by_agg.items():
        assert versions == list(range(1, len(versions) + 1)), f"{agg_id}: {versions}"  # no version twice, no gap
    cmd_ids = [e.command_id for e in events]
    assert len(cmd_ids) == len(set(cmd_ids))  # every accepted command reflected exactly once
    assert set(cmd_ids) == accepted
    for cid in set(sent) - accepted:
        assert "wrong expected version" in checker.seen[cid].reason
    repo = Repository(store, Counter, types)
    assert sum(repo.load(i).total for i in ids) == len(accepted)
    repo.close()


def test_zombie_owner_is_fenced(settings: ClusterSettings) -> None:
    store = _store(settings, partitions=1)
    a = AggregateOwner(store, Counter, types, "app")
    a.wait_owned()
    assert a.execute("x", Increment(2)).version == 1
    # a second process takes over partition 0 without A noticing (A is a zombie): it
    # initialises the same transactional id, which fences A
    b = AggregateOwner(store, Counter, types, "other-group-same-ids")
    b.app_id = "app"  # same transactional ids as A, different consumer group: B gets partition 0 too
    b.wait_owned()
    assert b.aggregate("x").version == 1
    with pytest.raises(Fenced):
        a.execute("x", Increment(5))
    with pytest.raises(NotOwner):
        a.execute("x", Increment(5))  # A dropped the partition
    assert b.execute("x", Increment(3)).version == 2
    repo = Repository(store, Counter, types)
    agg = repo.load("x")
    assert (agg.version, agg.total) == (2, 5)
    for o in (a, b):
        o.close()
    repo.close()


def test_snapshots_time_travel_and_corrupt_snapshot(settings: ClusterSettings, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = _store(settings, partitions=2)
    snaps = SqliteSnapshotStore(str(tmp_path / "snaps.db"))
    owner = AggregateOwner(store, Counter, types, "app", snapshots=snaps, snapshot_policy=EveryNEvents(10))
    owner.wait_owned()
    times = []
    for n in range(1, 26):
        owner.execute("acc", Increment(n))
        times.append(owner.aggregate("acc"))
    mid = time.time()
    time.sleep(0.01)
    owner.execute("acc", Increment(100))
    repo = Repository(store, Counter, types, snapshots=snaps)
    full = repo.load("acc", use_snapshot=False)
    assert (full.version, full.total) == (26, sum(range(1, 26)) + 100)
    assert repo.last_replayed == 26
    fast = repo.load("acc")
    assert (fast.version, fast.total) == (26, full.total)
    assert repo.last_replayed == 6  # snapshot at version 20, then 6 events
    assert repo.load("acc", as_of_version=7).total == sum(range(1, 8))
    from datetime import UTC, datetime

    assert repo.load("acc", as_of_time=datetime.fromtimestamp(mid, UTC)).total == sum(range(1, 26))
    # a corrupted snapshot: logged, ignored, full replay
    snap = snaps.get("counter", "acc")
    assert snap is not None and snap.version == 20
    from dataclasses import replace

    snaps.put(replace(snap, state="{not json"))
    with caplog.at_level("WARNING"):
        again = repo.load("acc")
    assert (again.version, again.total) == (26, full.total) and repo.last_replayed == 26
    assert "is corrupt" in caplog.text
    # an old-schema snapshot with no upcaster path: discarded
    snaps.put(replace(snap, schema_version=0))
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert repo.load("acc").total == full.total
    assert "discarding it" in caplog.text
    # the owner's restore: a checkpoint (take_snapshots) + the events after it
    snaps.delete("counter", "acc")
    owner.execute("other", Increment(1))
    assert owner.take_snapshots() == 2
    owner.execute("acc", Increment(1))
    owner.close()
    again_owner = AggregateOwner(store, Counter, types, "app", snapshots=snaps)
    again_owner.wait_owned()
    p = store.partition_for("acc")
    start, replayed = again_owner.restored[p]
    assert start > 0 and replayed == 1
    assert again_owner.aggregate("acc").total == full.total + 1 and again_owner.aggregate("acc").version == 27
    assert again_owner.aggregate("other").total == 1
    again_owner.close()
    # a checkpointed aggregate without a usable snapshot: the whole partition is replayed
    snaps.put(replace(snaps.get("counter", "acc"), state="{broken"))  # type: ignore[arg-type]
    third = AggregateOwner(store, Counter, types, "app", snapshots=snaps)
    third.wait_owned()
    assert third.restored[p][0] == 0 and third.aggregate("acc").version == 27
    third.close()
    repo.close()


def test_replay_upcasts_v1_events_and_rejects_unknown(settings: ClusterSettings) -> None:
    from confluent_kafka import Producer

    from riverbed.patterns import UnknownEventType

    store = _store(settings, partitions=1)
    p = Producer({"bootstrap.servers": settings.bootstrap})
    old = Envelope("Incremented", 1, "counter", "legacy", 1, {"amount": 7})
    p.produce(store.events_topic, key=b"legacy", value=old.encode(), partition=0)
    p.produce(store.events_topic, key=b"legacy", value=b"not an envelope", partition=0)
    p.flush(10)
    repo = Repository(store, Counter, types)
    agg = repo.load("legacy")
    assert (agg.version, agg.total) == (1, 7)
    assert repo.history("legacy")[0].data == {"by": 7, "note": "from v1"}
    p.produce(store.events_topic, key=b"legacy", value=Envelope("Teleported", 1, "counter", "legacy", 2, {}).encode(), partition=0)
    p.flush(10)
    with pytest.raises(UnknownEventType, match="unknown event type 'Teleported'"):
        repo.load("legacy")
    repo.close()


def test_asyncio_api(settings: ClusterSettings) -> None:
    import asyncio

    from riverbed.patterns.aio import AsyncCommandBus, AsyncOwner, AsyncRepository

    store = _store(settings, partitions=2)

    async def main() -> None:
        owner = AsyncOwner(AggregateOwner(store, Counter, types, "app"))
        assert await owner.start() == {0, 1}
        results = await asyncio.gather(*(owner.execute("k", Increment(1)) for _ in range(20)))
        assert sorted(r.version for r in results) == list(range(1, 21))
        bus = AsyncCommandBus(CommandBus(store, types))
        forwarded = await bus.execute("k", Increment(5), expected_version=20)
        assert forwarded.accepted and forwarded.version == 21
        refused = await bus.execute("k", Increment(5), expected_version=20)
        assert not refused.accepted and "wrong expected version" in refused.reason
        repo = AsyncRepository(Repository(store, Counter, types))
        agg = await repo.load("k")
        assert (agg.version, agg.total) == (21, 25)
        assert (await repo.load("k", as_of_version=3)).total == 3
        await bus.close()
        await repo.close()
        await owner.close()

    asyncio.run(main())


def test_compacted_topic_snapshot_store(settings: ClusterSettings, caplog: pytest.LogCaptureFixture) -> None:
    from datetime import UTC, datetime

    from riverbed.patterns import KafkaSnapshotStore
    from riverbed.patterns.snapshots import make_snapshot

    topic = f"snaps-{uuid.uuid4().hex[:6]}"
    store = KafkaSnapshotStore(settings, topic)
    assert store.get("counter", "a") is None
    store.put(make_snapshot("counter", "a", 10, 0, 41, 1, {"total": 10}, datetime(2025, 1, 1, tzinfo=UTC)))
    other = KafkaSnapshotStore(settings, topic)  # a second process reads it from the topic
    got = other.get("counter", "a")
    assert got is not None and (got.version, got.offset, got.state) == (10, 41, '{"total":10}')
    store.put_raw("counter", "a", b"\x00garbage")
    with caplog.at_level("WARNING"):
        assert other.get("counter", "a") is None
    assert "is corrupt" in caplog.text
    store.delete("counter", "a")
    assert other.get("counter", "a") is None
    store.close()
    other.close()
