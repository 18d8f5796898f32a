"""Webhooks in: a declarative route verifies a provider's signature, drops replays, and
produces the body to a topic, answering ``202 Accepted`` only once the broker acknowledged it.

Order of checks: rate limit (429) -> body size (413) -> signature and timestamp (401) -> JSON
(400) -> CloudEvent attributes (400) -> provider event id already seen (202, not produced again)
-> produce with acks=all (503 with Retry-After if not stored) -> 202.

A route is a plain ASGI app (the gateway calls it before Starlette's middleware and router):
headers are read from the scope once, the body from ``receive``, and the JSON answer is
written with two ``send`` calls, without Request and Response objects per webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

import orjson
from confluent_kafka import KafkaError, TopicPartition
from starlette.requests import HTTPConnection

from riverbed.client import ClusterSettings, consumer
from riverbed.messaging import (
    CloudEvent,
    InvalidEvent,
    from_binary,
    from_structured,
    to_binary,
    to_structured,
)
from riverbed.web import JsonError

from .config import InboundRoute, json_path
from .limits import RateLimiter, SeenWindow
from .producer import AsyncProducer, Headers, NotStored
from .push_http import Authenticator
from .shared import RedisSeen, SharedUnavailable
from .signatures import (
    SignatureError,
    Verified,
    verify_github,
    verify_hmac,
    verify_standard,
    verify_stripe,
)

log = logging.getLogger("riverbed.gateway")

ID_HEADER = "riverbed.gateway.id"  # the provider's event id, on every record a route produces
USER_HEADER = "riverbed.gateway.user"  # the bearer token's user id (routes with auth = "jwt")
DEFAULT_ID_PATH = {"stripe": "id"}


_JSON_TYPE = (b"content-type", b"application/json")

Scope = dict[str, Any]
Answer = tuple[int, dict[str, Any], int | None]  # status, JSON body, Retry-After seconds


class _Disconnected(Exception):
    """The client went away before its body was read: nothing to answer."""


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "?"


def scope_headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (ASGI names are lower-case already); the first
    of repeated headers wins, as with Starlette's ``Headers.get``."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(scope["headers"])}


def _dumps(data: Any) -> bytes:
    """JSON as Starlette's JSONResponse renders it (compact, UTF-8; the answers hold strings,
    integers and None only, which orjson renders byte for byte as json.dumps does)."""
    return orjson.dumps(data)


def _loads(body: bytes) -> Any:
    """json.loads, through orjson (a sixth of the cost) for what orjson accepts; what it refuses
    (integers past 64 bits, NaN, ...) goes to json.loads, so the same bodies are accepted."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


class InboundHandler:
    def __init__(self, route: InboundRoute, producer: AsyncProducer, max_body: int, retry_after: int, ack_timeout: float, auth: Authenticator | None = None) -> None:
        self.route, self.producer, self.auth = route, producer, auth
        self.max_body, self.retry_after, self.ack_timeout = max_body, retry_after, ack_timeout
        self.seen = SeenWindow(route.dedup_window)
        self.limiter = RateLimiter(route.rate_limit, route.burst) if route.rate_limit > 0 else None
        self.shared = RedisSeen(route.dedup_redis, route.dedup_ttl, ack_timeout + 5, f"riverbed:gateway:{route.topic}:") if route.dedup_redis else None
        self.accepted = 0
        self.duplicates = 0
        # per request only what varies: the route's header names, id path and JSON need, once
        self._carry = tuple(name.lower() for name in route.headers)
        self._id_path = route.id or DEFAULT_ID_PATH.get(route.verify)
        self._parse = bool(route.require_json or route.key or route.id or route.cloudevents)
        # the loop the route is served on, looked up at its first request (Python 3.11's
        # get_running_loop() is a getpid() syscall, twice per webhook otherwise)
        self._loop: asyncio.AbstractEventLoop | None = None

    def _verify(self, h: dict[str, str], body: bytes) -> Verified:
        r = self.route
        assert r.secret is not None or r.verify == "none"
        if r.verify == "stripe":
            return verify_stripe(h, body, r.secret or "", r.tolerance)
        if r.verify == "github":
            return verify_github(h, body, r.secret or "")
        if r.verify == "standard-webhooks":
            return verify_standard(h, body, r.secret or "", r.tolerance)
        if r.verify == "hmac-sha256":
            return verify_hmac(h, body, r.secret or "", r.signature_header, r.signature_prefix, r.signature_encoding)
        return Verified()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """ASGI: answer one POST (JSON body, with Retry-After on 429 and 503)."""
        try:
            status, payload, retry = await self._handle(scope, receive)
        except _Disconnected:
            return
        except JsonError as exc:
            (log.error if exc.status >= 500 else log.info)("%s %s -> %d %s", scope["method"], scope["path"], exc.status, exc.message)
            status, payload, retry = exc.status, {"error_code": exc.code, "message": exc.message}, None
        except Exception as exc:
            log.exception("%s %s failed", scope["method"], scope["path"])
            status, payload, retry = 500, {"error_code": 50001, "message": f"Internal error: {type(exc).__name__}"}, None
        body = _dumps(payload)
        headers = [_JSON_TYPE, (b"content-length", b"%d" % len(body))]
        if retry is not None:
            headers.append((b"retry-after", str(retry).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _body(self, h: dict[str, str], receive: Any) -> bytes:
        """The request's body; 413 past max_body (declared or streamed: read no further)."""
        declared = h.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise JsonError(413, 413, f"Request body of {declared} bytes is larger than the limit of {self.max_body} bytes")
        msg = await receive()
        if msg["type"] != "http.request":
            raise _Disconnected
        body: bytes = msg.get("body", b"")
        if not msg.get("more_body", False) and len(body) <= self.max_body:
            return body  # the usual case: all of it in one message
        chunks = [body]
        size = len(body)
        while True:
            if size > self.max_body:
                raise JsonError(413, 413, f"Request body is larger than the limit of {self.max_body} bytes")
            if not msg.get("more_body", False):
                return b"".join(chunks)
            msg = await receive()
            if msg["type"] != "http.request":
                raise _Disconnected
            chunk = msg.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)

    async def _handle(self, scope: Scope, receive: Any) -> Answer:
        r = self.route
        if self.limiter is not None:
            wait = self.limiter.take(client_address(scope))
            if wait > 0:
                log.warning("%s from %s: rate limit of %g/s exceeded", r.path, client_address(scope), r.rate_limit)
                return 429, {"error_code": 429, "message": f"Too many requests: limit is {r.rate_limit:g}/s"}, max(1, round(wait + 0.5))
        user = None
        if r.auth == "jwt":
            assert self.auth is not None
            user = self.auth.user(HTTPConnection(scope), r)
        h = scope_headers(scope)
        body = await self._body(h, receive)
        try:
            verified = self._verify(h, body)
        except SignatureError as exc:
            log.warning("%s from %s: signature refused: %s", r.path, client_address(scope), exc)
            raise JsonError(401, 401, f"Signature verification failed: {exc}") from None
        key, value, headers, event_id = self._record(h, body, verified)
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        if user is not None:
            headers.append((USER_HEADER, user.encode()))
            if key is None:
                key = user.encode()
        if event_id is not None:
            first = self.seen.claim(event_id, loop)
            if first is not None:
                self.duplicates += 1
                try:
                    result = await asyncio.shield(first)
                except (NotStored, asyncio.CancelledError):
                    # the first attempt failed or was evicted: this retry produces
                    first = self.seen.claim(event_id)
                    if first is not None:
                        raise JsonError(503, 50301, "An earlier delivery of this event is still unsettled") from None
                else:
                    log.info("%s: event %s already accepted (provider retry), not produced again", r.path, event_id)
                    return 202, {**result, "duplicate": True}, None
            if self.shared is not None:
                try:
                    earlier = await self.shared.claim(event_id, self.ack_timeout)
                except SharedUnavailable as exc:
                    self.seen.forget(event_id, NotStored(str(exc)))
                    log.error("%s: event %s not accepted: %s", r.path, event_id, exc)
                    return 503, {"error_code": 50301, "message": f"The event was not stored: {exc}"}, self.retry_after
                if earlier is not None:
                    self.seen.done(event_id, earlier)
                    self.duplicates += 1
                    log.info("%s: event %s already accepted by another instance, not produced again", r.path, event_id)
                    return 202, {**earlier, "duplicate": True}, None
            headers.append((ID_HEADER, event_id.encode()))
        try:
            msg = await self.producer.send_within(r.topic, value, key, headers, self.ack_timeout, loop)
        except NotStored as err:
            if event_id is not None:
                self.seen.forget(event_id, err)
                if self.shared is not None:
                    with contextlib.suppress(SharedUnavailable):  # else the claim expires by itself
                        await self.shared.forget(event_id)
            log.error("%s: record not stored on %s: %s", r.path, r.topic, err)
            return 503, {"error_code": 50301, "message": f"The event was not stored: {err}"}, self.retry_after
        result = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(), "id": event_id}
        if event_id is not None:
            self.seen.done(event_id, result)
            if self.shared is not None:
                try:
                    await self.shared.done(event_id, result)
                except SharedUnavailable as exc:  # stored: answer 202; the claim expires
                    log.warning("%s: event %s stored but not marked done in redis: %s", r.path, event_id, exc)
        self.accepted += 1
        return 202, result, None

    def _record(self, h: dict[str, str], body: bytes, verified: Verified) -> tuple[bytes | None, bytes | None, Headers, str | None]:
        """-> (key, value, headers, provider event id) for the body, or JsonError 400."""
        r = self.route
        ctype = h.get("content-type", "")
        carried: Headers = [(name, h[name].encode()) for name in self._carry if name in h] if self._carry else []
        if "ce-specversion" in h:  # CloudEvents HTTP binary mode -> Kafka binary mode
            ce_headers: Headers = [("ce_" + name[3:], value.encode()) for name, value in h.items() if name.startswith("ce-")]
            if ctype:
                ce_headers.append(("content-type", ctype.encode()))
            try:
                event = from_binary(None, body or None, ce_headers, decode_json=False)
            except InvalidEvent as exc:
                raise JsonError(400, 400, f"Invalid CloudEvent: {exc}") from None
            doc = self._json(body) if event.datacontenttype is None or "json" in (event.datacontenttype or "") else None
            key = event.partitionkey or (_text(json_path(doc, r.key)) if r.key and doc is not None else None)
            ce_headers = [(n, v) for n, v in ce_headers if n != "ce_partitionkey"]
            return _b(key), body, ce_headers + carried, verified.event_id or f"{event.source}/{event.id}"
        media = ctype.split(";")[0].strip().lower() if ctype else ""
        if media == "application/cloudevents+json":  # structured mode
            try:
                event = from_structured(None, body)
            except InvalidEvent as exc:
                raise JsonError(400, 400, f"Invalid CloudEvent: {exc}") from None
            key = event.partitionkey or (_text(json_path(self._json(body), r.key)) if r.key else None)
            return _b(key), body, [("content-type", ctype.encode()), *carried], verified.event_id or f"{event.source}/{event.id}"
        if media == "application/cloudevents-batch+json":
            raise JsonError(400, 400, "CloudEvents batch mode is not supported; send one event per request")
        doc = self._json(body) if self._parse else None
        event_id = verified.event_id
        id_path = self._id_path
        if event_id is None and id_path is not None:
            event_id = _text(json_path(doc, id_path))
        key = _text(json_path(doc, r.key)) if r.key else None
        if r.cloudevents:
            assert r.ce_type is not None and r.ce_source is not None
            event = CloudEvent(type=r.ce_type, source=r.ce_source, id=event_id or str(uuid.uuid4()), data=doc, datacontenttype="application/json")
            if key is not None:
                event.extensions["partitionkey"] = key
            k, v, ce_h = to_binary(event) if r.cloudevents == "binary" else to_structured(event)
            return k, v, ce_h + carried, event_id
        headers: Headers = [("content-type", ctype.encode())] if ctype else []
        if carried:
            headers += carried
        return _b(key), body, headers, event_id

    def _json(self, body: bytes) -> Any:
        if not body:
            raise JsonError(400, 400, "Request body is empty; a JSON document was expected")
        try:
            return _loads(body)
        except (ValueError, RecursionError) as exc:
            raise JsonError(400, 400, f"Request body is not valid JSON: {exc}") from None

    async def load_seen(self, settings: ClusterSettings, timeout: float = 10.0) -> int:
        """Fill the seen window with the event ids of the topic's last records, so provider
        retries after a gateway restart are still recognised. Returns how many were read."""
        ids = await asyncio.to_thread(read_recent_ids, settings, self.route.topic, self.route.dedup_window, timeout)
        for event_id in ids:
            self.seen.remember(event_id, {"topic": self.route.topic, "id": event_id})
        return len(ids)


def read_recent_ids(settings: ClusterSettings, topic: str, per_partition: int, timeout: float) -> list[str]:
    c = consumer(settings, f"riverbed-gateway-seen-{uuid.uuid4()}", **{"enable.partition.eof": True})
    try:
        md = c.list_topics(topic, timeout=timeout).topics.get(topic)
        if md is None or md.error is not None:
            return []
        parts = []
        for p in md.partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                parts.append(TopicPartition(topic, p, max(low, high - per_partition)))
        if not parts:
            return []
        c.assign(parts)
        pending = {tp.partition for tp in parts}
        ids: list[str] = []
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            first = c.poll(0.5)  # then what else is there (consume(n, t) would wait for all n)
            for msg in [] if first is None else [first, *c.consume(499, 0)]:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                    continue
                headers: list[tuple[str, Any]] = list(msg.headers() or ())  # type: ignore[arg-type]
                ids.extend(v.decode("utf-8", "replace") for n, v in headers if n == ID_HEADER and isinstance(v, bytes))
        return ids
    finally:
        c.close()


def _b(text: str | None) -> bytes | None:
    return None if text is None else text.encode()

