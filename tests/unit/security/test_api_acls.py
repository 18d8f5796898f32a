"""The API -> ACL table and its helpers, one test per API family."""

from __future__ import annotations

import pytest

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages import API_MESSAGES
from riverbed.security.acl import (
    CLUSTER_NAME,
    AclBinding,
    AclOperation,
    AclPermissionType,
    Authorizer,
    PatternType,
    ResourceType,
)
from riverbed.security.api_acls import (
    ANY_RESOURCE,
    API_ACLS,
    AclCheck,
    OnDeny,
    acls_for,
    authorization_error,
    authorized_operations,
    check_init_producer_id,
    check_transactional_produce,
    metadata_access,
    offset_for_leader_epoch_topics,
    operations_bitfield,
    rule_passes,
    topics_creatable,
    visible_groups,
)

Op = AclOperation
RT = ResourceType
ALLOW = AclPermissionType.ALLOW
DENY = AclPermissionType.DENY
ME = "User:alice"
HOST = "10.0.0.1"


def acl(
    name: str,
    op: AclOperation,
    rt: ResourceType = RT.TOPIC,
    perm: AclPermissionType = ALLOW,
    pattern: PatternType = PatternType.LITERAL,
) -> AclBinding:
    return AclBinding(rt, name, pattern, ME, "*", op, perm)


def checks(api_key: int) -> set[tuple[AclOperation, ResourceType]]:
    entry = acls_for(api_key)
    assert entry is not None
    return {(c.operation, c.resource_type) for rule in entry.rules for c in rule.any_of}


def test_table_keys_and_names_agree_with_the_protocol_registry() -> None:
    for key, entry in API_ACLS.items():
        assert entry.api_key == key
        assert key in API_MESSAGES, entry.name
        assert API_MESSAGES[key][1] == entry.name + "Request"


def test_table_is_well_formed() -> None:
    for entry in API_ACLS.values():
        for rule in entry.rules:
            assert rule.any_of, entry.name
            if rule.on_deny is OnDeny.OMIT:
                assert rule.error == ErrorCode.NONE, entry.name
            else:
                assert rule.error != ErrorCode.NONE, entry.name
            for check in rule.any_of:
                assert check.operation not in (Op.ANY, Op.UNKNOWN)
                if check.resource_type == RT.CLUSTER:
                    assert check.target == CLUSTER_NAME


def test_client_facing_apis_are_all_listed() -> None:
    keys = "0 1 2 3 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 28 29 30 31 32 33"
    keys += " 36 37 42 44 47 60"
    for key in map(int, keys.split()):
        assert key in API_ACLS, key


def test_authorization_error() -> None:
    assert authorization_error(RT.TOPIC) == ErrorCode.TOPIC_AUTHORIZATION_FAILED
    assert authorization_error(RT.GROUP) == ErrorCode.GROUP_AUTHORIZATION_FAILED
    assert authorization_error(RT.CLUSTER) == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    assert authorization_error(RT.TRANSACTIONAL_ID) == (
        ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    )
    with pytest.raises(ValueError):
        authorization_error(RT.ANY)


# -- produce / fetch / offsets -------------------------------------------------------------------


def test_produce_family() -> None:
    assert checks(0) == {(Op.WRITE, RT.TRANSACTIONAL_ID), (Op.WRITE, RT.TOPIC)}
    a = Authorizer([acl("tx", Op.WRITE, RT.TRANSACTIONAL_ID)])
    assert check_transactional_produce(a, ME, HOST, "tx") == ErrorCode.NONE
    assert check_transactional_produce(a, ME, HOST, "other") == (
        ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    )
    assert check_transactional_produce(a, ME, HOST, None) == (
        ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    )


def test_fetch_and_list_offsets() -> None:
    assert checks(1) == {(Op.READ, RT.TOPIC), (Op.CLUSTER_ACTION, RT.CLUSTER)}
    assert checks(2) == {(Op.DESCRIBE, RT.TOPIC)}
    a = Authorizer([acl("t", Op.READ)])
    fetch_rule = API_ACLS[1].rules[0]
    assert rule_passes(a, ME, HOST, fetch_rule, "t")
    assert not rule_passes(a, ME, HOST, fetch_rule, "u")
    # READ implies DESCRIBE, so a reader may list offsets
    assert rule_passes(a, ME, HOST, API_ACLS[2].rules[0], "t")


def test_offset_for_leader_epoch() -> None:
    a = Authorizer([acl("t", Op.DESCRIBE)])
    assert offset_for_leader_epoch_topics(a, ME, HOST, ["t", "u"]) == {"t"}
    b = Authorizer([acl(CLUSTER_NAME, Op.CLUSTER_ACTION, RT.CLUSTER)])
    assert offset_for_leader_epoch_topics(b, ME, HOST, ["t", "u"]) == {"t", "u"}


# -- metadata and topic admin --------------------------------------------------------------------


def test_metadata_all_topics_omits_undescribable() -> None:
    assert checks(3) == {
        (Op.DESCRIBE, RT.TOPIC),
        (Op.CREATE, RT.CLUSTER),
        (Op.CREATE, RT.TOPIC),
        (Op.DESCRIBE, RT.CLUSTER),
    }
    a = Authorizer([acl("pub-", Op.DESCRIBE, pattern=PatternType.PREFIXED)])
    access = metadata_access(a, ME, HOST, ["pub-a", "pub-b", "secret"], all_topics=True)
    assert access.authorized == {"pub-a", "pub-b"}
    assert access.denied_describe == frozenset()  # silently left out


def test_metadata_named_topics_report_errors_and_auto_create() -> None:
    a = Authorizer(
        [
            acl("pub-", Op.DESCRIBE, pattern=PatternType.PREFIXED),
            acl("pub-new", Op.CREATE),
        ]
    )
    access = metadata_access(
        a,
        ME,
        HOST,
        ["pub-a", "pub-new", "pub-nope", "secret"],
        all_topics=False,
        existing=["pub-a"],
        auto_create=True,
    )
    assert access.authorized == {"pub-a", "pub-new"}
    assert access.denied_describe == {"secret"}
    assert access.denied_create == {"pub-nope"}
    no_create = metadata_access(
        a, ME, HOST, ["pub-nope"], all_topics=False, existing=[], auto_create=False
    )
    assert no_create.authorized == {"pub-nope"}  # answered UNKNOWN_TOPIC_OR_PARTITION later


def test_create_delete_topics_and_configs() -> None:
    assert checks(19) == {
        (Op.CREATE, RT.CLUSTER),
        (Op.CREATE, RT.TOPIC),
        (Op.DESCRIBE_CONFIGS, RT.TOPIC),
    }
    assert (Op.DELETE, RT.TOPIC) in checks(20)
    assert checks(21) == {(Op.DELETE, RT.TOPIC)}
    assert checks(37) == {(Op.ALTER, RT.TOPIC)}
    assert checks(32) == {(Op.DESCRIBE_CONFIGS, RT.TOPIC), (Op.DESCRIBE_CONFIGS, RT.CLUSTER)}
    assert checks(33) == {(Op.ALTER_CONFIGS, RT.TOPIC), (Op.ALTER_CONFIGS, RT.CLUSTER)}
    assert checks(44) == checks(33)
    topic_only = Authorizer([acl("a", Op.CREATE)])
    assert topics_creatable(topic_only, ME, HOST, ["a", "b"]) == {"a"}
    cluster = Authorizer([acl(CLUSTER_NAME, Op.CREATE, RT.CLUSTER)])
    assert topics_creatable(cluster, ME, HOST, ["a", "b"]) == {"a", "b"}


# -- groups --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [11, 12, 13, 14])
def test_membership_apis_need_read_group(key: int) -> None:
    entry = API_ACLS[key]
    assert checks(key) == {(Op.READ, RT.GROUP)}
    assert entry.rules[0].error == ErrorCode.GROUP_AUTHORIZATION_FAILED
    assert entry.rules[0].on_deny is OnDeny.FAIL_REQUEST


def test_offset_commit_fetch_delete() -> None:
    assert checks(8) == {(Op.READ, RT.GROUP), (Op.READ, RT.TOPIC)}
    assert checks(9) == {(Op.DESCRIBE, RT.GROUP), (Op.DESCRIBE, RT.TOPIC)}
    assert checks(47) == {(Op.DELETE, RT.GROUP), (Op.READ, RT.TOPIC)}
    a = Authorizer([acl("g", Op.READ, RT.GROUP)])
    commit_group = API_ACLS[8].rules[0]
    fetch_group = API_ACLS[9].rules[0]
    assert rule_passes(a, ME, HOST, commit_group, "g")
    assert rule_passes(a, ME, HOST, fetch_group, "g")  # READ implies DESCRIBE


def test_find_coordinator() -> None:
    assert checks(10) == {(Op.DESCRIBE, RT.GROUP), (Op.DESCRIBE, RT.TRANSACTIONAL_ID)}
    errors = {rule.error for rule in API_ACLS[10].rules}
    assert errors == {
        ErrorCode.GROUP_AUTHORIZATION_FAILED,
        ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }


def test_describe_list_delete_groups() -> None:
    assert checks(15) == {(Op.DESCRIBE, RT.GROUP)}
    assert checks(42) == {(Op.DELETE, RT.GROUP)}
    assert checks(16) == {(Op.DESCRIBE, RT.CLUSTER), (Op.DESCRIBE, RT.GROUP)}
    a = Authorizer([acl("b", Op.DESCRIBE, RT.GROUP)])
    assert visible_groups(a, ME, HOST, ["a", "b", "c"]) == ["b"]
    admin = Authorizer([acl(CLUSTER_NAME, Op.DESCRIBE, RT.CLUSTER)])
    assert visible_groups(admin, ME, HOST, ["a", "b", "c"]) == ["a", "b", "c"]


# -- transactions --------------------------------------------------------------------------------


def test_init_producer_id() -> None:
    assert checks(22) == {
        (Op.WRITE, RT.TRANSACTIONAL_ID),
        (Op.IDEMPOTENT_WRITE, RT.CLUSTER),
        (Op.WRITE, RT.TOPIC),
    }
    any_topic = [c for r in API_ACLS[22].rules for c in r.any_of if c.resource_type == RT.TOPIC]
    assert any_topic == [AclCheck(Op.WRITE, RT.TOPIC, ANY_RESOURCE)]
    nobody = Authorizer([])
    assert check_init_producer_id(nobody, ME, HOST, None) == (
        ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    )
    assert check_init_producer_id(nobody, ME, HOST, "tx") == (
        ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    )
    idem = Authorizer([acl(CLUSTER_NAME, Op.IDEMPOTENT_WRITE, RT.CLUSTER)])
    assert check_init_producer_id(idem, ME, HOST, None) == ErrorCode.NONE
    writer = Authorizer([acl("t", Op.WRITE)])  # KIP-679: WRITE on any topic suffices
    assert check_init_producer_id(writer, ME, HOST, None) == ErrorCode.NONE
    txn = Authorizer([acl("tx-", Op.WRITE, RT.TRANSACTIONAL_ID, pattern=PatternType.PREFIXED)])
    assert check_init_producer_id(txn, ME, HOST, "tx-1") == ErrorCode.NONE


def test_transaction_apis() -> None:
    assert checks(24) == {(Op.WRITE, RT.TRANSACTIONAL_ID), (Op.WRITE, RT.TOPIC)}
    assert checks(25) == {(Op.WRITE, RT.TRANSACTIONAL_ID), (Op.READ, RT.GROUP)}
    assert checks(26) == {(Op.WRITE, RT.TRANSACTIONAL_ID)}
    assert checks(28) == {(Op.WRITE, RT.TRANSACTIONAL_ID), (Op.READ, RT.GROUP), (Op.READ, RT.TOPIC)}
    # the transactional id is checked first, as in Kafka
    for key in (24, 25, 26, 28):
        assert API_ACLS[key].rules[0].error == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert checks(65) == {(Op.DESCRIBE, RT.TRANSACTIONAL_ID), (Op.DESCRIBE, RT.TOPIC)}
    assert checks(66) == {(Op.DESCRIBE, RT.TRANSACTIONAL_ID)}


# -- ACL and cluster administration --------------------------------------------------------------


def test_acl_apis() -> None:
    assert checks(29) == {(Op.DESCRIBE, RT.CLUSTER)}
    assert checks(30) == {(Op.ALTER, RT.CLUSTER)}
    assert checks(31) == {(Op.ALTER, RT.CLUSTER)}
    a = Authorizer([acl(CLUSTER_NAME, Op.ALTER, RT.CLUSTER)])
    assert rule_passes(a, ME, HOST, API_ACLS[30].rules[0])
    assert rule_passes(a, ME, HOST, API_ACLS[29].rules[0])  # ALTER implies DESCRIBE
    for key in (29, 30, 31):
        assert API_ACLS[key].rules[0].error == ErrorCode.CLUSTER_AUTHORIZATION_FAILED


def test_unauthenticated_and_cluster_apis() -> None:
    for key in (17, 18, 36):
        assert API_ACLS[key].rules == ()
    assert checks(50) == {(Op.DESCRIBE, RT.CLUSTER)}
    assert checks(51) == {(Op.ALTER, RT.CLUSTER)}
    assert checks(60) == {(Op.DESCRIBE, RT.CLUSTER)}
    assert API_ACLS[60].rules[0].on_deny is OnDeny.OMIT


def test_authorized_operations_bitfield() -> None:
    assert operations_bitfield([Op.READ, Op.DESCRIBE]) == (1 << 3) | (1 << 8)
    a = Authorizer([acl("t", Op.WRITE)])
    assert authorized_operations(a, ME, HOST, RT.TOPIC, "t") == (1 << 4) | (1 << 8)
    assert authorized_operations(a, ME, HOST, RT.TOPIC, "u") == 0
