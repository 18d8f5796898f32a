"""The REST proxy's schema-registry formats: AVRO, PROTOBUF and JSONSCHEMA records written in
Confluent's wire format (magic byte 0, the 4-byte big-endian schema id, then the Avro binary
datum, the Protobuf message indexes and message, or the JSON document) and read back to JSON.

Schemas come from a Confluent-compatible registry (``[cluster] schema.registry.url`` or
``RIVERBED_REGISTRY_URL``) over HTTP: by id, by subject and version, the subject's latest, or
given raw and registered (or found) under the subject. Data is JSON as Confluent's REST Proxy
takes it: Avro in Avro's JSON encoding (a union value is ``{"type": value}``), Protobuf in
protobuf's JSON mapping, JSON Schema as the document itself (validated against the schema).

Every failure is a :class:`SchemaError` with the HTTP status and the proxy's v2 error code;
the v3 handler answers it with the status alone.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from riverbed.client import schema_wire as wire

FORMATS = ("AVRO", "PROTOBUF", "JSONSCHEMA")
STRATEGIES = ("TOPIC_NAME", "RECORD_NAME", "TOPIC_RECORD_NAME")
CACHE = 10_000  # schemas (and subject lookups) kept in memory
MAX_REF_DEPTH = 32  # schema references within references

# Confluent REST Proxy's error codes (io.confluent.kafkarest.Errors)
KEY_SCHEMA_MISSING = 42201
VALUE_SCHEMA_MISSING = 42202
JSON_CONVERSION = 42203
INVALID_SCHEMA = 42205
SERIALIZATION = 42207


class SchemaError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Codec:
    """One registered schema, ready to encode JSON data and decode payloads."""

    id: int
    kind: str  # AVRO | PROTOBUF | JSONSCHEMA
    text: str
    parsed: Any  # fastavro's parsed schema | a jsonschema validator | (ProtobufSchema, pool)
    references: list[Any] = field(default_factory=list)  # the registry's, for lookups by text

    @property
    def record_name(self) -> str | None:
        """The fully-qualified name RecordNameStrategy uses (None if the schema has none)."""
        if self.kind == "AVRO":
            return self.parsed.get("name") if isinstance(self.parsed, dict) else None
        if self.kind == "PROTOBUF":
            names = self.parsed[0].names()
            return names[0] if names else None
        title = self.parsed.schema.get("title") if isinstance(self.parsed.schema, dict) else None
        return str(title) if title else None

    def encode(self, data: Any) -> bytes:
        head = wire.frame(self.id)
        try:
            if self.kind == "AVRO":
                import fastavro

                datum = next(iter(fastavro.json_reader(io.StringIO(json.dumps(data)), self.parsed)))
                out = io.BytesIO()
                fastavro.schemaless_writer(out, self.parsed, datum)
                return head + out.getvalue()
            if self.kind == "JSONSCHEMA":
                errors = sorted(self.parsed.iter_errors(data), key=lambda e: list(e.path))
                if errors:
                    where = "/".join(str(p) for p in errors[0].path) or "(root)"
                    raise ValueError(f"{where}: {errors[0].message}")
                return head + json.dumps(data, separators=(",", ":")).encode()
            from google.protobuf import json_format

            message = self._proto_class(self.parsed[0].names()[0])()
            json_format.ParseDict(data, message)
            payload: bytes = message.SerializeToString()
            return head + wire.write_indexes([0]) + payload
        except SchemaError:
            raise
        except Exception as exc:  # fastavro/jsonschema/protobuf raise many kinds
            raise SchemaError(
                422,
                JSON_CONVERSION,
                f"Conversion of JSON to Object failed: {type(exc).__name__}: {exc}",
            ) from None

    def decode(self, payload: bytes) -> Any:
        """The JSON form of a payload written with this schema (the 5-byte head stripped)."""
        if self.kind == "AVRO":
            import fastavro

            datum = fastavro.schemaless_reader(io.BytesIO(payload), self.parsed, None)
            out = io.StringIO()
            fastavro.json_writer(out, self.parsed, [datum])
            return json.loads(out.getvalue())
        if self.kind == "JSONSCHEMA":
            return json.loads(payload)
        from google.protobuf import json_format, message_factory

        indexes, pos = wire.read_indexes(payload)
        message = message_factory.GetMessageClass(wire.message_at(self._proto_file(), indexes))()
        message.ParseFromString(payload[pos:])
        return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)

    def _proto_class(self, full_name: str) -> Any:
        from google.protobuf import message_factory

        return message_factory.GetMessageClass(self.parsed[1].FindMessageTypeByName(full_name))

    def _proto_file(self) -> Any:
        """The schema's FileDescriptor in its pool."""
        return self.parsed[1].FindFileByName(self.parsed[0].file.name)


@dataclass
class Ref:
    """A schema reference resolved: the name it is imported by, its text and its own references."""

    name: str
    text: str
    refs: list[Ref]


def _parse(kind: str, text: str, refs: list[Ref] | None = None) -> Any:
    """The schema's parsed form, with its references; SchemaError(422, 42205) when it is not a
    valid schema."""
    refs = refs or []
    try:
        if kind == "AVRO":
            import fastavro

            named: dict[str, Any] = {}

            def avro(ref: Ref) -> None:  # referenced named types first, depth first
                for child in ref.refs:
                    avro(child)
                fastavro.parse_schema(json.loads(ref.text), named_schemas=named)

            for ref in refs:
                avro(ref)
            return fastavro.parse_schema(json.loads(text), named_schemas=named)
        if kind == "JSONSCHEMA":
            import jsonschema
            import referencing
            import referencing.jsonschema

            resources: list[tuple[str, Any]] = []

            def add(ref: Ref) -> None:
                resource = referencing.Resource.from_contents(
                    json.loads(ref.text), default_specification=referencing.jsonschema.DRAFT7
                )
                resources.append((ref.name, resource))
                for child in ref.refs:
                    add(child)

            for ref in refs:
                add(ref)
            doc = json.loads(text)
            cls = jsonschema.validators.validator_for(doc)
            cls.check_schema(doc)
            return cls(doc, registry=referencing.Registry().with_resources(resources))
        from google.protobuf import descriptor_pool

        from riverbed.registry.formats.protobuf import ProtobufSchema, parse

        def proto(ref: Ref) -> ProtobufSchema:
            return parse(ref.text, {child.name: proto(child) for child in ref.refs})

        schema = parse(text, {ref.name: proto(ref) for ref in refs})
        pool = descriptor_pool.DescriptorPool()
        for dep in schema.deps.values():
            pool.Add(dep)
        pool.Add(schema.file)
        return schema, pool
    except Exception as exc:
        raise SchemaError(
            422, INVALID_SCHEMA, f"Invalid schema: {type(exc).__name__}: {exc}"
        ) from None


class RegistryError(Exception):
    """The registry answered with an error (its status, error_code and message)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"{message}; error code: {code}")
        self.status, self.code = status, code


def _serialization(message: str, cause: Exception | None = None) -> SchemaError:
    """Confluent's 42207 (Errors.messageSerializationException), the registry's answer after a
    newline as in its messages."""
    tail = f"\n{cause}" if cause is not None else ""
    return SchemaError(422, SERIALIZATION, f"Error serializing message. {message}{tail}")


class SchemaFormats:
    """Resolves schema specs against the registry as Confluent's REST Proxy does (its
    SchemaManager) and caches the answers: schemas by id, versions of (subject, schema)."""

    def __init__(self, url: str | None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/") if url else None
        self._http: httpx.AsyncClient | None = None
        self._timeout = timeout
        self._by_id: dict[int, Codec] = {}
        # (subject, kind, text) -> (codec, version) and (subject, schema id) -> version: never
        # change once registered. Bounded: emptied past CACHE entries.
        self._found: dict[tuple[str, ...], tuple[Codec, int]] = {}
        self._versions: dict[tuple[str, int], int] = {}

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        """The registry's JSON answer; RegistryError for its errors, SchemaError(503) when it
        cannot be reached (retriable: Confluent's proxy folds this into 42207 too)."""
        if self.url is None:
            raise SchemaError(
                400,
                400,
                "This proxy has no schema registry for AVRO, PROTOBUF and JSONSCHEMA: set [cluster] schema.registry.url (or RIVERBED_REGISTRY_URL)",
            )
        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self.url, timeout=self._timeout)
        headers = (
            {"Content-Type": "application/vnd.schemaregistry.v1+json"} if body is not None else None
        )
        try:
            r = await self._http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SchemaError(
                503, 50301, f"The schema registry cannot be reached: {type(exc).__name__}: {exc}"
            ) from None
        try:
            answer = r.json()
        except ValueError:
            answer = {"message": r.text[:200]}
        if r.status_code >= 400:
            doc = answer if isinstance(answer, dict) else {}
            raise RegistryError(
                r.status_code,
                int(doc.get("error_code", r.status_code)),
                str(doc.get("message", r.reason_phrase)),
            )
        return answer

    def _keep(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        if len(table) >= CACHE:
            table.clear()
        table[key] = value

    async def by_id(self, schema_id: int) -> Codec:
        codec = self._by_id.get(schema_id)
        if codec is None:
            try:
                doc = await self._call("GET", f"/schemas/ids/{schema_id}")
            except RegistryError as exc:
                raise _serialization(
                    f"Error when fetching schema by id. schemaId = {schema_id}", exc
                ) from None
            codec = await self._codec(schema_id, doc)
        return codec

    async def _codec(self, schema_id: int, doc: dict[str, Any]) -> Codec:
        kind = str(doc.get("schemaType") or "AVRO").upper()
        kind = "JSONSCHEMA" if kind == "JSON" else kind
        if kind not in FORMATS:
            raise SchemaError(
                422, INVALID_SCHEMA, f"Invalid schema: schema {schema_id} is of type {kind}"
            )
        refs = await self._refs(doc.get("references") or [], 0)
        codec = Codec(
            schema_id,
            kind,
            doc["schema"],
            _parse(kind, doc["schema"], refs),
            list(doc.get("references") or []),
        )
        self._keep(self._by_id, schema_id, codec)
        return codec

    async def _refs(self, references: list[Any], depth: int) -> list[Ref]:
        """The referenced schemas (``{"name", "subject", "version"}``), fetched recursively."""
        if depth > MAX_REF_DEPTH:
            raise SchemaError(
                422,
                INVALID_SCHEMA,
                f"Invalid schema: references nested deeper than {MAX_REF_DEPTH}",
            )
        out = []
        for r in references:
            try:
                name, subject, version = str(r["name"]), str(r["subject"]), int(r["version"])
                doc = await self._call(
                    "GET", f"/subjects/{quote(subject, safe='')}/versions/{version}"
                )
            except RegistryError as exc:
                raise _serialization(
                    f"Error when fetching referenced schema {r.get('name')!r}", exc
                ) from None
            except (KeyError, TypeError, ValueError):
                raise SchemaError(
                    422, INVALID_SCHEMA, f"Invalid schema: bad reference {r!r}"
                ) from None
            out.append(
                Ref(name, doc["schema"], await self._refs(doc.get("references") or [], depth + 1))
            )
        return out

    @staticmethod
    def _body(kind: str, text: str, references: list[Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"schema": text}
        if kind != "AVRO":
            body["schemaType"] = "JSON" if kind == "JSONSCHEMA" else kind  # the registry's name
        if references:
            body["references"] = references
        return body

    async def version_of(self, subject: str, codec: Codec) -> int:
        """The version `codec`'s schema has under `subject` (42207 when it is not there)."""
        version = self._versions.get((subject, codec.id))
        if version is None:
            try:
                found = await self._call(
                    "POST",
                    f"/subjects/{quote(subject, safe='')}",
                    self._body(codec.kind, codec.text, codec.references),
                )
            except RegistryError as exc:
                raise _serialization(
                    f"Error when fetching schema version. subject = {subject}, schema = {codec.text}",
                    exc,
                ) from None
            version = int(found["version"])
            self._keep(self._versions, (subject, codec.id), version)
        return version

    async def version(self, subject: str, version: int | None) -> tuple[Codec, int]:
        """A version of a subject, or its latest (None; asked for every time: it moves)."""
        try:
            doc = await self._call(
                "GET",
                f"/subjects/{quote(subject, safe='')}/versions/{'latest' if version is None else version}",
            )
        except RegistryError as exc:
            if version is None:
                raise _serialization(
                    f"Error when fetching latest schema version. subject = {subject}", exc
                ) from None
            raise SchemaError(
                400, 400, f"Schema does not exist for subject: {subject}, version: {version}"
            ) from None
        codec = self._by_id.get(int(doc["id"])) or await self._codec(int(doc["id"]), doc)
        return codec, int(doc["version"])

    async def register(self, subject: str, kind: str, text: str) -> tuple[Codec, int]:
        """`text` under `subject`: found there, or registered (Confluent's getId, then register)."""
        hit = self._found.get((subject, kind, text))
        if hit is not None:
            return hit
        try:
            parsed = _parse(kind, text)
        except SchemaError as exc:
            raise SchemaError(
                422,
                INVALID_SCHEMA,
                f"Invalid schema: Error when parsing raw schema. format = {kind}, schema = {text}: {exc.message}",
            ) from None
        path, body = f"/subjects/{quote(subject, safe='')}", self._body(kind, text)
        try:
            try:
                found = await self._call("POST", path, body)
            except RegistryError:
                await self._call("POST", path + "/versions", body)
                found = await self._call("POST", path, body)  # its id and version
        except RegistryError as exc:
            raise _serialization(
                f"Error when registering schema. format = {kind}, subject = {subject}, schema = {text}",
                exc,
            ) from None
        schema_id = int(found["id"])
        codec = self._by_id.get(schema_id)
        if codec is None:
            codec = Codec(schema_id, kind, text, parsed)
            self._keep(self._by_id, schema_id, codec)
        result = (codec, int(found["version"]))
        self._keep(self._found, (subject, kind, text), result)
        return result

    async def decode(self, data: bytes | None, kind: str) -> Any:
        """A record's key or value in the wire format, written with a `kind` schema -> JSON
        (ValueError if it is not)."""
        if data is None:
            return None
        sid = wire.schema_id(data)
        if sid is None:
            raise ValueError("Unknown magic byte!")
        codec = await self.by_id(sid)
        if codec.kind != kind:
            raise ValueError(f"schema {codec.id} is {codec.kind}, not {kind}")
        return codec.decode(data[5:])


def subject_for(strategy: str, topic: str, is_key: bool, record_name: str | None) -> str:
    """Confluent's subject name strategies."""
    if strategy == "TOPIC_NAME":
        return f"{topic}-{'key' if is_key else 'value'}"
    if record_name is None:
        raise SchemaError(
            400, 400, f"subject_name_strategy {strategy} needs a schema with a record name"
        )
    return record_name if strategy == "RECORD_NAME" else f"{topic}-{record_name}"


async def resolve(
    formats: SchemaFormats,
    topic: str,
    is_key: bool,
    kind: str | None,
    schema_id: Any = None,
    version: Any = None,
    raw: Any = None,
    subject: Any = None,
    strategy: str = "TOPIC_NAME",
) -> tuple[Codec, str, int]:
    """A key's or value's schema, as Confluent's REST Proxy finds it: -> (codec, subject,
    version). ``schema_id`` names it (it must be registered under the subject); ``raw`` is
    found under the subject or registered there (``kind`` required); ``version`` is that version
    of the subject; none of them: the subject's latest. The subject is ``subject`` if given,
    else the strategy's."""
    if strategy not in STRATEGIES:
        raise SchemaError(
            400, 400, f"subject_name_strategy {strategy!r} is not one of {', '.join(STRATEGIES)}"
        )
    if sum(x is not None for x in (schema_id, version, raw)) > 1:
        raise SchemaError(400, 400, "Give at most one of schema_id, schema_version and schema")
    if subject is not None and not isinstance(subject, str):
        raise SchemaError(400, 400, "subject must be a string")
    if schema_id is not None:
        if not isinstance(schema_id, int) or isinstance(schema_id, bool) or schema_id < 0:
            raise SchemaError(400, 400, "schema_id must be a non-negative integer")
        codec = await formats.by_id(schema_id)
        if kind is not None and kind != codec.kind:
            raise _serialization(
                f"Fetched schema has the wrong type. Expected `{kind}' but got `{codec.kind}'."
            )
        subject = subject or subject_for(strategy, topic, is_key, codec.record_name)
        return codec, subject, await formats.version_of(subject, codec)
    if raw is not None:
        if kind is None:
            raise SchemaError(
                400, 400, "A raw schema needs its type (AVRO, PROTOBUF or JSONSCHEMA)"
            )
        if not isinstance(raw, str):
            raise SchemaError(400, 400, "schema must be a string")
        if subject is None:
            record = None
            if strategy != "TOPIC_NAME":
                try:
                    record = Codec(-1, kind, raw, _parse(kind, raw)).record_name
                except SchemaError as exc:
                    raise SchemaError(
                        422,
                        INVALID_SCHEMA,
                        f"Invalid schema: Error when parsing raw schema. format = {kind}, schema = {raw}: {exc.message}",
                    ) from None
            subject = subject_for(strategy, topic, is_key, record)
        codec, v = await formats.register(subject, kind, raw)
        return codec, subject, v
    if subject is None:
        if strategy != "TOPIC_NAME":
            raise SchemaError(
                400,
                400,
                f"Cannot use schema_subject_strategy={strategy} without schema_id or schema.",
            )
        subject = subject_for(strategy, topic, is_key, None)
    if version is not None and (
        not isinstance(version, int) or isinstance(version, bool) or version < 1
    ):
        raise SchemaError(400, 400, "schema_version must be a positive integer")
    codec, v = await formats.version(subject, version)
    if kind is not None and kind != codec.kind:
        raise _serialization(
            f"Fetched schema has the wrong type. Expected `{kind}' but got `{codec.kind}'."
        )
    return codec, subject, v


async def resolve_v3(
    formats: SchemaFormats, topic: str, is_key: bool, part: dict[str, Any]
) -> tuple[Codec, str, int]:
    """A v3 key or value object's schema (``type``, ``schema_id``, ``schema_version``,
    ``schema``, ``subject``, ``subject_name_strategy``)."""
    kind = part.get("type")
    return await resolve(
        formats,
        topic,
        is_key,
        str(kind).upper() if kind is not None else None,
        part.get("schema_id"),
        part.get("schema_version"),
        part.get("schema"),
        part.get("subject"),
        str(part.get("subject_name_strategy") or "TOPIC_NAME").upper(),
    )
