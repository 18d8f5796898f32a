"""KIP-848 consumer groups survive a broker restart: their members, epochs and assignments
are written to __consumer_offsets with Kafka's ConsumerGroup* records and replayed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import NewTopic

from riverbed.coordinator.consumer_group_types import ConsumerGroupSnapshot
from riverbed.coordinator.offsets_log import OFFSETS_TOPIC
from riverbed.protocol.messages.consumer_group_describe import (
    ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse,
)
from riverbed.protocol.messages.consumer_group_heartbeat import (
    ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
)
from riverbed.testing import BrokerProcess, EmbeddedBroker

from .helpers import create_topics
from .wire import Wire

pytestmark = pytest.mark.integration

#: librdkafka reports these while the broker is down; anything else is a real error.
TRANSPORT_ERRORS = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}


def wait_for(cond: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return False


def describe(bootstrap: str, group: str) -> ConsumerGroupDescribeResponse.DescribedGroup:
    with Wire(bootstrap) as w:
        resp = w.request(ConsumerGroupDescribeRequest(group_ids=[group]), 0)
    assert isinstance(resp, ConsumerGroupDescribeResponse)
    (g,) = resp.groups
    return g


def produce(bootstrap: str, topic: str, values: list[str]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, v in enumerate(values):
        p.produce(topic, key=f"k{i}".encode(), value=v.encode())
    assert p.flush(20) == 0


def test_consumer_group_survives_kill_9(tmp_path: Path) -> None:
    """A librdkafka group.protocol=consumer member keeps its member id, epoch and partitions
    across a kill -9 of the broker, and goes on consuming without rejoining."""
    data = tmp_path / "data"
    # a short heartbeat interval, so the member heartbeats the restarted broker many times
    # within the test
    extra = ["--set", "group.consumer.session.timeout.ms=20000"]
    extra += ["--set", "group.consumer.heartbeat.interval.ms=300"]
    proc = BrokerProcess(data, extra=extra).start()
    b = proc.bootstrap
    topic, group = "kip848-restart", "kip848-restart-group"
    errors: list[Any] = []

    def on_error(err: KafkaError) -> None:
        if err.code() not in TRANSPORT_ERRORS:
            errors.append(err)

    stats: list[dict[str, Any]] = []

    def on_stats(text: str) -> None:
        stats.append(json.loads(text))

    def coordinator_answers() -> int:
        """Responses the member received from its group coordinator so far (heartbeats and
        offset commits), per librdkafka's latest statistics (its per-API request counts do
        not list ConsumerGroupHeartbeat)."""
        if not stats:
            return 0
        return sum(int(br.get("rx", 0)) for name, br in stats[-1]["brokers"].items() if name.startswith("GroupCoordinator"))

    consumer: Consumer | None = None
    try:
        create_topics(b, NewTopic(topic, 3, 1))
        first = [f"a{i}" for i in range(30)]
        produce(b, topic, first)
        consumer = Consumer(
            {
                "bootstrap.servers": b,
                "group.id": group,
                "group.protocol": "consumer",
                "auto.offset.reset": "earliest",
                "error_cb": on_error,
                "reconnect.backoff.ms": 100,
                "reconnect.backoff.max.ms": 500,
                "statistics.interval.ms": 200,
                "stats_cb": on_stats,
            }
        )
        consumer.subscribe([topic])
        got: list[str] = []

        def poll_until(n: int, timeout: float) -> None:
            assert consumer is not None
            deadline = time.monotonic() + timeout
            while len(got) < n and time.monotonic() < deadline:
                m = consumer.poll(0.2)
                if m is None:
                    continue
                if m.error() is not None:
                    errors.append(m.error())
                else:
                    got.append(m.value().decode())

        poll_until(len(first), 15)
        assert sorted(got) == sorted(first)

        # the member owns all three partitions, reconciled (Stable)
        def stable() -> bool:
            g = describe(b, group)
            return g.group_state == "Stable" and sum(
                len(tp.partitions) for m in g.members for tp in m.assignment.topic_partitions
            ) == 3

        assert wait_for(stable, 10)
        before = describe(b, group)
        (member,) = before.members

        proc.kill()  # no shutdown hook runs
        proc = BrokerProcess(data, port=proc.port, extra=extra).start()

        # (a) the group is known again, as it was
        after = describe(b, group)
        assert after.error_code == 0, after.error_message
        assert (after.group_epoch, after.assignment_epoch) == (
            before.group_epoch,
            before.assignment_epoch,
        )
        assert [(m.member_id, m.member_epoch) for m in after.members] == [
            (member.member_id, member.member_epoch)
        ]
        (restored,) = after.members
        assert restored.assignment == member.assignment
        assert restored.target_assignment == member.target_assignment
        assert restored.subscribed_topic_names == [topic]

        # (b) the same consumer goes on consuming, without rejoining (same member, same epoch)
        second = [f"b{i}" for i in range(30)]
        produce(b, topic, second)
        poll_until(len(first) + len(second), 15)
        assert sorted(got) == sorted(first + second)
        # keep polling until the member has had several answers from the restarted broker's
        # group coordinator (counted by librdkafka's statistics, not guessed from elapsed
        # time): a lost group would fence the member at its first heartbeat
        answers = coordinator_answers()
        deadline = time.monotonic() + 60
        while coordinator_answers() < answers + 5:
            assert time.monotonic() < deadline, "no answers from the group coordinator"
            poll_until(len(got) + 1, 0.5)
        assert sorted(got) == sorted(first + second)
        assert errors == []
        again = describe(b, group)
        assert [(m.member_id, m.member_epoch) for m in again.members] == [
            (member.member_id, member.member_epoch)
        ]
        assert again.group_epoch == before.group_epoch
    finally:
        if consumer is not None:
            consumer.close()
        proc.kill()


def heartbeat(w: Wire, **fields: Any) -> ConsumerGroupHeartbeatResponse:
    resp = w.request(ConsumerGroupHeartbeatRequest(**fields), 0)
    assert isinstance(resp, ConsumerGroupHeartbeatResponse)
    assert resp.error_code == 0, resp.error_message
    return resp


def snapshot(broker: EmbeddedBroker, group: str) -> ConsumerGroupSnapshot | None:
    s = broker.call(broker.broker.groups.consumer.snapshot, group)
    assert s is None or isinstance(s, ConsumerGroupSnapshot)
    # resolved subscription regexes are not persisted (re-resolved at the next heartbeat)
    return None if s is None else replace(s, resolved_regexes=(), resolved_at_ms=-1)


def test_departed_members_and_deleted_groups_stay_gone(tmp_path: Path) -> None:
    """Members that left are tombstoned, the rest of the group restored exactly; a deleted
    group does not come back."""
    data = tmp_path / "data"
    settings = {"consumer_session_timeout_ms": 60_000}
    join = {"member_epoch": 0, "rebalance_timeout_ms": 30_000, "topic_partitions": []}
    with EmbeddedBroker(data, **settings) as broker:
        create_topics(broker.bootstrap, NewTopic("t", 4, 1))
        with Wire(broker.bootstrap) as w:
            a = heartbeat(w, group_id="g", subscribed_topic_names=["t"], **join)
            b = heartbeat(w, group_id="g", subscribed_topic_names=["t"], **join)
            heartbeat(w, group_id="other", subscribed_topic_names=["t"], **join)
            heartbeat(w, group_id="g", member_id=a.member_id, member_epoch=a.member_epoch)
            heartbeat(w, group_id="g", member_id=b.member_id, member_epoch=-1)  # b leaves
        kept = snapshot(broker, "g")
        assert kept is not None and [m.member_id for m in kept.members] == [a.member_id]
        other = snapshot(broker, "other")
    with EmbeddedBroker(data, **settings) as broker:
        assert snapshot(broker, "g") == kept
        assert snapshot(broker, "other") == other
        # the last member leaves, then the (empty) group is deleted
        with Wire(broker.bootstrap) as w:
            heartbeat(w, group_id="g", member_id=a.member_id, member_epoch=-1)
        assert broker.call(broker.broker.groups.consumer.delete_group, "g") == 0
    with EmbeddedBroker(data, **settings) as broker:
        assert snapshot(broker, "g") is None
        assert snapshot(broker, "other") == other
        assert broker.call(broker.broker.topics.get, OFFSETS_TOPIC) is not None
