"""Share groups (KIP-932) with confluent-kafka's ShareConsumer (librdkafka 2.16) against a
real broker: work spread over consumers, redelivery after a consumer is killed -9,
dead-letter topics, admin APIs and Kafka's error codes for bad input."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import (
    AcknowledgeType,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicCollection,
)
from confluent_kafka.admin import AdminClient

from riverbed.cli.wire_client import WireClient
from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.consumer_group_heartbeat import ConsumerGroupHeartbeatRequest
from riverbed.protocol.messages.list_groups import ListGroupsRequest
from riverbed.protocol.messages.share_acknowledge import ShareAcknowledgeRequest
from riverbed.protocol.messages.share_fetch import ShareFetchRequest
from riverbed.protocol.messages.share_group_describe import ShareGroupDescribeRequest
from riverbed.protocol.messages.share_group_heartbeat import ShareGroupHeartbeatRequest
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker

from .share_helpers import (
    Worker,
    create_topic,
    produce,
    set_group_configs,
    share_consumer,
    wait_for,
)


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedBroker(tmp_path_factory.mktemp("share"), **FIXTURE_DEFAULTS) as b:
        yield b.bootstrap


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_three_consumers_drain_a_partition_and_share_the_work(bootstrap: str) -> None:
    topic, group = _name("jobs"), _name("workers")
    create_topic(bootstrap, topic)
    set_group_configs(bootstrap, group, {"share.auto.offset.reset": "earliest"})
    workers = [Worker(share_consumer(bootstrap, group, topic, **{"max.poll.records": "100"})) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        with WireClient(bootstrap) as wc:  # all three are members before the jobs arrive

            def joined() -> bool:
                g = wc.request(ShareGroupDescribeRequest(group_ids=[group]), 1).groups[0]
                return g.error_code == 0 and sum(1 for m in g.members if m.assignment.topic_partitions) == 3

            wait_for(joined, 20, "three members")
        produce(bootstrap, topic, 3000)
        wait_for(lambda: len({o for w in workers for o, _ in w.seen}) >= 3000, 30, "3,000 records")
    finally:
        for w in workers:
            w.stop.set()
        for w in workers:
            w.join(15)
    offsets = Counter(o for w in workers for o, _ in w.seen)
    assert sorted(offsets) == list(range(3000))
    assert all(n == 1 for n in offsets.values()), "a record was delivered twice"
    assert all(w.seen for w in workers), [len(w.seen) for w in workers]
    assert not any(w.errors for w in workers)
    # the group is known to the admin APIs, with nothing left to do
    with WireClient(bootstrap) as wc:
        listed = wc.request(ListGroupsRequest(types_filter=["Share"]), 5)
        assert (group, "share", "share") in [
            (g.group_id, g.protocol_type, g.group_type) for g in listed.groups
        ]
        none = wc.request(ListGroupsRequest(types_filter=["consumer"]), 5)
        assert group not in [g.group_id for g in none.groups]


_KILLED = textwrap.dedent(
    """
    import sys, time
    from confluent_kafka import ShareConsumer
    c = ShareConsumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "share.acknowledgement.mode": "explicit"})
    c.subscribe([sys.argv[3]])
    while True:
        msgs = c.poll(1.0)
        if msgs:
            print(",".join(str(m.offset()) for m in msgs), flush=True)
            time.sleep(600)  # holds them, never acknowledges
    """
)


def test_records_of_a_consumer_killed_9_are_redelivered_after_the_lock(
    bootstrap: str, tmp_path: Path
) -> None:
    topic, group = _name("jobs"), _name("killed")
    create_topic(bootstrap, topic)
    set_group_configs(
        bootstrap,
        group,
        {"share.auto.offset.reset": "earliest", "share.record.lock.duration.ms": "1500"},
    )
    produce(bootstrap, topic, 50)
    script = tmp_path / "hold.py"
    script.write_text(_KILLED)
    proc = subprocess.Popen(
        [sys.executable, str(script), bootstrap, group, topic], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        held = [int(x) for x in proc.stdout.readline().strip().split(",")]
        assert held
    finally:
        proc.kill()  # kill -9 while holding the records
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    w = Worker(
        share_consumer(bootstrap, group, topic, **{"share.acknowledgement.mode": "explicit"}),
        lambda m: AcknowledgeType.ACCEPT,
    )
    w.start()
    try:
        wait_for(lambda: {o for o, _ in w.seen} >= set(range(50)), 20, "every record")
    finally:
        w.stop.set()
        w.join(15)
    counts = dict(w.seen)
    assert all(counts[o] == 2 for o in held), "held records come back with delivery count 2"
    assert all(counts[o] == 1 for o in range(50) if o not in held)


def _dlq_records(bootstrap: str, dlq: str, n: int) -> list[Message]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": _name("dlq-reader"),
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([dlq])
    out: list[Message] = []
    try:
        wait_for(
            lambda: (
                bool(out.extend(m for m in c.consume(100, 0.2) if not m.error())) or len(out) >= n
            ),
            20,
            f"{n} dead letters",
        )
    finally:
        c.close()
    return out


def test_rejected_and_over_limit_records_end_in_the_dead_letter_topic(bootstrap: str) -> None:
    topic, group = _name("jobs"), _name("dlq")
    dlq = "dlq." + topic
    create_topic(bootstrap, topic)
    set_group_configs(
        bootstrap,
        group,
        {
            "share.auto.offset.reset": "earliest",
            "share.delivery.count.limit": "2",
            "errors.deadletterqueue.topic.name": dlq,
        },
    )
    produce(bootstrap, topic, 20)

    def handle(m: Message) -> AcknowledgeType:
        if m.offset() == 3:
            return AcknowledgeType.REJECT  # a poison job
        if m.offset() == 7:
            return AcknowledgeType.RELEASE  # fails every time: over the limit after 2
        return AcknowledgeType.ACCEPT

    w = Worker(
        share_consumer(bootstrap, group, topic, **{"share.acknowledgement.mode": "explicit"}),
        handle,
    )
    w.start()
    try:
        letters = _dlq_records(bootstrap, dlq, 2)
    finally:
        w.stop.set()
        w.join(15)
    by_offset = {int(dict(m.headers() or [])["__dlq.errors.offset"]): m for m in letters}
    assert sorted(by_offset) == [3, 7]
    h3 = {k: v.decode() for k, v in (by_offset[3].headers() or []) if v is not None}
    assert h3["__dlq.errors.group.id"] == group and h3["__dlq.errors.topic"] == topic
    assert h3["__dlq.errors.partition"] == "0" and h3["__dlq.errors.reason"] == "rejected"
    assert h3["__dlq.errors.delivery.count"] == "1"
    assert by_offset[3].value() == b"job-3" and by_offset[3].key() == b"3"
    h7 = {k: v.decode() for k, v in (by_offset[7].headers() or []) if v is not None}
    assert h7["__dlq.errors.delivery.count"] == "2" and "limit" in h7["__dlq.errors.reason"]
    assert [d for o, d in w.seen if o == 7] == [1, 2]


def test_bad_input_gets_kafkas_error_codes(bootstrap: str) -> None:
    topic, group = _name("jobs"), _name("bad")
    create_topic(bootstrap, topic)
    produce(bootstrap, topic, 5)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tid = admin.describe_topics(TopicCollection([topic]))[topic].result().topic_id
    topic_id = uuid.UUID(
        bytes=tid.get_most_significant_bits().to_bytes(8, "big", signed=True)
        + tid.get_least_significant_bits().to_bytes(8, "big", signed=True)
    )
    member = uuid.uuid4().hex
    with WireClient(bootstrap) as wc:
        hb = wc.request(
            ShareGroupHeartbeatRequest(
                group_id=group, member_id=member, member_epoch=0, subscribed_topic_names=[topic]
            ),
            1,
        )
        assert hb.error_code == 0 and hb.member_epoch > 0
        fenced = wc.request(
            ShareGroupHeartbeatRequest(
                group_id=group, member_id=member, member_epoch=hb.member_epoch + 7
            ),
            1,
        )
        assert fenced.error_code == ErrorCode.FENCED_MEMBER_EPOCH
        # sessions: unknown, stale epoch
        fetch = ShareFetchRequest.FetchTopic(
            topic_id=topic_id, partitions=[ShareFetchRequest.FetchPartition(partition_index=0)]
        )
        r = wc.request(
            ShareFetchRequest(
                group_id=group,
                member_id=member,
                share_session_epoch=5,
                max_records=10,
                topics=[fetch],
            ),
            1,
        )
        assert r.error_code == ErrorCode.SHARE_SESSION_NOT_FOUND
        r = wc.request(
            ShareFetchRequest(
                group_id=group,
                member_id=member,
                share_session_epoch=0,
                max_records=10,
                max_wait_ms=0,
                topics=[fetch],
            ),
            1,
        )
        assert r.error_code == 0
        r = wc.request(
            ShareFetchRequest(
                group_id=group, member_id=member, share_session_epoch=9, max_records=10
            ),
            1,
        )
        assert r.error_code == ErrorCode.INVALID_SHARE_SESSION_EPOCH
        # acknowledging records this member never acquired (latest: none are)
        ack = ShareAcknowledgeRequest.AcknowledgeTopic(
            topic_id=topic_id,
            partitions=[
                ShareAcknowledgeRequest.AcknowledgePartition(
                    0, [ShareAcknowledgeRequest.AcknowledgementBatch(0, 2, [1])]
                )
            ],
        )
        a = wc.request(
            ShareAcknowledgeRequest(
                group_id=group, member_id=member, share_session_epoch=1, topics=[ack]
            ),
            1,
        )
        assert a.error_code == 0
        assert a.responses[0].partitions[0].error_code == ErrorCode.INVALID_RECORD_STATE
        # the share group id is not a consumer group, and a consumer group is not a share group
        c = wc.request(
            ConsumerGroupHeartbeatRequest(
                group_id=group,
                member_id=uuid.uuid4().hex,
                member_epoch=0,
                rebalance_timeout_ms=1000,
                subscribed_topic_names=[topic],
            ),
            1,
        )
        assert c.error_code == ErrorCode.GROUP_ID_NOT_FOUND
        described = wc.request(ShareGroupDescribeRequest(group_ids=[group, _name("nope")]), 1)
        first, missing = described.groups
        assert (
            first.error_code == 0
            and first.group_state == "Stable"
            and [m.member_id for m in first.members] == [member]
        )
        assert missing.error_code == ErrorCode.GROUP_ID_NOT_FOUND
    # invalid group configs
    for bad in (
        {"share.delivery.count.limit": "1"},
        {"errors.deadletterqueue.topic.name": "not-dlq"},
        {"share.no.such": "1"},
    ):
        with pytest.raises(KafkaException) as info:
            set_group_configs(bootstrap, group, bad)
        assert info.value.args[0].code() == KafkaError.INVALID_CONFIG, bad


def test_cli_list_describe_reset_delete(bootstrap: str, capsys: pytest.CaptureFixture[str]) -> None:
    from riverbed.cli.main import main

    topic, group = _name("jobs"), _name("cli")
    create_topic(bootstrap, topic)
    set_group_configs(bootstrap, group, {"share.auto.offset.reset": "earliest"})
    produce(bootstrap, topic, 10)
    c = share_consumer(bootstrap, group, topic, **{"share.acknowledgement.mode": "explicit"})
    seen: list[Message] = []
    wait_for(lambda: bool(seen.extend(c.poll(0.2))) or len(seen) >= 10, 20, "10 records")
    for m in seen[:4]:
        c.acknowledge(m, AcknowledgeType.ACCEPT)
    for m in seen[4:]:
        c.acknowledge(m, AcknowledgeType.RELEASE)
    c.commit_sync(10)
    assert main(["share-group", "list", "-b", bootstrap]) == 0
    out = capsys.readouterr().out
    assert any(line.split()[:3] == [group, "Stable", "1"] for line in out.splitlines()), out
    assert main(["share-group", "describe", group, "-b", bootstrap]) == 0
    out = capsys.readouterr().out
    assert f"{topic}-0" in out and "Total lag: 6" in out, out
    row = next(line.split() for line in out.splitlines() if line.startswith(topic + " "))
    assert row[1:] == ["0", "4", "6", "0", "6", "0"], out  # start 4, lag 6, none acquired, 6 available again
    assert (
        main(
            [
                "share-group",
                "reset-offsets",
                group,
                "--topic",
                topic,
                "--to-latest",
                "--execute",
                "-b",
                bootstrap,
            ]
        )
        == 1
    )
    assert "NON_EMPTY_GROUP" in capsys.readouterr().err
    c.close()
    wait_for(
        lambda: (
            main(
                [
                    "share-group",
                    "reset-offsets",
                    group,
                    "--topic",
                    topic,
                    "--to-latest",
                    "--execute",
                    "-b",
                    bootstrap,
                ]
            )
            == 0
        ),
        10,
        "an empty group",
    )
    capsys.readouterr()
    assert main(["share-group", "describe", group, "-b", bootstrap]) == 0
    assert "Total lag: 0" in capsys.readouterr().out
    assert main(["share-group", "delete", group, "-b", bootstrap]) == 0
    capsys.readouterr()
    assert main(["share-group", "describe", group, "-b", bootstrap]) == 1
    assert "GROUP_ID_NOT_FOUND" in capsys.readouterr().err


def test_group_configs_are_described_and_kept(bootstrap: str) -> None:
    from confluent_kafka.admin import ConfigResource, ResourceType

    group = _name("cfg")
    set_group_configs(bootstrap, group, {"share.record.lock.duration.ms": "15000", "share.isolation.level": "read_committed"})
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ResourceType.GROUP, group)
    entries = admin.describe_configs([res])[res].result(timeout=10)
    assert entries["share.record.lock.duration.ms"].value == "15000"
    assert not entries["share.record.lock.duration.ms"].is_default
    assert entries["share.isolation.level"].value == "read_committed"
    assert entries["share.delivery.count.limit"].value == "5" and entries["share.delivery.count.limit"].is_default
    assert entries["share.auto.offset.reset"].value == "latest"


def test_read_committed_share_group_skips_aborted_and_open_transactions(bootstrap: str) -> None:
    from confluent_kafka import Producer

    topic, group = _name("txn-jobs"), _name("rc")
    create_topic(bootstrap, topic)
    set_group_configs(bootstrap, group, {"share.auto.offset.reset": "earliest", "share.isolation.level": "read_committed"})
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": _name("tx")})
    p.init_transactions(10)
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, value=f"aborted-{i}".encode())
    p.flush(10)
    p.abort_transaction(10)
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, value=f"committed-{i}".encode())
    p.commit_transaction(10)
    p.begin_transaction()
    p.produce(topic, value=b"open")  # never committed while the consumer runs
    p.flush(10)
    c = share_consumer(bootstrap, group, topic)
    values: list[bytes] = []
    wait_for(lambda: bool(values.extend(m.value() or b"" for m in c.poll(0.2) if m.error() is None)) or len(values) >= 5, 20, "the committed records")
    values += [m.value() or b"" for m in c.poll(0.5) if m.error() is None]
    c.close()
    assert sorted(values) == [f"committed-{i}".encode() for i in range(5)]
    p.abort_transaction(10)


def test_admin_errors_for_share_groups(bootstrap: str) -> None:
    from riverbed.protocol.messages.alter_share_group_offsets import (
        AlterShareGroupOffsetsRequest as Alter,
    )
    from riverbed.protocol.messages.delete_groups import DeleteGroupsRequest
    from riverbed.protocol.messages.describe_share_group_offsets import (
        DescribeShareGroupOffsetsRequest as DescOff,
    )
    from riverbed.protocol.messages.join_group import JoinGroupRequest

    topic, group = _name("jobs"), _name("admin")
    create_topic(bootstrap, topic)
    produce(bootstrap, topic, 5)
    member = uuid.uuid4().hex
    with WireClient(bootstrap) as wc:
        wc.request(ShareGroupHeartbeatRequest(group_id=group, member_id=member, member_epoch=0, subscribed_topic_names=[topic]), 1)
        deleted = wc.request(DeleteGroupsRequest(groups_names=[group]), 2)
        assert deleted.results[0].error_code == ErrorCode.NON_EMPTY_GROUP
        alter = Alter(group_id=group, topics=[Alter.AlterShareGroupOffsetsRequestTopic(topic, [Alter.AlterShareGroupOffsetsRequestPartition(0, 0)])])
        assert wc.request(alter, 0).error_code == ErrorCode.NON_EMPTY_GROUP
        join = JoinGroupRequest(group_id=group, session_timeout_ms=10000, rebalance_timeout_ms=10000, member_id="", protocol_type="consumer", protocols=[JoinGroupRequest.JoinGroupRequestProtocol("range", b"")])
        assert wc.request(join, 5).error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        left = wc.request(ShareGroupHeartbeatRequest(group_id=group, member_id=member, member_epoch=-1), 1)
        assert left.error_code == 0
        out_of_range = Alter(group_id=group, topics=[Alter.AlterShareGroupOffsetsRequestTopic(topic, [Alter.AlterShareGroupOffsetsRequestPartition(0, 99)])])
        r = wc.request(out_of_range, 0)
        assert r.error_code == 0 and r.responses[0].partitions[0].error_code == ErrorCode.OFFSET_OUT_OF_RANGE
        ok = Alter(group_id=group, topics=[Alter.AlterShareGroupOffsetsRequestTopic(topic, [Alter.AlterShareGroupOffsetsRequestPartition(0, 2)])])
        assert wc.request(ok, 0).responses[0].partitions[0].error_code == 0
        offsets = wc.request(DescOff(groups=[DescOff.DescribeShareGroupOffsetsRequestGroup(group_id=group, topics=None)]), 1)
        (t,) = offsets.groups[0].topics
        assert (t.topic_name, t.partitions[0].start_offset, t.partitions[0].lag) == (topic, 2, 3)
        missing = wc.request(DescOff(groups=[DescOff.DescribeShareGroupOffsetsRequestGroup(group_id=_name("none"), topics=None)]), 1)
        assert missing.groups[0].error_code == ErrorCode.GROUP_ID_NOT_FOUND
        assert wc.request(DeleteGroupsRequest(groups_names=[group]), 2).results[0].error_code == 0
        listed = wc.request(ListGroupsRequest(types_filter=["share"]), 5)
        assert group not in [g.group_id for g in listed.groups]


def test_deleting_a_topic_drops_its_share_state(bootstrap: str) -> None:
    from riverbed.protocol.share_extension import DescribeShareStateRequest

    topic, group = _name("gone"), _name("gone")
    create_topic(bootstrap, topic)
    set_group_configs(bootstrap, group, {"share.auto.offset.reset": "earliest"})
    produce(bootstrap, topic, 3)
    c = share_consumer(bootstrap, group, topic)
    seen: list[Message] = []
    wait_for(lambda: bool(seen.extend(c.poll(0.2))) or len(seen) >= 3, 20, "3 records")
    c.close()
    with WireClient(bootstrap) as wc:
        assert [p.topic for p in wc.request_extension(DescribeShareStateRequest(group)).partitions] == [topic]
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.delete_topics([topic])[topic].result(10)
        assert wc.request_extension(DescribeShareStateRequest(group)).partitions == []


def test_share_apis_need_group_acls(tmp_path: Path) -> None:
    """With the authorizer on and no ACL for User:ANONYMOUS, every share API is refused with
    Kafka's authorization errors, before any state is touched."""
    from riverbed.protocol.messages.describe_share_group_offsets import (
        DescribeShareGroupOffsetsRequest as DescOff,
    )

    with EmbeddedBroker(tmp_path / "acl", authorizer_enabled=True, **FIXTURE_DEFAULTS) as b, WireClient(b.bootstrap) as wc:
        member = uuid.uuid4().hex
        hb = wc.request(ShareGroupHeartbeatRequest(group_id="g", member_id=member, member_epoch=0, subscribed_topic_names=["t"]), 1)
        assert hb.error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
        fetch = wc.request(ShareFetchRequest(group_id="g", member_id=member, share_session_epoch=0, max_records=10), 1)
        assert fetch.error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
        ack = wc.request(ShareAcknowledgeRequest(group_id="g", member_id=member, share_session_epoch=1), 1)
        assert ack.error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
        described = wc.request(ShareGroupDescribeRequest(group_ids=["g"]), 1)
        assert described.groups[0].error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
        offsets = wc.request(DescOff(groups=[DescOff.DescribeShareGroupOffsetsRequestGroup(group_id="g", topics=None)]), 1)
        assert offsets.groups[0].error_code == ErrorCode.GROUP_AUTHORIZATION_FAILED
        assert not b.broker.shares.coordinator.groups
