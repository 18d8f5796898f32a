"""The REST API of Confluent Schema Registry: paths, JSON shapes, status and error codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from riverbed.web import HttpMetrics, JsonError, create_app, json_body, json_response

from . import contexts, errors
from .formats import SUPPORTED_TYPES
from .log import SchemaLog
from .state import (
    COMPATIBILITY_LEVELS,
    MODES,
    Record,
    Reference,
    State,
    Version,
    config_record,
    mode_record,
    parse_version,
)

MEDIA = "application/vnd.schemaregistry.v1+json"
# config fields stored and returned besides the compatibility level
CONFIG_FIELDS = ("normalize", "validateFields", "alias", "compatibilityGroup", "defaultMetadata", "overrideMetadata", "defaultRuleSet", "overrideRuleSet")
T = TypeVar("T")


def _ok(data: Any, status: int = 200) -> Response:
    return json_response(data, status, MEDIA)


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() == "true"


def _err(exc: errors.RegistryError) -> JsonError:
    return JsonError(exc.status, exc.code, exc.message)


# -- schema contexts: `:.ctx:subject`, or a base URL /contexts/.ctx/... (scope key below) ------------

URL_CONTEXT = "riverbed.registry.context"


def _url_context(request: Request) -> str:
    return str(request.scope.get(URL_CONTEXT, contexts.DEFAULT))


def _subject(request: Request) -> str:
    """The path's subject, qualified with the URL's context unless it names its own."""
    return contexts.qualify(_url_context(request), request.path_params["subject"])


def _config_subject(request: Request) -> str | None:
    """A config or mode path's subject: None for the global settings (and for ``:.:``, the
    default context's); ``:.ctx:`` for a context's own settings."""
    raw = request.path_params.get("subject")
    if raw is None:
        ctx = _url_context(request)
        return contexts.context_key(ctx)
    subject = contexts.qualify(_url_context(request), raw)
    return subject or None


def _id_context(request: Request) -> tuple[str | None, str]:
    """(the ?subject= asked for, the context whose ids are meant)."""
    raw = request.query_params.get("subject")
    if raw is None:
        return None, _url_context(request)
    subject = contexts.qualify(_url_context(request), raw)
    return subject, contexts.context_of(subject)


def _subject_prefix(request: Request) -> str | None:
    prefix = request.query_params.get("subjectPrefix")
    ctx = _url_context(request)
    if ctx != contexts.DEFAULT:
        return contexts.qualify(ctx, prefix or "")
    return prefix


class _StateCollector:
    """The registry's own figures, read from its state at scrape time."""

    def __init__(self, store: SchemaLog) -> None:
        self.store = store

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        def q(s: State) -> tuple[int, int, int, int]:
            versions = sum(len(rows) for rows in s.versions.values())
            return len(s.subjects()), versions, len(s.by_id), len(s.all_contexts())

        subjects, versions, schemas, ctxs = self.store.read(q)
        yield GaugeMetricFamily("riverbed_registry_subjects", "Subjects with a live version (all contexts)", value=subjects)
        yield GaugeMetricFamily("riverbed_registry_versions", "Versions stored, soft-deleted ones included", value=versions)
        yield GaugeMetricFamily("riverbed_registry_schemas", "Distinct schema ids (per context, summed)", value=schemas)
        yield GaugeMetricFamily("riverbed_registry_contexts", "Schema contexts", value=ctxs)


class ContextPaths:
    """ASGI middleware: /contexts/{context}/<path> is <path> inside that context (Confluent's
    base-context URLs, for clients configured with such a URL)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/contexts/"):
                ctx, sep, rest = path[len("/contexts/"):].partition("/")
                if sep and rest and contexts.valid_context(ctx):
                    scope = dict(scope, path="/" + rest, raw_path=("/" + rest).encode())
                    scope[URL_CONTEXT] = ctx
        await self.app(scope, receive, send)


class RegistryApi:
    def __init__(self, store: SchemaLog, max_body: int = 8 * 1024 * 1024) -> None:
        self.store = store
        self.max_body = max_body

    def app(self) -> Starlette:
        r = Route
        routes = [
            r("/", self.root, methods=["GET"]),
            r("/subjects", self.list_subjects, methods=["GET"]),
            r("/subjects/{subject:path}/versions/{version}/schema", self.get_version_schema, methods=["GET"]),
            r("/subjects/{subject:path}/versions/{version}/referencedby", self.referenced_by, methods=["GET"]),
            r("/subjects/{subject:path}/versions/{version}", self.get_version, methods=["GET"]),
            r("/subjects/{subject:path}/versions/{version}", self.delete_version, methods=["DELETE"]),
            r("/subjects/{subject:path}/versions", self.list_versions, methods=["GET"]),
            r("/subjects/{subject:path}/metadata", self.latest_with_metadata, methods=["GET"]),
            r("/subjects/{subject:path}/versions", self.register, methods=["POST"]),
            r("/subjects/{subject:path}", self.lookup, methods=["POST"]),
            r("/subjects/{subject:path}", self.delete_subject, methods=["DELETE"]),
            r("/schemas/types", self.types, methods=["GET"]),
            r("/schemas/ids/{id}/schema", self.id_schema_raw, methods=["GET"]),
            r("/schemas/ids/{id}/subjects", self.id_subjects, methods=["GET"]),
            r("/schemas/ids/{id}/versions", self.id_versions, methods=["GET"]),
            r("/schemas/ids/{id}", self.by_id, methods=["GET"]),
            r("/schemas", self.list_schemas, methods=["GET"]),
            r("/compatibility/subjects/{subject:path}/versions/{version}", self.check, methods=["POST"]),
            r("/compatibility/subjects/{subject:path}/versions", self.check_all, methods=["POST"]),
            r("/config", self.get_config, methods=["GET"]),
            r("/config", self.put_config, methods=["PUT"]),
            r("/config", self.delete_config, methods=["DELETE"]),
            r("/config/{subject:path}", self.get_config, methods=["GET"]),
            r("/config/{subject:path}", self.put_config, methods=["PUT"]),
            r("/config/{subject:path}", self.delete_config, methods=["DELETE"]),
            r("/mode", self.get_mode, methods=["GET"]),
            r("/mode", self.put_mode, methods=["PUT"]),
            r("/mode/{subject:path}", self.get_mode, methods=["GET"]),
            r("/mode/{subject:path}", self.put_mode, methods=["PUT"]),
            r("/mode/{subject:path}", self.delete_mode, methods=["DELETE"]),
            r("/contexts", self.contexts, methods=["GET"]),
        ]
        self.metrics = HttpMetrics("registry")
        self.metrics.registry.register(_StateCollector(self.store))
        app = create_app(routes, MEDIA, metrics=self.metrics)
        app.add_middleware(ContextPaths)  # outermost: the metrics see the rewritten path
        return app

    # -- helpers ---------------------------------------------------------------------------------

    def _read(self, fn: Callable[[State], T]) -> T:
        try:
            return self.store.read(fn)
        except errors.RegistryError as exc:
            raise _err(exc) from None

    async def _change(self, plan: Callable[[State], tuple[T, list[Record]]]) -> T:
        try:
            return await run_in_threadpool(self.store.change, plan)
        except errors.RegistryError as exc:
            raise _err(exc) from None

    async def _schema_request(self, request: Request) -> tuple[str, str, tuple[Reference, ...], dict[str, Any]]:
        body = await json_body(request, self.max_body)
        if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
            raise JsonError(422, 42201, "Invalid schema: the body must be a JSON object with a string field 'schema'")
        schema_type = body.get("schemaType") or "AVRO"
        if not isinstance(schema_type, str):
            raise JsonError(422, 42201, "Invalid schema: schemaType must be a string")
        schema_type = schema_type.upper()
        refs_in = body.get("references") or []
        if not isinstance(refs_in, list):
            raise JsonError(422, 42201, "Invalid schema: references must be a list")
        refs: list[Reference] = []
        for r in refs_in:
            if not isinstance(r, dict) or not isinstance(r.get("name"), str) or not isinstance(r.get("subject"), str) or not isinstance(r.get("version"), int):
                raise JsonError(422, 42201, f"Invalid schema: a reference needs name, subject and version, got {r!r}")
            refs.append(Reference(r["name"], r["subject"], r["version"]))
        return schema_type, body["schema"], tuple(refs), body

    @staticmethod
    def _version_param(raw: str) -> str | int:
        if raw == "latest":
            return raw
        try:
            n = int(raw)
        except ValueError:
            raise JsonError(422, 42202, errors.invalid_version(raw).message) from None
        if n == -1:
            return "latest"
        try:
            return parse_version(n)
        except errors.RegistryError as exc:
            raise _err(exc) from None

    @staticmethod
    def _id_param(raw: str) -> int:
        try:
            return int(raw)
        except ValueError:
            raise JsonError(404, 40403, f"Schema {raw} not found") from None

    # -- subjects and versions -------------------------------------------------------------------

    async def root(self, request: Request) -> Response:
        return _ok({})

    async def list_subjects(self, request: Request) -> Response:
        deleted = _flag(request, "deleted")
        prefix = _subject_prefix(request)
        return _ok(self._read(lambda s: s.subjects(deleted, prefix)))

    async def list_versions(self, request: Request) -> Response:
        subject = _subject(request)
        deleted = _flag(request, "deleted")
        return _ok(self._read(lambda s: [v.version for v in s.live_versions(subject, deleted)]))

    async def get_version(self, request: Request) -> Response:
        subject = _subject(request)
        version = self._version_param(request.path_params["version"])
        deleted = _flag(request, "deleted")
        fmt = request.query_params.get("format")
        return _ok(self._read(lambda s: s.formatted(s.get_version(subject, version, deleted), fmt)))

    async def get_version_schema(self, request: Request) -> Response:
        subject = _subject(request)
        version = self._version_param(request.path_params["version"])
        text = self._read(lambda s: s.get_version(subject, version, _flag(request, "deleted")).schema)
        return Response(text, media_type=MEDIA)

    async def referenced_by(self, request: Request) -> Response:
        subject = _subject(request)
        version = self._version_param(request.path_params["version"])

        def q(s: State) -> list[int]:
            row = s.get_version(subject, version)
            return s.referenced_by(subject, row.version)

        return _ok(self._read(q))

    async def register(self, request: Request) -> Response:
        subject = _subject(request)
        schema_type, text, refs, body = await self._schema_request(request)
        normalize = _flag(request, "normalize")
        schema_id = body.get("id")
        version = body.get("version")
        if schema_id is not None and (not isinstance(schema_id, int) or schema_id < 1):
            raise JsonError(422, 42201, f"Invalid schema id {schema_id!r}")
        if version is not None and (not isinstance(version, int) or version < 1):
            raise JsonError(422, 42202, errors.invalid_version(version).message)
        metadata, rule_set = body.get("metadata"), body.get("ruleSet")
        for name, value in (("metadata", metadata), ("ruleSet", rule_set)):
            if value is not None and not isinstance(value, dict):
                raise JsonError(422, 42201, f"Invalid schema: {name} must be a JSON object")
        row: Version = await self._change(lambda s: s.plan_register(subject, schema_type, text, refs, normalize, schema_id, version, metadata, rule_set))
        return _ok({"id": row.id})

    async def latest_with_metadata(self, request: Request) -> Response:
        subject = _subject(request)
        keys = request.query_params.getlist("key")
        values = request.query_params.getlist("value")
        if len(keys) != len(values):
            raise JsonError(422, 422, "key and value parameters must come in pairs")
        deleted = _flag(request, "deleted")
        fmt = request.query_params.get("format")
        return _ok(self._read(lambda s: s.formatted(s.latest_with_metadata(subject, dict(zip(keys, values, strict=True)), deleted), fmt)))

    async def lookup(self, request: Request) -> Response:
        subject = _subject(request)
        schema_type, text, refs, _body = await self._schema_request(request)
        normalize = _flag(request, "normalize")
        deleted = _flag(request, "deleted")
        fmt = request.query_params.get("format")
        return _ok(self._read(lambda s: s.formatted(s.lookup(subject, schema_type, text, refs, normalize, deleted), fmt)))

    async def delete_version(self, request: Request) -> Response:
        subject = _subject(request)
        version = self._version_param(request.path_params["version"])
        permanent = _flag(request, "permanent")
        return _ok(await self._change(lambda s: s.plan_soft_delete_version(subject, version, permanent)))

    async def delete_subject(self, request: Request) -> Response:
        subject = _subject(request)
        permanent = _flag(request, "permanent")
        return _ok(await self._change(lambda s: s.plan_delete_subject(subject, permanent)))

    # -- schemas by id ---------------------------------------------------------------------------

    async def types(self, request: Request) -> Response:
        return _ok(list(SUPPORTED_TYPES))

    async def by_id(self, request: Request) -> Response:
        schema_id = self._id_param(request.path_params["id"])
        subject, ctx = _id_context(request)
        fmt = request.query_params.get("format")

        def q(s: State) -> dict[str, Any]:
            row = s.schema_by_id(schema_id, ctx)
            if subject is not None and not any(v.subject == subject for v in s.versions_of_id(schema_id, deleted=True, context=ctx)):
                raise errors.schema_not_found(f"Schema {schema_id} not found")
            out = s.formatted(row, fmt)
            for k in ("subject", "version", "id"):
                out.pop(k)
            return out

        return _ok(self._read(q))

    async def id_schema_raw(self, request: Request) -> Response:
        schema_id = self._id_param(request.path_params["id"])
        ctx = _id_context(request)[1]
        return Response(self._read(lambda s: s.schema_by_id(schema_id, ctx).schema), media_type=MEDIA)

    async def id_subjects(self, request: Request) -> Response:
        schema_id = self._id_param(request.path_params["id"])
        deleted = _flag(request, "deleted")
        ctx = _id_context(request)[1]
        return _ok(self._read(lambda s: sorted({v.subject for v in s.versions_of_id(schema_id, deleted, ctx)})))

    async def id_versions(self, request: Request) -> Response:
        schema_id = self._id_param(request.path_params["id"])
        deleted = _flag(request, "deleted")
        ctx = _id_context(request)[1]
        return _ok(self._read(lambda s: [{"subject": v.subject, "version": v.version} for v in s.versions_of_id(schema_id, deleted, ctx)]))

    async def list_schemas(self, request: Request) -> Response:
        prefix = _subject_prefix(request)
        deleted = _flag(request, "deleted")
        latest_only = _flag(request, "latestOnly")

        def q(s: State) -> list[dict[str, Any]]:
            out = []
            for subject in s.subjects(deleted, prefix):
                rows = s.live_versions(subject, deleted)
                out += [v.as_json() for v in (rows[-1:] if latest_only else rows)]
            return out

        return _ok(self._read(q))

    # -- compatibility ---------------------------------------------------------------------------

    async def check(self, request: Request) -> Response:
        return await self._check(request, self._version_param(request.path_params["version"]))

    async def check_all(self, request: Request) -> Response:
        return await self._check(request, None)

    async def _check(self, request: Request, version: str | int | None) -> Response:
        subject = _subject(request)
        schema_type, text, refs, _body = await self._schema_request(request)
        verbose = _flag(request, "verbose")

        def q(s: State) -> list[str]:
            parsed = s.parse(schema_type, text, refs, contexts.context_of(subject))
            level = s.compatibility(subject)
            if version is None:
                rows = s.live_versions(subject) if subject in s.versions else []
                return s.incompatibilities(subject, parsed, level if level.endswith("_TRANSITIVE") or level == "NONE" else level + "_TRANSITIVE", rows)
            if subject not in s.versions:
                raise errors.subject_not_found(subject)
            row = s.get_version(subject, version)
            return s.incompatibilities(subject, parsed, level.removesuffix("_TRANSITIVE"), [row])

        problems = self._read(q)
        out: dict[str, Any] = {"is_compatible": not problems}
        if verbose:
            out["messages"] = problems
        return _ok(out)

    # -- config and mode -------------------------------------------------------------------------

    async def get_config(self, request: Request) -> Response:
        subject = _config_subject(request)
        default_to_global = _flag(request, "defaultToGlobal")

        def q(s: State) -> dict[str, Any]:
            if subject is not None and subject not in s.configs and not default_to_global:
                raise errors.subject_config_not_found(subject)
            key = subject if subject in s.configs else None
            out = {k: v for k, v in s.configs.get(key, {}).items() if k != "compatibilityLevel"}
            out["compatibilityLevel"] = s.compatibility(key)
            return out

        return _ok(self._read(q))

    async def put_config(self, request: Request) -> Response:
        subject = _config_subject(request)
        body = await json_body(request, self.max_body)
        if not isinstance(body, dict):
            raise _err(errors.invalid_compatibility(body))
        level = body.get("compatibility", body.get("compatibilityLevel"))
        if level is not None and (not isinstance(level, str) or level.upper() not in COMPATIBILITY_LEVELS):
            raise _err(errors.invalid_compatibility(level))
        extra = {k: v for k, v in body.items() if k in CONFIG_FIELDS and v is not None}
        for k in ("defaultMetadata", "overrideMetadata", "defaultRuleSet", "overrideRuleSet"):
            if k in extra and not isinstance(extra[k], dict):
                raise JsonError(422, 42203, f"Invalid config: {k} must be a JSON object")
        if level is None and not extra:
            raise _err(errors.invalid_compatibility(None))

        def plan(s: State) -> tuple[None, list[Record]]:
            current = dict(s.configs.get(subject, {}))  # a PUT changes the fields it names
            current.pop("compatibilityLevel", None)
            new_level = level.upper() if isinstance(level, str) else s.configs.get(subject, {}).get("compatibilityLevel")
            return None, [config_record(subject, new_level, {**current, **extra})]

        await self._change(plan)
        out = dict(extra)
        if isinstance(level, str):
            out["compatibility"] = level.upper()
        return _ok(out)

    async def delete_config(self, request: Request) -> Response:
        subject = _config_subject(request)

        def plan(s: State) -> tuple[dict[str, Any], list[Record]]:
            if subject is not None and subject not in s.configs:
                raise errors.subject_config_not_found(subject)
            before = s.compatibility(subject)
            return {"compatibilityLevel": before}, [config_record(subject, None)]

        return _ok(await self._change(plan))

    async def get_mode(self, request: Request) -> Response:
        subject = _config_subject(request)
        default_to_global = _flag(request, "defaultToGlobal")

        def q(s: State) -> dict[str, str]:
            if subject is not None and subject not in s.modes and not default_to_global:
                raise errors.subject_mode_not_found(subject)
            return {"mode": s.mode(subject)}

        return _ok(self._read(q))

    async def put_mode(self, request: Request) -> Response:
        subject = _config_subject(request)
        body = await json_body(request, self.max_body)
        mode = body.get("mode") if isinstance(body, dict) else None
        if not isinstance(mode, str) or mode.upper() not in MODES:
            raise _err(errors.invalid_mode(mode))
        mode = mode.upper()
        force = _flag(request, "force")

        def plan(s: State) -> tuple[None, list[Record]]:
            if mode == "IMPORT" and not force:
                has_schemas = bool(s.versions.get(subject)) if subject is not None else bool(s.versions)
                if has_schemas:
                    raise errors.RegistryError(422, 42205, "Cannot import since found existing subjects")
            return None, [mode_record(subject, mode)]

        await self._change(plan)
        return _ok({"mode": mode})

    async def delete_mode(self, request: Request) -> Response:
        subject = _subject(request)

        def plan(s: State) -> tuple[dict[str, str], list[Record]]:
            if subject not in s.modes:
                raise errors.subject_mode_not_found(subject)
            return {"mode": s.modes[subject]}, [mode_record(subject, None)]

        return _ok(await self._change(plan))

    async def contexts(self, request: Request) -> Response:
        return _ok(self._read(lambda s: s.all_contexts()))
