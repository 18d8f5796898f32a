"""``GET /metrics``: the gateway's counters in Prometheus' text format, read from the live
routes at scrape time (nothing is counted twice)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from .app import Gateway


class GatewayCollector(Collector):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        gw = self.gateway
        accepted = CounterMetricFamily("riverbed_gateway_webhooks_accepted", "Webhooks stored and answered 202", labels=["path"])
        dup = CounterMetricFamily("riverbed_gateway_webhooks_duplicates", "Provider retries answered without producing", labels=["path"])
        for path, h in gw.inbound.items():
            accepted.add_metric([path], h.accepted)
            dup.add_metric([path], h.duplicates)
        clients = GaugeMetricFamily("riverbed_gateway_push_clients", "Connected SSE and WebSocket clients", labels=["path"])
        pushed = CounterMetricFamily("riverbed_gateway_push_records", "Records handed to push clients", labels=["path"])
        for path, hub in gw.hubs.items():
            clients.add_metric([path], hub.count)
            pushed.add_metric([path], hub.delivered)
        out = {name: CounterMetricFamily(f"riverbed_gateway_outbound_{name}", help_, labels=["subscription"]) for name, help_ in (
            ("delivered", "Records delivered (2xx)"),
            ("failed_attempts", "POST attempts that failed"),
            ("dead_lettered", "Records sent to the dead-letter topic"),
        )}
        for w in gw.outbound:
            stats = w.stats()
            for name, family in out.items():
                family.add_metric([w.sub.name], stats[name])
        yield from (accepted, dup, clients, pushed, *out.values())


def metrics_endpoint(gateway: Gateway) -> Callable[[Request], Awaitable[Response]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(gateway))

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
