"""Webhooks in: a declarative route verifies a provider's signature, drops replays, and
produces the body to a topic, answering ``202 Accepted`` only once the broker acknowledged it.

Order of checks: rate limit (429) -> body size (413) -> signature and timestamp (401) -> JSON
(400) -> CloudEvent attributes (400) -> provider event id already seen (202, not produced again)
-> produce with acks=all (503 with Retry-After if not stored) -> 202.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

from confluent_kafka import KafkaError, TopicPartition
from starlette.requests import Request
from starlette.responses import Response

from riverbed.client import ClusterSettings, consumer
from riverbed.messaging import (
    CloudEvent,
    InvalidEvent,
    from_binary,
    from_structured,
    to_binary,
    to_structured,
)
from riverbed.web import JsonError, json_response, read_body

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


def client_address(request: Request) -> str:
    return request.client.host if request.client else "?"


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

    def _verify(self, request: Request, body: bytes) -> Verified:
        r, h = self.route, request.headers
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

    async def __call__(self, request: Request) -> Response:
        r = self.route
        if self.limiter is not None:
            wait = self.limiter.take(client_address(request))
            if wait > 0:
                log.warning("%s from %s: rate limit of %g/s exceeded", r.path, client_address(request), r.rate_limit)
                return retry_after(json_response({"error_code": 429, "message": f"Too many requests: limit is {r.rate_limit:g}/s"}, 429), max(1, round(wait + 0.5)))
        user = None
        if r.auth == "jwt":
            assert self.auth is not None
            user = self.auth.user(request, r)
        body = await read_body(request, self.max_body)
        try:
            verified = self._verify(request, body)
        except SignatureError as exc:
            log.warning("%s from %s: signature refused: %s", r.path, client_address(request), exc)
            raise JsonError(401, 401, f"Signature verification failed: {exc}") from None
        key, value, headers, event_id = self._record(request, body, verified)
        if user is not None:
            headers.append((USER_HEADER, user.encode()))
            if key is None:
                key = user.encode()
        if event_id is not None:
            first = self.seen.claim(event_id)
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
                    return json_response({**result, "duplicate": True}, 202)
            if self.shared is not None:
                try:
                    earlier = await self.shared.claim(event_id, self.ack_timeout)
                except SharedUnavailable as exc:
                    self.seen.forget(event_id, NotStored(str(exc)))
                    log.error("%s: event %s not accepted: %s", r.path, event_id, exc)
                    return retry_after(json_response({"error_code": 50301, "message": f"The event was not stored: {exc}"}, 503), self.retry_after)
                if earlier is not None:
                    self.seen.done(event_id, earlier)
                    self.duplicates += 1
                    log.info("%s: event %s already accepted by another instance, not produced again", r.path, event_id)
                    return json_response({**earlier, "duplicate": True}, 202)
            headers.append((ID_HEADER, event_id.encode()))
        try:
            msg = await asyncio.wait_for(self.producer.send(r.topic, value, key, headers), self.ack_timeout)
        except (NotStored, TimeoutError) as exc:
            err = exc if isinstance(exc, NotStored) else NotStored("no acknowledgement in time")
            if event_id is not None:
                self.seen.forget(event_id, err)
                if self.shared is not None:
                    with contextlib.suppress(SharedUnavailable):  # else the claim expires by itself
                        await self.shared.forget(event_id)
            log.error("%s: record not stored on %s: %s", r.path, r.topic, err)
            return retry_after(json_response({"error_code": 50301, "message": f"The event was not stored: {err}"}, 503), self.retry_after)
        result = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(), "id": event_id}
        if event_id is not None:
            self.seen.done(event_id, result)
            if self.shared is not None:
                try:
                    await self.shared.done(event_id, result)
                except SharedUnavailable as exc:  # stored: answer 202; the claim expires
                    log.warning("%s: event %s stored but not marked done in redis: %s", r.path, event_id, exc)
        self.accepted += 1
        return json_response(result, 202)

    def _record(self, request: Request, body: bytes, verified: Verified) -> tuple[bytes | None, bytes | None, Headers, str | None]:
        """-> (key, value, headers, provider event id) for the body, or JsonError 400."""
        r, h = self.route, request.headers
        ctype = h.get("content-type", "")
        carried: Headers = [(name.lower(), h[name].encode()) for name in r.headers if name in h]
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
        if ctype.split(";")[0].strip().lower() == "application/cloudevents+json":  # structured mode
            try:
                event = from_structured(None, body)
            except InvalidEvent as exc:
                raise JsonError(400, 400, f"Invalid CloudEvent: {exc}") from None
            key = event.partitionkey or (_text(json_path(self._json(body), r.key)) if r.key else None)
            return _b(key), body, [("content-type", ctype.encode()), *carried], verified.event_id or f"{event.source}/{event.id}"
        if ctype.split(";")[0].strip().lower() == "application/cloudevents-batch+json":
            raise JsonError(400, 400, "CloudEvents batch mode is not supported; send one event per request")
        doc = self._json(body) if r.require_json or r.key or r.id or r.cloudevents else None
        event_id = verified.event_id
        id_path = r.id or DEFAULT_ID_PATH.get(r.verify)
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
        return _b(key), body, headers + carried, event_id

    def _json(self, body: bytes) -> Any:
        if not body:
            raise JsonError(400, 400, "Request body is empty; a JSON document was expected")
        try:
            return json.loads(body)
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


def retry_after(response: Response, seconds: int) -> Response:
    response.headers["Retry-After"] = str(seconds)
    return response
