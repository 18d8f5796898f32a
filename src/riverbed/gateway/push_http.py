"""The HTTP side of push routes: bearer-token authentication, the SSE response and the
WebSocket handler (frames, positions, notices). The fan-out itself is in push.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

import jwt
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from riverbed.web import JsonError

from .config import JwtSettings
from .push import HEARTBEAT, Client, Rec, TopicHub, parse_position

log = logging.getLogger("riverbed.gateway")


class Guarded(Protocol):
    """A route's authentication settings (PushRoute, InboundRoute)."""

    @property
    def auth(self) -> str: ...
    @property
    def scope(self) -> str | None: ...
    @property
    def user_claim(self) -> str: ...


class Authenticator:
    def __init__(self, settings: JwtSettings) -> None:
        self.settings = settings

    def user(self, conn: HTTPConnection, route: Guarded) -> str | None:
        """The user id of the connection's bearer token (Authorization header or
        ``access_token`` query parameter, as browsers cannot set headers on EventSource and
        WebSocket); JsonError 401 / 403 when missing, invalid or not allowed."""
        if route.auth == "none":
            return None
        header = conn.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else conn.query_params.get("access_token")
        if not token:
            raise JsonError(401, 401, "Missing bearer token (Authorization: Bearer ... or ?access_token=...)")
        s = self.settings
        assert s.key is not None
        try:
            claims = jwt.decode(token, s.key, algorithms=list(s.algorithms), audience=s.audience, issuer=s.issuer, leeway=s.leeway, options={"verify_aud": s.audience is not None})
        except jwt.PyJWTError as exc:
            raise JsonError(401, 401, f"Invalid bearer token: {exc}") from None
        if route.scope is not None:
            scopes = claims.get("scope", claims.get("scp", ""))
            held = scopes.split() if isinstance(scopes, str) else list(scopes or ())
            if route.scope not in held:
                raise JsonError(403, 403, f"The token lacks the scope {route.scope!r}")
        user = claims.get(route.user_claim)
        if user is None:
            raise JsonError(403, 403, f"The token has no {route.user_claim!r} claim")
        return str(user)


def _item_sse(item: Rec | str, client: Client) -> bytes:
    """An SSE event; a record's data line is encoded once for every client (Rec.sse_data)."""
    if isinstance(item, Rec):
        return b"id: " + client.advance(item).encode() + b"\n" + item.sse_data
    if item.startswith("skipped:"):
        return f'event: skipped\ndata: {{"count":{item[8:]}}}\n\n'.encode()
    return b'event: reset\ndata: {"reason":"position older than the replay buffer"}\n\n'


def _item_ws(item: Rec | str, client: Client) -> str:
    if isinstance(item, Rec):
        return f'{{"type":"record","position":"{client.advance(item)}",{item.body}}}'
    if item.startswith("skipped:"):
        return f'{{"type":"skipped","count":{item[8:]}}}'
    return '{"type":"reset","reason":"position older than the replay buffer"}'


class PushEndpoints:
    """The SSE (GET) and WebSocket handlers of one route."""

    def __init__(self, hub: TopicHub, auth: Authenticator) -> None:
        self.hub, self.auth = hub, auth

    def _position(self, conn: HTTPConnection, last_event_id: str | None) -> dict[int, int] | None:
        try:
            return parse_position(last_event_id or conn.query_params.get("position"))
        except ValueError as exc:
            raise JsonError(400, 400, str(exc)) from None

    async def sse(self, request: Request) -> Response:
        user = self.auth.user(request, self.hub.route)
        position = self._position(request, request.headers.get("last-event-id"))
        return EventStream(self.hub, await self.hub.subscribe(user, position))

    async def websocket(self, ws: WebSocket) -> None:
        try:
            user = self.auth.user(ws, self.hub.route)
            position = self._position(ws, None)
        except JsonError as exc:
            log.info("push %s: websocket refused: %s", self.hub.route.path, exc.message)
            await ws.close(code=1008, reason=exc.message[:120])
            return
        try:
            client = await self.hub.subscribe(user, position)
        except JsonError as exc:
            log.warning("push %s: websocket refused: %s", self.hub.route.path, exc.message)
            await ws.close(code=1013 if exc.status == 503 else 1008, reason=exc.message[:120])
            return
        try:
            await ws.accept()
        except BaseException:
            self.hub.unsubscribe(client)
            raise

        async def reader() -> None:
            # the protocol has no client messages yet: read and ignore them (text or binary),
            # so pings/pongs and closes are handled; a malformed frame closes this socket only
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    msg = await ws.receive()
                    if msg["type"] == "websocket.disconnect":
                        return

        async def writer() -> None:
            # one wake-up per batch of fanned-out records (not per record), no idle timer:
            # uvicorn pings the socket itself (ws_ping_interval)
            while True:
                items = await client.batch(None)
                assert items is not None
                for item in items:
                    if item == "dropped":
                        log.info("push %s: dropped a websocket client that did not keep up", self.hub.route.path)
                        return
                    await ws.send_text(_item_ws(item, client))

        tasks = [asyncio.create_task(reader()), asyncio.create_task(writer()), asyncio.create_task(client.gone.wait())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
            self.hub.unsubscribe(client)
            with contextlib.suppress(Exception):
                # a client that never reads may not take the close frame either: bounded wait
                await asyncio.wait_for(ws.close(code=1013 if client.dropped else 1000), 1.0)



class EventStream(Response):
    """A text/event-stream response that ends when the client disconnects or is dropped, even
    while a write to a client that stopped reading is pending."""

    media_type = "text/event-stream"

    def __init__(self, hub: TopicHub, client: Client) -> None:
        super().__init__(None, 200, {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}, self.media_type)
        self.hub, self.client = hub, client
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        client = self.client
        finished = False

        async def writer() -> None:
            nonlocal finished
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": b"retry: 1000\n\n", "more_body": True})
            while True:
                items = await client.batch(HEARTBEAT)
                if items is None:
                    await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                    continue
                # every event queued since the last write in one body chunk (one write)
                body = b"".join(_item_sse(item, client) for item in items if item != "dropped")
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                if "dropped" in items:
                    log.info("push %s: dropped a client that did not keep up", self.hub.route.path)
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    finished = True
                    return

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.create_task(writer()), asyncio.create_task(disconnected()), asyncio.create_task(client.gone.wait())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    log.warning("push %s: stream failed: %r", self.hub.route.path, t.exception())
            if client.gone.is_set() and not finished:
                # give a reading client the end of the stream; one that does not read is cut
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(tasks[0]), 1.0)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
            self.hub.unsubscribe(client)
