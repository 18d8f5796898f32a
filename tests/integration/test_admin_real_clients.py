"""Admin calls through the real clients that expose them (until now tested only through
riverbed's own wire client): SCRAM user admin (confluent-kafka, kafka-python), DescribeAcls
(confluent-kafka, kafka-python, kafkajs), ListTransactions / DescribeTransactions /
DescribeProducers (kafka-python) and ConsumerGroupDescribe (confluent-kafka on a KIP-848
group).

No real-client API (checked against the installed versions): confluent-kafka 2.16 has no
ListTransactions / DescribeTransactions / DescribeProducers; kafkajs 2.2.4 has no SCRAM
admin, no transaction or producer listing and only the classic DescribeGroups; aiokafka 0.14's
admin client has none of these calls; kafka-python 3.0 has no ConsumerGroupDescribe.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupType,
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from riverbed.broker import ListenerConfig
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics

pytestmark = pytest.mark.integration

NODE_DIR = Path(__file__).parent / "node"


# -- SCRAM credentials ---------------------------------------------------------------------------


@pytest.fixture
def sasl_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    listeners = [ListenerConfig(name, name, "127.0.0.1", 0) for name in ("PLAINTEXT", "SASL_PLAINTEXT")]
    with EmbeddedBroker(tmp_path / "data", listeners=listeners, sasl_enabled_mechanisms=("SCRAM-SHA-256", "SCRAM-SHA-512")) as b:
        yield b


def logs_in(broker: EmbeddedBroker, mechanism: str, user: str, password: str) -> bool:
    """True when a librdkafka client authenticates with these credentials (it gets
    metadata), False when the broker refuses them (an authentication error)."""
    errors: list[KafkaError] = []
    conf = {
        "bootstrap.servers": broker.bootstrap_for("SASL_PLAINTEXT"),
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
        "error_cb": errors.append,
    }
    p = Producer(conf)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            p.list_topics(timeout=1)
            return True
        except KafkaException:
            p.poll(0)
            if any(e.code() == KafkaError._AUTHENTICATION for e in errors):
                return False
    raise AssertionError(f"neither logged in nor refused: {errors}")


def scram_described(admin: AdminClient, user: str) -> dict[str, int]:
    """describe_user_scram_credentials: {mechanism name: iterations}."""
    desc = admin.describe_user_scram_credentials([user])[user].result(10)
    return {info.mechanism.name: info.iterations for info in desc.scram_credential_infos}


def test_confluent_upserts_describes_and_deletes_scram_credentials(sasl_broker: EmbeddedBroker) -> None:
    admin = AdminClient({"bootstrap.servers": sasl_broker.bootstrap_for("PLAINTEXT")})
    sha256, sha512 = ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512
    futures = admin.alter_user_scram_credentials(
        [
            UserScramCredentialUpsertion("alice", ScramCredentialInfo(sha256, 8192), b"alice-pw", b"a-salt-of-16-bytes"),
            UserScramCredentialUpsertion("alice", ScramCredentialInfo(sha512, 4096), b"alice-pw"),
            UserScramCredentialUpsertion("bob", ScramCredentialInfo(sha512, 4096), b"bob-pw"),
        ]
    )
    assert {user: f.result(10) for user, f in futures.items()} == {"alice": None, "bob": None}
    assert scram_described(admin, "alice") == {"SCRAM_SHA_256": 8192, "SCRAM_SHA_512": 4096}
    everyone = admin.describe_user_scram_credentials().result(10)
    assert sorted(everyone) == ["alice", "bob"]
    with pytest.raises(KafkaException) as info:
        admin.describe_user_scram_credentials(["nobody"])["nobody"].result(10)
    assert info.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND

    # the credentials are the ones clients log in with
    assert logs_in(sasl_broker, "SCRAM-SHA-256", "alice", "alice-pw")
    assert logs_in(sasl_broker, "SCRAM-SHA-512", "alice", "alice-pw")
    assert not logs_in(sasl_broker, "SCRAM-SHA-256", "alice", "wrong")
    assert not logs_in(sasl_broker, "SCRAM-SHA-256", "bob", "bob-pw")  # bob has SHA-512 only

    # deleting one mechanism leaves the other
    futures = admin.alter_user_scram_credentials([UserScramCredentialDeletion("alice", sha256)])
    futures["alice"].result(10)
    assert scram_described(admin, "alice") == {"SCRAM_SHA_512": 4096}
    assert not logs_in(sasl_broker, "SCRAM-SHA-256", "alice", "alice-pw")
    assert logs_in(sasl_broker, "SCRAM-SHA-512", "alice", "alice-pw")


def test_kafka_python_upserts_describes_and_deletes_scram_credentials(sasl_broker: EmbeddedBroker) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import ScramMechanism as KScram
    from kafka.admin import UserScramCredentialDeletion as KDeletion
    from kafka.admin import UserScramCredentialUpsertion as KUpsertion

    admin = KafkaAdminClient(bootstrap_servers=sasl_broker.bootstrap_for("PLAINTEXT"))
    try:
        result = admin.alter_user_scram_credentials([KUpsertion("carol", KScram.SCRAM_SHA_512, "carol-pw", iterations=8192)])
        assert result == {"carol": None}
        desc = admin.describe_user_scram_credentials(["carol"])
        assert desc["carol"]["error"] is None
        assert [(c["mechanism"], c["iterations"]) for c in desc["carol"]["credential_infos"]] == [(KScram.SCRAM_SHA_512, 8192)]
        assert logs_in(sasl_broker, "SCRAM-SHA-512", "carol", "carol-pw")
        assert admin.alter_user_scram_credentials([KDeletion("carol", KScram.SCRAM_SHA_512)]) == {"carol": None}
        assert admin.describe_user_scram_credentials(["carol"])["carol"]["error"] is not None  # RESOURCE_NOT_FOUND
        assert not logs_in(sasl_broker, "SCRAM-SHA-512", "carol", "carol-pw")
    finally:
        admin.close()


# -- DescribeAcls --------------------------------------------------------------------------------


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path / "data", authorizer_enabled=True, super_users=("User:ANONYMOUS",)) as b:
        yield b


ACLS = [
    AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:billing", "*", AclOperation.READ, AclPermissionType.ALLOW),
    AclBinding(ResourceType.GROUP, "billing-", ResourcePatternType.PREFIXED, "User:billing", "*", AclOperation.READ, AclPermissionType.ALLOW),
    AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:mallory", "10.0.0.1", AclOperation.WRITE, AclPermissionType.DENY),
]
#: the same ACLs in Kafka's wire codes (resource TOPIC 2, GROUP 3; pattern LITERAL 3,
#: PREFIXED 4; operation READ 3, WRITE 4; permission DENY 2, ALLOW 3), as kafkajs reports them
ACLS_WIRE = sorted(
    [
        [2, "orders", 3, "User:billing", "*", 3, 3],
        [3, "billing-", 4, "User:billing", "*", 3, 3],
        [2, "orders", 3, "User:mallory", "10.0.0.1", 4, 2],
    ]
)


def any_filter(**narrow: Any) -> AclBindingFilter:
    args: dict[str, Any] = {
        "restype": ResourceType.ANY, "name": None, "resource_pattern_type": ResourcePatternType.ANY,
        "principal": None, "host": None, "operation": AclOperation.ANY, "permission_type": AclPermissionType.ANY,
    }
    args.update(narrow)
    return AclBindingFilter(**args)


def test_describe_acls_with_confluent_kafka_python_and_kafkajs(acl_broker: EmbeddedBroker) -> None:
    b = acl_broker.bootstrap
    admin = AdminClient({"bootstrap.servers": b})
    assert admin.describe_acls(any_filter()).result(10) == []
    for f in admin.create_acls(ACLS).values():
        assert f.result(10) is None

    # confluent-kafka
    assert sorted(admin.describe_acls(any_filter()).result(10)) == sorted(ACLS)
    assert sorted(admin.describe_acls(any_filter(principal="User:billing")).result(10)) == sorted(ACLS[:2])
    assert admin.describe_acls(any_filter(restype=ResourceType.GROUP)).result(10) == [ACLS[1]]
    # MATCH: the ACLs that apply to topic "orders" (literal, prefixed or wildcard)
    matching = admin.describe_acls(any_filter(restype=ResourceType.TOPIC, name="orders", resource_pattern_type=ResourcePatternType.MATCH)).result(10)
    assert sorted(matching) == sorted([ACLS[0], ACLS[2]])
    assert admin.describe_acls(any_filter(host="10.0.0.1")).result(10) == [ACLS[2]]

    # kafka-python
    from kafka import KafkaAdminClient
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
    )
    from kafka.admin import ResourceType as KResourceType
    from kafka.errors import NoError

    kp = KafkaAdminClient(bootstrap_servers=b)
    try:
        acls, error = kp.describe_acls(
            ACLFilter(principal=None, host=None, operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
                      resource_pattern=ResourcePatternFilter(KResourceType.ANY, None, ACLResourcePatternType.ANY))
        )
    finally:
        kp.close()
    assert error is NoError
    rows = sorted(
        [int(a.resource_pattern.resource_type), a.resource_pattern.resource_name, int(a.resource_pattern.pattern_type),
         a.principal, a.host, int(a.operation), int(a.permission_type)]
        for a in acls
    )
    assert rows == ACLS_WIRE

    # kafkajs
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "kafkajs").is_dir():
        pytest.skip("node or kafkajs not installed (scripts/setup dev installs them)")
    env = {**os.environ, "BOOTSTRAP": b}
    for principal, expected in ((None, ACLS_WIRE), ("User:mallory", [ACLS_WIRE[1]])):
        args = ["node", "describe_acls.js"] + ([principal] if principal else [])
        out = subprocess.run(args, cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert sorted(result["rows"]) == expected, principal


# -- ListTransactions, DescribeTransactions, DescribeProducers -----------------------------------


def test_kafka_python_lists_and_describes_transactions_and_producers(tmp_path: Path, topic_name: str) -> None:
    from kafka import KafkaAdminClient, TopicPartition

    with EmbeddedBroker(tmp_path / "data") as broker:
        b = broker.bootstrap
        create_topics(b, NewTopic(topic_name, 3, 1))
        plain = Producer({"bootstrap.servers": b, "enable.idempotence": False})
        for i in range(3):  # the open transaction starts at offset 3 of partition 0
            plain.produce(topic_name, value=f"plain-{i}".encode(), partition=0)
        assert plain.flush(10) == 0
        done = Producer({"bootstrap.servers": b, "transactional.id": "tx-done"})
        done.init_transactions(20)
        done.begin_transaction()
        done.produce(topic_name, value=b"done", partition=2)
        done.commit_transaction(20)
        ongoing = Producer({"bootstrap.servers": b, "transactional.id": "tx-open", "transaction.timeout.ms": 45000})
        ongoing.init_transactions(20)
        ongoing.begin_transaction()
        ongoing.produce(topic_name, value=b"open-0", partition=0)
        ongoing.produce(topic_name, value=b"open-1", partition=1)
        assert ongoing.flush(10) == 0

        kp = KafkaAdminClient(bootstrap_servers=b)
        try:
            listed = {t.transactional_id: t for ts in kp.list_transactions().values() for t in ts}
            assert {tid: t.state.value for tid, t in listed.items()} == {"tx-done": "CompleteCommit", "tx-open": "Ongoing"}
            only_open = [t.transactional_id for ts in kp.list_transactions(state_filters=["Ongoing"]).values() for t in ts]
            assert only_open == ["tx-open"]

            desc = kp.describe_transactions(["tx-open", "tx-done"])
            assert desc["tx-open"].state.value == "Ongoing"
            assert desc["tx-open"].transaction_timeout_ms == 45000
            assert desc["tx-open"].topic_partitions == {TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)}
            assert desc["tx-open"].producer_id == listed["tx-open"].producer_id
            assert desc["tx-done"].state.value == "CompleteCommit" and desc["tx-done"].topic_partitions == set()
            assert desc["tx-open"].producer_id != desc["tx-done"].producer_id

            parts = [TopicPartition(topic_name, p) for p in range(3)]
            producers = kp.describe_producers(parts)
            by_partition = {tp.partition: {(s.producer_id, s.current_transaction_start_offset) for s in st.active_producers} for tp, st in producers.items()}
            pid_open, pid_done = desc["tx-open"].producer_id, desc["tx-done"].producer_id
            assert (pid_open, 3) in by_partition[0]  # after the 3 plain records
            assert by_partition[1] == {(pid_open, 0)}
            assert by_partition[2] == {(pid_done, -1)}  # committed: no open transaction

            ongoing.commit_transaction(20)
            desc = kp.describe_transactions(["tx-open"])
            assert desc["tx-open"].state.value == "CompleteCommit"
            producers = kp.describe_producers([TopicPartition(topic_name, 0)])
            assert {(s.producer_id, s.current_transaction_start_offset) for s in producers[TopicPartition(topic_name, 0)].active_producers} >= {(pid_open, -1)}
        finally:
            kp.close()


# -- ConsumerGroupDescribe -----------------------------------------------------------------------


def test_confluent_describes_a_kip848_group(tmp_path: Path, topic_name: str) -> None:
    """librdkafka's describe_consumer_groups asks ConsumerGroupDescribe for a KIP-848 group:
    its type, the server-side assignor, each member's current and target assignment."""
    with EmbeddedBroker(tmp_path / "data") as broker:
        b = broker.bootstrap
        create_topics(b, NewTopic(topic_name, 5, 1))
        group = "kip848-" + topic_name
        consumers = [Consumer({"bootstrap.servers": b, "group.id": group, "group.protocol": "consumer", "client.id": f"c{i}"}) for i in range(2)]
        try:
            for c in consumers:
                c.subscribe([topic_name])
            deadline = time.monotonic() + 60
            mine: dict[str, list[int]] = {}
            while time.monotonic() < deadline:
                for c in consumers:
                    c.poll(0.1)
                mine = {f"c{i}": sorted(tp.partition for tp in c.assignment()) for i, c in enumerate(consumers)}
                if sorted(p for ps in mine.values() for p in ps) == list(range(5)) and all(mine.values()):
                    break
            else:
                pytest.fail(f"no stable assignment: {mine}")
            admin = AdminClient({"bootstrap.servers": b})
            desc = admin.describe_consumer_groups([group])[group].result(10)
            assert desc.type == ConsumerGroupType.CONSUMER
            assert desc.state == ConsumerGroupState.STABLE
            assert desc.partition_assignor == "uniform"
            assert not desc.is_simple_consumer_group
            described = {}
            for m in desc.members:
                assert m.target_assignment is not None  # only ConsumerGroupDescribe has it
                current = sorted(tp.partition for tp in m.assignment.topic_partitions)
                assert current == sorted(tp.partition for tp in m.target_assignment.topic_partitions)
                assert {tp.topic for tp in m.assignment.topic_partitions} == {topic_name}
                described[m.client_id] = current
            assert described == mine
            assert len({m.member_id for m in desc.members}) == 2
        finally:
            for c in consumers:
                c.close()


