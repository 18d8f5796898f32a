"""Consumer-group edge cases seen with kafka-python and aiokafka (issue 20, item 6): a consumer
that stops polling is removed and the group settles without it (its late commit refused as
Kafka refuses it), several kafka-python consumers joining at once settle promptly, a
kafka-python transactional producer's send_offsets_to_transaction commits, and pattern
subscriptions see topics created after they started."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from riverbed.testing import EmbeddedBroker

from .helpers import create_topics

pytestmark = pytest.mark.integration

# kafka-python 3.0.12 sometimes loses the assignment of a completed rebalance when a short
# poll() times out while it is being applied (seen 1 in 25 with 100 ms polls, all broker
# answers delivered; never with 1 s polls): poll long enough.
KP_POLL_MS = 1000


@pytest.fixture
def gbroker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path / "data", group_initial_rebalance_delay_ms=0) as b:
        yield b


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def produce(bootstrap: str, topic: str, n: int, prefix: str = "v") -> list[str]:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    values = [f"{prefix}{i}" for i in range(n)]
    for i, v in enumerate(values):
        p.produce(topic, key=f"k{i}".encode(), value=v.encode())
    assert p.flush(20) == 0
    return values


def describe_group(bootstrap: str, group: str) -> Any:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.describe_consumer_groups([group])[group].result(15)


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    admin = AdminClient({"bootstrap.servers": bootstrap})
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    res = admin.list_consumer_group_offsets([req])[group].result(15)
    return {tp.partition: tp.offset for tp in res.topic_partitions}


class PollingMember:
    """A kafka-python consumer polling in its own thread; records every assignment it gets."""

    def __init__(self, bootstrap: str, group: str, topic: str, **conf: Any) -> None:
        from kafka import KafkaConsumer
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        member = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                pass

            def on_partitions_assigned(self, assigned: Any) -> None:
                member.assignments.append(sorted(tp.partition for tp in assigned))

        self.assignments: list[list[int]] = []
        self.records = 0
        self.stop = threading.Event()
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False, **conf)
        self.consumer.subscribe([topic], listener=Listener())
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for batch in self.consumer.poll(timeout_ms=KP_POLL_MS).values():
                self.records += len(batch)

    @property
    def assigned(self) -> list[int]:
        return self.assignments[-1] if self.assignments else []

    @property
    def generation(self) -> int:
        return int(self.consumer._coordinator._generation.generation_id)

    def close(self) -> None:
        self.stop.set()
        if self.thread.ident is not None:  # started
            self.thread.join(30)
        self.consumer.close()



# -- (a) a consumer that stops polling is removed; its late commit is refused ------------------


def wire_commit(bootstrap: str, group: str, topic: str, member_id: str, generation: int, version: int = 8) -> int:
    """An OffsetCommit as the removed member would send it: the broker's own answer."""
    from riverbed.cli.wire_client import WireClient
    from riverbed.protocol.messages.offset_commit import OffsetCommitRequest, OffsetCommitResponse

    part = OffsetCommitRequest.OffsetCommitRequestPartition(partition_index=0, committed_offset=1)
    req = OffsetCommitRequest(group_id=group, generation_id_or_member_epoch=generation, member_id=member_id, topics=[OffsetCommitRequest.OffsetCommitRequestTopic(name=topic, partitions=[part])])
    with WireClient(bootstrap) as client:
        resp = client.request(req, version)
    assert isinstance(resp, OffsetCommitResponse)
    return resp.topics[0].partitions[0].error_code


def settled_without(bootstrap: str, group: str, gone: str) -> bool:
    desc = describe_group(bootstrap, group)
    ids = [m.member_id for m in desc.members]
    return desc.state.name == "STABLE" and len(ids) == 1 and gone not in ids


def test_kafka_python_consumer_past_max_poll_interval_leaves_the_group(gbroker: EmbeddedBroker, topic_name: str) -> None:
    from kafka import TopicPartition
    from kafka.errors import CommitFailedError, RebalanceInProgressError
    from kafka.structs import OffsetAndMetadata

    b, group, partitions = gbroker.bootstrap, f"g-{topic_name}", 4
    create_topics(b, NewTopic(topic_name, partitions, 1))
    conf = {"max_poll_interval_ms": 8000, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
    stuck = PollingMember(b, group, topic_name, **conf)
    wait_for(lambda: (stuck.consumer.poll(timeout_ms=KP_POLL_MS), stuck.assigned == list(range(partitions)))[1], 60, "the first member to own everything")
    generation = stuck.consumer._coordinator._generation
    old_member, old_generation = generation.member_id, generation.generation_id
    # `stuck` stops polling now (its thread was never started); a second member joins.
    live = PollingMember(b, group, topic_name, **conf)
    live.thread.start()
    try:
        wait_for(lambda: live.assigned == list(range(partitions)), 120, "the live member to own every partition")
        wait_for(lambda: settled_without(b, group, old_member), 60, "a Stable group of the live member only")
        values = produce(b, topic_name, 20)
        wait_for(lambda: live.records >= len(values), 60, "the live member to read everything")
        # The late commit: the client knows it is out (it left when its poll interval passed)...
        with pytest.raises((CommitFailedError, RebalanceInProgressError)):
            stuck.consumer.commit({TopicPartition(topic_name, 0): OffsetAndMetadata(1, "", -1)})
        # ...and the broker refuses the old member and generation as Kafka does.
        assert wire_commit(b, group, topic_name, old_member, old_generation) == 25  # UNKNOWN_MEMBER_ID
        new_member, new_generation = live.consumer._coordinator._generation.member_id, live.generation
        assert new_generation > old_generation
        assert wire_commit(b, group, topic_name, new_member, old_generation) == 22  # ILLEGAL_GENERATION
    finally:
        live.close()
        stuck.consumer.close()


def test_late_commit_to_a_deleted_group(gbroker: EmbeddedBroker, topic_name: str) -> None:
    """The late commit of a member whose group is gone (it left, the group was deleted):
    Kafka answers GROUP_ID_NOT_FOUND from OffsetCommit v9 on, ILLEGAL_GENERATION before;
    a commit without a generation (-1) creates a simple group and is stored."""
    from kafka import KafkaConsumer

    b, group = gbroker.bootstrap, f"g-{topic_name}"
    create_topics(b, NewTopic(topic_name, 1, 1))
    c = KafkaConsumer(topic_name, bootstrap_servers=b, group_id=group, enable_auto_commit=False)
    try:
        wait_for(lambda: (c.poll(timeout_ms=KP_POLL_MS), c.assignment())[1], 60, "the assignment")
        member, generation = c._coordinator._generation.member_id, c._coordinator._generation.generation_id
    finally:
        c.close()  # leaves the group
    admin = AdminClient({"bootstrap.servers": b})
    admin.delete_consumer_groups([group])[group].result(15)
    assert wire_commit(b, group, topic_name, member, generation, version=9) == 69  # GROUP_ID_NOT_FOUND
    assert wire_commit(b, group, topic_name, member, generation, version=8) == 22  # ILLEGAL_GENERATION
    assert wire_commit(b, group, topic_name, "", -1, version=9) == 0
    assert committed(b, group, topic_name, 1) == {0: 1}


def test_aiokafka_consumer_past_max_poll_interval_leaves_the_group(gbroker: EmbeddedBroker, topic_name: str) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import CommitFailedError, IllegalStateError

    b, group, partitions = gbroker.bootstrap, f"g-{topic_name}", 4
    create_topics(b, NewTopic(topic_name, partitions, 1))
    conf: dict[str, Any] = {"group_id": group, "auto_offset_reset": "earliest", "enable_auto_commit": False, "max_poll_interval_ms": 8000, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500}

    async def run() -> None:
        stuck = AIOKafkaConsumer(topic_name, bootstrap_servers=b, **conf)
        live = AIOKafkaConsumer(topic_name, bootstrap_servers=b, **conf)
        await stuck.start()
        try:
            async with asyncio.timeout(60):
                while len(stuck.assignment()) < partitions:
                    await stuck.getmany(timeout_ms=100)
            old_member, old_generation = stuck._coordinator.member_id, stuck._coordinator.generation
            # `stuck` is never read again; a second member joins and keeps reading.
            await live.start()
            got = 0

            async def settled() -> bool:
                return await asyncio.to_thread(settled_without, b, group, old_member)

            async with asyncio.timeout(120):
                while len(live.assignment()) < partitions or not await settled():
                    got += sum(len(v) for v in (await live.getmany(timeout_ms=200)).values())
            values = await asyncio.to_thread(produce, b, topic_name, 20)
            async with asyncio.timeout(60):
                while got < len(values):
                    got += sum(len(v) for v in (await live.getmany(timeout_ms=200)).values())
            with pytest.raises((CommitFailedError, IllegalStateError)):
                await stuck.commit({TopicPartition(topic_name, 0): 1})
            code = await asyncio.to_thread(wire_commit, b, group, topic_name, old_member, old_generation)
            assert code == 25  # UNKNOWN_MEMBER_ID
        finally:
            await live.stop()
            await stuck.stop()

    asyncio.run(run())


# -- (d) pattern subscriptions see topics created after they started ---------------------------


def test_kafka_python_pattern_subscription_sees_new_topics(gbroker: EmbeddedBroker, topic_name: str) -> None:
    from kafka import KafkaConsumer

    b = gbroker.bootstrap
    prefix = f"pat-{topic_name}"
    create_topics(b, NewTopic(f"{prefix}-first", 1, 1))
    c = KafkaConsumer(bootstrap_servers=b, group_id=f"g-{topic_name}", auto_offset_reset="earliest", enable_auto_commit=False, metadata_max_age_ms=500)
    try:
        c.subscribe(pattern=f"^{prefix}-.*")
        wait_for(lambda: (c.poll(timeout_ms=KP_POLL_MS), c.assignment())[1], 30, "the first topic assigned")
        # one created through the admin API, one auto-created by a producer
        create_topics(b, NewTopic(f"{prefix}-created", 2, 1))
        produce(b, f"{prefix}-created", 3, "c")
        produce(b, f"{prefix}-auto", 3, "a")
        got: list[str] = []

        def all_read() -> bool:
            for batch in c.poll(timeout_ms=KP_POLL_MS).values():
                got.extend(m.value.decode() for m in batch)
            return len(got) >= 6

        wait_for(all_read, 60, "records of the topics created after subscribing")
        assert sorted(got) == ["a0", "a1", "a2", "c0", "c1", "c2"]
        assert {tp.topic for tp in c.assignment()} == {f"{prefix}-first", f"{prefix}-created", f"{prefix}-auto"}
    finally:
        c.close()


def test_aiokafka_pattern_subscription_sees_new_topics(gbroker: EmbeddedBroker, topic_name: str) -> None:
    from aiokafka import AIOKafkaConsumer

    b = gbroker.bootstrap
    prefix = f"pat-{topic_name}"
    create_topics(b, NewTopic(f"{prefix}-first", 1, 1))

    async def run() -> tuple[list[str], set[str]]:
        c = AIOKafkaConsumer(bootstrap_servers=b, group_id=f"g-{topic_name}", auto_offset_reset="earliest", enable_auto_commit=False, metadata_max_age_ms=500)
        await c.start()
        try:
            c.subscribe(pattern=f"^{prefix}-.*")
            async with asyncio.timeout(30):
                while not c.assignment():
                    await c.getmany(timeout_ms=200)
            await asyncio.to_thread(create_topics, b, NewTopic(f"{prefix}-created", 2, 1))
            await asyncio.to_thread(produce, b, f"{prefix}-created", 3, "c")
            await asyncio.to_thread(produce, b, f"{prefix}-auto", 3, "a")
            got: list[str] = []
            async with asyncio.timeout(60):
                while len(got) < 6:
                    for batch in (await c.getmany(timeout_ms=200)).values():
                        got.extend(m.value.decode() for m in batch)
            return got, {tp.topic for tp in c.assignment()}
        finally:
            await c.stop()

    got, topics = asyncio.run(run())
    assert sorted(got) == ["a0", "a1", "a2", "c0", "c1", "c2"]
    assert topics == {f"{prefix}-first", f"{prefix}-created", f"{prefix}-auto"}


# -- (c) kafka-python transactional producer: send_offsets_to_transaction -----------------------


@pytest.mark.parametrize(
    ("metadata", "api_version"),
    [("group_metadata", None), ("group_id", None), ("group_id", (0, 11))],
    ids=["kip447-group-metadata", "group-id", "group-id-v0-requests"],
)
def test_kafka_python_send_offsets_to_transaction_commits(gbroker: EmbeddedBroker, topic_name: str, metadata: str, api_version: tuple[int, int] | None) -> None:
    """With the consumer's group metadata (KIP-447: TxnOffsetCommit carries member id and
    generation), with a bare group id (generation -1, no member), and pinned to the oldest
    request versions (FindCoordinator, AddOffsetsToTxn, TxnOffsetCommit v0)."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    b = gbroker.bootstrap
    src, dst, group = f"{topic_name}-in", f"{topic_name}-out", f"g-{topic_name}"
    create_topics(b, NewTopic(src, 2, 1), NewTopic(dst, 1, 1))
    values = produce(b, src, 10)
    consumer = KafkaConsumer(src, bootstrap_servers=b, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False, isolation_level="read_committed")
    producer = KafkaProducer(bootstrap_servers=b, transactional_id=f"tx-{topic_name}", **({"api_version": api_version} if api_version else {}))
    try:
        producer.init_transactions()
        got: list[Any] = []

        def read_all() -> bool:
            for batch in consumer.poll(timeout_ms=KP_POLL_MS).values():
                got.extend(batch)
            return len(got) >= 10

        wait_for(read_all, 30, "the input records")
        producer.begin_transaction()
        offsets: dict[Any, Any] = {}
        for m in got:
            producer.send(dst, value=m.value.upper())
            tp = TopicPartition(m.topic, m.partition)
            offsets[tp] = OffsetAndMetadata(max(m.offset + 1, offsets[tp].offset if tp in offsets else 0), "", -1)
        producer.send_offsets_to_transaction(offsets, consumer.group_metadata() if metadata == "group_metadata" else group)
        producer.commit_transaction()
    finally:
        producer.close()
        consumer.close()
    want = {tp.partition: om.offset for tp, om in offsets.items()}
    assert committed(b, group, src, 2) == want
    assert sum(want.values()) == 10
    # the output is committed (read_committed sees it)
    reader = KafkaConsumer(dst, bootstrap_servers=b, group_id=None, auto_offset_reset="earliest", isolation_level="read_committed", enable_auto_commit=False)
    try:
        out: list[str] = []

        def read_out() -> bool:
            for batch in reader.poll(timeout_ms=KP_POLL_MS).values():
                out.extend(m.value.decode() for m in batch)
            return len(out) >= 10

        wait_for(read_out, 30, "the transactional output")
        assert sorted(out) == sorted(v.upper() for v in values)
    finally:
        reader.close()


# -- (b) several kafka-python consumers joining one group at once ------------------------------


@pytest.mark.parametrize(
    ("initial_delay_ms", "first_alone"),
    [(0, False), (3000, False), (0, True)],
    ids=["no-initial-delay", "kafka-default-delay", "seven-join-a-stable-member"],
)
def test_kafka_python_consumers_joining_at_once_settle(tmp_path: Path, topic_name: str, initial_delay_ms: int, first_alone: bool) -> None:
    """Eight kafka-python consumers started together (KIP-394 MEMBER_ID_REQUIRED round trip,
    heartbeats answered REBALANCE_IN_PROGRESS while the group rebalances) end in one
    generation where every member owns partitions, and the group then stays there. In the
    last case seven join a group whose only member is Stable: it learns of the rebalance
    from its heartbeat's REBALANCE_IN_PROGRESS."""
    n, partitions = 8, 10
    with EmbeddedBroker(tmp_path / "data", group_initial_rebalance_delay_ms=initial_delay_ms) as broker:
        b = broker.bootstrap
        create_topics(b, NewTopic(topic_name, partitions, 1))
        members = [PollingMember(b, f"g-{topic_name}", topic_name) for _ in range(n)]
        try:
            if first_alone:
                members[0].thread.start()
                wait_for(lambda: members[0].assigned == list(range(partitions)), 60, "the first member to own everything")
            for m in members[1:] if first_alone else members:
                m.thread.start()

            def settled() -> bool:
                owned = sorted(p for m in members for p in m.assigned)
                same_generation = len({m.generation for m in members}) == 1
                return same_generation and all(m.assigned for m in members) and owned == list(range(partitions))

            wait_for(settled, 120, "every member to own partitions of one generation")
            generation = members[0].generation
            rebalances = [len(m.assignments) for m in members]
            # At most one generation per member arriving on its own (no rebalance loop).
            assert 1 <= generation <= n, generation
            values = produce(b, topic_name, 50)
            wait_for(lambda: sum(m.records for m in members) >= len(values), 60, "all records read")
            assert sum(m.records for m in members) == len(values)  # nobody read a partition twice
            # Still the same generation and the same assignments: the group stayed stable.
            assert {m.generation for m in members} == {generation}
            assert [len(m.assignments) for m in members] == rebalances
            assert describe_group(b, f"g-{topic_name}").state.name == "STABLE"
        finally:
            for m in members:
                m.close()
