"""The registry's state, rebuilt from the records of `_schemas` (Confluent's key/value layout).

Pure: `apply(key, value)` folds one record in; the query methods answer the REST API; the
`plan_*` methods check a change against the current state and return the records that make
it, which the caller writes to `_schemas` and which come back through `apply`. Nothing here
does I/O.

Record layout (JSON keys and values, as Confluent writes them):

    {"keytype":"SCHEMA","subject":S,"version":V,"magic":1} -> {"subject","version","id",
        "schema","schemaType"?,"references"?,"deleted"} (null value: hard deleted)
    {"keytype":"CONFIG","subject":S|null,"magic":0} -> {"compatibilityLevel": ...} | null
    {"keytype":"MODE","subject":S|null,"magic":0} -> {"mode": ...} | null
    {"keytype":"DELETE_SUBJECT","subject":S,"magic":0} -> {"subject","version"}: soft-deletes
        versions <= version (written by older Confluent versions; riverbed writes SCHEMA records)
    {"keytype":"NOOP","magic":0} -> ignored
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

from . import contexts, errors
from .formats import (
    SUPPORTED_TYPES,
    Incompatibility,
    InvalidSchema,
    avro,
    jsonschema,
    protobuf,
    protobuf_compat,
)

Parsed = avro.AvroSchema | jsonschema.JsonSchema | protobuf.ProtobufSchema

COMPATIBILITY_LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE")
MODES = ("READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT")
DEFAULT_COMPATIBILITY = "BACKWARD"
DEFAULT_MODE = "READWRITE"
MAX_VERSION = 2**31 - 1

Record = tuple[dict[str, Any], dict[str, Any] | None]
ContentKey = tuple[str, str, tuple["Reference", ...], str, str]


def _json_key(value: dict[str, Any] | None) -> str:
    return "" if not value else json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Reference:
    name: str
    subject: str
    version: int

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "subject": self.subject, "version": self.version}


@dataclass
class Version:
    subject: str
    version: int
    id: int
    schema: str
    schema_type: str = "AVRO"
    references: tuple[Reference, ...] = ()
    deleted: bool = False
    metadata: dict[str, Any] | None = None  # data contracts: tags, properties, sensitive
    rule_set: dict[str, Any] | None = None  # data contracts: migration, domain, encoding rules

    def content_key(self) -> ContentKey:
        return (self.schema_type, self.schema, self.references, _json_key(self.metadata), _json_key(self.rule_set))

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"subject": self.subject, "version": self.version, "id": self.id}
        if self.schema_type != "AVRO":
            out["schemaType"] = self.schema_type
        if self.references:
            out["references"] = [r.as_json() for r in self.references]
        if self.metadata:
            out["metadata"] = self.metadata
        if self.rule_set:
            out["ruleSet"] = self.rule_set
        out["schema"] = self.schema
        return out

    def record(self) -> Record:
        key = {"keytype": "SCHEMA", "subject": self.subject, "version": self.version, "magic": 1}
        value: dict[str, Any] = {"subject": self.subject, "version": self.version, "id": self.id, "schema": self.schema, "deleted": self.deleted}
        if self.schema_type != "AVRO":
            value["schemaType"] = self.schema_type
        if self.references:
            value["references"] = [r.as_json() for r in self.references]
        if self.metadata:
            value["metadata"] = self.metadata
        if self.rule_set:
            value["ruleSet"] = self.rule_set
        return key, value

    def deleted_copy(self) -> Version:
        return Version(self.subject, self.version, self.id, self.schema, self.schema_type, self.references, True, self.metadata, self.rule_set)


@dataclass
class State:
    versions: dict[str, dict[int, Version]] = field(default_factory=dict)  # subject -> version -> row
    # ids are per context (Confluent's schema contexts): (context, id) -> a row holding its content
    by_id: dict[tuple[str, int], Version] = field(default_factory=dict)
    by_content: dict[tuple[str, ContentKey], int] = field(default_factory=dict)
    configs: dict[str | None, dict[str, Any]] = field(default_factory=dict)
    modes: dict[str | None, str] = field(default_factory=dict)
    max_ids: dict[str, int] = field(default_factory=dict)  # context -> highest id seen

    def max_id(self, context: str = contexts.DEFAULT) -> int:
        return self.max_ids.get(context, 0)

    def all_contexts(self) -> list[str]:
        return sorted({contexts.DEFAULT} | {contexts.context_of(s) for s in self.versions})

    # -- folding records in ----------------------------------------------------------------------

    def apply(self, key: dict[str, Any], value: dict[str, Any] | None) -> None:
        kt = key.get("keytype")
        if kt == "SCHEMA":
            self._apply_schema(key, value)
        elif kt == "CONFIG":
            if value is None:
                self.configs.pop(key.get("subject"), None)
            else:
                self.configs[key.get("subject")] = dict(value)
        elif kt == "MODE":
            if value is None:
                self.modes.pop(key.get("subject"), None)
            else:
                self.modes[key.get("subject")] = str(value.get("mode"))
        elif kt == "NOOP" and key.get("riverbed") == "id-floor" and value is not None and isinstance(value.get("maxId"), int):
            ctx = str(key.get("context") or contexts.DEFAULT)
            self.max_ids[ctx] = max(self.max_ids.get(ctx, 0), int(value["maxId"]))
        elif kt in ("DELETE_SUBJECT", "CLEAR_SUBJECT") and value is not None:
            upto = int(value.get("version", MAX_VERSION))
            for v in self.versions.get(str(key.get("subject")), {}).values():
                if v.version <= upto:
                    v.deleted = True

    def _apply_schema(self, key: dict[str, Any], value: dict[str, Any] | None) -> None:
        subject, version = str(key["subject"]), int(key["version"])
        rows = self.versions.setdefault(subject, {})
        if value is None:  # hard delete
            old = rows.pop(version, None)
            if not rows:
                del self.versions[subject]
            if old is not None:
                self._forget_content(old)
            return
        refs = tuple(Reference(r["name"], r["subject"], int(r["version"])) for r in value.get("references") or [])
        row = Version(subject, version, int(value["id"]), str(value["schema"]), str(value.get("schemaType") or "AVRO"), refs, bool(value.get("deleted", False)), value.get("metadata") or None, value.get("ruleSet") or None)
        rows[version] = row
        ctx = contexts.context_of(subject)
        self.by_id.setdefault((ctx, row.id), row)
        self.by_content.setdefault((ctx, row.content_key()), row.id)
        self.max_ids[ctx] = max(self.max_ids.get(ctx, 0), row.id)

    def _forget_content(self, old: Version) -> None:
        ctx = contexts.context_of(old.subject)
        holder = next((v for s, rows in self.versions.items() if contexts.context_of(s) == ctx for v in rows.values() if v.id == old.id), None)
        if holder is not None:
            self.by_id[(ctx, old.id)] = holder
            return
        self.by_id.pop((ctx, old.id), None)
        self.by_content.pop((ctx, old.content_key()), None)

    # -- queries ---------------------------------------------------------------------------------

    def subjects(self, deleted: bool = False, prefix: str | None = None) -> list[str]:
        """Subjects whose name starts with `prefix`: every context's when None or ``:*:``; an
        empty prefix lists the default context only (Confluent's reading of subjectPrefix)."""
        def wanted(s: str) -> bool:
            if prefix is None or prefix == contexts.WILDCARD:
                return True
            if prefix == "":
                return contexts.context_of(s) == contexts.DEFAULT
            return s.startswith(prefix)

        return sorted(s for s, rows in self.versions.items() if wanted(s) and (deleted or any(not v.deleted for v in rows.values())))

    def live_versions(self, subject: str, deleted: bool = False) -> list[Version]:
        rows = self.versions.get(subject)
        if not rows:
            raise errors.subject_not_found(subject)
        out = [v for _, v in sorted(rows.items()) if deleted or not v.deleted]
        if not out:
            raise errors.subject_not_found(subject)
        return out

    def get_version(self, subject: str, version: str | int, deleted: bool = False) -> Version:
        rows = self.live_versions(subject, deleted=True)
        if version in ("latest", "-1", -1):
            live = [v for v in rows if deleted or not v.deleted]
            if not live:
                raise errors.subject_not_found(subject)
            return live[-1]
        n = parse_version(version)
        for v in rows:
            if v.version == n and (deleted or not v.deleted):
                return v
        raise errors.version_not_found(subject, n)

    def schema_by_id(self, schema_id: int, context: str = contexts.DEFAULT) -> Version:
        row = self.by_id.get((context, schema_id))
        if row is None:
            raise errors.schema_not_found(f"Schema {schema_id} not found")
        return row

    def versions_of_id(self, schema_id: int, deleted: bool = False, context: str = contexts.DEFAULT) -> list[Version]:
        self.schema_by_id(schema_id, context)
        return [v for s in sorted(self.versions) if contexts.context_of(s) == context for _, v in sorted(self.versions[s].items()) if v.id == schema_id and (deleted or not v.deleted)]

    def referenced_by(self, subject: str, version: int) -> list[int]:
        return sorted({v.id for s, rows in self.versions.items() for v in rows.values() if not v.deleted and any(self._ref_subject(s, r) == subject and r.version == version for r in v.references)})

    @staticmethod
    def _ref_subject(referrer: str, ref: Reference) -> str:
        """A reference names a subject of the referrer's own context unless it is qualified."""
        return contexts.qualify(contexts.context_of(referrer), ref.subject)

    @staticmethod
    def _config_keys(subject: str | None) -> tuple[str | None, ...]:
        """Where a subject's settings are looked up: the subject, its context, then global."""
        if subject is None:
            return (None,)
        ctx_key = contexts.context_key(contexts.context_of(subject))
        if ctx_key is None or ctx_key == subject:
            return (subject, None)
        return (subject, ctx_key, None)

    def compatibility(self, subject: str | None) -> str:
        for key in self._config_keys(subject):
            level = self.configs.get(key, {}).get("compatibilityLevel")
            if level:
                return str(level)
        return DEFAULT_COMPATIBILITY

    def config_value(self, subject: str | None, name: str) -> Any:
        """A config field for `subject`, falling back to its context's, then the global config."""
        for key in self._config_keys(subject):
            value = self.configs.get(key, {}).get(name)
            if value is not None:
                return value
        return None

    def latest_with_metadata(self, subject: str, wanted: dict[str, str], deleted: bool = False) -> Version:
        for row in reversed(self.live_versions(subject, deleted)):
            props = (row.metadata or {}).get("properties") or {}
            if all(props.get(k) == v for k, v in wanted.items()):
                return row
        raise errors.schema_not_found(f"Schema with metadata {wanted} not found under subject {subject}")

    def mode(self, subject: str | None) -> str:
        for key in self._config_keys(subject):
            if key in self.modes:
                return self.modes[key]
        return DEFAULT_MODE

    # -- parsing and compatibility ---------------------------------------------------------------

    def parse(self, schema_type: str, text: str, references: tuple[Reference, ...], context: str = contexts.DEFAULT, _seen: frozenset[tuple[str, int]] = frozenset()) -> Parsed:
        """Parse a schema whose references name subjects of `context` (unless qualified)."""
        rows = self._resolve_refs(references, context)
        for r in rows:
            if (r.subject, r.version) in _seen:
                raise errors.invalid_schema(f"Invalid schema: circular reference to {r.subject} version {r.version}")
        _seen = _seen | {(r.subject, r.version) for r in rows}
        try:
            if schema_type == "AVRO":
                return avro.parse(text, [cast(avro.AvroSchema, self.parse_row(r, _seen)) for r in rows])
            if schema_type == "JSON":
                refs = {ref.name: cast(jsonschema.JsonSchema, self.parse_row(r, _seen)) for ref, r in zip(references, rows, strict=True)}
                return jsonschema.parse(text, refs)
            if schema_type == "PROTOBUF":
                imports = {ref.name: cast(protobuf.ProtobufSchema, self.parse_row(r, _seen)) for ref, r in zip(references, rows, strict=True)}
                return protobuf.parse(text, imports)
        except InvalidSchema as exc:
            raise errors.invalid_schema(str(exc)) from None
        raise errors.invalid_schema(f"Invalid schema type {schema_type}: riverbed's registry supports {', '.join(SUPPORTED_TYPES)} so far")

    def parse_row(self, row: Version, _seen: frozenset[tuple[str, int]] = frozenset()) -> Parsed:
        return self.parse(row.schema_type, row.schema, row.references, contexts.context_of(row.subject), _seen | {(row.subject, row.version)})

    def formatted(self, row: Version, fmt: str | None) -> dict[str, Any]:
        """A row's JSON with its schema in the asked `format`: `serialized` gives a Protobuf
        schema as a base64 FileDescriptorProto (confluent-kafka's deserializers ask for it)."""
        out = row.as_json()
        if fmt == "serialized" and row.schema_type == "PROTOBUF":
            out["schema"] = cast(protobuf.ProtobufSchema, self.parse_row(row)).serialized()
        return out

    def _resolve_refs(self, references: tuple[Reference, ...], context: str) -> list[Version]:
        out: list[Version] = []
        for ref in references:
            try:
                row = self.get_version(contexts.qualify(context, ref.subject), ref.version if ref.version != -1 else "latest")
            except errors.RegistryError:
                raise errors.invalid_schema(f"Invalid schema: reference {ref.name} to subject {ref.subject} version {ref.version} not found") from None
            out.append(row)
        return out

    def incompatibilities(self, subject: str, new: Parsed, level: str, against: list[Version]) -> list[str]:
        if level == "NONE" or not against:
            return []
        if not level.endswith("_TRANSITIVE"):
            against = against[-1:]
        found: list[str] = []
        for old_row in reversed(against):
            old = self.parse_row(old_row)
            problems: list[Incompatibility] = []
            if type(old) is not type(new):
                problems.append(Incompatibility("TYPE_MISMATCH", "/", f"The new schema's type differs from version {old_row.version}'s ({old_row.schema_type})", old_row.schema_type))
            elif isinstance(new, avro.AvroSchema) and isinstance(old, avro.AvroSchema):
                if level.startswith(("BACKWARD", "FULL")):
                    problems += avro.reader_incompatibilities(new, old)
                if level.startswith(("FORWARD", "FULL")):
                    problems += avro.reader_incompatibilities(old, new)
            elif isinstance(new, jsonschema.JsonSchema) and isinstance(old, jsonschema.JsonSchema):
                if level.startswith(("BACKWARD", "FULL")):
                    problems += jsonschema.incompatibilities(old, new)
                if level.startswith(("FORWARD", "FULL")):
                    problems += jsonschema.incompatibilities(new, old)
            elif isinstance(new, protobuf.ProtobufSchema) and isinstance(old, protobuf.ProtobufSchema):
                if level.startswith(("BACKWARD", "FULL")):
                    problems += protobuf_compat.incompatibilities(old, new)
                if level.startswith(("FORWARD", "FULL")):
                    problems += protobuf_compat.incompatibilities(new, old)
            if problems:
                found += [p.message() for p in problems]
                found.append(f"{{oldSchemaVersion: {old_row.version}}}")
                found.append(f"{{oldSchema: '{old_row.schema}'}}")
                found.append(f"{{compatibility: '{level}'}}")
        return found

    # -- planning changes ------------------------------------------------------------------------

    def lookup(self, subject: str, schema_type: str, text: str, references: tuple[Reference, ...], normalize: bool, deleted: bool = False) -> Version:
        parsed = self.parse(schema_type, text, references, contexts.context_of(subject))
        forms = {parsed.canonical(), parsed.normalized()} if normalize else {parsed.canonical()}
        rows = self.versions.get(subject)
        if not rows or not any(deleted or not v.deleted for v in rows.values()):
            raise errors.subject_not_found(subject)
        for _, v in sorted(rows.items(), reverse=True):
            if v.schema_type == schema_type and v.references == references and (deleted or not v.deleted):
                candidate = self.parse_row(v)
                if candidate.canonical() in forms or (normalize and candidate.normalized() in forms):
                    return v
        raise errors.schema_not_found("Schema not found")

    def plan_register(self, subject: str, schema_type: str, text: str, references: tuple[Reference, ...], normalize: bool, schema_id: int | None = None, version: int | None = None, metadata: dict[str, Any] | None = None, rule_set: dict[str, Any] | None = None) -> tuple[Version, list[Record]]:
        """The row a registration ends in, and the records to write (none if it exists)."""
        mode = self.mode(subject)
        if mode in ("READONLY", "READONLY_OVERRIDE"):
            raise errors.not_permitted(f"Subject {subject} is in read-only mode")
        if schema_id is not None and mode != "IMPORT":
            raise errors.not_permitted("Overwrite new schema with id is not permitted unless the subject is in IMPORT mode")
        ctx = contexts.context_of(subject)
        parsed = self.parse(schema_type, text, references, ctx)
        canonical = parsed.normalized() if normalize else parsed.canonical()
        rows = self.versions.get(subject, {})
        live = [v for _, v in sorted(rows.items()) if not v.deleted]
        metadata, rule_set = self._contracts(subject, live[-1] if live else None, metadata, rule_set)
        content: ContentKey = (schema_type, canonical, references, _json_key(metadata), _json_key(rule_set))
        for v in live:  # already registered under this subject: same answer, nothing written
            if v.content_key() == content and (schema_id is None or schema_id == v.id):
                return v, []
        if mode != "IMPORT":
            level = self.compatibility(subject)
            problems = self.incompatibilities(subject, parsed, level, live)
            if problems:
                raise errors.incompatible(problems)
        existing_id = self.by_content.get((ctx, content))
        if schema_id is not None:
            holder = self.by_id.get((ctx, schema_id))
            if holder is not None and holder.content_key() != content:
                raise errors.RegistryError(422, 42207, f"Overwrite new schema with id {schema_id} is not permitted: the id is taken by another schema")
            new_id = schema_id
        else:
            new_id = existing_id if existing_id is not None else self.max_id(ctx) + 1
        if version is not None:
            if version in rows:
                raise errors.RegistryError(422, 42202, f"Version {version} already exists under subject {subject}")
            new_version = version
        else:
            new_version = max(rows, default=0) + 1
        row = Version(subject, new_version, new_id, canonical, schema_type, references, False, metadata, rule_set)
        return row, [row.record()]

    def _contracts(self, subject: str, previous: Version | None, metadata: dict[str, Any] | None, rule_set: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Confluent's data-contract rules: a schema without metadata (rule set) inherits the
        previous version's, else the config's default; the config's override merges on top."""
        if metadata is None:
            metadata = previous.metadata if previous is not None and previous.metadata else self.config_value(subject, "defaultMetadata")
        override = self.config_value(subject, "overrideMetadata")
        if override:
            metadata = _merge_metadata(metadata, override)
        if rule_set is None:
            rule_set = previous.rule_set if previous is not None and previous.rule_set else self.config_value(subject, "defaultRuleSet")
        override_rules = self.config_value(subject, "overrideRuleSet")
        if override_rules:
            rule_set = _merge_rule_sets(rule_set, override_rules)
        return metadata or None, rule_set or None

    def plan_soft_delete_version(self, subject: str, version: str | int, permanent: bool) -> tuple[int, list[Record]]:
        self._check_writable(subject)
        row = self.get_version(subject, version, deleted=True) if version not in ("latest", "-1", -1) else self.get_version(subject, "latest")
        if self.referenced_by(subject, row.version):
            raise errors.reference_exists(f"One or more references exist to the schema {{subject={subject},version={row.version}}}.")
        if permanent:
            if not row.deleted:
                raise errors.version_not_soft_deleted(subject, row.version)
            key, _ = row.record()
            return row.version, [(key, None), *self._id_floor(subject, [row])]
        if row.deleted:
            raise errors.version_soft_deleted(subject, row.version)
        return row.version, [row.deleted_copy().record()]

    def plan_delete_subject(self, subject: str, permanent: bool) -> tuple[list[int], list[Record]]:
        self._check_writable(subject)
        rows = self.versions.get(subject)
        if not rows:
            raise errors.subject_not_found(subject)
        live = [v for _, v in sorted(rows.items()) if not v.deleted]
        for v in live:
            if self.referenced_by(subject, v.version):
                raise errors.reference_exists(f"One or more references exist to the schema {{subject={subject},version={v.version}}}.")
        if permanent:
            if live:
                raise errors.subject_not_soft_deleted(subject)
            records: list[Record] = [(v.record()[0], None) for _, v in sorted(rows.items())]
            records += self._id_floor(subject, list(rows.values()))
            for key in ("CONFIG", "MODE"):
                if subject in (self.configs if key == "CONFIG" else self.modes):
                    records.append(({"keytype": key, "subject": subject, "magic": 0}, None))
            return sorted(rows), records
        if not live:
            raise errors.subject_soft_deleted(subject)
        return [v.version for v in live], [v.deleted_copy().record() for v in live]

    def _id_floor(self, subject: str, removed: list[Version]) -> list[Record]:
        """When a permanent delete takes away the rows that hold a context's highest id, a record
        that keeps that id as the floor for new ones: once compaction has dropped the deleted
        schema's tombstone, a restart would otherwise hand the id out again. Its key is a NOOP
        key (a keytype Confluent's registry skips) with riverbed's own field."""
        ctx = contexts.context_of(subject)
        top = self.max_id(ctx)
        if not any(v.id == top for v in removed):
            return []
        return [id_floor_record(ctx, top)]

    def _check_writable(self, subject: str) -> None:
        if self.mode(subject) in ("READONLY", "READONLY_OVERRIDE"):
            raise errors.not_permitted(f"Subject {subject} is in read-only mode")


def _merge_metadata(base: dict[str, Any] | None, over: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    base = base or {}
    tags = {**(base.get("tags") or {}), **(over.get("tags") or {})}
    props = {**(base.get("properties") or {}), **(over.get("properties") or {})}
    sensitive = sorted({*(base.get("sensitive") or []), *(over.get("sensitive") or [])})
    if tags:
        out["tags"] = tags
    if props:
        out["properties"] = props
    if sensitive:
        out["sensitive"] = sensitive
    return out


def _merge_rule_sets(base: dict[str, Any] | None, over: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    base = base or {}
    for kind in ("migrationRules", "domainRules", "encodingRules"):
        rules = {r.get("name"): r for r in base.get(kind) or []}
        rules.update({r.get("name"): r for r in over.get(kind) or []})
        if rules:
            out[kind] = list(rules.values())
    return out


def parse_version(version: str | int) -> int:
    try:
        n = int(version)
    except (TypeError, ValueError):
        raise errors.invalid_version(version) from None
    if n < 1 or n > MAX_VERSION:
        raise errors.invalid_version(version)
    return n


def config_record(subject: str | None, level: str | None, extra: dict[str, Any] | None = None) -> Record:
    """A CONFIG record: the compatibility level plus the other config fields (normalize,
    defaultMetadata, overrideMetadata, defaultRuleSet, overrideRuleSet, ...); None deletes."""
    if level is None and not extra:
        return {"keytype": "CONFIG", "subject": subject, "magic": 0}, None
    value: dict[str, Any] = dict(extra or {})
    if level is not None:
        value["compatibilityLevel"] = level
    return {"keytype": "CONFIG", "subject": subject, "magic": 0}, value


def id_floor_record(context: str, max_id: int) -> Record:
    return {"keytype": "NOOP", "magic": 0, "riverbed": "id-floor", "context": context}, {"maxId": max_id}


def mode_record(subject: str | None, mode: str | None) -> Record:
    return {"keytype": "MODE", "subject": subject, "magic": 0}, (None if mode is None else {"mode": mode})


def encode(record: Record) -> tuple[bytes, bytes | None]:
    key, value = record
    return json.dumps(key, separators=(",", ":")).encode(), None if value is None else json.dumps(value, separators=(",", ":")).encode()


def decode(key: bytes | None, value: bytes | None) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """A `_schemas` record, or None for a record that is not the registry's (logged by the caller)."""
    if key is None:
        return None
    try:
        k = json.loads(key)
        v = None if value is None else json.loads(value)
    except ValueError:
        return None
    if not isinstance(k, dict) or (v is not None and not isinstance(v, dict)):
        return None
    return k, v
