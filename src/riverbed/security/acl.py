"""Kafka's ACL model and a pure, indexed authorizer.

The enums carry Kafka's wire ids (``org.apache.kafka.common.acl`` and ``...common.resource``),
so a CreateAcls/DescribeAcls/DeleteAcls handler can move numbers straight between the wire and
these types.

Decision rules (Kafka's ``StandardAuthorizer``; ``AclAuthorizer`` agrees):

1. A super user (``"User:alice"`` in ``super_users``) may do anything, whatever the ACLs say.
2. The ACLs that *apply to the resource* are the literal ACLs with the exact name, the literal
   wildcard ``"*"`` ACLs, and every PREFIXED ACL whose name is a prefix of the resource name,
   all of the same resource type.
3. Among those, an ACL *matches the caller* when its principal is the caller's or ``"User:*"``
   and its host is the caller's address or ``"*"``.
4. A matching DENY wins when its operation is the requested one or ALL. DENY is never widened
   by implication: DENY READ does not deny DESCRIBE.
5. A matching ALLOW grants when its operation is the requested one or ALL, or implies it:
   READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS.
6. With no ALLOW, the answer is DENY - unless *no ACL at all* applies to the resource (rule 2,
   whoever the principal), in which case the answer is ``allow_everyone_if_no_acl_found``.

Index: per resource type, literal ACLs live in a dict keyed by name, and PREFIXED ACLs in a
dict keyed by prefix plus the sorted set of distinct prefix lengths, so finding the prefixes
of a name costs one dict lookup per distinct prefix length (a handful in practice), not one
comparison per ACL. The index is rebuilt (an atomic swap of one reference) when the ACL
source's ``generation`` changes.

Thread-safety: ``authorize`` only reads the current index; a rebuild replaces it whole. Use it
from one event loop, or accept that a concurrent reader may see the previous ACL set.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, runtime_checkable

from riverbed.protocol.errors import ErrorCode

CLUSTER_NAME = "kafka-cluster"
"""The one valid resource name of the CLUSTER resource."""
WILDCARD = "*"
"""Resource name (LITERAL pattern) or host matching any name or host."""
WILDCARD_PRINCIPAL = "User:*"
"""Principal matching any principal."""


class ResourceType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclOperation(IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class AclPermissionType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


_CONCRETE_RESOURCE_TYPES = frozenset(ResourceType) - {ResourceType.UNKNOWN, ResourceType.ANY}
_CONCRETE_OPERATIONS = frozenset(AclOperation) - {AclOperation.UNKNOWN, AclOperation.ANY}

# Kafka's AclEntry.supportedOperations: what `kafka-acls` accepts per resource type (ALL is
# accepted everywhere), and what the "authorized operations" bitfields enumerate.
SUPPORTED_OPERATIONS: Mapping[ResourceType, frozenset[AclOperation]] = {
    ResourceType.TOPIC: frozenset(
        {
            AclOperation.READ,
            AclOperation.WRITE,
            AclOperation.CREATE,
            AclOperation.DESCRIBE,
            AclOperation.DELETE,
            AclOperation.ALTER,
            AclOperation.DESCRIBE_CONFIGS,
            AclOperation.ALTER_CONFIGS,
        }
    ),
    ResourceType.GROUP: frozenset({AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE}),
    ResourceType.CLUSTER: frozenset(
        {
            AclOperation.CREATE,
            AclOperation.CLUSTER_ACTION,
            AclOperation.DESCRIBE_CONFIGS,
            AclOperation.ALTER_CONFIGS,
            AclOperation.IDEMPOTENT_WRITE,
            AclOperation.ALTER,
            AclOperation.DESCRIBE,
        }
    ),
    ResourceType.TRANSACTIONAL_ID: frozenset({AclOperation.DESCRIBE, AclOperation.WRITE}),
    ResourceType.DELEGATION_TOKEN: frozenset({AclOperation.DESCRIBE}),
    ResourceType.USER: frozenset({AclOperation.CREATE_TOKENS, AclOperation.DESCRIBE_TOKENS}),
}

# Which ALLOW operations grant a requested operation (besides itself and ALL).
IMPLIED_BY: Mapping[AclOperation, frozenset[AclOperation]] = {
    AclOperation.DESCRIBE: frozenset(
        {AclOperation.READ, AclOperation.WRITE, AclOperation.DELETE, AclOperation.ALTER}
    ),
    AclOperation.DESCRIBE_CONFIGS: frozenset({AclOperation.ALTER_CONFIGS}),
}


def allow_grants(acl_operation: AclOperation, requested: AclOperation) -> bool:
    """True when an ALLOW ACL for ``acl_operation`` grants ``requested`` (rule 5)."""
    return (
        acl_operation == AclOperation.ALL
        or acl_operation == requested
        or acl_operation in IMPLIED_BY.get(requested, ())
    )


def deny_blocks(acl_operation: AclOperation, requested: AclOperation) -> bool:
    """True when a DENY ACL for ``acl_operation`` denies ``requested`` (rule 4, no implication)."""
    return acl_operation == AclOperation.ALL or acl_operation == requested


@dataclass(frozen=True, slots=True)
class AclBinding:
    """One ACL: a resource pattern plus an access control entry (Kafka's ``AclBinding``)."""

    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: AclOperation
    permission: AclPermissionType

    def is_unknown(self) -> bool:
        return (
            self.resource_type == ResourceType.UNKNOWN
            or self.pattern_type == PatternType.UNKNOWN
            or self.operation == AclOperation.UNKNOWN
            or self.permission == AclPermissionType.UNKNOWN
        )

    def applies_to(self, resource_type: ResourceType, resource_name: str) -> bool:
        """Does this binding's resource pattern cover the concrete resource? (rule 2)"""
        if self.resource_type != resource_type:
            return False
        if self.pattern_type == PatternType.LITERAL:
            return self.resource_name == resource_name or self.resource_name == WILDCARD
        if self.pattern_type == PatternType.PREFIXED:
            return resource_name.startswith(self.resource_name)
        return False

    def sort_key(self) -> tuple[int, str, int, str, str, int, int]:
        return (
            int(self.resource_type),
            self.resource_name,
            int(self.pattern_type),
            self.principal,
            self.host,
            int(self.operation),
            int(self.permission),
        )


@dataclass(frozen=True, slots=True)
class AclBindingFilter:
    """Kafka's ``AclBindingFilter`` (a ``ResourcePatternFilter`` plus an ``AccessControlEntryFilter``).

    ``None`` for a string field and ANY for an enum field match anything. Pattern type MATCH
    matches every pattern that would apply to ``resource_name``: the literal name, the literal
    wildcard ``"*"`` and any PREFIXED pattern that is a prefix of it. Any other pattern type
    matches only bindings with that pattern type and (when given) exactly that name.
    """

    resource_type: ResourceType = ResourceType.ANY
    resource_name: str | None = None
    pattern_type: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: AclOperation = AclOperation.ANY
    permission: AclPermissionType = AclPermissionType.ANY

    @classmethod
    def any(cls) -> AclBindingFilter:
        return cls()

    @classmethod
    def exact(cls, binding: AclBinding) -> AclBindingFilter:
        """The filter that matches exactly ``binding`` (used by ``riverbed acl remove``)."""
        return cls(
            binding.resource_type,
            binding.resource_name,
            binding.pattern_type,
            binding.principal,
            binding.host,
            binding.operation,
            binding.permission,
        )

    def is_unknown(self) -> bool:
        return (
            self.resource_type == ResourceType.UNKNOWN
            or self.pattern_type == PatternType.UNKNOWN
            or self.operation == AclOperation.UNKNOWN
            or self.permission == AclPermissionType.UNKNOWN
        )

    def matches_pattern(self, binding: AclBinding) -> bool:
        """``ResourcePatternFilter.matches``."""
        if self.resource_type != ResourceType.ANY and self.resource_type != binding.resource_type:
            return False
        if self.pattern_type not in (PatternType.ANY, PatternType.MATCH) and (
            self.pattern_type != binding.pattern_type
        ):
            return False
        name = self.resource_name
        if name is None:
            return True
        if self.pattern_type == PatternType.ANY or self.pattern_type == binding.pattern_type:
            return name == binding.resource_name
        # MATCH against a concrete pattern
        if binding.pattern_type == PatternType.LITERAL:
            return name == binding.resource_name or binding.resource_name == WILDCARD
        if binding.pattern_type == PatternType.PREFIXED:
            return name.startswith(binding.resource_name)
        return False

    def matches_entry(self, binding: AclBinding) -> bool:
        """``AccessControlEntryFilter.matches``."""
        if self.principal is not None and self.principal != binding.principal:
            return False
        if self.host is not None and self.host != binding.host:
            return False
        if self.operation != AclOperation.ANY and self.operation != binding.operation:
            return False
        return self.permission == AclPermissionType.ANY or self.permission == binding.permission

    def matches(self, binding: AclBinding) -> bool:
        return self.matches_pattern(binding) and self.matches_entry(binding)

    def find_indefinite_field(self) -> str | None:
        """Why this filter could match more than one binding, or None (Kafka's wording)."""
        if self.resource_type == ResourceType.ANY:
            return "Resource type is ANY."
        if self.resource_type == ResourceType.UNKNOWN:
            return "Resource type is UNKNOWN."
        if self.resource_name is None:
            return "Resource name is NULL."
        if self.pattern_type == PatternType.MATCH:
            return "Resource pattern type is MATCH."
        if self.pattern_type == PatternType.UNKNOWN:
            return "Resource pattern type is UNKNOWN."
        if self.principal is None:
            return "Principal is NULL."
        if self.host is None:
            return "Host is NULL."
        if self.operation == AclOperation.ANY:
            return "Operation is ANY."
        if self.operation == AclOperation.UNKNOWN:
            return "Operation is UNKNOWN."
        if self.permission == AclPermissionType.ANY:
            return "Permission type is ANY."
        if self.permission == AclPermissionType.UNKNOWN:
            return "Permission type is UNKNOWN."
        return None

    def matches_at_most_one(self) -> bool:
        return self.find_indefinite_field() is None


class AclValidationError(ValueError):
    """A binding or filter a request may not carry; ``error_code`` and ``message`` go on the wire."""

    def __init__(self, error_code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


def parse_principal(principal: str) -> tuple[str, str]:
    """Split ``"Type:name"`` at the first colon (Kafka's ``SecurityUtils.parseKafkaPrincipal``).

    riverbed is slightly stricter than Kafka: the type and the name must both be non-empty.
    Any type is accepted (Kafka allows custom principal types), though riverbed's own
    authentication only ever produces ``User:`` principals.
    """
    kind, sep, name = principal.partition(":")
    if not sep:
        raise AclValidationError(
            ErrorCode.INVALID_REQUEST,
            f"Could not parse principal from `{principal}` (no colon is present separating the "
            "principal type from the principal name)",
        )
    if not kind or not name:
        raise AclValidationError(
            ErrorCode.INVALID_REQUEST,
            f"Invalid principal `{principal}`: expected principalType:principalName",
        )
    return kind, name


def validate_binding(binding: AclBinding) -> None:
    """Check a binding from CreateAcls (or the store); raise ``AclValidationError`` if invalid.

    Kafka's rules (``AclControlManager.validateNewAcl`` and ``AclApis.handleCreateAcls``): no
    UNKNOWN/ANY resource type, pattern LITERAL or PREFIXED only, no UNKNOWN/ANY operation,
    permission ALLOW or DENY, a non-empty resource name, the CLUSTER resource named
    ``kafka-cluster``, and a principal of the form ``Type:name``. All give INVALID_REQUEST.
    """
    if binding.resource_type not in _CONCRETE_RESOURCE_TYPES:
        raise AclValidationError(
            ErrorCode.INVALID_REQUEST, f"Invalid resourceType {binding.resource_type.name}"
        )
    if binding.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
        raise AclValidationError(
            ErrorCode.INVALID_REQUEST, f"Invalid patternType {binding.pattern_type.name}"
        )
    if binding.operation not in _CONCRETE_OPERATIONS:
        raise AclValidationError(
            ErrorCode.INVALID_REQUEST, f"Invalid operation {binding.operation.name}"
        )
    if binding.permission not in (AclPermissionType.ALLOW, AclPermissionType.DENY):
        raise AclValidationError(
            ErrorCode.INVALID_REQUEST, f"Invalid permissionType {binding.permission.name}"
        )
    if not binding.resource_name:
        raise AclValidationError(ErrorCode.INVALID_REQUEST, "Invalid empty resource name")
    if binding.resource_type == ResourceType.CLUSTER and binding.resource_name != CLUSTER_NAME:
        raise AclValidationError(
            ErrorCode.INVALID_REQUEST,
            f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}",
        )
    parse_principal(binding.principal)
    if not binding.host:
        raise AclValidationError(ErrorCode.INVALID_REQUEST, "Invalid empty host")


def validate_filter(acl_filter: AclBindingFilter) -> None:
    """Check a filter from DescribeAcls/DeleteAcls: no UNKNOWN component (INVALID_REQUEST)."""
    if acl_filter.resource_type == ResourceType.UNKNOWN or (
        acl_filter.pattern_type == PatternType.UNKNOWN
    ):
        raise AclValidationError(ErrorCode.INVALID_REQUEST, "Unknown patternFilter.")
    if acl_filter.operation == AclOperation.UNKNOWN or (
        acl_filter.permission == AclPermissionType.UNKNOWN
    ):
        raise AclValidationError(ErrorCode.INVALID_REQUEST, "Unknown entryFilter.")


def operation_supported(resource_type: ResourceType, operation: AclOperation) -> bool:
    """Whether ``kafka-acls`` would accept ``operation`` on ``resource_type`` (ALL always)."""
    if operation == AclOperation.ALL:
        return resource_type in SUPPORTED_OPERATIONS
    return operation in SUPPORTED_OPERATIONS.get(resource_type, frozenset())


# --------------------------------------------------------------------------------------------
# ACL sources and the authorizer


@runtime_checkable
class AclSource(Protocol):
    """Where an ``Authorizer`` reads ACLs: a set of bindings plus a counter bumped on change."""

    @property
    def generation(self) -> int: ...

    def bindings(self) -> Collection[AclBinding]: ...


class StaticAcls:
    """An in-memory ``AclSource``; ``replace`` swaps the whole set (handy in tests)."""

    def __init__(self, bindings: Iterable[AclBinding] = ()) -> None:
        self._bindings: frozenset[AclBinding] = frozenset(bindings)
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def bindings(self) -> Collection[AclBinding]:
        return self._bindings

    def replace(self, bindings: Iterable[AclBinding]) -> None:
        self._bindings = frozenset(bindings)
        self._generation += 1


class _TypeIndex:
    """The ACLs of one resource type, indexed by literal name and by prefix."""

    __slots__ = ("literal", "prefix_lengths", "prefixed")

    def __init__(self) -> None:
        self.literal: dict[str, list[AclBinding]] = {}
        self.prefixed: dict[str, list[AclBinding]] = {}
        self.prefix_lengths: list[int] = []

    def applicable(self, name: str) -> list[list[AclBinding]]:
        """The ACL lists that apply to resource ``name`` (rule 2)."""
        found: list[list[AclBinding]] = []
        exact = self.literal.get(name)
        if exact:
            found.append(exact)
        if name != WILDCARD:
            wild = self.literal.get(WILDCARD)
            if wild:
                found.append(wild)
        if self.prefixed:
            prefixed = self.prefixed
            stop = bisect.bisect_right(self.prefix_lengths, len(name))
            for length in self.prefix_lengths[:stop]:
                acls = prefixed.get(name[:length])
                if acls:
                    found.append(acls)
        return found


def _build_index(bindings: Iterable[AclBinding]) -> dict[ResourceType, _TypeIndex]:
    index: dict[ResourceType, _TypeIndex] = {}
    for binding in bindings:
        type_index = index.get(binding.resource_type)
        if type_index is None:
            type_index = index[binding.resource_type] = _TypeIndex()
        if binding.pattern_type == PatternType.LITERAL:
            type_index.literal.setdefault(binding.resource_name, []).append(binding)
        elif binding.pattern_type == PatternType.PREFIXED:
            type_index.prefixed.setdefault(binding.resource_name, []).append(binding)
        # other pattern types never apply to a resource; validation keeps them out anyway
    for type_index in index.values():
        type_index.prefix_lengths = sorted({len(p) for p in type_index.prefixed})
    return index


class Authorizer:
    """Kafka's ACL decision procedure over an ``AclSource`` (see the module docstring)."""

    def __init__(
        self,
        acls: AclSource | Iterable[AclBinding] = (),
        super_users: Iterable[str] = (),
        allow_everyone_if_no_acl_found: bool = False,
    ) -> None:
        self._source: AclSource = acls if isinstance(acls, AclSource) else StaticAcls(acls)
        self.super_users: frozenset[str] = frozenset(super_users)
        self.allow_everyone_if_no_acl_found = allow_everyone_if_no_acl_found
        self._generation = self._source.generation
        self._index = _build_index(self._source.bindings())

    @property
    def source(self) -> AclSource:
        return self._source

    def _current_index(self) -> dict[ResourceType, _TypeIndex]:
        generation = self._source.generation
        if generation != self._generation:
            self._index = _build_index(self._source.bindings())
            self._generation = generation
        return self._index

    def is_super_user(self, principal: str) -> bool:
        return principal in self.super_users

    def authorize(
        self,
        principal: str,
        host: str,
        operation: AclOperation,
        resource_type: ResourceType,
        resource_name: str,
    ) -> bool:
        """May ``principal`` connecting from ``host`` perform ``operation`` on the resource?"""
        if operation not in _CONCRETE_OPERATIONS:
            raise ValueError(f"cannot authorize operation {operation.name}")
        if resource_type not in _CONCRETE_RESOURCE_TYPES:
            raise ValueError(f"cannot authorize resource type {resource_type.name}")
        if principal in self.super_users:
            return True
        type_index = self._current_index().get(resource_type)
        if type_index is None:
            return self.allow_everyone_if_no_acl_found
        lists = type_index.applicable(resource_name)
        if not lists:
            return self.allow_everyone_if_no_acl_found
        allowed = False
        for acls in lists:
            for acl in acls:
                if acl.principal != principal and acl.principal != WILDCARD_PRINCIPAL:
                    continue
                if acl.host != host and acl.host != WILDCARD:
                    continue
                if acl.permission == AclPermissionType.DENY:
                    if deny_blocks(acl.operation, operation):
                        return False
                elif not allowed and allow_grants(acl.operation, operation):
                    allowed = True
        return allowed

    def filter_authorized(
        self,
        principal: str,
        host: str,
        operation: AclOperation,
        resource_type: ResourceType,
        names: Iterable[str],
    ) -> set[str]:
        """The subset of ``names`` the caller may ``operation`` (each name checked once)."""
        return {
            name
            for name in set(names)
            if self.authorize(principal, host, operation, resource_type, name)
        }

    def authorize_by_resource_type(
        self,
        principal: str,
        host: str,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> bool:
        """May the caller ``operation`` at least one resource of ``resource_type``?

        Kafka's default ``Authorizer.authorizeByResourceType`` (KIP-679), used by
        InitProducerId without a transactional id: allowed if a check on an arbitrary name
        passes (super users, allow-everyone), or if some ALLOW for the operation (or ALL) is
        not dominated by a DENY: a literal allow is dominated by a literal deny of the same
        name or a prefixed deny of one of its prefixes, a prefixed allow by a prefixed deny
        of one of its prefixes. A literal wildcard DENY denies and a literal wildcard ALLOW
        allows. Implications are not applied here, as in Kafka.
        """
        if operation not in _CONCRETE_OPERATIONS:
            raise ValueError(f"cannot authorize operation {operation.name}")
        if resource_type not in _CONCRETE_RESOURCE_TYPES:
            raise ValueError(f"cannot authorize resource type {resource_type.name}")
        if self.authorize(principal, host, operation, resource_type, "hardcode"):
            return True
        type_index = self._current_index().get(resource_type)
        if type_index is None:
            return False
        deny_literal: set[str] = set()
        deny_prefixed: set[str] = set()
        allow_literal: set[str] = set()
        allow_prefixed: set[str] = set()
        wildcard_allow = False
        for patterns, is_prefixed in ((type_index.literal, False), (type_index.prefixed, True)):
            for acls in patterns.values():
                for acl in acls:
                    if acl.host != host and acl.host != WILDCARD:
                        continue
                    if acl.principal != principal and acl.principal != WILDCARD_PRINCIPAL:
                        continue
                    if acl.operation != operation and acl.operation != AclOperation.ALL:
                        continue
                    if acl.permission == AclPermissionType.DENY:
                        if not is_prefixed and acl.resource_name == WILDCARD:
                            return False
                        (deny_prefixed if is_prefixed else deny_literal).add(acl.resource_name)
                    elif acl.permission == AclPermissionType.ALLOW:
                        if not is_prefixed and acl.resource_name == WILDCARD:
                            wildcard_allow = True
                        else:
                            target = allow_prefixed if is_prefixed else allow_literal
                            target.add(acl.resource_name)
        if wildcard_allow:
            return True

        def dominated_by_prefix(name: str) -> bool:
            return any(name[:i] in deny_prefixed for i in range(1, len(name) + 1))

        for name in allow_literal:
            if name not in deny_literal and not dominated_by_prefix(name):
                return True
        return any(not dominated_by_prefix(name) for name in allow_prefixed)

    def authorized_operations(
        self, principal: str, host: str, resource_type: ResourceType, resource_name: str
    ) -> frozenset[AclOperation]:
        """The supported operations on a resource that the caller is allowed."""
        return frozenset(
            op
            for op in SUPPORTED_OPERATIONS.get(resource_type, frozenset())
            if self.authorize(principal, host, op, resource_type, resource_name)
        )
