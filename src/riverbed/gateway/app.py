"""The gateway service: every configured route on one Starlette app, with the producer, the push
hubs and the outbound deliveries started and stopped by the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from riverbed.client import admin, ensure_topics
from riverbed.web import create_app, json_response

from .config import GatewayConfig
from .producer import AsyncProducer
from .push import TopicHub
from .push_http import Authenticator, PushEndpoints
from .webhooks_in import InboundHandler

log = logging.getLogger("riverbed.gateway")


class _InboundApp:
    """A webhook route as an ASGI app: its handler, which exists once the gateway started."""

    def __init__(self, handlers: dict[str, InboundHandler], path: str) -> None:
        self.handlers, self.path = handlers, path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        handler = self.handlers.get(self.path)
        if handler is None:
            await json_response({"error_code": 50301, "message": "The gateway is starting"}, 503)(scope, receive, send)
            return
        await handler(scope, receive, send)


class GatewayApp:
    """The gateway's ASGI app: a POST to a webhook route goes straight to its handler (a plain
    ASGI app); everything else (and the lifespan) to the Starlette app. Per webhook this saves
    the middleware stack, the router's matching and the Request and Response objects."""

    def __init__(self, starlette: Starlette, fast: dict[str, _InboundApp]) -> None:
        self.starlette, self.fast = starlette, fast

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            handle = self.fast.get(scope["path"])
            if handle is not None:
                await handle(scope, receive, send)
                return
        await self.starlette(scope, receive, send)


class Gateway:
    """Webhooks in and out, push to browsers and the REST proxy, from one GatewayConfig.

    ``gateway.app`` is the ASGI app (serve it with riverbed.web.HttpServer); the Kafka clients
    start in its lifespan. ``extra_routes`` are mounted too (an example's own page, say)."""

    def __init__(self, config: GatewayConfig, extra_routes: Sequence[BaseRoute] = ()) -> None:
        self.config = config
        self.producer: AsyncProducer | None = None
        self.inbound: dict[str, InboundHandler] = {}
        self.hubs: dict[str, TopicHub] = {}
        self.outbound: list[Any] = []
        self.rest: Any = None
        from .metrics import metrics_endpoint

        routes: list[BaseRoute] = [
            Route("/health", self._health, methods=["GET"]),
            Route("/metrics", metrics_endpoint(self), methods=["GET"]),
        ]
        for r in config.inbound:
            routes.append(Route(r.path, self._inbound(r.path), methods=["POST"]))
        # POSTs to a webhook route skip Starlette's middleware and router (see GatewayApp)
        self._fast = {r.path: self._inbound(r.path) for r in config.inbound if "{" not in r.path}
        self.auth = auth = Authenticator(config.jwt)
        for p in config.push:
            hub = TopicHub(p, config.cluster)
            self.hubs[p.path] = hub
            ep = PushEndpoints(hub, auth)
            routes.append(Route(p.path, ep.sse, methods=["GET"]))
            routes.append(WebSocketRoute(p.path, ep.websocket))
        self.rest_v2: Any = None
        self.schemas: Any = None
        if config.rest:
            from .restproxy import RestProxy
            from .restproxy_v2 import RestProxyV2
            from .schemas import SchemaFormats

            self.schemas = SchemaFormats(config.cluster.registry_url)
            self.rest = RestProxy(self)
            self.rest_v2 = RestProxyV2(self)
            routes.extend(self.rest.routes())
            routes.extend(self.rest_v2.routes())
        routes.extend(extra_routes)
        self.starlette: Starlette = create_app(routes)
        self.starlette.router.lifespan_context = self._lifespan
        self.app = GatewayApp(self.starlette, self._fast)

    def _inbound(self, path: str) -> _InboundApp:
        return _InboundApp(self.inbound, path)

    async def _health(self, request: Request) -> Response:
        return json_response(
            {
                "status": "up",
                "inbound": {
                    p: {"accepted": h.accepted, "duplicates": h.duplicates}
                    for p, h in self.inbound.items()
                },
                "push": {
                    p: {"clients": h.count, "delivered": h.delivered} for p, h in self.hubs.items()
                },
                "outbound": {w.sub.name: w.stats() for w in self.outbound},
            }
        )

    def topics(self) -> dict[str, tuple[int, dict[str, str]]]:
        c = self.config
        names = (
            [r.topic for r in c.inbound]
            + [p.topic for p in c.push]
            + [s.topic for s in c.outbound]
            + [s.dead_letter_topic for s in c.outbound]
        )
        topics: dict[str, tuple[int, dict[str, str]]] = {n: (1, {}) for n in dict.fromkeys(names)}
        return topics  # retry topics: created by each subscription, partitioned as its topic

    async def start(self) -> None:
        c = self.config
        if c.create_topics:
            ensure_topics(admin(c.cluster), self.topics())
        self.producer = AsyncProducer(c.cluster, c.delivery_timeout_ms, c.linger_ms)
        for r in c.inbound:
            self.inbound[r.path] = InboundHandler(
                r,
                self.producer,
                c.max_body,
                c.retry_after,
                c.delivery_timeout_ms / 1000 + 1,
                self.auth,
            )
        await asyncio.gather(
            *(self._load_seen(h) for h in self.inbound.values() if h.route.dedup_window > 0)
        )
        for hub in self.hubs.values():
            await hub.start()
        if self.rest_v2 is not None:
            await self.rest_v2.start()
        if c.outbound:
            from .webhooks_out import Delivery

            self.outbound = [Delivery(sub, c.cluster, create_topics=c.create_topics) for sub in c.outbound]
            await asyncio.gather(*(w.start() for w in self.outbound))

    async def _load_seen(self, handler: InboundHandler) -> None:
        r = handler.route
        try:
            n = await handler.load_seen(self.config.cluster)
            log.info("%s: %d recent event ids read back from %s", r.path, n, r.topic)
        except Exception as exc:  # the route still serves; retries may then be duplicated
            log.warning("%s: could not read recent event ids from %s: %s", r.path, r.topic, exc)

    def drop_push_clients(self) -> None:
        """Thread-safe: end every SSE stream and WebSocket (clients reconnect and resume). The
        server calls it when asked to exit, as open streams would otherwise hold the shutdown."""
        for hub in self.hubs.values():
            hub.call_soon(hub.disconnect_all)

    async def stop(self) -> None:
        if self.rest_v2 is not None:
            await self.rest_v2.stop()
        if self.schemas is not None:
            await self.schemas.close()
        await asyncio.gather(*(w.stop() for w in self.outbound))
        for hub in self.hubs.values():
            hub.stop()
        for handler in self.inbound.values():
            if handler.shared is not None:
                await handler.shared.close()
        if self.producer is not None:
            self.producer.close()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()
