"""The console's administration forms: ACL bindings and DeleteAcls filters checked as
kafka-acls and the broker check them, SCRAM credentials within Kafka's bounds, and a password
that never appears in an error or a repr."""

from __future__ import annotations

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from riverbed.console.admin import filter_fields, parse_acl, parse_acl_filter, parse_user

GOOD = {
    "resource_type": "TOPIC",
    "name": "orders",
    "pattern": "LITERAL",
    "principal": "User:bob",
    "host": "*",
    "operation": "READ",
    "permission": "ALLOW",
}


def test_a_valid_binding_is_built_with_kafka_defaults() -> None:
    binding, errors = parse_acl(GOOD)
    assert errors == []
    assert binding == AclBinding(
        ResourceType.TOPIC,
        "orders",
        ResourcePatternType.LITERAL,
        "User:bob",
        "*",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    # pattern, host and permission default to LITERAL, * and ALLOW; names are case-insensitive
    binding, errors = parse_acl(
        {
            "resource_type": "group",
            "name": "billing",
            "principal": "User:*",
            "operation": "describe",
        }
    )
    assert errors == [] and binding is not None
    assert (
        binding.restype,
        binding.resource_pattern_type,
        binding.host,
        binding.permission_type,
    ) == (ResourceType.GROUP, ResourcePatternType.LITERAL, "*", AclPermissionType.ALLOW)
    binding, errors = parse_acl(
        {
            **GOOD,
            "resource_type": "CLUSTER",
            "name": "kafka-cluster",
            "operation": "ALTER",
            "host": "10.0.0.7",
        }
    )
    assert errors == [] and binding is not None and binding.restype == ResourceType.BROKER
    binding, errors = parse_acl(
        {**GOOD, "pattern": "PREFIXED", "host": "::1", "permission": "DENY"}
    )
    assert (
        errors == []
        and binding is not None
        and binding.resource_pattern_type == ResourcePatternType.PREFIXED
    )


def test_invalid_bindings_are_refused_with_every_reason() -> None:
    cases = {
        "Resource type must be one of": {"resource_type": "ANY"},
        "Resource name is required": {"name": "  "},
        "only valid name for the CLUSTER resource is kafka-cluster": {
            "resource_type": "CLUSTER",
            "name": "orders",
            "operation": "ALTER",
        },
        "Pattern type must be one of LITERAL, PREFIXED": {"pattern": "MATCH"},
        "Principal must be TYPE:NAME": {"principal": "bob"},
        "Principal is required": {"principal": ""},
        "Host must be * (any) or an IP address": {"host": "evil.example.com"},
        "Operation must be one of": {"operation": "ANY"},
        "Operation WRITE does not apply to GROUP resources": {
            "resource_type": "GROUP",
            "operation": "WRITE",
        },
        "Operation CLUSTER_ACTION does not apply to TOPIC": {"operation": "CLUSTER_ACTION"},
        "Permission must be one of ALLOW, DENY": {"permission": "ANY"},
        "without control characters": {"name": "a\x00b"},
    }
    for reason, change in cases.items():
        binding, errors = parse_acl({**GOOD, **change})
        assert binding is None and any(reason in e for e in errors), (reason, errors)
    binding, errors = parse_acl({})
    assert binding is None and len(errors) >= 3  # type, name, principal, operation


def test_a_filter_matches_anything_where_a_field_is_empty_or_any() -> None:
    flt, errors = parse_acl_filter({})
    assert errors == [] and flt is not None
    assert (
        flt.restype,
        flt.name,
        flt.resource_pattern_type,
        flt.principal,
        flt.host,
        flt.operation,
        flt.permission_type,
    ) == (
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    flt, errors = parse_acl_filter(
        {"resource_type": "TOPIC", "name": "orders", "pattern": "MATCH", "principal": "User:bob"}
    )
    assert (
        errors == []
        and flt is not None
        and flt.resource_pattern_type == ResourcePatternType.MATCH
        and flt.name == "orders"
    )
    for bad in (
        {"resource_type": "UNKNOWN"},
        {"pattern": "UNKNOWN"},
        {"principal": "bob"},
        {"host": "x y"},
        {"operation": "FLY"},
        {"permission": "MAYBE"},
    ):
        flt, errors = parse_acl_filter(bad)
        assert flt is None and errors, bad


def test_a_row_delete_link_is_an_exact_filter_of_that_binding() -> None:
    binding, _ = parse_acl(
        {**GOOD, "resource_type": "CLUSTER", "name": "kafka-cluster", "operation": "ALTER"}
    )
    fields = filter_fields(binding)
    assert fields["resource_type"] == "CLUSTER"
    flt, errors = parse_acl_filter(fields)
    assert errors == [] and flt is not None
    assert (
        flt.restype,
        flt.name,
        flt.resource_pattern_type,
        flt.principal,
        flt.host,
        flt.operation,
        flt.permission_type,
    ) == (
        binding.restype,
        binding.name,
        binding.resource_pattern_type,
        binding.principal,
        binding.host,
        binding.operation,
        binding.permission_type,
    )


def test_scram_credentials_within_kafkas_bounds_and_the_password_never_shown() -> None:
    secret = "s3cr3t-Pa55"
    change, errors = parse_user({"user": "bob", "password": secret, "password2": secret})
    assert errors == [] and change is not None
    assert (change.user, change.mechanism, change.iterations, change.password) == (
        "bob",
        "SCRAM-SHA-256",
        4096,
        secret,
    )
    assert secret not in repr(change)
    change, errors = parse_user(
        {
            "user": "bob",
            "mechanism": "scram-sha-512",
            "iterations": "16384",
            "password": secret,
            "password2": secret,
        }
    )
    assert (
        errors == []
        and change is not None
        and (change.mechanism, change.iterations) == ("SCRAM-SHA-512", 16384)
    )
    cases = {
        "User name is required": {"user": ""},
        "Mechanism must be one of SCRAM-SHA-256, SCRAM-SHA-512": {"mechanism": "PLAIN"},
        "Iterations must be a whole number from 4096 to 16384": {"iterations": "4095"},
        "Iterations must be": {"iterations": "16385"},
        "Iterations must": {"iterations": "many"},
        "Password is required": {"password": "", "password2": ""},
        "The two passwords differ": {"password2": secret + "x"},
        "at most 1024 characters": {"password": "p" * 1025, "password2": "p" * 1025},
    }
    for reason, change_fields in cases.items():
        change, errors = parse_user(
            {"user": "bob", "password": secret, "password2": secret, **change_fields}
        )
        assert change is None and any(reason in e for e in errors), (reason, errors)
        assert not any(secret in e for e in errors)
