"""The durable ACL store: CreateAcls/DescribeAcls/DeleteAcls semantics and persistence."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

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
    Authorizer,
    PatternType,
    ResourceType,
)
from riverbed.security.acl_store import (
    FILE_NAME,
    AclCreateResult,
    AclStore,
    AclStoreCorruptError,
)

Op = AclOperation
RT = ResourceType
PT = PatternType
ALLOW = AclPermissionType.ALLOW
DENY = AclPermissionType.DENY


def acl(
    name: str = "orders",
    op: AclOperation = Op.READ,
    perm: AclPermissionType = ALLOW,
    *,
    rt: ResourceType = RT.TOPIC,
    pattern: PatternType = PT.LITERAL,
    principal: str = "User:alice",
    host: str = "*",
) -> AclBinding:
    return AclBinding(rt, name, pattern, principal, host, op, perm)


def test_empty_directory_is_empty_store(tmp_path: Path) -> None:
    store = AclStore(tmp_path / "meta")
    assert store.describe() == []
    assert len(store) == 0
    assert not (tmp_path / "meta" / FILE_NAME).exists()


def test_add_returns_a_result_per_binding(tmp_path: Path) -> None:
    store = AclStore(tmp_path)
    results = store.add([acl(), acl("", Op.READ), acl("x", rt=RT.CLUSTER), acl("b")])
    assert results[0] == AclCreateResult()
    assert results[1].error_code == ErrorCode.INVALID_REQUEST
    assert results[1].error_message == "Invalid empty resource name"
    assert results[2].error_code == ErrorCode.INVALID_REQUEST
    assert "kafka-cluster" in (results[2].error_message or "")
    assert results[3] == AclCreateResult()
    assert store.describe() == [acl("b"), acl()]  # sorted


def test_adding_an_existing_binding_succeeds_without_a_write(tmp_path: Path) -> None:
    store = AclStore(tmp_path)
    store.add([acl()])
    generation = store.generation
    assert store.add([acl()]) == [AclCreateResult()]
    assert store.generation == generation
    assert len(store) == 1


def test_describe_by_filter(tmp_path: Path) -> None:
    store = AclStore(tmp_path)
    lit, wild, pre = acl("orders"), acl("*"), acl("ord", pattern=PT.PREFIXED)
    grp = acl("orders", rt=RT.GROUP)
    store.add([lit, wild, pre, grp])
    assert set(store.describe(AclBindingFilter(RT.TOPIC, "orders", PT.MATCH))) == {lit, wild, pre}
    assert set(store.describe(AclBindingFilter(RT.ANY, "orders", PT.ANY))) == {lit, grp}
    assert set(store.describe(AclBindingFilter(RT.TOPIC, None, PT.PREFIXED))) == {pre}
    assert len(store.describe()) == 4


def test_delete_reports_matches_per_filter(tmp_path: Path) -> None:
    store = AclStore(tmp_path)
    a, b, c = acl("a"), acl("b", Op.WRITE), acl("c", Op.WRITE, DENY)
    store.add([a, b, c])
    results = store.delete(
        [
            AclBindingFilter(operation=Op.WRITE),
            AclBindingFilter(RT.TOPIC, "b", PT.LITERAL),  # b again: listed under both filters
            AclBindingFilter(RT.TOPIC, "zzz", PT.LITERAL),  # matches nothing
            AclBindingFilter(operation=Op.UNKNOWN),  # invalid filter
        ]
    )
    assert set(results[0].deleted) == {b, c}
    assert results[1].deleted == (b,)
    assert results[2].deleted == () and results[2].error_code == ErrorCode.NONE
    assert results[3].error_code == ErrorCode.INVALID_REQUEST and results[3].deleted == ()
    assert store.describe() == [a]


def test_reload_equals_before(tmp_path: Path) -> None:
    store = AclStore(tmp_path)
    bindings = [
        acl(),
        acl("orders-", Op.WRITE, DENY, pattern=PT.PREFIXED, host="10.1.2.3"),
        acl(CLUSTER_NAME, Op.IDEMPOTENT_WRITE, rt=RT.CLUSTER, principal="User:*"),
        acl("tx-1", Op.WRITE, rt=RT.TRANSACTIONAL_ID),
        acl("app", Op.ALL, rt=RT.GROUP, principal="User:bob with spaces:and:colons"),
        acl("ünïcode-トピック", Op.DESCRIBE),
    ]
    store.add(bindings)
    store.delete([AclBindingFilter.exact(bindings[0])])
    reloaded = AclStore(tmp_path)
    assert reloaded.describe() == store.describe()
    assert set(reloaded.bindings()) == set(bindings[1:])


def test_file_mode_is_0600_and_no_tmp_left(tmp_path: Path) -> None:
    store = AclStore(tmp_path)
    store.add([acl()])
    mode = stat.S_IMODE(os.stat(tmp_path / FILE_NAME).st_mode)
    assert mode == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE_NAME]
    doc = json.loads((tmp_path / FILE_NAME).read_text())
    assert doc["format"] == "riverbed-acls" and doc["version"] == 1
    assert doc["acls"][0]["operation"] == "READ"


def test_stale_tmp_file_is_ignored_and_replaced(tmp_path: Path) -> None:
    (tmp_path / (FILE_NAME + ".tmp")).write_text("garbage")
    os.chmod(tmp_path / (FILE_NAME + ".tmp"), 0o644)
    store = AclStore(tmp_path)
    assert len(store) == 0
    store.add([acl()])
    assert stat.S_IMODE(os.stat(tmp_path / FILE_NAME).st_mode) == 0o600
    assert AclStore(tmp_path).describe() == [acl()]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"format": "something-else", "version": 1, "acls": []}',
        b'{"format": "riverbed-acls", "version": 99, "acls": []}',
        b'{"format": "riverbed-acls", "version": 1, "acls": {}}',
        b'{"format": "riverbed-acls", "version": 1, "acls": [{"resource_type": "TOPIC"}]}',
        b'{"format": "riverbed-acls", "version": 1, "acls": [{"resource_type": "NOPE", '
        b'"resource_name": "a", "pattern_type": "LITERAL", "principal": "User:a", "host": "*", '
        b'"operation": "READ", "permission": "ALLOW"}]}',
        b'{"format": "riverbed-acls", "version": 1, "acls": [{"resource_type": "TOPIC", '
        b'"resource_name": "a", "pattern_type": "MATCH", "principal": "User:a", "host": "*", '
        b'"operation": "READ", "permission": "ALLOW"}]}',
        b'{"format": "riverbed-acls", "version": 1, "acls": [{"resource_type": "TOPIC", '
        b'"resource_name": 5, "pattern_type": "LITERAL", "principal": "User:a", "host": "*", '
        b'"operation": "READ", "permission": "ALLOW"}]}',
    ],
)
def test_corrupt_file_raises_clear_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / FILE_NAME).write_bytes(content)
    with pytest.raises(AclStoreCorruptError, match=FILE_NAME):
        AclStore(tmp_path)


def test_failed_write_leaves_store_unchanged(tmp_path: Path) -> None:
    store = AclStore(tmp_path)
    store.add([acl()])
    generation = store.generation
    (tmp_path / (FILE_NAME + ".tmp")).mkdir()  # the temporary file cannot be created
    with pytest.raises(OSError):
        store.add([acl("other")])
    assert store.generation == generation
    assert store.describe() == [acl()]
    assert AclStore(tmp_path).describe() == [acl()]


def test_authorizer_sees_store_changes(tmp_path: Path) -> None:
    store = AclStore(tmp_path)
    authz = Authorizer(store)
    assert not authz.authorize("User:alice", "h", Op.READ, RT.TOPIC, "orders")
    store.add([acl()])
    assert authz.authorize("User:alice", "h", Op.READ, RT.TOPIC, "orders")
    store.delete([AclBindingFilter.any()])
    assert not authz.authorize("User:alice", "h", Op.READ, RT.TOPIC, "orders")


def test_replace_all(tmp_path: Path) -> None:
    store = AclStore(tmp_path)
    store.add([acl("a"), acl("b")])
    store.replace_all([acl("c")])
    assert AclStore(tmp_path).describe() == [acl("c")]


_bindings = st.builds(
    AclBinding,
    resource_type=st.sampled_from([RT.TOPIC, RT.GROUP, RT.TRANSACTIONAL_ID]),
    resource_name=st.text(min_size=1, max_size=8),
    pattern_type=st.sampled_from([PT.LITERAL, PT.PREFIXED]),
    principal=st.text(max_size=6).map(lambda s: "User:" + (s or "x")),
    host=st.sampled_from(["*", "10.0.0.1", "::1"]),
    operation=st.sampled_from([o for o in Op if o not in (Op.ANY, Op.UNKNOWN)]),
    permission=st.sampled_from([ALLOW, DENY]),
)


@settings(max_examples=40, deadline=None)
@given(bindings=st.lists(_bindings, max_size=10))
def test_roundtrip_property(
    tmp_path_factory: pytest.TempPathFactory, bindings: list[AclBinding]
) -> None:
    directory = tmp_path_factory.mktemp("acls")
    store = AclStore(directory, fsync=False)
    assert all(r.error_code == ErrorCode.NONE for r in store.add(bindings))
    assert set(AclStore(directory).bindings()) == set(bindings)
