"""The ACL model and authorizer: Kafka's semantics, filters, validation, and an index-vs-naive
property test."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.protocol.errors import ErrorCode
from riverbed.security.acl import (
    CLUSTER_NAME,
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AclSource,
    AclValidationError,
    Authorizer,
    PatternType,
    ResourceType,
    StaticAcls,
    operation_supported,
    validate_binding,
    validate_filter,
)

ALLOW = AclPermissionType.ALLOW
DENY = AclPermissionType.DENY
Op = AclOperation
RT = ResourceType
PT = PatternType

ALICE = "User:alice"
BOB = "User:bob"
HOST = "10.0.0.1"


def acl(
    name: str = "orders",
    op: AclOperation = Op.READ,
    perm: AclPermissionType = ALLOW,
    *,
    rt: ResourceType = RT.TOPIC,
    pattern: PatternType = PT.LITERAL,
    principal: str = ALICE,
    host: str = "*",
) -> AclBinding:
    return AclBinding(rt, name, pattern, principal, host, op, perm)


def authz(*bindings: AclBinding, **kwargs: object) -> Authorizer:
    return Authorizer(list(bindings), **kwargs)  # type: ignore[arg-type]


def can(
    a: Authorizer,
    op: AclOperation,
    name: str = "orders",
    *,
    rt: ResourceType = RT.TOPIC,
    principal: str = ALICE,
    host: str = HOST,
) -> bool:
    return a.authorize(principal, host, op, rt, name)


# -- wire ids ------------------------------------------------------------------------------------


def test_enum_wire_ids_match_kafka() -> None:
    assert [(m.name, m.value) for m in ResourceType] == [
        ("UNKNOWN", 0),
        ("ANY", 1),
        ("TOPIC", 2),
        ("GROUP", 3),
        ("CLUSTER", 4),
        ("TRANSACTIONAL_ID", 5),
        ("DELEGATION_TOKEN", 6),
        ("USER", 7),
    ]
    assert [(m.name, m.value) for m in PatternType] == [
        ("UNKNOWN", 0),
        ("ANY", 1),
        ("MATCH", 2),
        ("LITERAL", 3),
        ("PREFIXED", 4),
    ]
    assert [(m.name, m.value) for m in AclOperation] == [
        ("UNKNOWN", 0),
        ("ANY", 1),
        ("ALL", 2),
        ("READ", 3),
        ("WRITE", 4),
        ("CREATE", 5),
        ("DELETE", 6),
        ("ALTER", 7),
        ("DESCRIBE", 8),
        ("CLUSTER_ACTION", 9),
        ("DESCRIBE_CONFIGS", 10),
        ("ALTER_CONFIGS", 11),
        ("IDEMPOTENT_WRITE", 12),
        ("CREATE_TOKENS", 13),
        ("DESCRIBE_TOKENS", 14),
    ]
    assert [(m.name, m.value) for m in AclPermissionType] == [
        ("UNKNOWN", 0),
        ("ANY", 1),
        ("DENY", 2),
        ("ALLOW", 3),
    ]


# -- decision rules ------------------------------------------------------------------------------


def test_no_acls_uses_allow_everyone_flag() -> None:
    assert not can(authz(), Op.READ)
    assert can(authz(allow_everyone_if_no_acl_found=True), Op.READ)


def test_acls_on_resource_for_other_principal_disable_allow_everyone() -> None:
    a = authz(acl(principal=BOB), allow_everyone_if_no_acl_found=True)
    assert not can(a, Op.READ)  # an ACL exists for the resource, none matches alice
    assert can(a, Op.READ, "payments")  # no ACL on this one
    assert can(a, Op.READ, principal=BOB)


def test_allow_exact_operation_only() -> None:
    a = authz(acl(op=Op.READ))
    assert can(a, Op.READ)
    assert not can(a, Op.WRITE)
    assert not can(a, Op.READ, "other")
    assert not can(a, Op.READ, principal=BOB)


def test_deny_wins_over_allow() -> None:
    a = authz(acl(op=Op.READ), acl(op=Op.READ, perm=DENY))
    assert not can(a, Op.READ)


def test_deny_all_denies_everything_and_allow_all_allows_everything() -> None:
    a = authz(acl(op=Op.ALL), acl(op=Op.ALL, perm=DENY, principal=BOB))
    for op in (Op.READ, Op.WRITE, Op.DESCRIBE, Op.ALTER_CONFIGS, Op.DELETE):
        assert can(a, op)
        assert not can(a, op, principal=BOB)


def test_deny_all_beats_allow_specific() -> None:
    a = authz(acl(op=Op.WRITE), acl(op=Op.ALL, perm=DENY))
    assert not can(a, Op.WRITE)


@pytest.mark.parametrize("granting", [Op.READ, Op.WRITE, Op.DELETE, Op.ALTER, Op.DESCRIBE])
def test_describe_implied(granting: AclOperation) -> None:
    assert can(authz(acl(op=granting)), Op.DESCRIBE)


@pytest.mark.parametrize("granting", [Op.CREATE, Op.ALTER_CONFIGS, Op.DESCRIBE_CONFIGS])
def test_describe_not_implied_by_others(granting: AclOperation) -> None:
    assert not can(authz(acl(op=granting)), Op.DESCRIBE)


def test_describe_configs_implied_by_alter_configs_only() -> None:
    assert can(authz(acl(op=Op.ALTER_CONFIGS)), Op.DESCRIBE_CONFIGS)
    assert not can(authz(acl(op=Op.ALTER)), Op.DESCRIBE_CONFIGS)
    assert not can(authz(acl(op=Op.DESCRIBE_CONFIGS)), Op.ALTER_CONFIGS)


def test_implication_is_one_way() -> None:
    assert not can(authz(acl(op=Op.DESCRIBE)), Op.READ)


def test_deny_is_not_widened_by_implication() -> None:
    # DENY READ does not deny DESCRIBE; ALLOW WRITE still implies it.
    a = authz(acl(op=Op.WRITE), acl(op=Op.READ, perm=DENY))
    assert can(a, Op.DESCRIBE)
    assert not can(a, Op.READ)
    # but DENY DESCRIBE does deny DESCRIBE implied by READ
    b = authz(acl(op=Op.READ), acl(op=Op.DESCRIBE, perm=DENY))
    assert not can(b, Op.DESCRIBE)
    assert can(b, Op.READ)


def test_literal_wildcard_resource() -> None:
    a = authz(acl("*", Op.READ))
    assert can(a, Op.READ, "anything")
    assert can(a, Op.READ, "*")
    assert not can(a, Op.READ, "anything", rt=RT.GROUP)


def test_prefixed_pattern() -> None:
    a = authz(acl("orders-", Op.WRITE, pattern=PT.PREFIXED))
    assert can(a, Op.WRITE, "orders-eu")
    assert can(a, Op.WRITE, "orders-")
    assert not can(a, Op.WRITE, "orders")
    assert not can(a, Op.WRITE, "my-orders-eu")


def test_literal_is_not_a_prefix() -> None:
    a = authz(acl("orders", Op.READ))
    assert not can(a, Op.READ, "orders-eu")


def test_prefixed_star_is_a_real_prefix_not_a_wildcard() -> None:
    a = authz(acl("*", Op.READ, pattern=PT.PREFIXED))
    assert not can(a, Op.READ, "orders")
    assert can(a, Op.READ, "*orders")


def test_prefixed_deny_beats_literal_allow() -> None:
    a = authz(acl("orders-eu", Op.READ), acl("orders-", Op.READ, DENY, pattern=PT.PREFIXED))
    assert not can(a, Op.READ, "orders-eu")


def test_wildcard_deny_beats_literal_allow() -> None:
    a = authz(acl("orders", Op.READ), acl("*", Op.READ, DENY))
    assert not can(a, Op.READ)


def test_nested_prefixes_all_apply() -> None:
    a = authz(
        acl("o", Op.READ, pattern=PT.PREFIXED),
        acl("orders-e", Op.WRITE, pattern=PT.PREFIXED),
        acl("orders-eu-1", Op.DELETE, pattern=PT.PREFIXED),
    )
    assert can(a, Op.READ, "orders-eu")
    assert can(a, Op.WRITE, "orders-eu")
    assert not can(a, Op.DELETE, "orders-eu")
    assert can(a, Op.DELETE, "orders-eu-1x")


def test_wildcard_principal() -> None:
    a = authz(acl(op=Op.READ, principal="User:*"))
    assert can(a, Op.READ, principal=BOB)
    assert can(a, Op.READ, principal="User:anyone")
    b = authz(acl(op=Op.READ), acl(op=Op.READ, perm=DENY, principal="User:*"))
    assert not can(b, Op.READ)


def test_hosts() -> None:
    a = authz(acl(op=Op.READ, host=HOST))
    assert can(a, Op.READ, host=HOST)
    assert not can(a, Op.READ, host="10.0.0.2")
    b = authz(acl(op=Op.READ), acl(op=Op.READ, perm=DENY, host="10.0.0.2"))
    assert can(b, Op.READ, host=HOST)
    assert not can(b, Op.READ, host="10.0.0.2")


def test_super_users_bypass_deny() -> None:
    a = authz(acl(op=Op.ALL, perm=DENY, principal="User:*"), super_users={"User:admin"})
    assert can(a, Op.ALTER, principal="User:admin")
    assert can(a, Op.CLUSTER_ACTION, CLUSTER_NAME, rt=RT.CLUSTER, principal="User:admin")
    assert not can(a, Op.READ)


def test_resource_types_are_separate() -> None:
    a = authz(acl("app", Op.READ, rt=RT.GROUP))
    assert can(a, Op.READ, "app", rt=RT.GROUP)
    assert not can(a, Op.READ, "app", rt=RT.TOPIC)
    assert not can(a, Op.READ, "app", rt=RT.TRANSACTIONAL_ID)


def test_cluster_acl() -> None:
    a = authz(acl(CLUSTER_NAME, Op.IDEMPOTENT_WRITE, rt=RT.CLUSTER))
    assert can(a, Op.IDEMPOTENT_WRITE, CLUSTER_NAME, rt=RT.CLUSTER)
    assert not can(a, Op.CREATE, CLUSTER_NAME, rt=RT.CLUSTER)


def test_authorize_rejects_wildcard_operations_and_types() -> None:
    a = authz()
    with pytest.raises(ValueError):
        a.authorize(ALICE, HOST, Op.ANY, RT.TOPIC, "x")
    with pytest.raises(ValueError):
        a.authorize(ALICE, HOST, Op.READ, RT.ANY, "x")


def test_authorizer_follows_its_source() -> None:
    source = StaticAcls()
    assert isinstance(source, AclSource)
    a = Authorizer(source)
    assert not can(a, Op.READ)
    source.replace([acl(op=Op.READ)])
    assert can(a, Op.READ)
    source.replace([])
    assert not can(a, Op.READ)


def test_filter_authorized_and_authorized_operations() -> None:
    a = authz(acl("a", Op.READ), acl("b", Op.WRITE), acl("c", Op.ALTER_CONFIGS))
    assert a.filter_authorized(ALICE, HOST, Op.DESCRIBE, RT.TOPIC, ["a", "b", "c", "d", "a"]) == {
        "a",
        "b",
    }
    assert a.authorized_operations(ALICE, HOST, RT.TOPIC, "a") == {Op.READ, Op.DESCRIBE}
    assert a.authorized_operations(ALICE, HOST, RT.TOPIC, "c") == {
        Op.ALTER_CONFIGS,
        Op.DESCRIBE_CONFIGS,
    }


# -- authorize_by_resource_type (KIP-679) --------------------------------------------------------


def by_type(
    a: Authorizer, op: AclOperation = Op.WRITE, rt: ResourceType = RT.TOPIC, principal: str = ALICE
) -> bool:
    return a.authorize_by_resource_type(principal, HOST, op, rt)


def test_by_resource_type() -> None:
    assert not by_type(authz())
    assert by_type(authz(allow_everyone_if_no_acl_found=True))
    assert by_type(authz(acl("t", Op.WRITE)))
    assert by_type(authz(acl("t", Op.ALL)))
    assert not by_type(authz(acl("t", Op.READ)))
    assert not by_type(authz(acl("t", Op.WRITE, principal=BOB)))
    assert by_type(authz(acl("t", Op.WRITE, principal="User:*")))
    # dominated allows
    assert not by_type(authz(acl("t", Op.WRITE), acl("t", Op.WRITE, DENY)))
    assert not by_type(authz(acl("tx", Op.WRITE), acl("t", Op.WRITE, DENY, pattern=PT.PREFIXED)))
    assert not by_type(
        authz(
            acl("tx", Op.WRITE, pattern=PT.PREFIXED), acl("t", Op.WRITE, DENY, pattern=PT.PREFIXED)
        )
    )
    # a literal deny does not dominate a prefixed allow
    assert by_type(authz(acl("t", Op.WRITE, pattern=PT.PREFIXED), acl("t", Op.WRITE, DENY)))
    # wildcard deny / allow
    assert not by_type(authz(acl("t", Op.WRITE), acl("*", Op.WRITE, DENY)))
    assert by_type(authz(acl("*", Op.WRITE)))
    assert (
        by_type(authz(acl(op=Op.ALL, perm=DENY, principal="User:*")), principal="User:root")
        is False
    )
    assert by_type(authz(acl(op=Op.ALL, perm=DENY), super_users={ALICE}))


# -- filters -------------------------------------------------------------------------------------


LIT = acl("orders", Op.READ)
WILD = acl("*", Op.READ)
PRE = acl("ord", Op.READ, pattern=PT.PREFIXED)
OTHER_PRE = acl("pay", Op.READ, pattern=PT.PREFIXED)
GROUP = acl("orders", Op.READ, rt=RT.GROUP)
ALL_BINDINGS = [LIT, WILD, PRE, OTHER_PRE, GROUP]


def matching(f: AclBindingFilter) -> list[AclBinding]:
    return [b for b in ALL_BINDINGS if f.matches(b)]


def test_filter_any_matches_everything() -> None:
    assert matching(AclBindingFilter.any()) == ALL_BINDINGS


def test_filter_match_pattern_type_finds_applicable_patterns() -> None:
    f = AclBindingFilter(RT.TOPIC, "orders", PT.MATCH)
    assert matching(f) == [LIT, WILD, PRE]


def test_filter_any_pattern_type_with_name_is_exact_name() -> None:
    assert matching(AclBindingFilter(RT.ANY, "orders", PT.ANY)) == [LIT, GROUP]
    assert matching(AclBindingFilter(RT.ANY, "*", PT.ANY)) == [WILD]


def test_filter_specific_pattern_type() -> None:
    assert matching(AclBindingFilter(RT.TOPIC, None, PT.PREFIXED)) == [PRE, OTHER_PRE]
    assert matching(AclBindingFilter(RT.TOPIC, "ord", PT.PREFIXED)) == [PRE]
    assert matching(AclBindingFilter(RT.TOPIC, "orders", PT.PREFIXED)) == []
    assert matching(AclBindingFilter(RT.TOPIC, "orders", PT.LITERAL)) == [LIT]


def test_filter_entry_fields() -> None:
    bob = acl("orders", Op.WRITE, DENY, principal=BOB, host=HOST)
    f = AclBindingFilter(principal=BOB)
    assert f.matches(bob) and not f.matches(LIT)
    assert AclBindingFilter(host=HOST).matches(bob)
    assert not AclBindingFilter(host="*").matches(bob)
    assert AclBindingFilter(operation=Op.WRITE).matches(bob)
    assert not AclBindingFilter(operation=Op.ALL).matches(bob)  # ALL in a filter is literal
    assert AclBindingFilter(permission=DENY).matches(bob)
    assert not AclBindingFilter(permission=ALLOW).matches(bob)


def test_filter_exact_and_indefinite() -> None:
    f = AclBindingFilter.exact(LIT)
    assert f.matches_at_most_one()
    assert matching(f) == [LIT]
    assert AclBindingFilter.any().find_indefinite_field() == "Resource type is ANY."
    assert AclBindingFilter(RT.TOPIC, "x", PT.MATCH).find_indefinite_field() == (
        "Resource pattern type is MATCH."
    )


# -- validation ----------------------------------------------------------------------------------


def invalid(binding: AclBinding) -> str:
    with pytest.raises(AclValidationError) as info:
        validate_binding(binding)
    assert info.value.error_code == ErrorCode.INVALID_REQUEST
    return info.value.message


@pytest.mark.parametrize(
    ("binding", "fragment"),
    [
        (acl(rt=RT.ANY), "resourceType"),
        (acl(rt=RT.UNKNOWN), "resourceType"),
        (acl(pattern=PT.ANY), "patternType"),
        (acl(pattern=PT.MATCH), "patternType"),
        (acl(pattern=PT.UNKNOWN), "patternType"),
        (acl(op=Op.ANY), "operation"),
        (acl(op=Op.UNKNOWN), "operation"),
        (acl(perm=AclPermissionType.ANY), "permissionType"),
        (acl(perm=AclPermissionType.UNKNOWN), "permissionType"),
        (acl(""), "empty resource name"),
        (acl("my-cluster", Op.ALTER, rt=RT.CLUSTER), "kafka-cluster"),
        (acl(principal="alice"), "no colon"),
        (acl(principal="User:"), "principal"),
        (acl(principal=":alice"), "principal"),
        (acl(host=""), "host"),
    ],
)
def test_invalid_bindings(binding: AclBinding, fragment: str) -> None:
    assert fragment in invalid(binding)


def test_valid_bindings() -> None:
    for b in (
        acl(),
        acl("*"),
        acl("orders-", pattern=PT.PREFIXED),
        acl(CLUSTER_NAME, Op.ALTER, rt=RT.CLUSTER),
        acl(principal="User:*", host="*"),
        acl("tx", Op.WRITE, rt=RT.TRANSACTIONAL_ID, principal="Group:ops"),
    ):
        validate_binding(b)


def test_validate_filter() -> None:
    validate_filter(AclBindingFilter.any())
    for bad in (
        AclBindingFilter(resource_type=RT.UNKNOWN),
        AclBindingFilter(pattern_type=PT.UNKNOWN),
        AclBindingFilter(operation=Op.UNKNOWN),
        AclBindingFilter(permission=AclPermissionType.UNKNOWN),
    ):
        with pytest.raises(AclValidationError):
            validate_filter(bad)


def test_operation_supported() -> None:
    assert operation_supported(RT.TOPIC, Op.READ)
    assert operation_supported(RT.GROUP, Op.ALL)
    assert not operation_supported(RT.GROUP, Op.WRITE)
    assert operation_supported(RT.CLUSTER, Op.IDEMPOTENT_WRITE)
    assert not operation_supported(RT.TRANSACTIONAL_ID, Op.READ)


# -- property: the indexed authorizer equals a brute-force reading of the rules ------------------

_IMPLIES = {
    Op.DESCRIBE: {Op.READ, Op.WRITE, Op.DELETE, Op.ALTER},
    Op.DESCRIBE_CONFIGS: {Op.ALTER_CONFIGS},
}


def naive_authorize(
    bindings: list[AclBinding],
    super_users: set[str],
    allow_everyone: bool,
    principal: str,
    host: str,
    op: AclOperation,
    rt: ResourceType,
    name: str,
) -> bool:
    if principal in super_users:
        return True

    def applies(b: AclBinding) -> bool:
        if b.resource_type != rt:
            return False
        if b.pattern_type == PT.LITERAL:
            return b.resource_name in (name, "*")
        return name.startswith(b.resource_name)

    on_resource = [b for b in bindings if applies(b)]
    if not on_resource:
        return allow_everyone
    mine = [
        b for b in on_resource if b.principal in (principal, "User:*") and b.host in (host, "*")
    ]
    if any(b.permission == DENY and b.operation in (op, Op.ALL) for b in mine):
        return False
    return any(
        b.permission == ALLOW
        and (b.operation in (op, Op.ALL) or b.operation in _IMPLIES.get(op, set()))
        for b in mine
    )


NAMES = st.sampled_from(["", "a", "ab", "abc", "abd", "b", "ba", "*", "*a"])
PRINCIPALS = st.sampled_from(["User:alice", "User:bob", "User:*"])
HOSTS = st.sampled_from(["*", "h1", "h2"])
OPS = st.sampled_from([o for o in AclOperation if o not in (Op.ANY, Op.UNKNOWN)])
TYPES = st.sampled_from([RT.TOPIC, RT.GROUP])

bindings_st = st.builds(
    AclBinding,
    resource_type=TYPES,
    resource_name=NAMES.filter(bool),
    pattern_type=st.sampled_from([PT.LITERAL, PT.PREFIXED]),
    principal=PRINCIPALS,
    host=HOSTS,
    operation=OPS,
    permission=st.sampled_from([ALLOW, DENY]),
)


@settings(max_examples=300, deadline=None)
@given(
    bindings=st.lists(bindings_st, max_size=12),
    allow_everyone=st.booleans(),
    queries=st.lists(
        st.tuples(
            st.sampled_from(["User:alice", "User:bob", "User:root"]),
            st.sampled_from(["h1", "h2"]),
            OPS,
            TYPES,
            NAMES,
        ),
        min_size=1,
        max_size=20,
    ),
)
def test_index_matches_naive(
    bindings: list[AclBinding],
    allow_everyone: bool,
    queries: list[tuple[str, str, AclOperation, ResourceType, str]],
) -> None:
    supers = {"User:root"}
    a = Authorizer(bindings, super_users=supers, allow_everyone_if_no_acl_found=allow_everyone)
    for principal, host, op, rt, name in queries:
        expected = naive_authorize(bindings, supers, allow_everyone, principal, host, op, rt, name)
        assert a.authorize(principal, host, op, rt, name) == expected, (
            principal,
            host,
            op,
            rt,
            name,
        )


# -- scale (measured, not asserted: performance belongs in benchmarks) ---------------------------


def test_ten_thousand_topics_against_a_thousand_acls() -> None:
    bindings = []
    for i in range(1000):
        kind = i % 4
        if kind == 0:
            bindings.append(
                acl(f"team{i % 50}-", Op.READ, pattern=PT.PREFIXED, principal=f"User:u{i % 100}")
            )
        elif kind == 1:
            bindings.append(acl(f"topic-{i}", Op.WRITE, principal=f"User:u{i % 100}"))
        elif kind == 2:
            bindings.append(
                acl(f"team{i % 50}-secret", Op.ALL, DENY, pattern=PT.PREFIXED, principal="User:*")
            )
        else:
            bindings.append(acl(f"app-{i}", Op.READ, rt=RT.GROUP, principal=f"User:u{i % 100}"))
    a = Authorizer(bindings)
    topics = [f"team{i % 60}-{'secret-' if i % 7 == 0 else ''}t{i}" for i in range(10_000)]
    start = time.perf_counter()
    visible = a.filter_authorized("User:u4", HOST, Op.DESCRIBE, RT.TOPIC, topics)
    elapsed = time.perf_counter() - start
    print(f"10,000 topics x 1,000 ACLs: {elapsed * 1000:.1f} ms, {len(visible)} visible")
    assert visible  # u4 reads team4-, team54-... prefixes
    assert all(not t.startswith("team4-secret") for t in visible)
    for t in topics[:500]:
        assert (t in visible) == naive_authorize(
            bindings, set(), False, "User:u4", HOST, Op.DESCRIBE, RT.TOPIC, t
        )
