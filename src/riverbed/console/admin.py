"""The console's administration pages: ACL bindings (CreateAcls, DescribeAcls, DeleteAcls),
SCRAM users (AlterUserScramCredentials) through confluent-kafka's AdminClient, and share
groups' offset reset and delete (AlterShareGroupOffsets, DeleteGroups; riverbed.console.wire).
Every change is a CSRF-checked POST made as the logged-in principal (with login), refused for
the read-only role, and confirmed first when it deletes. See docs/console.md."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    OffsetSpec,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from riverbed.protocol.errors import ErrorCode

from . import browse, wire
from .cluster import describe_error, watermarks
from .security import read_form

if TYPE_CHECKING:
    from .app import Console

log = logging.getLogger("riverbed.console")

# Kafka's names in forms and tables; confluent-kafka calls the CLUSTER resource BROKER
RESOURCE_TYPES: dict[str, ResourceType] = {
    "TOPIC": ResourceType.TOPIC,
    "GROUP": ResourceType.GROUP,
    "CLUSTER": ResourceType.BROKER,
    "TRANSACTIONAL_ID": ResourceType.TRANSACTIONAL_ID,
}
PATTERN_TYPES = {"LITERAL": ResourcePatternType.LITERAL, "PREFIXED": ResourcePatternType.PREFIXED}
FILTER_PATTERN_TYPES = {
    "ANY": ResourcePatternType.ANY,
    "MATCH": ResourcePatternType.MATCH,
    **PATTERN_TYPES,
}
OPERATIONS = {
    op.name: op for op in AclOperation if op not in (AclOperation.UNKNOWN, AclOperation.ANY)
}
PERMISSIONS = {"ALLOW": AclPermissionType.ALLOW, "DENY": AclPermissionType.DENY}
CLUSTER_NAME = "kafka-cluster"
# the operations kafka-acls accepts on each resource type (Kafka's AclEntry.supportedOperations)
_O = AclOperation
SUPPORTED_OPERATIONS: dict[str, frozenset[AclOperation]] = {
    "TOPIC": frozenset(
        {
            _O.ALL,
            _O.READ,
            _O.WRITE,
            _O.CREATE,
            _O.DESCRIBE,
            _O.DELETE,
            _O.ALTER,
            _O.DESCRIBE_CONFIGS,
            _O.ALTER_CONFIGS,
        }
    ),
    "GROUP": frozenset({_O.ALL, _O.READ, _O.DESCRIBE, _O.DELETE}),
    "CLUSTER": frozenset(
        {
            _O.ALL,
            _O.CREATE,
            _O.CLUSTER_ACTION,
            _O.DESCRIBE_CONFIGS,
            _O.ALTER_CONFIGS,
            _O.IDEMPOTENT_WRITE,
            _O.ALTER,
            _O.DESCRIBE,
        }
    ),
    "TRANSACTIONAL_ID": frozenset({_O.ALL, _O.DESCRIBE, _O.WRITE}),
}
MECHANISMS = {
    "SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256,
    "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512,
}
MIN_ITERATIONS, MAX_ITERATIONS = 4096, 16384  # Kafka's bounds for AlterUserScramCredentials
MAX_NAME = 1000
ACL_FIELDS = ("resource_type", "name", "pattern", "principal", "host", "operation", "permission")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def resource_type_name(restype: ResourceType) -> str:
    return "CLUSTER" if restype == ResourceType.BROKER else str(restype.name)


def _text(
    form: Mapping[str, str], key: str, label: str, errors: list[str], required: bool = True
) -> str:
    value = form.get(key, "").strip()
    if not value:
        if required:
            errors.append(f"{label} is required.")
    elif len(value) > MAX_NAME or _CONTROL.search(value):
        errors.append(f"{label} must be at most {MAX_NAME} characters, without control characters.")
        return ""
    return value


def _choice(
    form: Mapping[str, str],
    key: str,
    label: str,
    choices: Mapping[str, Any],
    errors: list[str],
    default: str | None = None,
) -> Any:
    raw = form.get(key, "").strip().upper() or (default or "")
    if raw not in choices:
        errors.append(f"{label} must be one of {', '.join(choices)}.")
        return None
    return choices[raw]


def _principal(value: str, errors: list[str]) -> None:
    kind, sep, name = value.partition(":")
    if not sep or not kind or not name:
        errors.append(f"Principal must be TYPE:NAME (User:alice, User:*), got {value!r}.")


def _host(value: str, errors: list[str]) -> None:
    if value == "*":
        return
    try:
        ipaddress.ip_address(value)
    except ValueError:
        errors.append(f"Host must be * (any) or an IP address, got {value!r}.")


def parse_acl(form: Mapping[str, str]) -> tuple[AclBinding | None, list[str]]:
    """A binding to create from the form, checked as kafka-acls and the broker check one:
    a concrete resource type, pattern LITERAL or PREFIXED, a non-empty name (kafka-cluster
    for CLUSTER), an operation the resource type has, ALLOW or DENY, TYPE:NAME, * or an IP."""
    errors: list[str] = []
    rtype = form.get("resource_type", "").strip().upper()
    restype = _choice(form, "resource_type", "Resource type", RESOURCE_TYPES, errors)
    name = _text(form, "name", "Resource name", errors)
    if restype == ResourceType.BROKER and name and name != CLUSTER_NAME:
        errors.append(f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}.")
    pattern = _choice(form, "pattern", "Pattern type", PATTERN_TYPES, errors, "LITERAL")
    principal = _text(form, "principal", "Principal", errors)
    if principal:
        _principal(principal, errors)
    host = _text(form, "host", "Host", errors, required=False) or "*"
    _host(host, errors)
    operation = _choice(form, "operation", "Operation", OPERATIONS, errors)
    if (
        restype is not None
        and operation is not None
        and operation not in SUPPORTED_OPERATIONS[rtype]
    ):
        ops = ", ".join(sorted(o.name for o in SUPPORTED_OPERATIONS[rtype]))
        errors.append(
            f"Operation {operation.name} does not apply to {rtype} resources (they have {ops})."
        )
    permission = _choice(form, "permission", "Permission", PERMISSIONS, errors, "ALLOW")
    if errors:
        return None, errors
    return AclBinding(restype, name, pattern, principal, host, operation, permission), []


def parse_acl_filter(form: Mapping[str, str]) -> tuple[AclBindingFilter | None, list[str]]:
    """A DeleteAcls / DescribeAcls filter: ANY (or an empty field) matches everything; pattern
    MATCH matches as the authorizer does (literal, wildcard and prefixed bindings that apply)."""
    errors: list[str] = []
    restype = _choice(
        form,
        "resource_type",
        "Resource type",
        {"ANY": ResourceType.ANY, **RESOURCE_TYPES},
        errors,
        "ANY",
    )
    name = _text(form, "name", "Resource name", errors, required=False) or None
    pattern = _choice(form, "pattern", "Pattern type", FILTER_PATTERN_TYPES, errors, "ANY")
    principal = _text(form, "principal", "Principal", errors, required=False) or None
    if principal:
        _principal(principal, errors)
    host = _text(form, "host", "Host", errors, required=False) or None
    if host:
        _host(host, errors)
    operation = _choice(
        form, "operation", "Operation", {"ANY": AclOperation.ANY, **OPERATIONS}, errors, "ANY"
    )
    permission = _choice(
        form,
        "permission",
        "Permission",
        {"ANY": AclPermissionType.ANY, **PERMISSIONS},
        errors,
        "ANY",
    )
    if errors:
        return None, errors
    new_filter: Any = AclBindingFilter  # (its stub lacks the constructor's arguments)
    return new_filter(restype, name, pattern, principal, host, operation, permission), []


def filter_fields(binding: Any) -> dict[str, str]:
    """The form fields of a filter that matches exactly this binding (a row's Delete link)."""
    return {
        "resource_type": resource_type_name(binding.restype),
        "name": binding.name,
        "pattern": binding.resource_pattern_type.name,
        "principal": binding.principal,
        "host": binding.host,
        "operation": binding.operation.name,
        "permission": binding.permission_type.name,
    }


class NotAuthorized(Exception):
    """The principal may not make this request (known before asking the broker)."""


@dataclass(frozen=True)
class UserChange:
    user: str
    mechanism: str
    iterations: int
    password: str

    def __repr__(self) -> str:  # never shows the password
        return f"UserChange(user={self.user!r}, mechanism={self.mechanism!r}, iterations={self.iterations})"


def parse_user(form: Mapping[str, str]) -> tuple[UserChange | None, list[str]]:
    """A SCRAM credential to create or replace: a user name, SCRAM-SHA-256 or -512, iterations
    in Kafka's bounds (4096-16384), a password typed twice. Errors never contain the password."""
    errors: list[str] = []
    user = _text(form, "user", "User name", errors)
    if len(user) > 256:
        errors.append("User name must be at most 256 characters.")
    mechanism = form.get("mechanism", "").strip().upper() or "SCRAM-SHA-256"
    if mechanism not in MECHANISMS:
        errors.append(f"Mechanism must be one of {', '.join(MECHANISMS)}.")
    raw = form.get("iterations", "").strip() or str(MIN_ITERATIONS)
    try:
        iterations = int(raw)
    except ValueError:
        iterations = 0
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        errors.append(
            f"Iterations must be a whole number from {MIN_ITERATIONS} to {MAX_ITERATIONS}."
        )
    password = form.get("password", "")
    if not password:
        errors.append("Password is required.")
    elif len(password) > 1024:
        errors.append("Password must be at most 1024 characters.")
    elif password != form.get("password2", ""):
        errors.append("The two passwords differ.")
    if errors:
        return None, errors
    return UserChange(user, mechanism, iterations, password), []


def _result(futures: Mapping[Any, Any], timeout: float) -> list[Any]:
    return [fut.result(timeout) for fut in futures.values()]


class AdminPages:
    """The handlers; `console` gives the logged-in principal's admin client and rendering."""

    def __init__(self, console: Console) -> None:
        self.c = console

    # -- ACLs -------------------------------------------------------------------------------
    def _require_describe(self, what: str) -> None:
        """Ask whether the principal may DESCRIBE the cluster (DescribeCluster's authorized
        operations) before a request that needs it, since librdkafka (2.x) mishandles the
        refusal: a DescribeAcls refused as a whole comes back as an empty list (no error), and a
        refused DescribeUserScramCredentials frees a string it does not own, which aborts the
        console's process."""
        view = self.c.view
        cluster: Any = view.admin.describe_cluster(
            include_authorized_operations=True, request_timeout=view.timeout
        )
        if AclOperation.DESCRIBE not in (cluster.result(view.timeout).authorized_operations or []):
            raise NotAuthorized(
                f"CLUSTER_AUTHORIZATION_FAILED: {what} needs DESCRIBE on the cluster"
            )

    def _describe(self, flt: Any) -> list[Any]:
        view = self.c.view
        self._require_describe("listing ACLs")
        rows = list(
            view.admin.describe_acls(flt, request_timeout=view.timeout).result(view.timeout)
        )
        rows.sort(
            key=lambda a: (
                a.principal,
                resource_type_name(a.restype),
                a.name,
                a.operation.name,
                a.permission_type.name,
                a.host,
            )
        )
        return rows

    async def _acls_page(
        self,
        request: Request,
        status: int = 200,
        form: Mapping[str, str] | None = None,
        errors: list[str] | None = None,
        done: str | None = None,
    ) -> Response:
        everything, _ = parse_acl_filter({})
        try:
            rows, error = await run_in_threadpool(self._describe, everything), None
        except NotAuthorized as exc:
            rows, error = [], str(exc)
        except (KafkaException, TimeoutError) as exc:
            rows, error = [], describe_error(exc)
        listed = [
            {
                "acl": a,
                "restype": resource_type_name(a.restype),
                # a binding the AdminClient cannot name (a USER resource, ...) has no exact filter
                "delete": None
                if "UNKNOWN" in (a.restype.name, a.operation.name)
                else "/acls/delete?" + urlencode(filter_fields(a)),
            }
            for a in rows
        ]
        return self.c.render(
            request,
            "acls.html",
            status,
            rows=listed,
            error=error,
            form=form or {"host": "*"},
            errors=errors or [],
            done=done,
            resource_types=list(RESOURCE_TYPES),
            operations=list(OPERATIONS),
            supported={k: sorted(o.name for o in v) for k, v in SUPPORTED_OPERATIONS.items()},
        )

    async def acls(self, request: Request) -> Response:
        n = request.query_params.get("deleted", "")
        done = "ACL binding created." if request.query_params.get("done") == "created" else None
        if n.isdigit():
            done = f"Deleted {n} ACL binding(s)."
        return await self._acls_page(request, done=done)

    async def acl_create(self, request: Request) -> Response:
        self.c.guard_write()
        form = await read_form(request)
        binding, errors = parse_acl(form)
        if binding is None:
            return await self._acls_page(request, 400, form, errors)
        view = self.c.view

        def create() -> None:
            _result(
                view.admin.create_acls([binding], request_timeout=view.timeout), view.timeout * 2
            )

        try:
            await run_in_threadpool(create)
        except (KafkaException, TimeoutError) as exc:
            log.info("console: CreateAcls refused: %s", describe_error(exc))
            return await self._acls_page(
                request, 400, form, [f"The broker refused the ACL: {describe_error(exc)}"]
            )
        log.info("console: created ACL %s", filter_fields(binding))
        return RedirectResponse("/acls?done=created", 303)

    async def acl_delete_confirm(self, request: Request) -> Response:
        """The confirmation step: the bindings the filter matches now (DescribeAcls with the same
        filter DeleteAcls will get), and a button that deletes them."""
        self.c.guard_write()
        fields = {k: request.query_params.get(k, "") for k in ACL_FIELDS}
        flt, errors = parse_acl_filter(fields)
        if flt is None:
            return self.c.error(request, 400, " ".join(errors))
        try:
            rows = await run_in_threadpool(self._describe, flt)
        except NotAuthorized as exc:
            return self.c.error(request, 403, f"Cannot read the ACLs: {exc}")
        except (KafkaException, TimeoutError) as exc:
            return self.c.error(request, 503, f"Cannot read the ACLs: {describe_error(exc)}")
        listed = [{"acl": a, "restype": resource_type_name(a.restype)} for a in rows]
        return self.c.render(request, "acl_delete.html", rows=listed, fields=fields, errors=[])

    async def acl_delete(self, request: Request) -> Response:
        self.c.guard_write()
        form = await read_form(request)
        fields = {k: form.get(k, "") for k in ACL_FIELDS}
        flt, errors = parse_acl_filter(fields)
        if flt is None:
            return self.c.error(request, 400, " ".join(errors))
        view = self.c.view

        def delete() -> int:
            return sum(
                len(r)
                for r in _result(
                    view.admin.delete_acls([flt], request_timeout=view.timeout), view.timeout * 2
                )
            )

        try:
            n = await run_in_threadpool(delete)
        except (KafkaException, TimeoutError) as exc:
            log.info("console: DeleteAcls refused: %s", describe_error(exc))
            try:
                rows = await run_in_threadpool(self._describe, flt)
            except (NotAuthorized, KafkaException, TimeoutError):
                rows = []
            listed = [{"acl": a, "restype": resource_type_name(a.restype)} for a in rows]
            return self.c.render(
                request,
                "acl_delete.html",
                400,
                rows=listed,
                fields=fields,
                errors=[f"The broker refused to delete: {describe_error(exc)}"],
            )
        log.info("console: deleted %d ACL binding(s) matching %s", n, fields)
        return RedirectResponse(f"/acls?deleted={n}", 303)

    # -- SCRAM users ------------------------------------------------------------------------
    def _users(self) -> dict[str, Any]:
        view = self.c.view
        self._require_describe("listing SCRAM users")
        fut: Any = view.admin.describe_user_scram_credentials(request_timeout=view.timeout)
        return dict(fut.result(view.timeout))

    async def _users_page(
        self,
        request: Request,
        status: int = 200,
        form: Mapping[str, str] | None = None,
        errors: list[str] | None = None,
    ) -> Response:
        try:
            users, error = await run_in_threadpool(self._users), None
        except NotAuthorized as exc:
            users, error = {}, str(exc)
        except (KafkaException, TimeoutError) as exc:
            users, error = {}, describe_error(exc)
        rows = [
            (
                name,
                [
                    f"{i.mechanism.name.replace('_', '-')} ({i.iterations} iterations)"
                    for i in desc.scram_credential_infos
                ],
            )
            for name, desc in sorted(users.items())
        ]
        shown = {
            k: v for k, v in (form or {}).items() if not k.startswith("password")
        }  # never echo a password
        done = request.query_params.get("done")
        return self.c.render(
            request,
            "users.html",
            status,
            rows=rows,
            error=error,
            form=shown,
            errors=errors or [],
            mechanisms=list(MECHANISMS),
            min_iterations=MIN_ITERATIONS,
            max_iterations=MAX_ITERATIONS,
            done=done if done in ("saved", "deleted") else None,
            done_user=request.query_params.get("user", ""),
        )

    async def users(self, request: Request) -> Response:
        return await self._users_page(request)

    async def user_save(self, request: Request) -> Response:
        self.c.guard_write()
        form = await read_form(request)
        change, errors = parse_user(form)
        if change is None:
            return await self._users_page(request, 400, form, errors)
        view = self.c.view

        def save() -> None:
            up = UserScramCredentialUpsertion(
                change.user,
                ScramCredentialInfo(MECHANISMS[change.mechanism], change.iterations),
                change.password.encode(),
            )
            _result(
                view.admin.alter_user_scram_credentials([up], request_timeout=view.timeout),
                view.timeout * 2,
            )

        try:
            await run_in_threadpool(save)
        except (KafkaException, TimeoutError) as exc:
            log.info(
                "console: AlterUserScramCredentials (upsert %s %s) refused: %s",
                change.user,
                change.mechanism,
                describe_error(exc),
            )
            return await self._users_page(
                request, 400, form, [f"The broker refused the credential: {describe_error(exc)}"]
            )
        log.info(
            "console: saved the %s credential of user %s (%d iterations)",
            change.mechanism,
            change.user,
            change.iterations,
        )
        return RedirectResponse("/users?" + urlencode({"done": "saved", "user": change.user}), 303)

    def _user(self, request: Request) -> str:
        user = str(request.path_params["user"])
        if not user or len(user) > 256 or _CONTROL.search(user):
            raise _not_found("no such user")
        return user

    def _confirm_user(self, request: Request, user: str, status: int, message: str) -> Response:
        return self.c.render(
            request,
            "confirm.html",
            status,
            title=f"Delete user {user}",
            action=f"/users/{quote(user, safe='')}/delete",
            message=message,
            expect=user,
            fields={},
            cancel="/users",
        )

    async def user_delete_confirm(self, request: Request) -> Response:
        self.c.guard_write()
        user = self._user(request)
        return self._confirm_user(
            request,
            user,
            200,
            f"Deleting user {user} removes all of its SCRAM credentials: it can no longer log in with SCRAM. Type the user name to confirm.",
        )

    async def user_delete(self, request: Request) -> Response:
        self.c.guard_write()
        user = self._user(request)
        form = await read_form(request)
        if form.get("confirm") != user:
            return self._confirm_user(
                request, user, 400, "The name typed does not match: nothing was deleted."
            )
        view = self.c.view

        def delete() -> int:
            desc = self._users().get(user)
            if desc is None:
                return 0
            dels: list[UserScramCredentialAlteration] = [
                UserScramCredentialDeletion(user, i.mechanism) for i in desc.scram_credential_infos
            ]
            _result(
                view.admin.alter_user_scram_credentials(dels, request_timeout=view.timeout),
                view.timeout * 2,
            )
            return len(dels)

        try:
            n = await run_in_threadpool(delete)
        except NotAuthorized as exc:
            return self.c.error(request, 403, f"Cannot delete user {user}: {exc}")
        except (KafkaException, TimeoutError) as exc:
            log.info(
                "console: AlterUserScramCredentials (delete %s) refused: %s",
                user,
                describe_error(exc),
            )
            return self.c.error(
                request, 400, f"The broker refused to delete user {user}: {describe_error(exc)}"
            )
        if n == 0:
            return self.c.error(request, 404, f"no such user: {user} (RESOURCE_NOT_FOUND)")
        log.info("console: deleted user %s (%d credential(s))", user, n)
        return RedirectResponse("/users?" + urlencode({"done": "deleted", "user": user}), 303)

    # -- share groups -----------------------------------------------------------------------
    def _share_plan(
        self, gid: str, info: dict[str, Any], topic: str, strategy: str, target: int
    ) -> list[dict[str, Any]]:
        """Per partition: the start offset now and the one a reset sets. A chosen topic covers all
        of its partitions (as kafka-share-groups --reset-offsets does); all topics: the group's."""
        view = self.c.view
        md = view.admin.list_topics(timeout=view.timeout)  # never by name: that auto-creates it
        topics = [topic] if topic else sorted({r["topic"] for r in info["rows"]})
        tps = [
            (t, p)
            for t in topics
            if (meta := md.topics.get(t)) is not None and meta.error is None
            for p in sorted(meta.partitions)
        ]
        starts = {(r["topic"], r["partition"]): r["start"] for r in info["rows"]}
        marks = watermarks(view.admin, tps, view.timeout)
        found: dict[tuple[str, int], int] = {}
        if strategy == "datetime":
            futs = view.admin.list_offsets(
                {TopicPartition(t, p): OffsetSpec.for_timestamp(target) for t, p in tps},
                request_timeout=view.timeout,
            )
            found = {
                (tp.topic, tp.partition): fut.result(view.timeout).offset
                for tp, fut in futs.items()
            }
        out = []
        for t, p in tps:
            low, high = marks.get((t, p), (-1, -1))
            if strategy == "earliest":
                new = low
            elif strategy == "latest":
                new = high
            elif strategy == "offset":
                new = min(max(target, low), high)
            else:
                new = found.get((t, p), -1)
                if new < 0:
                    new = high
            out.append(
                {
                    "topic": t,
                    "partition": p,
                    "start": starts.get((t, p)),
                    "low": low,
                    "high": high,
                    "new": new,
                }
            )
        return out

    async def share_reset(self, request: Request) -> Response:
        """Dry run first (the plan, start offset -> new offset per partition), then Execute
        (AlterShareGroupOffsets with exactly those offsets); refused while the group has members."""
        self.c.guard_write()
        gid = self.c._group_id(request)
        form = await read_form(request)
        errors: list[str] = []
        strategy = form.get("strategy", "")
        if strategy not in ("earliest", "latest", "offset", "datetime"):
            errors.append("Choose earliest, latest, offset or datetime.")
        target = 0
        if strategy == "offset":
            raw = form.get("value", "").strip()
            if not raw.isdigit() or int(raw) > 1 << 62:
                errors.append(f"The offset must be a whole number from 0, got {raw!r}.")
            else:
                target = int(raw)
        elif strategy == "datetime":
            try:
                target = browse.Query(time=form.get("value", "")).timestamp_ms()
            except browse.BadQuery as exc:
                errors.append(str(exc))
        try:
            info = await run_in_threadpool(self.c._read_share_group, gid)
        except wire.GroupError as exc:
            if exc.code == ErrorCode.GROUP_ID_NOT_FOUND:
                return self.c.error(request, 404, f"no such share group: {gid} ({exc})")
            return self.c.error(
                request,
                403 if "AUTHORIZATION" in str(exc) else 503,
                f"Cannot describe share group {gid}: {exc}",
            )
        except (wire.WireError, OSError, KafkaException, TimeoutError) as exc:
            return self.c.error(
                request, 503, f"Cannot describe share group {gid}: {_share_error(exc)}"
            )
        topics = share_topics(info)
        topic = form.get("topic", "")
        if topic and topic not in topics:
            errors.append(
                f"The share group has no share-partitions of or subscription to topic {topic!r}."
            )
        if not topics and not errors:
            errors.append("The share group has no topics to reset.")
        if errors:
            return self.c.render(
                request,
                "share_group.html",
                400,
                gid=gid,
                info=info,
                error=None,
                plan=None,
                form=form,
                errors=errors,
                topics=topics,
            )
        try:
            steps = await run_in_threadpool(self._share_plan, gid, info, topic, strategy, target)
        except (KafkaException, TimeoutError) as exc:
            return self.c.error(request, 503, f"Cannot plan the reset: {describe_error(exc)}")
        members = len(info["group"].members)
        if form.get("execute") == "1" and not members:
            settings = self.c.settings
            try:
                results = await run_in_threadpool(
                    wire.alter_share_group_offsets,
                    settings.bootstrap,
                    gid,
                    {(s["topic"], s["partition"]): s["new"] for s in steps},
                    settings.client,
                    self.c.view.timeout,
                )
            except (wire.WireError, OSError) as exc:
                log.info("console: AlterShareGroupOffsets of %s refused: %s", gid, exc)
                return self.c.render(
                    request,
                    "share_group.html",
                    400,
                    gid=gid,
                    info=info,
                    error=None,
                    plan=steps,
                    form=form,
                    topics=topics,
                    errors=[f"The broker refused the reset of {gid}: {exc}"],
                    can_execute=False,
                )
            failed = [f"{t}-{p}: {e}" for (t, p), e in sorted(results.items()) if e]
            if failed:
                return self.c.render(
                    request,
                    "share_group.html",
                    400,
                    gid=gid,
                    info=info,
                    error=None,
                    plan=steps,
                    form=form,
                    topics=topics,
                    errors=[f"The broker refused the reset of {gid} for " + "; ".join(failed)],
                    can_execute=False,
                )
            log.info(
                "console: reset start offsets of share group %s (%s, %d partitions)",
                gid,
                strategy,
                len(steps),
            )
            return RedirectResponse(f"/share-groups/{quote(gid, safe='')}?reset=done", 303)
        if members:
            errors.append(
                f"The share group has {members} member(s): stop its consumers before resetting (Kafka refuses offset changes of a share group with members: NON_EMPTY_GROUP)."
            )
        return self.c.render(
            request,
            "share_group.html",
            gid=gid,
            info=info,
            error=None,
            plan=steps,
            form=form,
            errors=errors,
            can_execute=not members,
            topics=topics,
        )

    def _confirm_share(self, request: Request, gid: str, status: int, message: str) -> Response:
        return self.c.render(
            request,
            "confirm.html",
            status,
            title=f"Delete share group {gid}",
            action=f"/share-groups/{quote(gid, safe='')}/delete",
            message=message,
            expect=gid,
            fields={},
            cancel=f"/share-groups/{quote(gid, safe='')}",
        )

    async def share_delete_confirm(self, request: Request) -> Response:
        self.c.guard_write()
        gid = self.c._group_id(request)
        return self._confirm_share(
            request,
            gid,
            200,
            f"Deleting share group {gid} removes its start offsets and the state of its records (delivery counts, acknowledgements); "
            "the broker refuses it while the group has members. Type the group id to confirm.",
        )

    async def share_delete(self, request: Request) -> Response:
        self.c.guard_write()
        gid = self.c._group_id(request)
        form = await read_form(request)
        if form.get("confirm") != gid:
            return self._confirm_share(
                request, gid, 400, "The id typed does not match: nothing was deleted."
            )
        settings = self.c.settings
        try:
            await run_in_threadpool(
                wire.delete_share_group,
                settings.bootstrap,
                gid,
                settings.client,
                self.c.view.timeout,
            )
        except wire.GroupError as exc:
            log.info("console: DeleteGroups of share group %s refused: %s", gid, exc)
            status = 404 if exc.code == ErrorCode.GROUP_ID_NOT_FOUND else 400
            return self.c.error(
                request, status, f"The broker refused to delete share group {gid}: {exc}"
            )
        except (wire.WireError, OSError) as exc:
            return self.c.error(request, 503, f"Cannot delete share group {gid}: {exc}")
        log.info("console: deleted share group %s", gid)
        return RedirectResponse("/share-groups?" + urlencode({"deleted": gid}), 303)

    def routes(
        self, page: Callable[[Callable[[Request], Any]], Callable[[Request], Any]]
    ) -> list[Route]:
        return [
            Route("/acls", page(self.acls)),
            Route("/acls", page(self.acl_create), methods=["POST"]),
            Route("/acls/delete", page(self.acl_delete_confirm)),
            Route("/acls/delete", page(self.acl_delete), methods=["POST"]),
            Route("/users", page(self.users)),
            Route("/users", page(self.user_save), methods=["POST"]),
            Route("/users/{user}/delete", page(self.user_delete_confirm)),
            Route("/users/{user}/delete", page(self.user_delete), methods=["POST"]),
            Route("/share-groups/{group}/reset", page(self.share_reset), methods=["POST"]),
            Route("/share-groups/{group}/delete", page(self.share_delete_confirm)),
            Route("/share-groups/{group}/delete", page(self.share_delete), methods=["POST"]),
        ]


def share_topics(info: Mapping[str, Any]) -> list[str]:
    """A share group's topics: those it has share-partitions of and its members subscribe to."""
    return sorted(
        {r["topic"] for r in info["rows"]}
        | {t for m in info["group"].members for t in m.subscribed}
    )


def _share_error(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, wire.WireError | OSError) else describe_error(exc)


def _not_found(message: str) -> Exception:
    from .app import NotFound

    return NotFound(message)
