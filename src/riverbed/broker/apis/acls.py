"""DescribeAcls (29), CreateAcls (30), DeleteAcls (31) over the durable ACL store.

DescribeAcls needs DESCRIBE on the cluster, the other two ALTER (Kafka's AclApis). Without
an authorizer (``authorizer.class.name`` unset) they answer SECURITY_DISABLED, as Kafka does.
Version 0 knows only LITERAL patterns: a v0 filter matches literal bindings only, and a v0
creation is literal.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, TypeVar

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.create_acls import CreateAclsRequest, CreateAclsResponse
from riverbed.protocol.messages.delete_acls import DeleteAclsRequest, DeleteAclsResponse
from riverbed.protocol.messages.describe_acls import DescribeAclsRequest, DescribeAclsResponse
from riverbed.security.acl import (
    CLUSTER_NAME,
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AclValidationError,
    PatternType,
    ResourceType,
    validate_binding,
    validate_filter,
)
from riverbed.server.handler import ConnectionInfo

if TYPE_CHECKING:
    from ..broker import Broker

E = TypeVar("E", bound=IntEnum)
DISABLED = "No Authorizer is configured on the broker"


def _enum(cls: type[E], value: int) -> E:
    try:
        return cls(value)
    except ValueError:
        return cls(0)  # UNKNOWN


def _filter(version: int, rt: int, name: str | None, pattern: int, principal: str | None, host: str | None, op: int, perm: int) -> AclBindingFilter:
    return AclBindingFilter(
        resource_type=_enum(ResourceType, rt),
        resource_name=name,
        pattern_type=_enum(PatternType, pattern) if version >= 1 else PatternType.LITERAL,
        principal=principal,
        host=host,
        operation=_enum(AclOperation, op),
        permission=_enum(AclPermissionType, perm),
    )


def _allowed(broker: Broker, conn: ConnectionInfo, operation: AclOperation) -> bool:
    return broker.authorize(conn, operation, ResourceType.CLUSTER, CLUSTER_NAME)


def handle_describe_acls(broker: Broker, conn: ConnectionInfo, version: int, req: DescribeAclsRequest) -> DescribeAclsResponse:
    R = DescribeAclsResponse
    if broker.acls is None:
        return R(throttle_time_ms=0, error_code=ErrorCode.SECURITY_DISABLED, error_message=DISABLED)
    if not _allowed(broker, conn, AclOperation.DESCRIBE):
        return R(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message=None)
    flt = _filter(version, req.resource_type_filter, req.resource_name_filter, req.pattern_type_filter, req.principal_filter, req.host_filter, req.operation, req.permission_type)
    try:
        validate_filter(flt)
    except AclValidationError as exc:
        return R(throttle_time_ms=0, error_code=exc.error_code, error_message=exc.message)
    grouped: dict[tuple[int, str, int], list[DescribeAclsResponse.AclDescription]] = {}
    for b in broker.acls.describe(flt):
        key = (int(b.resource_type), b.resource_name, int(b.pattern_type))
        grouped.setdefault(key, []).append(R.AclDescription(principal=b.principal, host=b.host, operation=int(b.operation), permission_type=int(b.permission)))
    resources = [R.DescribeAclsResource(resource_type=rt, resource_name=name, pattern_type=pt, acls=acls) for (rt, name, pt), acls in grouped.items()]
    return R(throttle_time_ms=0, error_code=0, error_message=None, resources=resources)


def handle_create_acls(broker: Broker, conn: ConnectionInfo, version: int, req: CreateAclsRequest) -> CreateAclsResponse:
    R = CreateAclsResponse
    if broker.acls is None:
        return R(throttle_time_ms=0, results=[R.AclCreationResult(ErrorCode.SECURITY_DISABLED, DISABLED) for _ in req.creations])
    if not _allowed(broker, conn, AclOperation.ALTER):
        return R(throttle_time_ms=0, results=[R.AclCreationResult(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, None) for _ in req.creations])
    results: list[CreateAclsResponse.AclCreationResult | None] = []
    valid: list[AclBinding] = []
    for c in req.creations:
        binding = AclBinding(
            _enum(ResourceType, c.resource_type),
            c.resource_name,
            _enum(PatternType, c.resource_pattern_type) if version >= 1 else PatternType.LITERAL,
            c.principal,
            c.host,
            _enum(AclOperation, c.operation),
            _enum(AclPermissionType, c.permission_type),
        )
        try:
            validate_binding(binding)
        except AclValidationError as exc:
            results.append(R.AclCreationResult(exc.error_code, exc.message))
            continue
        results.append(None)
        valid.append(binding)
    created = iter(broker.acls.add(valid))
    out = []
    for r in results:
        if r is None:
            res = next(created)
            r = R.AclCreationResult(res.error_code, res.error_message)
        out.append(r)
    return R(throttle_time_ms=0, results=out)


def handle_delete_acls(broker: Broker, conn: ConnectionInfo, version: int, req: DeleteAclsRequest) -> DeleteAclsResponse:
    R = DeleteAclsResponse
    if broker.acls is None:
        return R(throttle_time_ms=0, filter_results=[R.DeleteAclsFilterResult(ErrorCode.SECURITY_DISABLED, DISABLED) for _ in req.filters])
    if not _allowed(broker, conn, AclOperation.ALTER):
        return R(throttle_time_ms=0, filter_results=[R.DeleteAclsFilterResult(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, None) for _ in req.filters])
    results: list[DeleteAclsResponse.DeleteAclsFilterResult | None] = []
    valid: list[AclBindingFilter] = []
    for f in req.filters:
        flt = _filter(version, f.resource_type_filter, f.resource_name_filter, f.pattern_type_filter, f.principal_filter, f.host_filter, f.operation, f.permission_type)
        try:
            validate_filter(flt)
        except AclValidationError as exc:
            results.append(R.DeleteAclsFilterResult(exc.error_code, exc.message))
            continue
        results.append(None)
        valid.append(flt)
    deleted = iter(broker.acls.delete(valid))
    out = []
    for r in results:
        if r is None:
            res = next(deleted)
            r = R.DeleteAclsFilterResult(
                res.error_code,
                res.error_message,
                [
                    R.DeleteAclsMatchingAcl(0, None, int(b.resource_type), b.resource_name, int(b.pattern_type), b.principal, b.host, int(b.operation), int(b.permission))
                    for b in res.deleted
                ],
            )
        out.append(r)
    return R(throttle_time_ms=0, filter_results=out)
