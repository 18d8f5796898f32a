"""ACL checks for handlers whose whole request depends on one resource (Kafka's KafkaApis
does the same check first): without the permission the request is answered with the
resource type's *_AUTHORIZATION_FAILED error and nothing else happens. Per-item checks
(topics in Produce, Fetch, OffsetCommit, ...) live in the handlers themselves."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from riverbed.protocol.errors import ErrorCode
from riverbed.security.acl import AclOperation, ResourceType
from riverbed.server.handler import ConnectionInfo

if TYPE_CHECKING:
    from ..broker import ApiHandler, Broker

ERRORS = {
    ResourceType.TOPIC: ErrorCode.TOPIC_AUTHORIZATION_FAILED,
    ResourceType.GROUP: ErrorCode.GROUP_AUTHORIZATION_FAILED,
    ResourceType.CLUSTER: ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
    ResourceType.TRANSACTIONAL_ID: ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
}


def gated(handler: ApiHandler, checks: list[tuple[AclOperation, ResourceType, Callable[[Any], str]]], denied: Callable[[int, Any, int], Any]) -> ApiHandler:
    """``handler``, answered by ``denied(version, request, error_code)`` unless every
    (operation, resource type, name of the request's resource) check passes."""

    def wrapped(broker: Broker, conn: ConnectionInfo, version: int, req: Any) -> Any:
        if broker.authorizer is not None:
            for operation, resource_type, name_of in checks:
                if not broker.authorize(conn, operation, resource_type, name_of(req)):
                    return denied(version, req, ERRORS[resource_type])
        return handler(broker, conn, version, req)

    wrapped.__name__ = getattr(handler, "__name__", "handler")
    wrapped.__doc__ = handler.__doc__
    return wrapped
