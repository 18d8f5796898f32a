"""Confluent REST Proxy v2: produce and consumer instances, BINARY and JSON embedded formats.

- ``POST /topics/{topic}`` (and ``/topics/{topic}/partitions/{p}``) with
  ``application/vnd.kafka.{json,binary}.v2+json`` and ``{"records": [{"key", "value",
  "partition"}]}`` -> ``{"offsets": [{"partition", "offset", "error_code", "error"}],
  "key_schema_id": null, "value_schema_id": null}`` once every record is acknowledged.
- ``POST /consumers/{group}`` ``{"name", "format", "auto.offset.reset", "auto.commit.enable"}``
  -> ``{"instance_id", "base_uri"}``; ``DELETE /consumers/{group}/instances/{name}``.
- ``POST|GET|DELETE .../subscription`` (``{"topics": [...]}`` or ``{"topic_pattern"}``),
  ``GET .../records?timeout=&max_bytes=`` (Accept selects the format, which must match the
  instance's), ``POST .../offsets`` (a list, or no body: everything returned so far),
  ``GET .../offsets`` (``{"partitions": [...]}`` -> committed offsets).

An instance is one confluent-kafka consumer; calls on it are serialised and run off the event
loop. Instances idle for ``INSTANCE_TIMEOUT`` seconds are closed (consumer.instance.timeout.ms,
5 minutes, as Confluent's); at most ``MAX_INSTANCES`` exist at once (429 past that).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_STORED,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from riverbed.client import admin, consumer
from riverbed.web import JsonError, json_body, json_response

from .producer import NotStored
from .schemas import (
    INVALID_SCHEMA,
    KEY_SCHEMA_MISSING,
    VALUE_SCHEMA_MISSING,
    Codec,
    SchemaError,
    resolve,
)

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("riverbed.gateway.rest")

V2 = "application/vnd.kafka.v2+json"
INSTANCE_TIMEOUT = 300.0
MAX_INSTANCES = 1000
MAX_RECORDS = 500  # per GET .../records
FORMATS = ("binary", "json", "avro", "protobuf", "jsonschema")
SCHEMA_FORMATS = {"avro": "AVRO", "protobuf": "PROTOBUF", "jsonschema": "JSONSCHEMA"}


def embedded_format(media: str | None) -> str | None:
    """'json' | 'binary' | other embedded format named by a v2 content type; None if none."""
    media = (media or "").split(";")[0].strip().lower()
    if media.startswith("application/vnd.kafka.") and media.endswith(".v2+json"):
        fmt = media[len("application/vnd.kafka.") : -len(".v2+json")]
        return fmt or None
    return "json" if media == "application/json" else None


def v2(data: Any, status: int = 200) -> Response:
    return json_response(data, status, V2)


def _v2_errors(handler: Any) -> Any:
    """Answer a handler's JsonError with Confluent's v2 error body and content type."""

    async def handle(request: Request) -> Response:
        try:
            response: Response = await handler(request)
            return response
        except JsonError as exc:
            level = logging.ERROR if exc.status >= 500 else logging.INFO
            log.log(
                level, "%s %s -> %d %s", request.method, request.url.path, exc.status, exc.message
            )
            return v2({"error_code": exc.code, "message": exc.message}, exc.status)

    return handle


def _partition_list(body: Any, key: str = "partitions") -> list[tuple[str, int]]:
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise JsonError(422, 422, f"The request needs {key}: [{{topic, partition}}]")
    try:
        return [(str(p["topic"]), int(p["partition"])) for p in items]
    except (KeyError, TypeError, ValueError):
        raise JsonError(422, 42202, "Each partition needs a topic and a partition number") from None


@dataclass
class Instance:
    group: str
    name: str
    format: str
    consumer: Consumer
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_used: float = field(default_factory=time.monotonic)
    topics: list[str] = field(default_factory=list)
    pattern: str | None = None
    assigned: dict[tuple[str, int], int] = field(
        default_factory=dict
    )  # manual assignment -> start offset
    returned: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset per partition
    pending: list[Any] = field(default_factory=list)  # records read but over max_bytes


class RestProxyV2:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.instances: dict[tuple[str, str], Instance] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._admin: Any = None
        self._watermarks: Consumer | None = None
        self._watermarks_lock = asyncio.Lock()

    def routes(self) -> list[BaseRoute]:
        base = "/consumers/{group}/instances/{name}"
        table: list[tuple[str, Any, list[str]]] = [
            ("/topics", self.list_topics, ["GET"]),
            ("/topics/{topic}", self.produce, ["POST"]),
            ("/topics/{topic}", self.topic, ["GET"]),
            ("/topics/{topic}/partitions", self.partitions, ["GET"]),
            ("/topics/{topic}/partitions/{partition:int}", self.produce, ["POST"]),
            ("/topics/{topic}/partitions/{partition:int}", self.partitions, ["GET"]),
            ("/topics/{topic}/partitions/{partition:int}/offsets", self.partition_offsets, ["GET"]),
            ("/brokers", self.brokers, ["GET"]),
            ("/consumers/{group}", self.create, ["POST"]),
            (base, self.delete, ["DELETE"]),
            (base + "/subscription", self.subscription, ["POST", "GET", "DELETE"]),
            (base + "/assignments", self.assignments, ["POST", "GET"]),
            (base + "/positions", self.positions, ["POST"]),
            (base + "/positions/beginning", self.positions, ["POST"]),
            (base + "/positions/end", self.positions, ["POST"]),
            (base + "/records", self.records, ["GET"]),
            (base + "/offsets", self.offsets, ["POST", "GET"]),
        ]
        return [
            Route(path, _v2_errors(handler), methods=methods) for path, handler, methods in table
        ]

    async def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap())

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for inst in list(self.instances.values()):
            await self._close(inst)
        if self._watermarks is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._watermarks.close)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(5)
            now = time.monotonic()
            for inst in [
                i
                for i in self.instances.values()
                if now - i.last_used > INSTANCE_TIMEOUT and not i.lock.locked()
            ]:
                log.info("consumer instance %s/%s expired", inst.group, inst.name)
                await self._close(inst)

    async def _close(self, inst: Instance) -> None:
        self.instances.pop((inst.group, inst.name), None)
        async with inst.lock:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(inst.consumer.close)

    # --- produce ---------------------------------------------------------------------------
    async def produce(self, request: Request) -> Response:
        topic = request.path_params["topic"]
        fixed = request.path_params.get("partition")
        fmt = embedded_format(request.headers.get("content-type"))
        if fmt not in FORMATS:
            raise JsonError(
                415,
                415,
                f"Embedded format {fmt or '(none)'} is not supported ({', '.join(FORMATS)} are)",
            )
        body = await json_body(request, self.gateway.config.max_body)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            raise JsonError(422, 422, "The request needs a non-empty records list")
        if not all(isinstance(r, dict) for r in records):
            raise JsonError(422, 422, "Each record must be an object")
        producer = self.gateway.producer
        assert producer is not None
        md = await asyncio.to_thread(producer.list_topics, 10.0)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            raise JsonError(404, 40401, "Topic not found.")
        codecs: dict[str, Codec | None] = {"key": None, "value": None}
        if fmt in SCHEMA_FORMATS:
            for what in ("key", "value"):
                codecs[what] = await self._schema(
                    body,
                    topic,
                    what,
                    SCHEMA_FORMATS[fmt],
                    any(r.get(what) is not None for r in records),
                )
        encoded = []
        for r in records:
            partition = fixed if fixed is not None else r.get("partition")
            if partition is not None and (
                not isinstance(partition, int) or partition not in t.partitions
            ):
                raise JsonError(404, 40402, "Partition not found.")
            encoded.append(
                (
                    self._encode(r.get("key"), fmt, "key", codecs["key"]),
                    self._encode(r.get("value"), fmt, "value", codecs["value"]),
                    partition,
                )
            )

        async def one(
            key: bytes | None, value: bytes | None, partition: int | None
        ) -> dict[str, Any]:
            try:
                msg = await producer.send(topic, value, key, None, partition)
                return {
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "error_code": None,
                    "error": None,
                }
            except NotStored as exc:
                return {
                    "partition": partition,
                    "offset": None,
                    "error_code": 50003 if exc.retriable else 50002,
                    "error": str(exc),
                }

        offsets = await asyncio.gather(*(one(*e) for e in encoded))
        ids = {w: (c.id if c is not None else None) for w, c in codecs.items()}
        return v2(
            {"offsets": offsets, "key_schema_id": ids["key"], "value_schema_id": ids["value"]}
        )

    async def _schema(
        self, body: dict[str, Any], topic: str, what: str, kind: str, needed: bool
    ) -> Codec | None:
        """The key's or value's schema of a v2 produce: ``<what>_schema_id``, or
        ``<what>_schema`` found or registered under ``<topic>-<what>``."""
        schema_id, raw = body.get(f"{what}_schema_id"), body.get(f"{what}_schema")
        if schema_id is None and raw is None:
            if needed:
                raise JsonError(
                    422,
                    KEY_SCHEMA_MISSING if what == "key" else VALUE_SCHEMA_MISSING,
                    f"Request includes {what}s but does not include {what} schema",
                )
            return None
        if schema_id is not None and (
            not isinstance(schema_id, int) or isinstance(schema_id, bool)
        ):
            raise JsonError(422, 422, f"{what}_schema_id must be an integer")
        if schema_id is None and not isinstance(raw, str):
            raise JsonError(422, INVALID_SCHEMA, f"Invalid schema: {what}_schema must be a string")
        try:
            codec, _, _ = await resolve(
                self.gateway.schemas,
                topic,
                what == "key",
                kind,
                schema_id=schema_id,
                raw=raw if schema_id is None else None,
            )
        except SchemaError as exc:
            raise JsonError(exc.status, exc.code, exc.message) from None
        return codec

    @staticmethod
    def _encode(data: Any, fmt: str, what: str, codec: Codec | None = None) -> bytes | None:
        if data is None:
            return None
        if codec is not None:
            try:
                return codec.encode(data)
            except SchemaError as exc:
                raise JsonError(exc.status, exc.code, f"{what}: {exc.message}") from None
        if fmt == "json":
            return json.dumps(data, separators=(",", ":")).encode()
        if not isinstance(data, str):
            raise JsonError(422, 422, f"A binary {what} must be a base64 string")
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise JsonError(422, 422, f"The {what} is not valid base64") from None

    # --- consumer instances --------------------------------------------------------------------
    def _instance(self, request: Request) -> Instance:
        inst = self.instances.get((request.path_params["group"], request.path_params["name"]))
        if inst is None:
            raise JsonError(404, 40403, "Consumer instance not found.")
        inst.last_used = time.monotonic()
        return inst

    async def create(self, request: Request) -> Response:
        group = request.path_params["group"]
        body = await json_body(request, 64 * 1024)
        if not isinstance(body, dict):
            raise JsonError(422, 422, "The request must be a JSON object")
        name = str(body.get("name") or f"rest-consumer-{time.monotonic_ns()}")
        fmt = str(body.get("format", "binary")).lower()
        if fmt not in FORMATS:
            raise JsonError(
                422,
                42204,
                f"Invalid consumer configuration: format {fmt!r} is not one of {', '.join(FORMATS)}",
            )
        if (group, name) in self.instances:
            raise JsonError(
                409,
                40902,
                "Consumer with specified consumer ID already exists in the specified consumer group.",
            )
        if len(self.instances) >= MAX_INSTANCES:
            raise JsonError(429, 429, f"Too many consumer instances (at most {MAX_INSTANCES})")
        reset = str(body.get("auto.offset.reset", "latest"))
        if reset not in ("earliest", "latest", "none"):
            raise JsonError(422, 422, f"Invalid auto.offset.reset {reset!r}")
        auto_commit = str(body.get("auto.commit.enable", "false")).lower() == "true"
        c = consumer(
            self.gateway.config.cluster,
            group,
            **{"auto.offset.reset": reset, "enable.auto.commit": auto_commit},
        )
        self.instances[(group, name)] = Instance(group, name, fmt, c)
        return v2(
            {
                "instance_id": name,
                "base_uri": f"{str(request.base_url).rstrip('/')}/consumers/{group}/instances/{name}",
            }
        )

    async def delete(self, request: Request) -> Response:
        await self._close(self._instance(request))
        return Response(status_code=204)

    async def subscription(self, request: Request) -> Response:
        inst = self._instance(request)
        if request.method == "GET":
            return v2({"topics": inst.topics})
        async with inst.lock:
            if request.method == "DELETE":
                await asyncio.to_thread(inst.consumer.unsubscribe)
                inst.topics, inst.pattern, inst.assigned, inst.pending = [], None, {}, []
                return Response(status_code=204)
            if inst.assigned:
                raise JsonError(
                    409,
                    40903,
                    "Illegal state: Subscription to topics, partitions and pattern are mutually exclusive.",
                )
            body = await json_body(request, 64 * 1024)
            topics = body.get("topics") if isinstance(body, dict) else None
            pattern = body.get("topic_pattern") if isinstance(body, dict) else None
            if (topics is None) == (pattern is None):
                raise JsonError(
                    409 if topics and pattern else 422,
                    40902 if topics and pattern else 422,
                    "Give either topics (a list) or topic_pattern",
                )
            if topics is not None and (
                not isinstance(topics, list)
                or not all(isinstance(t, str) for t in topics)
                or not topics
            ):
                raise JsonError(422, 422, "topics must be a non-empty list of names")
            names = list(topics) if topics is not None else [f"^{pattern}"]
            await asyncio.to_thread(inst.consumer.subscribe, names)
            inst.topics, inst.pattern = (
                (list(topics), None) if topics is not None else ([], str(pattern))
            )
        return Response(status_code=204)

    async def assignments(self, request: Request) -> Response:
        """Manual assignment (Confluent's ``assign``): GET lists it, POST replaces it."""
        inst = self._instance(request)
        if request.method == "GET":
            return v2({"partitions": [{"topic": t, "partition": p} for t, p in inst.assigned]})
        parts = _partition_list(await json_body(request, 1024 * 1024))
        async with inst.lock:
            if inst.topics or inst.pattern:
                raise JsonError(
                    409,
                    40903,
                    "Illegal state: Subscription to topics, partitions and pattern are mutually exclusive.",
                )
            await self._known_partitions(parts)
            inst.assigned = {tp: OFFSET_STORED for tp in parts}
            inst.pending = []
            await asyncio.to_thread(
                inst.consumer.assign, [TopicPartition(t, p, OFFSET_STORED) for t, p in parts]
            )
        return Response(status_code=204)

    async def positions(self, request: Request) -> Response:
        """Seek: ``{"offsets": [{topic, partition, offset}]}``, or ``/beginning`` and ``/end``
        with ``{"partitions": [...]}``. The partitions must be assigned to the instance (409)."""
        inst = self._instance(request)
        body = await json_body(request, 1024 * 1024)
        where = request.url.path.rsplit("/", 1)[-1]
        if where == "positions":
            items = body.get("offsets") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise JsonError(422, 422, "The request needs offsets: [{topic, partition, offset}]")
            try:
                targets = {(str(o["topic"]), int(o["partition"])): int(o["offset"]) for o in items}
            except (KeyError, TypeError, ValueError):
                raise JsonError(
                    422, 42202, "Each offset needs topic, partition and offset"
                ) from None
            if any(o < 0 for o in targets.values()):
                raise JsonError(422, 42202, "Offsets must not be negative")
        else:
            to = OFFSET_BEGINNING if where == "beginning" else OFFSET_END
            targets = {tp: to for tp in _partition_list(body)}
        async with inst.lock:
            if inst.assigned:
                unknown = [tp for tp in targets if tp not in inst.assigned]
                if unknown:
                    raise JsonError(
                        409,
                        40903,
                        f"Illegal state: No current assignment for partition {unknown[0][0]}-{unknown[0][1]}",
                    )
                inst.assigned.update(targets)
                # re-assigning with the new start offsets works whether or not fetching began
                await asyncio.to_thread(
                    inst.consumer.assign,
                    [TopicPartition(t, p, o) for (t, p), o in inst.assigned.items()],
                )
            else:
                current = {
                    (tp.topic, tp.partition)
                    for tp in await asyncio.to_thread(inst.consumer.assignment)
                }
                unknown = [tp for tp in targets if tp not in current]
                if unknown:
                    raise JsonError(
                        409,
                        40903,
                        f"Illegal state: No current assignment for partition {unknown[0][0]}-{unknown[0][1]}",
                    )
                for (t, p), o in targets.items():
                    try:
                        await asyncio.to_thread(inst.consumer.seek, TopicPartition(t, p, o))
                    except KafkaException as exc:
                        raise JsonError(409, 40903, f"Illegal state: {exc}") from None
            inst.pending = [m for m in inst.pending if (m.topic(), m.partition()) not in targets]
        return Response(status_code=204)

    # --- metadata ------------------------------------------------------------------------------
    async def _metadata(self) -> Any:
        producer = self.gateway.producer
        assert producer is not None
        try:
            return await asyncio.to_thread(producer.list_topics, 10.0)
        except Exception as exc:
            raise JsonError(503, 50301, f"The cluster cannot be reached: {exc}") from None

    async def _topic_md(self, name: str) -> Any:
        t = (await self._metadata()).topics.get(name)
        if t is None or t.error is not None:
            raise JsonError(404, 40401, "Topic not found.")
        return t

    async def _known_partitions(self, parts: list[tuple[str, int]]) -> None:
        md = await self._metadata()
        for t, p in parts:
            tm = md.topics.get(t)
            if tm is None or tm.error is not None:
                raise JsonError(404, 40401, "Topic not found.")
            if p not in tm.partitions:
                raise JsonError(404, 40402, "Partition not found.")

    @staticmethod
    def _partition_body(pm: Any) -> dict[str, Any]:
        isr = set(pm.isrs)
        return {
            "partition": pm.id,
            "leader": pm.leader,
            "replicas": [
                {"broker": b, "leader": b == pm.leader, "in_sync": b in isr} for b in pm.replicas
            ],
        }

    async def list_topics(self, request: Request) -> Response:
        md = await self._metadata()
        return v2(
            sorted(n for n, t in md.topics.items() if t.error is None and not n.startswith("__"))
        )

    async def topic(self, request: Request) -> Response:
        name = request.path_params["topic"]
        t = await self._topic_md(name)
        from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

        if self._admin is None:
            self._admin = admin(self.gateway.config.cluster)
        try:
            futures = await asyncio.to_thread(
                self._admin.describe_configs,
                [ConfigResource(ConfigResource.Type.TOPIC, name)],
                request_timeout=10,
            )
            entries = await asyncio.to_thread(lambda: next(iter(futures.values())).result(15))
            configs = {k: e.value for k, e in sorted(entries.items())}
        except KafkaException as exc:
            raise JsonError(500, 50002, f"Kafka error: {exc}") from None
        return v2(
            {
                "name": name,
                "configs": configs,
                "partitions": [self._partition_body(t.partitions[p]) for p in sorted(t.partitions)],
            }
        )

    async def partitions(self, request: Request) -> Response:
        t = await self._topic_md(request.path_params["topic"])
        p = request.path_params.get("partition")
        if p is None:
            return v2([self._partition_body(t.partitions[i]) for i in sorted(t.partitions)])
        if p not in t.partitions:
            raise JsonError(404, 40402, "Partition not found.")
        return v2(self._partition_body(t.partitions[p]))

    async def partition_offsets(self, request: Request) -> Response:
        name, p = request.path_params["topic"], request.path_params["partition"]
        t = await self._topic_md(name)
        if p not in t.partitions:
            raise JsonError(404, 40402, "Partition not found.")
        async with self._watermarks_lock:
            if self._watermarks is None:
                self._watermarks = consumer(
                    self.gateway.config.cluster, "riverbed-gateway-rest-metadata"
                )
            try:
                low, high = await asyncio.to_thread(
                    self._watermarks.get_watermark_offsets, TopicPartition(name, p), 10, False
                )
            except KafkaException as exc:
                raise JsonError(500, 50002, f"Kafka error: {exc}") from None
        return v2({"beginning_offset": low, "end_offset": high})

    async def brokers(self, request: Request) -> Response:
        return v2({"brokers": sorted((await self._metadata()).brokers)})

    async def records(self, request: Request) -> Response:
        inst = self._instance(request)
        wanted = embedded_format(request.headers.get("accept")) or inst.format
        if wanted != inst.format:
            raise JsonError(
                406,
                40601,
                "The requested embedded data format does not match the deserializer for this consumer instance",
            )
        try:
            timeout = min(int(request.query_params.get("timeout", "1000")), 30_000) / 1000
            max_bytes = int(request.query_params.get("max_bytes", str(64 * 1024 * 1024)))
        except ValueError:
            raise JsonError(422, 422, "timeout and max_bytes must be integers") from None
        async with inst.lock:
            msgs = inst.pending or await asyncio.to_thread(self._consume, inst.consumer, timeout)
            inst.pending = []
            out: list[dict[str, Any]] = []
            size = 0
            for i, m in enumerate(msgs):
                if inst.format in SCHEMA_FORMATS:
                    try:
                        rec = await self._render_schema(m, SCHEMA_FORMATS[inst.format])
                    except (SchemaError, ValueError, KeyError, IndexError, TypeError) as exc:
                        # answer what came before; the bad record waits (seek past it with positions)
                        inst.pending = msgs[i:]
                        if out:
                            break
                        message = (
                            exc.message
                            if isinstance(exc, SchemaError)
                            else f"{type(exc).__name__}: {exc}"
                        )
                        raise JsonError(
                            500,
                            50002,
                            f"Kafka error: Error deserializing {m.topic()}-{m.partition()} offset {m.offset()}: {message}",
                        ) from None
                else:
                    rec = self._render(m, inst.format)
                size += len(m.value() or b"") + len(m.key() or b"")
                if out and size > max_bytes:
                    inst.pending = msgs[i:]
                    break
                out.append(rec)
                inst.returned[(m.topic(), m.partition())] = m.offset() + 1
        return v2(out)

    @staticmethod
    def _consume(c: Consumer, timeout: float) -> list[Any]:
        first = c.poll(timeout)
        msgs = [] if first is None else [first, *c.consume(MAX_RECORDS - 1, 0)]
        out = []
        for m in msgs:
            err = m.error()
            if err is None:
                out.append(m)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("rest consumer: %s", err)
        return out

    async def _render_schema(self, m: Any, kind: str) -> dict[str, Any]:
        formats = self.gateway.schemas
        key, value = await formats.decode(m.key(), kind), await formats.decode(m.value(), kind)
        return {
            "topic": m.topic(),
            "key": key,
            "value": value,
            "partition": m.partition(),
            "offset": m.offset(),
        }

    @staticmethod
    def _render(m: Any, fmt: str) -> dict[str, Any]:
        def enc(b: bytes | None) -> Any:
            if b is None:
                return None
            if fmt == "binary":
                return base64.b64encode(b).decode()
            try:
                return json.loads(b)
            except (ValueError, RecursionError):
                return b.decode("utf-8", "replace")

        return {
            "topic": m.topic(),
            "key": enc(m.key()),
            "value": enc(m.value()),
            "partition": m.partition(),
            "offset": m.offset(),
        }

    async def offsets(self, request: Request) -> Response:
        inst = self._instance(request)
        body: Any = None
        if int(request.headers.get("content-length", "0") or 0) > 0:
            body = await json_body(request, 1024 * 1024)
        if request.method == "POST":
            if body and isinstance(body, dict) and body.get("offsets"):
                try:
                    tps = [
                        TopicPartition(o["topic"], int(o["partition"]), int(o["offset"]) + 1)
                        for o in body["offsets"]
                    ]
                except (KeyError, TypeError, ValueError):
                    raise JsonError(
                        422, 42202, "Each offset needs topic, partition and offset"
                    ) from None
            else:
                tps = [TopicPartition(t, p, o) for (t, p), o in inst.returned.items()]
            if tps:
                async with inst.lock:
                    try:
                        await asyncio.to_thread(
                            inst.consumer.commit, offsets=tps, asynchronous=False
                        )
                    except KafkaException as exc:
                        raise JsonError(500, 50002, f"Commit failed: {exc}") from None
            return Response(status_code=200)
        parts = body.get("partitions") if isinstance(body, dict) else None
        if not isinstance(parts, list):
            raise JsonError(422, 422, "The request needs partitions: [{topic, partition}]")
        async with inst.lock:
            committed = await asyncio.to_thread(
                inst.consumer.committed,
                [TopicPartition(p["topic"], int(p["partition"])) for p in parts],
                10,
            )
        return v2(
            {
                "offsets": [
                    {
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "offset": tp.offset,
                        "metadata": "",
                    }
                    for tp in committed
                ]
            }
        )
