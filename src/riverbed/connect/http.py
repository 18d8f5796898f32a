"""What a running `riverbed connect run` serves over HTTP (riverbed.web): Prometheus metrics
of each connector (slot lag in bytes and seconds, changes, records, acknowledged LSN) at
``/metrics``, and a read-only subset of Kafka Connect's REST API (``GET /connectors``,
``GET /connectors/{name}``, ``GET /connectors/{name}/status``, ``PUT .../pause`` and
``PUT .../resume``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..web import JsonError, create_app, json_response
from .connector import PostgresConnector

__all__ = ["connect_app"]


class _ConnectorCollector(Collector):
    def __init__(self, connectors: Sequence[PostgresConnector]) -> None:
        self.connectors = connectors

    def collect(self) -> Iterator[GaugeMetricFamily]:
        spec = [
            ("riverbed_connect_slot_lag_bytes", "WAL the slot holds beyond what Kafka acknowledged (pg_current_wal_insert_lsn - confirmed_flush_lsn)", "lag_bytes"),
            ("riverbed_connect_slot_lag_seconds", "age of the oldest committed change not yet acknowledged by Kafka", "lag_seconds"),
            ("riverbed_connect_changes_total", "row changes read from the WAL", "changes"),
            ("riverbed_connect_records_total", "records produced (change events, tombstones, heartbeats, outbox events)", "records"),
            ("riverbed_connect_snapshot_rows_total", "rows read by snapshots", "snapshot_rows"),
            ("riverbed_connect_acknowledged_lsn", "LSN up to which every change is acknowledged by Kafka", "acked_lsn"),
            ("riverbed_connect_running", "1 while the connector streams or snapshots", "running"),
        ]
        for name, doc, attr in spec:
            g = GaugeMetricFamily(name, doc, labels=["connector"])
            for c in self.connectors:
                v = (1 if c.stats.state in ("streaming", "snapshot") else 0) if attr == "running" else getattr(c.stats, attr)
                if v is not None:
                    g.add_metric([c.cfg.name], float(v))
            yield g


def _state(c: PostgresConnector) -> str:
    s = c.stats.state
    if c.paused.is_set() and s in ("streaming", "snapshot"):
        return "PAUSED"
    if s in ("streaming", "snapshot", "snapshot completed"):
        return "RUNNING"
    if s in ("starting", "restarting"):
        return "RESTARTING"
    if s == "stopped":
        return "STOPPED"
    return "FAILED"


def connect_app(connectors: Sequence[PostgresConnector]) -> Any:
    registry = CollectorRegistry()
    registry.register(_ConnectorCollector(connectors))
    by_name = {c.cfg.name: c for c in connectors}

    def find(request: Request) -> PostgresConnector:
        name = request.path_params["name"]
        if name not in by_name:
            raise JsonError(404, 404, f"Connector {name} not found")
        return by_name[name]

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def list_connectors(_request: Request) -> Response:
        return json_response(sorted(by_name))

    async def info(request: Request) -> Response:
        c = find(request)
        config = {k: str(v) for k, v in c.cfg.redacted().items() if v not in (None, (), {}, frozenset())}
        return json_response({"name": c.cfg.name, "config": config, "tasks": [{"connector": c.cfg.name, "task": 0}], "type": "source"})

    async def status(request: Request) -> Response:
        c = find(request)
        state = {"state": _state(c), "worker_id": "riverbed-connect"}
        extra = {"riverbed": {"state": c.stats.state, "lag_bytes": c.stats.lag_bytes, "lag_seconds": c.stats.lag_seconds,
                              "changes": c.stats.changes, "records": c.stats.records}}
        return json_response({"name": c.cfg.name, "connector": state, "tasks": [{"id": 0, **state}], "type": "source", **extra})

    async def pause(request: Request) -> Response:
        find(request).pause()
        return Response(status_code=202)

    async def resume(request: Request) -> Response:
        find(request).resume()
        return Response(status_code=202)

    return create_app([
        Route("/metrics", metrics),
        Route("/connectors", list_connectors),
        Route("/connectors/{name}", info),
        Route("/connectors/{name}/status", status),
        Route("/connectors/{name}/pause", pause, methods=["PUT"]),
        Route("/connectors/{name}/resume", resume, methods=["PUT"]),
    ])
