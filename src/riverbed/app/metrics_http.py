"""The Prometheus endpoint of ``riverbed serve``: ``GET /metrics`` on its own port
(127.0.0.1:9644 by default), served by a small HTTP server on a daemon thread so that a
scrape never waits for, or makes wait, the broker's event loop beyond one short callback
that copies numbers (``riverbed.app.metrics``). Any other path answers 404.

It also samples the event loop's lag: a timer due every 0.5 s records how late it ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from riverbed.stats import LATENCY_BUCKETS, Histogram

from .metrics import BrokerCollector

if TYPE_CHECKING:
    from .runtime import RiverbedApp

log = logging.getLogger("riverbed.metrics")

LOOP_LAG_INTERVAL = 0.5
# the text format every Prometheus version reads (all our names are valid in it)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class MetricsSettings:
    """The metrics endpoint: on by default, on the port Redpanda uses for its admin API and
    /metrics (9644)."""

    enabled: bool = True
    listen: str = "127.0.0.1:9644"

    @property
    def address(self) -> tuple[str, int]:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"metrics listen address must be HOST:PORT, got {self.listen!r}")
        return host.strip("[]") or "0.0.0.0", int(port)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/metrics":
            self._answer(404, b"not found: the metrics are at /metrics\n", "text/plain; charset=utf-8")
            return
        try:
            body = generate_latest(self.server.registry)
        except Exception as exc:  # the loop did not answer in time, or a collector failed
            log.warning("metrics scrape failed: %r", exc)
            self._answer(503, f"metrics unavailable: {exc!r}\n".encode(), "text/plain; charset=utf-8")
            return
        self._answer(200, body, CONTENT_TYPE)

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry) -> None:
        self.registry = registry
        if ":" in address[0]:  # an IPv6 address ([::1]:9644)
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class MetricsEndpoint:
    """Start after the app (on its event loop), stop before it."""

    def __init__(self, app: RiverbedApp, settings: MetricsSettings) -> None:
        self.app = app
        self.settings = settings
        self.loop_lag = Histogram(LATENCY_BUCKETS)
        self.registry = CollectorRegistry(auto_describe=False)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lag_task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    async def start(self) -> None:
        """Bind the port (OSError when it cannot) and serve on a daemon thread."""
        loop = asyncio.get_running_loop()
        self.registry.register(BrokerCollector(self.app, loop, self.loop_lag))
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, RSS, open fds
        PlatformCollector(registry=self.registry)
        self._server = _Server(self.settings.address, self.registry)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5}, name="riverbed-metrics", daemon=True)
        self._thread.start()
        self._lag_task = asyncio.create_task(self._watch_loop())
        log.info("metrics on http://%s:%d/metrics", self.settings.address[0], self.port)

    async def _watch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LOOP_LAG_INTERVAL
            await asyncio.sleep(LOOP_LAG_INTERVAL)
            self.loop_lag.observe(max(loop.time() - due, 0.0))

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
            self._lag_task = None
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.get_running_loop().run_in_executor(None, server.shutdown)
            server.server_close()
