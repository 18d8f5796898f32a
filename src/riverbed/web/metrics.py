"""Prometheus metrics for every HTTP service on the ASGI stack (registry, gateway, SQL server,
console, ...): requests, errors and latency per endpoint, in-flight requests, and the process's
CPU, memory and open files, served as ``GET /metrics`` on the service's own port.

    metrics = HttpMetrics("registry")
    app = create_app(routes, metrics=metrics)      # adds /metrics and the middleware
    metrics.registry.register(MyCollector())       # the service's own figures

Names follow Prometheus conventions (``riverbed_http_*``, seconds, ``_total`` counters); the
``service`` label tells the services apart when one Prometheus scrapes them all. Endpoints are
labelled by their handler's name (bounded), never by the raw path.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response

# the text format every Prometheus version reads
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds: 100 µs to 10 s
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class HttpMetrics:
    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry or CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter("riverbed_http_requests", "HTTP requests answered, by endpoint, method and status", ["service", "endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("riverbed_http_request_duration_seconds", "Time from a request's arrival to its last response byte", ["service", "endpoint"], buckets=BUCKETS, registry=self.registry)
        self.in_flight = Gauge("riverbed_http_requests_in_flight", "Requests being handled", ["service"], registry=self.registry)
        self._in_flight = self.in_flight.labels(service)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # label lookups, once each

    def _observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        pair = self._children.get(key)
        if pair is None:
            pair = self._children[key] = (self.requests.labels(self.service, endpoint, method, str(status)), self.latency.labels(self.service, endpoint))
        pair[0].inc()
        pair[1].observe(seconds)

    def middleware(self, app: Any) -> Any:
        """Pure ASGI middleware (no per-request objects beyond the status it records)."""
        metrics = self

        async def wrapped(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            status = [500]

            async def send_status(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            start = time.perf_counter()
            metrics._in_flight.inc()
            try:
                await app(scope, receive, send_status)
            finally:
                metrics._in_flight.dec()
                name = getattr(scope.get("endpoint"), "__name__", None) or "unmatched"
                metrics._observe(name, scope.get("method", ""), status[0], time.perf_counter() - start)

        return wrapped

    def install(self, app: Any) -> None:
        """Add ``GET /metrics`` and the counting middleware to a Starlette app."""
        app.add_route("/metrics", self.endpoint, methods=["GET"])
        app.add_middleware(_Middleware, metrics=self)

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)


class _Middleware:
    def __init__(self, app: Any, metrics: HttpMetrics) -> None:
        self.call = metrics.middleware(app)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.call(scope, receive, send)
