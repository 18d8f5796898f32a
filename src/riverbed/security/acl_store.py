"""A durable ACL set in one JSON file: the data behind CreateAcls, DescribeAcls and DeleteAcls.

File: ``<directory>/acls.json``, mode 0600, UTF-8::

    {"format": "riverbed-acls", "version": 1,
     "acls": [{"resource_type": "TOPIC", "resource_name": "orders", "pattern_type": "LITERAL",
               "principal": "User:alice", "host": "*", "operation": "READ",
               "permission": "ALLOW"}, ...]}

Enum values are stored by name (readable, and stable even if someone renumbers an enum);
bindings are written sorted, so the file diffs well. Every change rewrites the whole file:
write ``acls.json.tmp`` (created 0600), flush, fsync, ``os.replace`` over ``acls.json``, fsync
the directory. A crash leaves either the old file or the new one, never a mix; a stray
``.tmp`` is ignored and overwritten on the next write. The in-memory set changes only after
the file is durable, so a failed write leaves the store as it was.

On open, a file that is not valid JSON, has an unexpected shape, or holds an invalid binding
raises ``AclStoreCorruptError`` naming the file: the broker must not start with silently
dropped ACLs. A missing file is an empty set.

The store is an ``AclSource``: ``Authorizer(store, ...)`` re-indexes when ``generation`` moves.
Not thread-safe; drive it from one thread (the event loop) or wrap it in a lock.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from riverbed.protocol.errors import ErrorCode
from riverbed.security.acl import (
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

FILE_NAME = "acls.json"
FORMAT = "riverbed-acls"
VERSION = 1


class AclStoreCorruptError(RuntimeError):
    """The ACL file exists but cannot be trusted; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class AclCreateResult:
    """Outcome of one binding in CreateAcls (error NONE = created, or already present)."""

    error_code: ErrorCode = ErrorCode.NONE
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class AclDeleteResult:
    """Outcome of one filter in DeleteAcls: the bindings it matched and removed."""

    error_code: ErrorCode = ErrorCode.NONE
    error_message: str | None = None
    deleted: tuple[AclBinding, ...] = field(default_factory=tuple)


def binding_to_json(binding: AclBinding) -> dict[str, str]:
    return {
        "resource_type": binding.resource_type.name,
        "resource_name": binding.resource_name,
        "pattern_type": binding.pattern_type.name,
        "principal": binding.principal,
        "host": binding.host,
        "operation": binding.operation.name,
        "permission": binding.permission.name,
    }


def binding_from_json(obj: Any) -> AclBinding:
    """Parse one stored binding; raises ``ValueError`` (or KeyError/TypeError) if malformed."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected an object, got {type(obj).__name__}")
    strings = {}
    for key in (
        "resource_type",
        "resource_name",
        "pattern_type",
        "principal",
        "host",
        "operation",
        "permission",
    ):
        value = obj[key]
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string")
        strings[key] = value
    return AclBinding(
        resource_type=ResourceType[strings["resource_type"]],
        resource_name=strings["resource_name"],
        pattern_type=PatternType[strings["pattern_type"]],
        principal=strings["principal"],
        host=strings["host"],
        operation=AclOperation[strings["operation"]],
        permission=AclPermissionType[strings["permission"]],
    )


class AclStore:
    """The durable ACL set (see the module docstring for the file format and guarantees)."""

    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self._fsync = fsync
        self._bindings: frozenset[AclBinding] = self._load()
        self._generation = 0

    # -- AclSource --------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Bumped on every change; ``Authorizer`` rebuilds its index when it moves."""
        return self._generation

    def bindings(self) -> Collection[AclBinding]:
        return self._bindings

    def __len__(self) -> int:
        return len(self._bindings)

    # -- the three ACL APIs ------------------------------------------------------------------

    def add(self, bindings: Sequence[AclBinding]) -> list[AclCreateResult]:
        """CreateAcls: one result per binding, in order. Valid bindings are stored together
        with one durable write; adding a binding that exists already succeeds (as in Kafka)."""
        results: list[AclCreateResult] = []
        to_add: set[AclBinding] = set()
        for binding in bindings:
            try:
                validate_binding(binding)
            except AclValidationError as exc:
                results.append(AclCreateResult(exc.error_code, exc.message))
                continue
            to_add.add(binding)
            results.append(AclCreateResult())
        new = self._bindings | to_add
        if new != self._bindings:
            self._commit(new)
        return results

    def delete(self, filters: Sequence[AclBindingFilter]) -> list[AclDeleteResult]:
        """DeleteAcls: one result per filter, in order, listing every stored binding the
        filter matched (a binding matched by two filters is listed under both, as Kafka
        does). All matches are removed with one durable write."""
        results: list[AclDeleteResult] = []
        doomed: set[AclBinding] = set()
        for acl_filter in filters:
            try:
                validate_filter(acl_filter)
            except AclValidationError as exc:
                results.append(AclDeleteResult(exc.error_code, exc.message))
                continue
            matched = self.describe(acl_filter)
            doomed.update(matched)
            results.append(AclDeleteResult(deleted=tuple(matched)))
        if doomed:
            self._commit(self._bindings - doomed)
        return results

    def describe(self, acl_filter: AclBindingFilter | None = None) -> list[AclBinding]:
        """DescribeAcls: the stored bindings ``acl_filter`` matches, in a stable order."""
        acl_filter = acl_filter if acl_filter is not None else AclBindingFilter()
        return sorted((b for b in self._bindings if acl_filter.matches(b)), key=AclBinding.sort_key)

    def replace_all(self, bindings: Iterable[AclBinding]) -> None:
        """Make the stored set exactly ``bindings`` (all validated first)."""
        new = frozenset(bindings)
        for binding in new:
            validate_binding(binding)
        if new != self._bindings:
            self._commit(new)

    # -- persistence -------------------------------------------------------------------------

    def _load(self) -> frozenset[AclBinding]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return frozenset()
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AclStoreCorruptError(f"ACL file {self.path} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise AclStoreCorruptError(f"ACL file {self.path} is not a riverbed ACL file")
        if doc.get("version") != VERSION:
            raise AclStoreCorruptError(
                f"ACL file {self.path} has unsupported version {doc.get('version')!r}"
            )
        entries = doc.get("acls")
        if not isinstance(entries, list):
            raise AclStoreCorruptError(f"ACL file {self.path}: 'acls' must be a list")
        loaded: set[AclBinding] = set()
        for i, entry in enumerate(entries):
            try:
                binding = binding_from_json(entry)
                validate_binding(binding)
            except (KeyError, TypeError, ValueError) as exc:
                raise AclStoreCorruptError(
                    f"ACL file {self.path}: entry {i} is invalid: {exc!r}"
                ) from exc
            loaded.add(binding)
        return frozenset(loaded)

    def _commit(self, new: frozenset[AclBinding]) -> None:
        self._write(new)
        self._bindings = new
        self._generation += 1

    def _write(self, bindings: frozenset[AclBinding]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "acls": [binding_to_json(b) for b in sorted(bindings, key=AclBinding.sort_key)],
        }
        data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8")
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a pre-existing .tmp
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        if self._fsync:
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
