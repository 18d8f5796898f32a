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

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from riverbed.client import consumer
from riverbed.web import JsonError, json_body, json_response

from .producer import NotStored

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("riverbed.gateway.rest")

V2 = "application/vnd.kafka.v2+json"
INSTANCE_TIMEOUT = 300.0
MAX_INSTANCES = 1000
MAX_RECORDS = 500  # per GET .../records


def embedded_format(media: str | None) -> str | None:
    """'json' | 'binary' | other embedded format named by a v2 content type; None if none."""
    media = (media or "").split(";")[0].strip().lower()
    if media.startswith("application/vnd.kafka.") and media.endswith(".v2+json"):
        fmt = media[len("application/vnd.kafka."):-len(".v2+json")]
        return fmt or None
    return "json" if media == "application/json" else None


def v2(data: Any, status: int = 200) -> Response:
    return json_response(data, status, V2)


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
    returned: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset per partition
    pending: list[Any] = field(default_factory=list)  # records read but over max_bytes


class RestProxyV2:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.instances: dict[tuple[str, str], Instance] = {}
        self._reaper: asyncio.Task[None] | None = None

    def routes(self) -> list[BaseRoute]:
        base = "/consumers/{group}/instances/{name}"
        return [
            Route("/topics/{topic}", self.produce, methods=["POST"]),
            Route("/topics/{topic}/partitions/{partition:int}", self.produce, methods=["POST"]),
            Route("/consumers/{group}", self.create, methods=["POST"]),
            Route(base, self.delete, methods=["DELETE"]),
            Route(base + "/subscription", self.subscription, methods=["POST", "GET", "DELETE"]),
            Route(base + "/records", self.records, methods=["GET"]),
            Route(base + "/offsets", self.offsets, methods=["POST", "GET"]),
        ]

    async def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap())

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for inst in list(self.instances.values()):
            await self._close(inst)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(5)
            now = time.monotonic()
            for inst in [i for i in self.instances.values() if now - i.last_used > INSTANCE_TIMEOUT and not i.lock.locked()]:
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
        if fmt not in ("json", "binary"):
            raise JsonError(415, 415, f"Embedded format {fmt or '(none)'} is not supported (json and binary are)")
        body = await json_body(request, self.gateway.config.max_body)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            raise JsonError(422, 422, "The request needs a non-empty records list")
        producer = self.gateway.producer
        assert producer is not None
        md = await asyncio.to_thread(producer.list_topics, 10.0)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            raise JsonError(404, 40401, "Topic not found.")
        encoded = []
        for r in records:
            if not isinstance(r, dict):
                raise JsonError(422, 422, "Each record must be an object")
            partition = fixed if fixed is not None else r.get("partition")
            if partition is not None and (not isinstance(partition, int) or partition not in t.partitions):
                raise JsonError(404, 40402, "Partition not found.")
            encoded.append((self._encode(r.get("key"), fmt, "key"), self._encode(r.get("value"), fmt, "value"), partition))

        async def one(key: bytes | None, value: bytes | None, partition: int | None) -> dict[str, Any]:
            try:
                msg = await producer.send(topic, value, key, None, partition)
                return {"partition": msg.partition(), "offset": msg.offset(), "error_code": None, "error": None}
            except NotStored as exc:
                return {"partition": partition, "offset": None, "error_code": 50003 if exc.retriable else 50002, "error": str(exc)}

        offsets = await asyncio.gather(*(one(*e) for e in encoded))
        return v2({"offsets": offsets, "key_schema_id": None, "value_schema_id": None})

    @staticmethod
    def _encode(data: Any, fmt: str, what: str) -> bytes | None:
        if data is None:
            return None
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
        if fmt not in ("binary", "json"):
            raise JsonError(422, 42204, f"Invalid consumer format {fmt!r} (binary and json are supported)")
        if (group, name) in self.instances:
            raise JsonError(409, 40902, "Consumer with specified consumer ID already exists in the specified consumer group.")
        if len(self.instances) >= MAX_INSTANCES:
            raise JsonError(429, 429, f"Too many consumer instances (at most {MAX_INSTANCES})")
        reset = str(body.get("auto.offset.reset", "latest"))
        if reset not in ("earliest", "latest", "none"):
            raise JsonError(422, 422, f"Invalid auto.offset.reset {reset!r}")
        auto_commit = str(body.get("auto.commit.enable", "false")).lower() == "true"
        c = consumer(self.gateway.config.cluster, group, **{"auto.offset.reset": reset, "enable.auto.commit": auto_commit})
        self.instances[(group, name)] = Instance(group, name, fmt, c)
        return v2({"instance_id": name, "base_uri": f"{str(request.base_url).rstrip('/')}/consumers/{group}/instances/{name}"})

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
                inst.topics, inst.pattern = [], None
                return Response(status_code=204)
            body = await json_body(request, 64 * 1024)
            topics = body.get("topics") if isinstance(body, dict) else None
            pattern = body.get("topic_pattern") if isinstance(body, dict) else None
            if (topics is None) == (pattern is None):
                raise JsonError(409 if topics and pattern else 422, 40902 if topics and pattern else 422, "Give either topics (a list) or topic_pattern")
            if topics is not None and (not isinstance(topics, list) or not all(isinstance(t, str) for t in topics) or not topics):
                raise JsonError(422, 422, "topics must be a non-empty list of names")
            names = list(topics) if topics is not None else [f"^{pattern}"]
            await asyncio.to_thread(inst.consumer.subscribe, names)
            inst.topics, inst.pattern = (list(topics), None) if topics is not None else ([], str(pattern))
        return Response(status_code=204)

    async def records(self, request: Request) -> Response:
        inst = self._instance(request)
        wanted = embedded_format(request.headers.get("accept")) or inst.format
        if wanted != inst.format:
            raise JsonError(406, 40601, "The requested embedded data format does not match the deserializer for this consumer instance")
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

        return {"topic": m.topic(), "key": enc(m.key()), "value": enc(m.value()), "partition": m.partition(), "offset": m.offset()}

    async def offsets(self, request: Request) -> Response:
        inst = self._instance(request)
        body: Any = None
        if int(request.headers.get("content-length", "0") or 0) > 0:
            body = await json_body(request, 1024 * 1024)
        if request.method == "POST":
            if body and isinstance(body, dict) and body.get("offsets"):
                try:
                    tps = [TopicPartition(o["topic"], int(o["partition"]), int(o["offset"]) + 1) for o in body["offsets"]]
                except (KeyError, TypeError, ValueError):
                    raise JsonError(422, 42202, "Each offset needs topic, partition and offset") from None
            else:
                tps = [TopicPartition(t, p, o) for (t, p), o in inst.returned.items()]
            if tps:
                async with inst.lock:
                    try:
                        await asyncio.to_thread(inst.consumer.commit, offsets=tps, asynchronous=False)
                    except KafkaException as exc:
                        raise JsonError(500, 50002, f"Commit failed: {exc}") from None
            return Response(status_code=200)
        parts = body.get("partitions") if isinstance(body, dict) else None
        if not isinstance(parts, list):
            raise JsonError(422, 422, "The request needs partitions: [{topic, partition}]")
        async with inst.lock:
            committed = await asyncio.to_thread(inst.consumer.committed, [TopicPartition(p["topic"], int(p["partition"])) for p in parts], 10)
        return v2({"offsets": [{"topic": tp.topic, "partition": tp.partition, "offset": tp.offset, "metadata": ""} for tp in committed]})
