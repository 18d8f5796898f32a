"""Cooperative rebalancing and standby replicas of riverbed.streams against a real broker.

- Two instances join and leave one after the other: with cooperative-sticky assignment the tasks
  that stay are never closed (the same Task objects keep running), and with exactly_once every
  count per key is output exactly once.
- A standby replica: the second instance keeps a warm copy of the first one's stores; after a
  kill -9 of the first it takes the tasks over restoring only the changelog's tail.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from riverbed.streams import LONG, STRING, StreamsApp
from riverbed.streams.runtime import Runtime
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics
from .test_streams import wait_until
from .test_streams_failover import Worker

pytestmark = pytest.mark.integration

KEYS = [f"user-{i}" for i in range(30)]
FAST = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
NO_CACHE = 0  # the tests count every update of a key: no record cache


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path / "data", group_initial_rebalance_delay_ms=0) as b:
        yield b


def counter(app_id: str) -> StreamsApp:
    app = StreamsApp(app_id)
    app.stream("events", STRING, STRING).group_by_key().count(name="counts").to_stream().to("counts", STRING, LONG)
    return app


class Counts:
    """Produces to ``events`` remembering the expected counts; reads ``counts`` (committed)."""

    def __init__(self, bs: str, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.expected: dict[str, int] = {}
        self.seen: dict[str, list[int]] = {}
        self.n_seen = 0
        self.producer = Producer({"bootstrap.servers": bs, "linger.ms": 5})
        self.reader = Consumer({"bootstrap.servers": bs, "group.id": "reader", "auto.offset.reset": "earliest",
                                "isolation.level": "read_committed", "enable.auto.commit": False})
        self.reader.subscribe(["counts"])

    def produce(self, n: int) -> None:
        for _ in range(n):
            k = self.rnd.choice(KEYS)
            self.expected[k] = self.expected.get(k, 0) + 1
            self.producer.produce("events", b"x", k.encode())
        assert self.producer.flush(30) == 0

    def read(self) -> int:
        for m in self.reader.consume(500, 0.2):
            if m.error() is None:
                self.seen.setdefault(m.key().decode(), []).append(LONG.deserialize(m.value()) or 0)
                self.n_seen += 1
        return self.n_seen

    def wait_all(self, what: str, exact: bool = True) -> None:
        total = sum(self.expected.values())
        if exact:
            wait_until(lambda: self.read() >= total, what, 120)
            assert self.read() == total  # nothing duplicated
        else:  # at-least-once: the last count of every key (duplicates allowed)
            wait_until(lambda: self.read() >= total and self.latest() == self.expected, what, 120)

    def latest(self) -> dict[str, int]:
        return {k: v[-1] for k, v in self.seen.items()}

    def check_exact(self) -> None:
        for k, n in self.expected.items():
            assert self.seen[k] == list(range(1, n + 1)), (k, self.seen[k][-10:])

    def close(self) -> None:
        self.reader.close()


class Running:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        try:
            self.rt.run()
        except BaseException as e:
            self.errors.append(e)

    def check(self) -> None:
        if self.errors:
            raise self.errors[0]

    def stop(self) -> None:
        self.rt.stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "runtime did not stop"
        self.check()


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_cooperative_rebalance_keeps_staying_tasks(broker: EmbeddedBroker, tmp_path: Path, guarantee: str) -> None:
    bs = broker.bootstrap
    eos = guarantee == "exactly_once"
    create_topics(bs, NewTopic("events", 4, 1), NewTopic("counts", 4, 1))
    topo = counter("coop").topology()

    def runtime(i: int) -> Runtime:
        return Runtime(topo, bs, state_dir=tmp_path / f"s{i}", commit_interval_ms=100,
                       processing_guarantee=guarantee, consumer_config=FAST, cache_max_bytes=NO_CACHE)

    counts = Counts(bs, 3)
    a = Running(runtime(0))
    b: Running | None = None
    try:
        assert a.rt.cooperative and a.rt._consumer_cfg["partition.assignment.strategy"] == "cooperative-sticky"
        counts.produce(300)
        counts.wait_all("first counts", eos)
        assert len(a.rt.tasks) == 4
        before = dict(a.rt.tasks)

        b = Running(runtime(1))  # joins: some partitions move to it, the others stay put
        wait_until(lambda: len(b.rt.tasks) > 0 and len(a.rt.tasks) + len(b.rt.tasks) == 4, "partitions shared")
        for key, task in a.rt.tasks.items():
            assert before[key] is task, f"task {key} was closed and re-created"
        moved = set(b.rt.tasks)
        assert moved and moved.isdisjoint(a.rt.tasks)
        counts.produce(300)
        counts.wait_all("counts with two instances", eos)
        # the moved tasks restored their stores from the changelog before running
        assert all(b.rt.restored[f"counts/{sid}_{p}"] > 0 for sid, p in moved), b.rt.restored
        assert all(done == total for done, total in b.rt.restore_progress.values())

        staying_b = dict(b.rt.tasks)
        a.stop()  # leaves: its partitions move to b, whose own tasks keep running
        wait_until(lambda: len(b.rt.tasks) == 4, "b owns everything", 60)
        for key, task in staying_b.items():
            assert b.rt.tasks[key] is task, f"task {key} was closed and re-created"
        counts.produce(200)
        counts.wait_all("counts after a left", eos)
        if eos:
            counts.check_exact()
    finally:
        for r in (a, b):
            if r is not None and r.thread.is_alive():
                r.stop()
        counts.close()


def test_standby_replica_takes_over_with_the_tail_only(broker: EmbeddedBroker, tmp_path: Path) -> None:
    bs = broker.bootstrap
    create_topics(bs, NewTopic("events", 4, 1), NewTopic("counts", 4, 1))
    counts = Counts(bs, 5)
    worker = Worker(bs, tmp_path / "s0", tmp_path / "worker.log", "exactly_once", standbys=1)
    b: Running | None = None
    try:
        counts.produce(200)
        counts.wait_all("counts from the first instance")
        b = Running(Runtime(counter("counter").topology(), bs, state_dir=tmp_path / "s1", commit_interval_ms=100,
                            processing_guarantee="exactly_once", consumer_config=FAST, num_standby_replicas=1,
                            standby_refresh_ms=500, cache_max_bytes=NO_CACHE))
        rt = b.rt
        wait_until(lambda: len(rt.tasks) > 0 and len(rt.tasks) < 4 and len(rt.standbys) == 4 - len(rt.tasks)
                   and set(rt.standbys).isdisjoint(rt.tasks), "b owns some tasks and stands by for the others", 90)
        standby = set(rt.standbys)
        counts.produce(600)
        counts.wait_all("counts with two instances")
        assert worker.alive(), worker.log.read_text()[-3000:]

        # the standbys caught up with the changelog (read_committed: up to the last stable offset)
        probe = Consumer({"bootstrap.servers": bs, "group.id": "probe", "isolation.level": "read_committed"})
        ends = {p: probe.get_watermark_offsets(TopicPartition("counter-counts-changelog", p), timeout=10)[1]
                for _s, p in standby}
        probe.close()

        def caught_up() -> bool:
            b.check()
            return all(rt.standbys[k]["counts"].position >= ends[k[1]] for k in standby if k in rt.standbys)

        wait_until(caught_up, "standbys caught up", 60)
        assert set(rt.standbys) == standby
        warm = {k: rt.standbys[k]["counts"].applied for k in standby}
        assert all(n > 0 for n in warm.values()), warm

        worker.kill()  # kill -9: b takes its tasks over from the standbys
        wait_until(lambda: len(rt.tasks) == 4 and not rt.restoring, "b owns everything", 90)
        assert not rt.standbys
        counts.produce(200)
        counts.wait_all("counts after the kill")
        counts.check_exact()
        # only the tail was restored: nothing (the standby had reached the end) or the few records
        # of a transaction committed just before the kill
        tail = {k: rt.restored[f"counts/{k[0]}_{k[1]}"] for k in standby}
        assert all(tail[k] < warm[k] // 4 for k in standby), (tail, warm)
        b.check()
    finally:
        if worker.alive():
            worker.kill()
        if b is not None and b.thread.is_alive():
            b.stop()
        counts.close()


def test_restore_runs_in_chunks_from_the_poll_loop(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """A store restored from a 20,000-record changelog: the restore is spread over many turns of
    the poll loop (a consume of the group consumer between each), and its progress is reported."""
    bs = broker.bootstrap
    create_topics(bs, NewTopic("events", 2, 1), NewTopic("counts", 2, 1),
                  NewTopic("rs-counts-changelog", 2, 1, config={"cleanup.policy": "compact"}))
    p = Producer({"bootstrap.servers": bs, "linger.ms": 20})
    for i in range(20_000):  # the changelog of an earlier run, whose state directory is gone
        p.produce("rs-counts-changelog", LONG.serialize(1), f"k-{i}".encode(), partition=0)
    p.produce("events", b"x", b"k-5", partition=0)  # restored 1, so counts 2
    p.produce("events", b"x", b"other", partition=1)
    assert p.flush(30) == 0

    app = counter("rs")
    app.bootstrap = bs
    app.config.update(state_dir=str(tmp_path / "s"), batch_size=100, commit_interval_ms=100)
    assert app.restore_progress() == {}
    errors: list[BaseException] = []

    def main() -> None:
        try:
            app.run()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=main, daemon=True)
    t.start()
    out = Consumer({"bootstrap.servers": bs, "group.id": "out", "auto.offset.reset": "earliest"})
    out.subscribe(["counts"])
    got: dict[str, int] = {}
    try:
        def poll() -> dict[str, int]:
            assert not errors, errors
            for m in out.consume(100, 0.2):
                if m.error() is None:
                    got[m.key().decode()] = LONG.deserialize(m.value()) or 0
            return got

        wait_until(lambda: poll() == {"k-5": 2, "other": 1}, "counts after the restore", 90)
        rt = app._runtime
        assert rt.restored == {"counts/0_0": 20_000, "counts/0_1": 0}
        # at most 20 consumes of 100 records per turn of the loop: at least 10 turns
        assert rt.restore_chunks["counts/0_0"] >= 10, rt.restore_chunks
        assert app.restore_progress() == {"counts/0_0": {"restored": 20_000, "total": 20_000},
                                          "counts/0_1": {"restored": 0, "total": 0}}
    finally:
        app.stop()
        t.join(60)
        out.close()
    assert not t.is_alive() and not errors, errors


def test_inputs_of_a_join_are_processed_in_timestamp_order(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Timestamp synchronization (max.task.idle.ms): the clicks are in their topic before the
    table's records, yet each click joins the table value current at its timestamp; once the
    table's partitions are caught up, a new click is processed without waiting for more."""
    bs = broker.bootstrap
    create_topics(bs, NewTopic("users", 2, 1, config={"cleanup.policy": "compact"}), NewTopic("clicks", 2, 1),
                  NewTopic("enriched", 2, 1))
    app = StreamsApp("sync")
    users = app.table("users", STRING, STRING, name="users")
    (app.stream("clicks", STRING, STRING)
        .left_join(users, lambda page, name: f"{page}:{name or '-'}", value_serde=STRING)
        .to("enriched", STRING, STRING))
    uids = [f"u{i}" for i in range(20)]
    p = Producer({"bootstrap.servers": bs, "partitioner": "murmur2_random", "linger.ms": 5})
    # the stream first (each partition in timestamp order: the task merges its inputs by the
    # timestamp of their next records, within a partition offsets decide, as in Kafka Streams)
    for page, ts in ((b"a", 2000), (b"b", 4000)):
        for uid in uids:
            p.produce("clicks", page, uid.encode(), timestamp=ts)
    assert p.flush(30) == 0
    for name, ts in ((b"v1", 1000), (b"v2", 3000)):
        for uid in uids:
            p.produce("users", name, uid.encode(), timestamp=ts)
    assert p.flush(30) == 0
    rt = Runtime(app.topology(), bs, state_dir=tmp_path, commit_interval_ms=200)
    assert not rt.cooperative  # a stream with a table: co-partitioned, eager range assignment
    out = Consumer({"bootstrap.servers": bs, "group.id": "out", "auto.offset.reset": "earliest"})
    out.subscribe(["enriched"])
    got: list[tuple[str, str]] = []
    r = Running(rt)
    try:
        def poll() -> int:
            r.check()
            for m in out.consume(100, 0.2):
                if m.error() is None:
                    got.append((m.key().decode(), m.value().decode()))
            return len(got)

        wait_until(lambda: poll() >= 2 * len(uids), "joined clicks", 90)
        assert sorted(got) == sorted([(u, "a:v1") for u in uids] + [(u, "b:v2") for u in uids]), sorted(got)
        p.produce("clicks", b"c", b"u0", timestamp=5000)  # no table record follows: not held back
        assert p.flush(30) == 0
        wait_until(lambda: poll() > 2 * len(uids), "a click after the table went quiet", 30)
        assert got[-1] == ("u0", "c:v2")
    finally:
        r.stop()
        out.close()


def test_stalled_member_loses_its_partitions_and_goes_on_exactly_once(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """A processing call that outlasts max.poll.interval.ms gets the member dropped from the
    group: its commit is refused or its partitions are reported lost, the open transaction is
    aborted, the tasks restart from the last commit, and every count is still output exactly
    once."""
    bs = broker.bootstrap
    create_topics(bs, NewTopic("events", 2, 1), NewTopic("counts", 2, 1))
    stalled = threading.Event()

    def maybe_stall(v: str) -> str:
        if v == "slow" and not stalled.is_set():
            stalled.set()
            time.sleep(8)  # > max.poll.interval.ms
        return v

    app = StreamsApp("stall")
    (app.stream("events", STRING, STRING).map_values(maybe_stall).group_by_key().count(name="counts")
        .to_stream().to("counts", STRING, LONG))
    rt = Runtime(app.topology(), bs, state_dir=tmp_path / "s", commit_interval_ms=100,
                 processing_guarantee="exactly_once", producer_config={"transaction.timeout.ms": 60_000},
                 consumer_config={**FAST, "max.poll.interval.ms": 6000}, cache_max_bytes=NO_CACHE)
    counts = Counts(bs, 7)
    r = Running(rt)
    try:
        counts.produce(100)
        counts.wait_all("counts before the stall")
        counts.expected["user-1"] = counts.expected.get("user-1", 0) + 1
        counts.producer.produce("events", b"slow", b"user-1")
        counts.produce(100)
        wait_until(lambda: stalled.is_set(), "the stall")
        counts.produce(100)
        counts.wait_all("counts after the stall")
        counts.check_exact()
        r.check()
    finally:
        r.stop()
        counts.close()
