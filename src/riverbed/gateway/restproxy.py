"""Confluent REST Proxy v3 produce, for clients that cannot speak the Kafka protocol.

- ``POST /v3/clusters/{cluster_id}/topics/{topic}/records``: one record (a JSON object) answered
  with its delivery report, or a stream of concatenated JSON records (``Transfer-Encoding:
  chunked``) answered with one delivery report per record, in order, as each is acknowledged.
- ``POST /v3/clusters/{cluster_id}/topics/{topic}/records:batch``: ``{"entries": [{"id": ...,
  <record>}, ...]}`` answered ``207 Multi-Status`` with ``successes`` and ``failures``.

A record is ``{"partition_id", "headers": [{"name", "value": base64}], "key": {"type", "data"},
"value": {"type", "data"}, "timestamp"}`` with BINARY (base64), JSON or STRING data, or
AVRO, PROTOBUF or JSONSCHEMA data with ``schema_id`` | ``schema_version`` | ``schema`` and
``subject`` | ``subject_name_strategy``, written in the registry's wire format (schemas.py).
Every report has its own ``error_code`` (200 when stored with acks=all).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from riverbed.web import JsonError, json_body, json_response

from .producer import NotStored
from .schemas import FORMATS as SCHEMA_FORMATS
from .schemas import SchemaError, resolve_v3

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("riverbed.gateway.rest")

FORMATS = ("BINARY", "JSON", "STRING")
SCHEMA_FIELDS = ("schema", "schema_id", "schema_version", "subject", "subject_name_strategy")
MAX_BATCH = (
    10  # entries per :batch request (Confluent's default api.v3.produce.batch.maximum.entries)
)
MAX_IN_FLIGHT = 1000  # records of one stream awaiting acknowledgement


class RecordError(Exception):
    """A record's error: `code` is the error_code (an HTTP status, or Confluent's 5-digit code
    whose first three digits are the status)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.status = code if code < 1000 else code // 100


def _data(part: Any, what: str) -> tuple[bytes | None, str | None]:
    """-> (bytes, type) of a key or value object of a plain format (BINARY, JSON, STRING)."""
    if part is None:
        return None, None
    if not isinstance(part, dict):
        raise RecordError(400, f"{what} must be an object with type and data")
    kind = str(part.get("type", "BINARY")).upper()
    if kind not in FORMATS:
        raise RecordError(
            400, f"{what} type {kind!r} is not one of {', '.join(FORMATS + SCHEMA_FORMATS)}"
        )
    if any(k in part for k in SCHEMA_FIELDS):
        raise RecordError(
            400, f"{what}: a schema goes with type AVRO, PROTOBUF or JSONSCHEMA, not {kind}"
        )
    data = part.get("data")
    if data is None:
        return None, kind
    if kind == "BINARY":
        if not isinstance(data, str):
            raise RecordError(400, f"{what} data of type BINARY must be a base64 string")
        try:
            return base64.b64decode(data, validate=True), kind
        except (binascii.Error, ValueError):
            raise RecordError(400, f"{what} data is not valid base64") from None
    if kind == "STRING":
        if not isinstance(data, str):
            raise RecordError(400, f"{what} data of type STRING must be a string")
        return data.encode(), kind
    return json.dumps(data, separators=(",", ":")).encode(), kind


def _uses_schema(part: Any) -> bool:
    if not isinstance(part, dict):
        return False
    return str(part.get("type", "")).upper() in SCHEMA_FORMATS or (
        "type" not in part and any(k in part for k in SCHEMA_FIELDS)
    )


def _timestamp(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise RecordError(400, f"timestamp {value!r} is not an ISO 8601 date-time") from None


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class RestProxy:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._cluster_id: str | None = None
        self._partitions: dict[str, int] = {}

    def routes(self) -> list[BaseRoute]:
        return [
            Route(
                "/v3/clusters/{cluster_id}/topics/{topic}/records:batch",
                self.batch,
                methods=["POST"],
            ),
            Route(
                "/v3/clusters/{cluster_id}/topics/{topic}/records", self.records, methods=["POST"]
            ),
        ]

    async def _check(self, cluster_id: str, topic: str) -> None:
        producer = self.gateway.producer
        assert producer is not None
        if self._cluster_id is None or topic not in self._partitions:
            try:
                md = await asyncio.to_thread(producer.list_topics, 10.0)
            except Exception as exc:
                raise JsonError(503, 503, f"The cluster cannot be reached: {exc}") from None
            self._cluster_id = md.cluster_id
            self._partitions = {
                name: len(t.partitions) for name, t in md.topics.items() if t.error is None
            }
        if cluster_id != self._cluster_id:
            raise JsonError(404, 404, f"Cluster {cluster_id} cannot be found.")
        if topic not in self._partitions:
            raise JsonError(404, 404, f"Topic {topic} cannot be found.")

    async def _produce(self, cluster_id: str, topic: str, rec: Any) -> dict[str, Any]:
        """One record -> its delivery report (RecordError for bad records or failures)."""
        if not isinstance(rec, dict):
            raise RecordError(400, "A record must be a JSON object")
        key, key_report = await self._part(topic, rec.get("key"), "key")
        value, value_report = await self._part(topic, rec.get("value"), "value")
        partition = rec.get("partition_id")
        if partition is not None and (
            not isinstance(partition, int) or not 0 <= partition < self._partitions.get(topic, 0)
        ):
            raise RecordError(404, f"Partition {partition} of topic {topic} cannot be found.")
        headers = []
        for h in rec.get("headers") or []:
            if not isinstance(h, dict) or not isinstance(h.get("name"), str):
                raise RecordError(400, "headers must be objects with a name and a base64 value")
            raw = h.get("value")
            try:
                headers.append(
                    (h["name"], base64.b64decode(raw, validate=True) if raw is not None else b"")
                )
            except (binascii.Error, ValueError, TypeError):
                raise RecordError(400, f"header {h['name']!r} value is not base64") from None
        producer = self.gateway.producer
        assert producer is not None
        try:
            msg = await producer.send(
                topic, value, key, headers, partition, _timestamp(rec.get("timestamp"))
            )
        except NotStored as exc:
            raise RecordError(
                503 if exc.retriable else 500, f"The record was not stored: {exc}"
            ) from None
        report: dict[str, Any] = {
            "error_code": 200,
            "cluster_id": cluster_id,
            "topic_name": topic,
            "partition_id": msg.partition(),
            "offset": msg.offset(),
            "timestamp": _iso(msg.timestamp()[1]),
        }
        if key_report is not None:
            report["key"] = {**key_report, "size": len(key or b"")}
        if value_report is not None:
            report["value"] = {**value_report, "size": len(value or b"")}
        return report

    async def _part(
        self, topic: str, part: Any, what: str
    ) -> tuple[bytes | None, dict[str, Any] | None]:
        """A key or value object -> (bytes, the report's description of it)."""
        if not _uses_schema(part):
            data, kind = _data(part, what)
            return data, None if kind is None else {"type": kind}
        try:
            codec, subject, version = await resolve_v3(
                self.gateway.schemas, topic, what == "key", part
            )
            data = part.get("data")
            encoded = None if data is None else codec.encode(data)
        except SchemaError as exc:
            raise RecordError(exc.code, f"{what}: {exc.message}") from None
        info = {
            "type": codec.kind,
            "subject": subject,
            "schema_id": codec.id,
            "schema_version": version,
        }
        return encoded, info

    async def records(self, request: Request) -> Response:
        cluster_id, topic = request.path_params["cluster_id"], request.path_params["topic"]
        await self._check(cluster_id, topic)
        if request.headers.get("transfer-encoding", "").lower() != "chunked":
            body = await json_body(request, self.gateway.config.max_body)
            try:
                return json_response(await self._produce(cluster_id, topic, body))
            except RecordError as exc:
                raise JsonError(exc.status, exc.code, exc.message) from None
        return ReportStream(self._stream(request, cluster_id, topic))

    async def _stream(self, request: Request, cluster_id: str, topic: str) -> AsyncIterator[bytes]:
        """Read concatenated JSON records as they arrive; answer each one in order once settled."""
        pending: asyncio.Queue[asyncio.Task[dict[str, Any]] | RecordError | None] = asyncio.Queue(
            MAX_IN_FLIGHT
        )
        decoder = json.JSONDecoder()
        limit = self.gateway.config.max_body

        async def report(rec: Any) -> dict[str, Any]:
            try:
                return await self._produce(cluster_id, topic, rec)
            except RecordError as exc:
                return {"error_code": exc.code, "message": exc.message}

        async def reader() -> None:
            buf = ""
            text = codecs.getincrementaldecoder("utf-8")("replace")  # a character may span chunks
            try:
                async for chunk in request.stream():
                    buf += text.decode(chunk)
                    while True:
                        buf = buf.lstrip()
                        if not buf:
                            break
                        try:
                            rec, end = decoder.raw_decode(buf)
                        except ValueError:
                            if len(buf) > limit:
                                await pending.put(
                                    RecordError(
                                        413, f"A record is larger than the limit of {limit} bytes"
                                    )
                                )
                                return
                            break  # incomplete: wait for more bytes
                        buf = buf[end:]
                        await pending.put(asyncio.create_task(report(rec)))
                if buf.strip():
                    await pending.put(
                        RecordError(400, "The stream ended inside a record (not valid JSON)")
                    )
            finally:
                await pending.put(None)

        task = asyncio.create_task(reader())
        try:
            while (item := await pending.get()) is not None:
                result = (
                    {"error_code": item.code, "message": item.message}
                    if isinstance(item, RecordError)
                    else await item
                )
                yield json.dumps(result, separators=(",", ":")).encode() + b"\n"
        finally:
            task.cancel()

    async def batch(self, request: Request) -> Response:
        cluster_id, topic = request.path_params["cluster_id"], request.path_params["topic"]
        await self._check(cluster_id, topic)
        body = await json_body(request, self.gateway.config.max_body)
        entries = body.get("entries") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not entries:
            raise JsonError(400, 400, "The batch must have a non-empty entries list")
        if len(entries) > MAX_BATCH:
            raise JsonError(400, 400, f"The batch has more than {MAX_BATCH} entries")
        ids = [e.get("id") if isinstance(e, dict) else None for e in entries]
        if any(not isinstance(i, str) or not 1 <= len(i) <= 80 for i in ids):
            raise JsonError(400, 400, "Every entry needs an id of 1 to 80 characters")
        if len(set(ids)) != len(ids):
            raise JsonError(400, 400, "The entry ids are not distinct")

        async def one(entry: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
            try:
                return True, {"id": entry["id"], **await self._produce(cluster_id, topic, entry)}
            except RecordError as exc:
                return False, {"id": entry["id"], "error_code": exc.code, "message": exc.message}

        results = await asyncio.gather(*(one(e) for e in entries))
        return json_response(
            {
                "successes": [r for ok, r in results if ok],
                "failures": [r for ok, r in results if not ok],
            },
            207,
        )


class ReportStream(Response):
    """A chunked JSON response fed by an async iterator. Unlike Starlette's StreamingResponse it
    does not read the request's messages while it streams (the record reader does: a stream's
    request body and its reports flow at the same time)."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        super().__init__(None, 200, None, "application/json")
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.chunks = chunks

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        async for chunk in self.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
